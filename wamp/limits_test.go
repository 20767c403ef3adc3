package wamp

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestLimits(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) {
		c.Limits = Limits{MaxURILength: 20, MaxPrefixes: 2, MaxSubscriptions: 2}
	})
	long := strings.Repeat("a", 21)
	cases := []struct {
		name string
		msgs []string
	}{
		{"call uri", []string{`[2,"c","` + long + `"]`}},
		{"subscribe uri", []string{`[5,"` + long + `"]`}},
		{"unsubscribe uri", []string{`[6,"` + long + `"]`}},
		{"publish uri", []string{`[7,"` + long + `",1]`}},
		{"prefix name", []string{`[1,"` + long + `","u"]`}},
		{"prefix uri", []string{`[1,"p","` + long + `"]`}},
		{"expanded uri", []string{`[1,"p","0123456789012345"]`, `[5,"p:abcd"]`}},
		{"prefix count", []string{`[1,"a","u"]`, `[1,"b","u"]`, `[1,"a","v"]`, `[1,"c","u"]`}},
		{"subscription count", []string{`[5,"chan/1"]`, `[5,"chan/2"]`, `[5,"chan/2"]`, `[5,"chan/3"]`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := f.open(t, tc.name)
			defer s.Close()
			var err error
			for i, m := range tc.msgs {
				err = s.Handle(context.Background(), []byte(m))
				if i < len(tc.msgs)-1 && err != nil {
					t.Fatalf("message %d %s: %v", i, m, err)
				}
			}
			if !errors.Is(err, ErrLimit) || !errors.Is(err, ErrProtocol) {
				t.Errorf("got %v, want ErrLimit wrapping ErrProtocol", err)
			}
		})
	}
	// Unrouted subscriptions do not count against the limit (they are not
	// kept), and the limit is per session.
	s, _ := f.open(t, "x")
	for _, m := range []string{`[5,"nope/1"]`, `[5,"nope/2"]`, `[5,"nope/3"]`, `[5,"chan/1"]`, `[5,"chan/2"]`} {
		if err := s.Handle(context.Background(), []byte(m)); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
}
