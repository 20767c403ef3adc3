package wamp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// metaEventArgs returns, per subscription id, the arguments of the EVENTs
// among what p got.
func metaEventArgs(t *testing.T, p *fakePeer) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range p.take() {
		var a []json.RawMessage
		if json.Unmarshal(m, &a) != nil || string(a[0]) != "36" {
			continue
		}
		out[string(a[1])] = append(out[string(a[1])], string(a[4]))
	}
	return out
}

// TestMetaEvents: an admin subscribed to the session and subscription
// meta topics sees a session join, subscribe (creating the topic),
// unsubscribe (deleting it) and leave, in the spec's argument shapes;
// reserved topics make no subscription events.
func TestMetaEvents(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, func(c *NodeConfig) { c.MetaAPI = "role:ROLE_ADMIN"; presenceRoutes(c) })
	admin, ap := f.openV2(t, ClientInfo{ConnID: "admin", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}})
	subs := map[string]string{}
	for i, topic := range []string{metaOnJoin, metaOnLeave, metaOnCreate, metaOnSubscribe, metaOnUnsubscribe, metaOnDelete} {
		if err := admin.Handle(ctx, []byte(`[32,`+string(rune('1'+i))+`,{},"`+topic+`"]`)); err != nil {
			t.Fatal(err)
		}
		subs[topic] = subscribedIDIn(t, ap.take())
	}
	user, up := f.openV2(t, ClientInfo{ConnID: "user", Identity: handler.Identity{UserIdentifier: "jdoe", Roles: []string{"ROLE_USER"}}})
	sid := user.ID()
	if err := user.Handle(ctx, []byte(`[32,1,{},"room/9"]`)); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	subID := subscribedIDIn(t, up.take())
	// A presence companion (reserved) makes no subscription events.
	if err := user.Handle(ctx, []byte(`[32,2,{},"`+PresencePrefix+`room/9"]`)); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	got := metaEventArgs(t, ap)
	var created []json.RawMessage
	if c := got[subs[metaOnCreate]]; len(c) == 1 {
		_ = json.Unmarshal([]byte(c[0]), &created)
	}
	if len(created) != 2 || string(created[0]) != sid || !strings.Contains(string(created[1]), `"uri":"room/9"`) ||
		!strings.Contains(string(created[1]), `"id":`+subID) || !strings.Contains(string(created[1]), `"match":"exact"`) || !strings.Contains(string(created[1]), `"created":"20`) {
		t.Errorf("on_create %q", got[subs[metaOnCreate]])
	}
	wantJoin := `[{"session":` + sid + `,"authid":"jdoe","authrole":"ROLE_USER","authmethod":"cookie","authprovider":"symfony","transport":{"protocol":"wamp.2.json"}}]`
	checks := []struct {
		topic string
		want  []string
	}{
		{metaOnJoin, []string{wantJoin}},
		{metaOnSubscribe, []string{`[` + sid + `,` + subID + `]`}},
		{metaOnUnsubscribe, nil},
		{metaOnLeave, nil},
	}
	for _, c := range checks {
		if strings.Join(got[subs[c.topic]], "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: %q, want %q", c.topic, got[subs[c.topic]], c.want)
		}
	}
	// The procedures see the subscription.
	for _, pc := range []struct{ proc, args, want string }{
		{metaSubLookup, `["room/9"]`, subID},
		{metaSubLookup, `["room/9",{"match":"prefix"}]`, `null`},
		{metaSubLookup, `["room/10"]`, `null`},
		{metaSubMatch, `["room/9"]`, `[` + subID + `]`},
		{metaSubListSubscribers, `[` + subID + `]`, `[` + sid + `]`},
		{metaSubList, ``, `{"exact":[` + subID + `],"prefix":[],"wildcard":[]}`},
	} {
		if got := metaCall(t, admin, ap, pc.proc, pc.args); !jsonEqual(t, got, `[50,7,{},[`+pc.want+`]]`) {
			t.Errorf("%s %s: %s, want %s", pc.proc, pc.args, got, pc.want)
		}
	}
	if got := metaCall(t, admin, ap, metaSubGet, `[`+subID+`]`); !strings.Contains(string(got), `"uri":"room/9"`) {
		t.Errorf("get: %s", got)
	}
	if got := metaCall(t, admin, ap, metaSubGet, `[12345]`); !strings.Contains(string(got), errURINoSuchSubscription) {
		t.Errorf("get of no subscription: %s", got)
	}
	// Unsubscribe (the last subscriber: delete), then leave.
	if err := user.Handle(ctx, []byte(`[34,3,`+subID+`]`)); err != nil {
		t.Fatal(err)
	}
	user.Close()
	f.settle(t)
	got = metaEventArgs(t, ap)
	for _, c := range []struct {
		topic string
		want  string
	}{
		{metaOnUnsubscribe, `[` + sid + `,` + subID + `]`},
		{metaOnDelete, `[` + sid + `,` + subID + `]`},
		{metaOnLeave, `[` + sid + `,"jdoe","ROLE_USER"]`},
	} {
		if g := got[subs[c.topic]]; len(g) != 1 || !jsonEqual(t, []byte(g[0]), c.want) {
			t.Errorf("%s: %q, want %s", c.topic, g, c.want)
		}
	}
}

