package wamp

import (
	"context"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// discRelay is a memRelay that carries disclosed publishers, as the Redis
// fan-out does (DisclosingRelay).
type discRelay struct{ *memRelay }

func (r discRelay) PublishDetails(topic string, payload []byte, a Audience, details []byte) {
	r.hub.mu.Lock()
	peers := append([]*memRelay(nil), r.hub.relays...)
	r.hub.mu.Unlock()
	for _, p := range peers {
		if p == r.memRelay || !p.watches(topic) {
			continue
		}
		if _, err := p.node.DeliverRelayedDetails(topic, payload, a, details); err != nil {
			panic(err)
		}
	}
}

// TestDisclosedAcrossNodes: a disclosed publisher is named in the EVENT
// details on the other node too when the relay carries details, and an
// undisclosed one is not; a relay that cannot carry them delivers the
// event undisclosed (the previous behaviour).
func TestDisclosedAcrossNodes(t *testing.T) {
	cases := []struct {
		name       string
		disclosing bool
		publish    string
		want       string
	}{
		{"disclose_me", true, `[16,1,{"disclose_me":true},"chan/a",["x"]]`, `{"publisher":PUB,"publisher_authid":"alice","publisher_authrole":"ROLE_EDITOR"}`},
		{"forced", true, `[16,1,{},"forced/a",["x"]]`, `{"publisher":PUB,"publisher_authid":"alice","publisher_authrole":"ROLE_EDITOR"}`},
		{"not asked", true, `[16,1,{},"chan/a",["x"]]`, `{}`},
		{"forbidden", true, `[16,1,{"disclose_me":true},"hidden/a",["x"]]`, `{}`},
		{"plain relay", false, `[16,1,{"disclose_me":true},"chan/a",["x"]]`, `{}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := &memHub{}
			ra, rb := hub.join(), hub.join()
			var relA Relay = ra
			if tc.disclosing {
				relA = discRelay{ra}
			}
			a := newFixture(t, func(c *NodeConfig) { discloseRoutes(c); c.Relay = relA })
			b := newFixture(t, func(c *NodeConfig) { discloseRoutes(c); c.Relay = rb })
			ra.node, rb.node = a.node, b.node
			pub, pp := a.openV2(t, ClientInfo{ConnID: "pub", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_EDITOR"}}})
			sub, sp := b.openV2(t, ClientInfo{ConnID: "sub", Identity: handler.Identity{UserIdentifier: "bob"}})
			topic := "chan/a"
			for _, tp := range []string{"forced/a", "hidden/a"} {
				if strings.Contains(tc.publish, tp) {
					topic = tp
				}
			}
			if err := sub.Handle(context.Background(), []byte(`[32,1,{},"`+topic+`"]`)); err != nil {
				t.Fatal(err)
			}
			b.settle(t)
			sp.take()
			if err := pub.Handle(context.Background(), []byte(tc.publish)); err != nil {
				t.Fatal(err)
			}
			a.settle(t)
			pp.take()
			want := strings.ReplaceAll(tc.want, "PUB", pub.ID())
			if got := eventDetails(t, sp.take()); got != want {
				t.Errorf("details on the other node %s, want %s", got, want)
			}
		})
	}
	// Details that are not a JSON object are refused with the event.
	f := newFixture(t, nil)
	if _, err := f.node.DeliverRelayedDetails("chan/a", []byte(`1`), Audience{}, []byte(`[1]`)); err == nil {
		t.Error("details [1] delivered")
	}
}
