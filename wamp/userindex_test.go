package wamp

import (
	"slices"
	"testing"
)

// TestUserIndex: a user's first session inline, the others beside it; a
// removal of the first promotes another; the sets stay exact.
func TestUserIndex(t *testing.T) {
	x := newUserIndex()
	a, b, c, d := &Session{id: "a"}, &Session{id: "b"}, &Session{id: "c"}, &Session{id: "d"}
	ids := func(seq func(func(*Session) bool)) []string {
		var out []string
		for s := range seq {
			out = append(out, s.id)
		}
		slices.Sort(out)
		return out
	}
	for _, s := range []*Session{a, b, c, a} {
		x.add("alice", s)
	}
	x.add("bob", d)
	if got := ids(x.of("alice")); !slices.Equal(got, []string{"a", "b", "c"}) || x.count("alice") != 3 {
		t.Fatalf("alice: %v (%d)", got, x.count("alice"))
	}
	if got := ids(x.all()); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("all: %v", got)
	}
	if x.remove("bob", a) || x.remove("carol", a) {
		t.Fatal("removed a session that was not there")
	}
	if !x.remove("alice", a) || x.one["alice"] == nil || x.count("alice") != 2 {
		t.Fatalf("after removing the first: %v", ids(x.of("alice")))
	}
	if !x.remove("alice", c) || !x.remove("alice", b) || x.count("alice") != 0 || len(x.more) != 0 {
		t.Fatalf("after removing all: one %v more %v", x.one, x.more)
	}
	if !x.remove("bob", d) || len(x.one) != 0 || x.remove("bob", d) {
		t.Fatal("bob")
	}
	n := 0
	x.add("e", a)
	x.add("e", b)
	for range x.all() {
		n++
		break
	}
	if n != 1 {
		t.Fatal("iteration did not stop")
	}
}