// TestMetaEventsAccess: the meta API rule decides who subscribes to meta
// topics; a v1 client has none; nobody publishes there.
func TestMetaEventsAccess(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, metaAPI string
		who           handler.Identity
		want          string
	}{
		{"disabled", "", handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}, errURIInvalidURI},
		{"anonymous", "authenticated", handler.Identity{Anonymous: true}, errURINotAuthorized},
		{"missing role", "role:ROLE_ADMIN", handler.Identity{UserIdentifier: "jdoe", Roles: []string{"ROLE_USER"}}, errURINotAuthorized},
		{"authenticated", "authenticated", handler.Identity{UserIdentifier: "jdoe"}, "[33,"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *NodeConfig) { c.MetaAPI = tc.metaAPI })
			s, p := f.openV2(t, ClientInfo{ConnID: "c", Identity: tc.who})
			if err := s.Handle(ctx, []byte(`[32,1,{},"`+metaOnJoin+`"]`)); err != nil {
				t.Fatal(err)
			}
			if got := p.take(); len(got) != 1 || !strings.Contains(string(got[0]), tc.want) {
				t.Errorf("got %q, want %s", got, tc.want)
			}
			if err := s.Handle(ctx, []byte(`[16,2,{"acknowledge":true},"`+metaOnJoin+`",[1]]`)); err != nil {
				t.Fatal(err)
			}
			if got := p.take(); len(got) != 1 || !strings.Contains(string(got[0]), errURINotAuthorized) {
				t.Errorf("publish got %q", got)
			}
		})
	}
	f := newFixture(t, func(c *NodeConfig) { c.MetaAPI = "authenticated" })
	v1, v1p := f.open(t, "v1")
	if err := v1.Handle(ctx, []byte(`[5,"`+metaOnJoin+`"]`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := v1.subscribedTo(metaOnJoin); ok || len(v1p.take()) != 0 {
		t.Error("a v1 session subscribed to a meta topic")
	}
}

// TestMetaSubscriptionProceduresPatterns: the subscription procedures
// know pattern-based subscriptions (pattern.go) as the spec describes:
// list sorts them by match policy, lookup finds one by pattern and
// policy, match returns every subscription an event on a topic reaches,
// get and list_subscribers take a pattern's id.
func TestMetaSubscriptionProceduresPatterns(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, func(c *NodeConfig) { c.MetaAPI = "authenticated"; presenceRoutes(c) })
	admin, ap := f.openV2(t, ClientInfo{ConnID: "admin", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}})
	user, up := f.openV2(t, ClientInfo{ConnID: "user", Identity: handler.Identity{UserIdentifier: "jdoe", Roles: []string{"ROLE_USER"}}})
	ids := map[string]string{}
	for i, sub := range []struct{ name, opts, uri string }{
		{"exact", `{}`, "room/9"},
		{"prefix", `{"match":"prefix"}`, "room/"},
		{"wildcard", `{"match":"wildcard"}`, "room/"},
	} {
		if err := user.Handle(ctx, []byte(`[32,`+string(rune('1'+i))+`,`+sub.opts+`,"`+sub.uri+`"]`)); err != nil {
			t.Fatal(err)
		}
		f.settle(t)
		ids[sub.name] = subscribedIDIn(t, up.take())
	}
	sid := user.ID()
	for _, pc := range []struct{ proc, args, want string }{
		{metaSubList, ``, `{"exact":[` + ids["exact"] + `],"prefix":[` + ids["prefix"] + `],"wildcard":[` + ids["wildcard"] + `]}`},
		{metaSubLookup, `["room/9"]`, ids["exact"]},
		{metaSubLookup, `["room/",{"match":"prefix"}]`, ids["prefix"]},
		{metaSubLookup, `["room/",{"match":"wildcard"}]`, ids["wildcard"]},
		{metaSubLookup, `["room/9",{"match":"prefix"}]`, `null`},
		{metaSubMatch, `["room/9"]`, `[` + ids["exact"] + `,` + ids["prefix"] + `,` + ids["wildcard"] + `]`},
		{metaSubMatch, `["room/7"]`, `[` + ids["prefix"] + `,` + ids["wildcard"] + `]`},
		{metaSubMatch, `["hall/1"]`, `null`},
		{metaSubListSubscribers, `[` + ids["prefix"] + `]`, `[` + sid + `]`},
	} {
		if got := metaCall(t, admin, ap, pc.proc, pc.args); !jsonEqual(t, got, `[50,7,{},[`+pc.want+`]]`) {
			t.Errorf("%s %s: %s, want %s", pc.proc, pc.args, got, pc.want)
		}
	}
	if got := metaCall(t, admin, ap, metaSubGet, `[`+ids["wildcard"]+`]`); !strings.Contains(string(got), `"uri":"room/"`) || !strings.Contains(string(got), `"match":"wildcard"`) {
		t.Errorf("get of the wildcard subscription: %s", got)
	}
	if got := metaCall(t, admin, ap, metaSubLookup, `["room/",{"match":"regex"}]`); !strings.Contains(string(got), errURIInvalidArgument) {
		t.Errorf("lookup with an unknown match policy: %s", got)
	}
}
