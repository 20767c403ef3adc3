package gateway

import (
	"slices"
	"testing"
)

// TestSessionClients: an id's first client inline, the others beside it;
// removing the first promotes another; lookups return exactly the set.
func TestSessionClients(t *testing.T) {
	x := newSessionClients()
	a, b, c, d := &client{id: "a"}, &client{id: "b"}, &client{id: "c"}, &client{id: "d"}
	ids := func(cs []*client) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.id)
		}
		slices.Sort(out)
		return out
	}
	x.add("s1", a)
	x.add("s1", b)
	x.add("s1", c)
	x.add("s2", d)
	if got := ids(x.appendOf(nil, "s1")); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("s1: %v", got)
	}
	if got := ids(x.appendAll(nil)); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("all: %v", got)
	}
	if x.remove("s2", a) || x.remove("s3", a) {
		t.Fatal("removed a client that was not there")
	}
	if !x.remove("s1", a) || !slices.Equal(ids(x.appendOf(nil, "s1")), []string{"b", "c"}) {
		t.Fatalf("after removing the first: %v", ids(x.appendOf(nil, "s1")))
	}
	if !x.remove("s1", b) || !x.remove("s1", c) || len(x.appendOf(nil, "s1")) != 0 || len(x.more) != 0 || len(x.one) != 1 {
		t.Fatalf("after removing all: one %v more %v", x.one, x.more)
	}
	if !x.remove("s2", d) || x.remove("s2", d) || len(x.one) != 0 {
		t.Fatal("s2")
	}
}
