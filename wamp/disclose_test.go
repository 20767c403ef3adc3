package wamp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// discloseRoutes adds topic routes with each publisher identification
// policy to the test fixture.
func discloseRoutes(c *NodeConfig) {
	c.Routes.Topics["forced"] = RouteConfig{Pattern: "forced/{room}", Handler: "test.topic", Disclose: DiscloseForce}
	c.Routes.Topics["hidden"] = RouteConfig{Pattern: "hidden/{room}", Handler: "test.topic", Disclose: DiscloseForbid}
	c.Routes.Topics["allowed"] = RouteConfig{Pattern: "allowed/{room}", Handler: "test.topic", Disclose: DiscloseAllow}
}

// eventDetails returns the details of the one EVENT among msgs.
func eventDetails(t *testing.T, msgs [][]byte) string {
	t.Helper()
	if len(msgs) != 1 {
		t.Fatalf("want one EVENT, got %q", msgs)
	}
	var ev []json.RawMessage
	if err := json.Unmarshal(msgs[0], &ev); err != nil || len(ev) != 5 || string(ev[0]) != "36" {
		t.Fatalf("want EVENT, got %s", msgs[0])
	}
	return string(ev[3])
}

// A publisher is disclosed in the EVENT details when it asks with
// disclose_me and its route allows it, or when its route forces it; never
// when the route forbids it.
func TestPublisherIdentification(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { discloseRoutes(c) })
	sub, sp := f.openV2(t, ClientInfo{ConnID: "sub", Identity: handler.Identity{UserIdentifier: "bob"}})
	pub, pp := f.openV2(t, ClientInfo{ConnID: "pub", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_EDITOR", "ROLE_USER"}}})
	anon, anp := f.openV2(t, ClientInfo{ConnID: "anon", Identity: handler.Identity{Anonymous: true}})
	v1, v1p := f.open(t, "v1pub")
	v2Alice := `{"publisher":` + pub.ID() + `,"publisher_authid":"alice","publisher_authrole":"ROLE_EDITOR"}`
	v2Anon := `{"publisher":` + anon.ID() + `,"publisher_authid":"anon-` + anon.ID() + `","publisher_authrole":"anonymous"}`
	v1User := `{"publisher_authid":"user-v1pub","publisher_authrole":"ROLE_USER"}`
	for i, topic := range []string{"chan/a", "allowed/a", "forced/a", "hidden/a"} {
		if err := sub.Handle(context.Background(), []byte(`[32,`+string(rune('1'+i))+`,{},"`+topic+`"]`)); err != nil {
			t.Fatal(err)
		}
	}
	f.settle(t)
	sp.take()
	cases := []struct {
		name string
		s    *Session
		p    *fakePeer
		msg  string
		want string
	}{
		{"default route, disclose_me", pub, pp, `[16,1,{"disclose_me":true},"chan/a",["x"]]`, v2Alice},
		{"default route, no option", pub, pp, `[16,2,{},"chan/a",["x"]]`, `{}`},
		{"default route, disclose_me false", pub, pp, `[16,3,{"disclose_me":false},"chan/a",["x"]]`, `{}`},
		{"allow, disclose_me", pub, pp, `[16,4,{"disclose_me":true},"allowed/a",["x"]]`, v2Alice},
		{"anonymous, disclose_me", anon, anp, `[16,5,{"disclose_me":true},"chan/a",["x"]]`, v2Anon},
		{"force, no option", pub, pp, `[16,6,{},"forced/a",["x"]]`, v2Alice},
		{"force, disclose_me false", pub, pp, `[16,7,{"disclose_me":false},"forced/a",["x"]]`, v2Alice},
		{"forbid, disclose_me", pub, pp, `[16,8,{"disclose_me":true},"hidden/a",["x"]]`, `{}`},
		{"v1 publisher, default route", v1, v1p, `[7,"chan/a","x"]`, `{}`},
		{"v1 publisher, force", v1, v1p, `[7,"forced/a","x"]`, v1User},
		{"v1 publisher, forbid", v1, v1p, `[7,"hidden/a","x"]`, `{}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Handle(context.Background(), []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			f.settle(t)
			if got := tc.p.take(); len(got) != 0 {
				t.Errorf("publisher got %q", got)
			}
			got := eventDetails(t, sp.take())
			if !jsonEqual(t, []byte(got), tc.want) {
				t.Errorf("EVENT details %s, want %s", got, tc.want)
			}
		})
	}
}

// Broadcasts outside a publish (a handler's own, a push) never disclose.
func TestBroadcastWithoutPublisher(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { discloseRoutes(c) })
	sub, sp := f.openV2(t, ClientInfo{ConnID: "sub", Identity: handler.Identity{UserIdentifier: "bob"}})
	if err := sub.Handle(context.Background(), []byte(`[32,1,{},"forced/a"]`)); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	sp.take()
	if err := f.node.Topic("forced/a").Broadcast("x", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := eventDetails(t, sp.take()); got != `{}` {
		t.Errorf("push EVENT details %s, want {}", got)
	}
}

// WELCOME announces the broker features the node implements.
func TestWelcomeBrokerFeatures(t *testing.T) {
	f := newFixture(t, nil)
	p := &fakePeer{}
	s := f.node.OpenProtocol(p, ClientInfo{ConnID: "c1"}, ProtocolV2JSON)
	if err := s.Handle(context.Background(), []byte(`[1,"r",{}]`)); err != nil {
		t.Fatal(err)
	}
	var w []json.RawMessage
	msgs := p.take()
	if len(msgs) != 1 || json.Unmarshal(msgs[0], &w) != nil || len(w) != 3 {
		t.Fatalf("WELCOME %q", msgs)
	}
	var d struct {
		Roles struct {
			Broker struct{ Features map[string]bool }
		}
	}
	if err := json.Unmarshal(w[2], &d); err != nil {
		t.Fatal(err)
	}
	for _, feat := range []string{"publisher_exclusion", "publisher_identification", "subscriber_blackwhite_listing"} {
		if !d.Roles.Broker.Features[feat] {
			t.Errorf("broker feature %s not announced: %s", feat, w[2])
		}
	}
}

// Disclose is checked when the node starts.
func TestDiscloseConfig(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*NodeConfig)
		want string
	}{
		{"unknown policy", func(c *NodeConfig) {
			c.Routes.Topics["x"] = RouteConfig{Pattern: "x/{a}", Handler: "test.topic", Disclose: "sometimes"}
		}, `disclose "sometimes" is not allow, force nor forbid`},
		{"rpc route", func(c *NodeConfig) {
			c.Routes.RPC["x"] = RouteConfig{Pattern: "x/{method}", Handler: "test.rpc", Disclose: DiscloseForce}
		}, "disclose applies to topic routes only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := handler.NewRegistry()
			_ = reg.AddRPC(testRPC{})
			_ = reg.AddTopic(&testTopic{})
			cfg := NodeConfig{Routes: testRoutes(), Handlers: reg}
			tc.mod(&cfg)
			_, err := NewNode(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewNode: %v, want %q", err, tc.want)
			}
		})
	}
}
