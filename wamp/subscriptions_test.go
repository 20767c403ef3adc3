package wamp

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"unsafe"
)

// attrsOf returns the attributes session s keeps for its subscription to
// uri (nil when it has none).
func attrsOf(s *Session, uri string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.subs.get(uri); sub != nil {
		return sub.attrs
	}
	return nil
}

// uriOf returns the URI string session s keeps for its subscription to
// uri, or "".
func uriOf(s *Session, uri string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.subs.get(uri); sub != nil {
		return sub.uri
	}
	return ""
}

// sameMap reports whether a and b are the same map, not equal ones.
func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// TestSubscribersShareAttributes: every subscription to a topic through
// one route keeps the same Request.Attributes map (the broker's), which is
// what makes handler.Request.Attributes read-only; another topic gets its
// own, and a topic that empties and comes back starts a new one. The
// subscriptions share the topic's URI string too, not a copy each from
// their SUBSCRIBE.
func TestSubscribersShareAttributes(t *testing.T) {
	f := newFixture(t, nil)
	var sessions []*Session
	for i := range 3 {
		s, _ := f.open(t, fmt.Sprintf("c%d", i))
		for _, uri := range []string{"chan/a", "chan/b"} {
			if err := s.Handle(context.Background(), []byte(`[5,"`+uri+`"]`)); err != nil {
				t.Fatal(err)
			}
		}
		sessions = append(sessions, s)
	}
	a0, b0 := attrsOf(sessions[0], "chan/a"), attrsOf(sessions[0], "chan/b")
	if !maps.Equal(a0, map[string]string{"room": "a"}) || !maps.Equal(b0, map[string]string{"room": "b"}) {
		t.Fatalf("attributes %v %v", a0, b0)
	}
	if sameMap(a0, b0) {
		t.Fatal("two topics share one attributes map")
	}
	for _, s := range sessions[1:] {
		if !sameMap(attrsOf(s, "chan/a"), a0) || !sameMap(attrsOf(s, "chan/b"), b0) {
			t.Fatalf("session %s keeps its own attributes map", s.ConnID())
		}
		for _, uri := range []string{"chan/a", "chan/b"} {
			if got, first := uriOf(s, uri), uriOf(sessions[0], uri); got != uri || unsafe.StringData(got) != unsafe.StringData(first) {
				t.Fatalf("session %s keeps its own copy of %q (%q)", s.ConnID(), uri, got)
			}
		}
	}
	for _, s := range sessions {
		s.Close()
	}
	f.settle(t)
	checkEmpty(t, f.node)
	s, _ := f.open(t, "again")
	if err := s.Handle(context.Background(), []byte(`[5,"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	if a := attrsOf(s, "chan/a"); sameMap(a, a0) || !maps.Equal(a, a0) {
		t.Fatalf("a topic back after emptying: attributes %v, same map %v", a, sameMap(a, a0))
	}
}

// TestSubSet covers the set's two forms: one subscription inline, a map
// (and, for v2, an id index) from the second on, kept after going back to
// one; lookups by URI and id, replacement of a topic's subscription,
// deletion of a stale one, iteration.
func TestSubSet(t *testing.T) {
	mk := func(uri string, id uint64) *subscription { return &subscription{uri: uri, subID: id} }
	for _, v2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v2=%v", v2), func(t *testing.T) {
			var ss subSet
			uris := func() []string {
				var out []string
				for sub := range ss.all() {
					out = append(out, sub.uri)
				}
				slices.Sort(out)
				return out
			}
			if ss.len() != 0 || ss.get("a") != nil || ss.byID(0) != nil || len(uris()) != 0 {
				t.Fatal("empty set is not empty")
			}
			a, a2, b, c := mk("a", 1), mk("a", 1), mk("b", 2), mk("c", 3)
			ss.put(a, v2)
			if ss.many != nil || ss.get("a") != a || ss.get("b") != nil || ss.len() != 1 {
				t.Fatalf("one: %+v", ss)
			}
			if v2 && ss.byID(1) != a {
				t.Fatal("byID of the inline subscription")
			}
			ss.put(a2, v2) // same topic: replaces, stays inline
			if ss.many != nil || ss.get("a") != a2 || ss.len() != 1 {
				t.Fatalf("replace: %+v", ss)
			}
			ss.del(a) // stale: a2 holds the topic now
			if ss.get("a") != a2 {
				t.Fatal("deleting a stale subscription removed the current one")
			}
			ss.put(b, v2)
			ss.put(c, v2)
			if ss.many == nil || ss.one != nil || ss.len() != 3 || !slices.Equal(uris(), []string{"a", "b", "c"}) {
				t.Fatalf("many: %+v %v", ss, uris())
			}
			if (ss.many.byID != nil) != v2 {
				t.Fatalf("id index %v for v2=%v", ss.many.byID, v2)
			}
			if v2 && (ss.byID(2) != b || ss.byID(1) != a2 || ss.byID(9) != nil) {
				t.Fatal("byID in the map form")
			}
			ss.del(b)
			ss.del(a2)
			if ss.len() != 1 || ss.get("c") != c || ss.get("b") != nil || (v2 && ss.byID(2) != nil) {
				t.Fatalf("after deletes: %+v", ss)
			}
			n := 0
			for range ss.all() {
				n++
				break
			}
			if n != 1 {
				t.Fatal("iteration did not stop")
			}
		})
	}
}
