package wamp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// retain: true keeps what the handler broadcasts; get_retained gets it
// after SUBSCRIBED, marked retained; an audience other than the
// publisher's own exclusion is not retained; the latest wins.
func TestEventRetention(t *testing.T) {
	for _, tc := range []struct {
		name     string
		publish  []string // PUBLISH options, in order, each publishing its index
		subOpts  string
		topic    string
		want     []string // EVENTs the late subscriber gets, "-" subscription id
		retained bool
	}{
		{"kept", []string{`{"retain":true}`}, `{"get_retained":true}`, "public/r", []string{`- 0 retained`}, true},
		{"latest wins", []string{`{"retain":true}`, `{"retain":true,"exclude_me":false}`}, `{"get_retained":true}`, "public/r", []string{`- 1 retained`}, true},
		{"not asked", []string{`{"retain":true}`}, `{}`, "public/r", nil, true},
		{"not retained", []string{`{}`}, `{"get_retained":true}`, "public/r", nil, false},
		{"audience", []string{`{"retain":true,"eligible_authid":["x"]}`}, `{"get_retained":true}`, "public/r", nil, false},
		{"exclude", []string{`{"retain":true,"exclude":[1]}`}, `{"get_retained":true}`, "public/r", nil, false},
		{"user channel refuses publishes", []string{`{"retain":true}`}, `{"get_retained":true}`, "user/bob", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, builtinRoutes)
			pub, _ := f.openV2(t, userInfo("p", "pete"))
			for i, o := range tc.publish {
				if err := pub.Handle(context.Background(), []byte(fmt.Sprintf(`[16,%d,%s,%q,[%d]]`, i+1, o, tc.topic, i))); err != nil {
					t.Fatal(err)
				}
			}
			_, ok, _ := f.node.retained.Retained(context.Background(), tc.topic)
			if ok != tc.retained {
				t.Fatalf("retained %v, want %v", ok, tc.retained)
			}
			sub, sp := f.openV2(t, userInfo("b", "bob"))
			if err := sub.Handle(context.Background(), []byte(fmt.Sprintf(`[32,1,%s,%q]`, tc.subOpts, tc.topic))); err != nil {
				t.Fatal(err)
			}
			msgs := sp.take()
			if len(msgs) == 0 || !strings.HasPrefix(string(msgs[0]), "[33,1,") {
				t.Fatalf("want SUBSCRIBED first, got %q", msgs)
			}
			got := eventsOf(t, msgs)
			for i := range got {
				got[i] = "-" + got[i][strings.IndexByte(got[i], ' '):]
				got[i] = strings.Replace(got[i], " - ", " ", 1)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// A repeated SUBSCRIBE with get_retained gets the same subscription and
// the retained event.
func TestRetainedOnRepeatedSubscribe(t *testing.T) {
	f := newFixture(t, builtinRoutes)
	pub, _ := f.openV2(t, userInfo("p", "pete"))
	if err := pub.Handle(context.Background(), []byte(`[16,1,{"retain":true},"public/r",["kept"]]`)); err != nil {
		t.Fatal(err)
	}
	s, p := f.openV2(t, userInfo("b", "bob"))
	id := subscribedID(t, s, p, 1, `{}`, "public/r")
	if err := s.Handle(context.Background(), []byte(`[32,2,{"get_retained":true},"public/r"]`)); err != nil {
		t.Fatal(err)
	}
	msgs := p.take()
	if len(msgs) != 2 || string(msgs[0]) != "[33,2,"+id+"]" {
		t.Fatalf("got %q", msgs)
	}
	if got := eventsOf(t, msgs[1:]); len(got) != 1 || got[0] != id+` - "kept" retained` {
		t.Errorf("retained event %q", got)
	}
}

// A push with retain keeps what the handler broadcasts; a plain push
// does not.
func TestPushRetained(t *testing.T) {
	f := newFixture(t, builtinRoutes)
	if err := f.node.PushRetained(context.Background(), "user/bob", json.RawMessage(`{"n":1}`), "test", false); err != nil {
		t.Fatal(err)
	}
	if err := f.node.Push(context.Background(), "user/sue", json.RawMessage(`{"n":2}`), "test"); err != nil {
		t.Fatal(err)
	}
	if p, ok, _ := f.node.retained.Retained(context.Background(), "user/bob"); !ok || string(p) != `{"n":1}` {
		t.Errorf("user/bob retained %q %v", p, ok)
	}
	if _, ok, _ := f.node.retained.Retained(context.Background(), "user/sue"); ok {
		t.Error("a push without retain was retained")
	}
	// The user channel's owner gets it on subscribing.
	s, p := f.openV2(t, userInfo("b", "bob"))
	runSteps(t, s, p, []step{{in: `[32,1,{"get_retained":true},"user/bob"]`, want: []string{`[33,1,"$SUB"]`, `[36,"$SUB","$PUB",{"retained":true},[{"n":1}]]`}}}, func(m []byte) []byte {
		var e []json.RawMessage
		_ = json.Unmarshal(m, &e)
		if len(e) > 2 {
			e[2] = json.RawMessage(`"$SUB"`)
			if string(e[0]) == "36" {
				e[1], e[2] = json.RawMessage(`"$SUB"`), json.RawMessage(`"$PUB"`)
			}
		}
		b, _ := json.Marshal(e)
		return b
	})
}

func TestMemoryRetainedBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  RetainedLimits
		puts []string // topic=payload
		want map[string]string
		drop int
	}{
		{"replace", RetainedLimits{}, []string{"a=1", "a=22"}, map[string]string{"a": "22"}, 0},
		{"topics", RetainedLimits{MaxTopics: 2}, []string{"a=1", "b=2", "c=3"}, map[string]string{"b": "2", "c": "3"}, 1},
		{"replaced is newest", RetainedLimits{MaxTopics: 2}, []string{"a=1", "b=2", "a=3", "c=4"}, map[string]string{"a": "3", "c": "4"}, 1},
		{"bytes", RetainedLimits{MaxBytes: 8}, []string{"a=123", "b=123", "c=1"}, map[string]string{"b": "123", "c": "1"}, 1},
		{"event too big", RetainedLimits{MaxEventBytes: 2}, []string{"a=1", "a=123"}, map[string]string{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemoryRetained(tc.lim).(*memRetained)
			drops := 0
			m.dropped = func() { drops++ }
			for _, p := range tc.puts {
				k, v, _ := strings.Cut(p, "=")
				m.Retain(k, []byte(v))
			}
			if len(m.byTop) != len(tc.want) || drops != tc.drop {
				t.Errorf("kept %d topics, dropped %d; want %v, %d dropped", len(m.byTop), drops, tc.want, tc.drop)
			}
			size := 0
			for k, v := range tc.want {
				got, ok, _ := m.Retained(context.Background(), k)
				if !ok || string(got) != v {
					t.Errorf("%s: %q %v, want %q", k, got, ok, v)
				}
				size += len(k) + len(v)
			}
			if m.bytes != size {
				t.Errorf("bytes %d, want %d", m.bytes, size)
			}
		})
	}
}
