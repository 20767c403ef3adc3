package wamp

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// audienceNode is a node with five subscribers of chan/a of several
// identities, v1 and v2 mixed: alice (ROLE_USER), bob (ROLE_ADMIN,
// ROLE_USER), bob2 (bob's second connection, v2), carol (a user without
// roles) and anon (anonymous).
type audienceNode struct {
	f     *fixture
	ids   map[string]string // name -> session id
	peers map[string]*fakePeer
}

func newAudienceNode(t *testing.T, mod func(*NodeConfig)) *audienceNode {
	t.Helper()
	an := &audienceNode{f: newFixture(t, mod), ids: map[string]string{}, peers: map[string]*fakePeer{}}
	for _, c := range []struct {
		name  string
		who   handler.Identity
		proto Protocol
	}{
		{"alice", handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}}, ProtocolV1},
		{"bob", handler.Identity{UserIdentifier: "bob", Roles: []string{"ROLE_ADMIN", "ROLE_USER"}}, ProtocolV1},
		{"bob2", handler.Identity{UserIdentifier: "bob", Roles: []string{"ROLE_ADMIN", "ROLE_USER"}}, ProtocolV2JSON},
		{"carol", handler.Identity{UserIdentifier: "carol"}, ProtocolV2JSON},
		{"anon", handler.Identity{Anonymous: true}, ProtocolV1},
	} {
		p := &fakePeer{}
		s := an.f.node.OpenProtocol(p, ClientInfo{ConnID: c.name, Identity: c.who}, c.proto)
		an.f.node.broker.add(an.f.node, "chan/a", s, an.f.topic, handler.Request{})
		p.take()
		an.ids[c.name], an.peers[c.name] = s.ID(), p
	}
	return an
}

// resolve replaces "$name" entries by that subscriber's session id.
func (an *audienceNode) resolve(list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, x := range list {
		if name, ok := strings.CutPrefix(x, "$"); ok {
			x = an.ids[name]
		}
		out[i] = x
	}
	return out
}

// receivers returns who got a message since the last call, sorted.
func (an *audienceNode) receivers() []string {
	var got []string
	for name, p := range an.peers {
		if len(p.take()) > 0 {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	return got
}

func many(prefix string, n int, extra ...string) []string {
	out := slices.Clone(extra)
	for i := len(out); i < n; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestAudienceSelectsSubscribers(t *testing.T) {
	all := []string{"alice", "anon", "bob", "bob2", "carol"}
	cases := []struct {
		name string
		a    Audience
		want []string
	}{
		{"no lists: everybody", Audience{}, all},
		{"empty lists: everybody", Audience{ExcludeSessions: []string{}, EligibleUsers: []string{}}, all},
		{"exclude session", Audience{ExcludeSessions: []string{"$alice"}}, []string{"anon", "bob", "bob2", "carol"}},
		{"eligible session", Audience{EligibleSessions: []string{"$bob2"}}, []string{"bob2"}},
		{"eligible user: every connection", Audience{EligibleUsers: []string{"bob"}}, []string{"bob", "bob2"}},
		{"exclude user", Audience{ExcludeUsers: []string{"bob"}}, []string{"alice", "anon", "carol"}},
		{"anonymous never matches an eligible user", Audience{EligibleUsers: []string{"anon-$anon"}}, nil},
		{"anonymous never matches an excluded user", Audience{ExcludeUsers: []string{"anon-$anon"}}, all},
		{"eligible role", Audience{EligibleRoles: []string{"ROLE_ADMIN"}}, []string{"bob", "bob2"}},
		{"exclude role: any of the roles", Audience{ExcludeRoles: []string{"ROLE_USER"}}, []string{"anon", "carol"}},
		{"authrole anonymous", Audience{EligibleRoles: []string{"anonymous"}}, []string{"anon"}},
		{"authrole authenticated: a user without roles", Audience{EligibleRoles: []string{"authenticated"}}, []string{"carol"}},
		{"named nobody", Audience{EligibleSessions: []string{""}}, nil},
		{"eligible lists add up", Audience{EligibleUsers: []string{"alice"}, EligibleSessions: []string{"$carol"}}, []string{"alice", "carol"}},
		{"exclude wins over eligible", Audience{EligibleUsers: []string{"bob"}, ExcludeSessions: []string{"$bob2"}}, []string{"bob"}},
		{"exclude user within eligible role", Audience{EligibleRoles: []string{"ROLE_USER"}, ExcludeUsers: []string{"alice"}}, []string{"bob", "bob2"}},
		{"unknown user: nobody", Audience{EligibleUsers: []string{"zed"}}, nil},
		{"over 8 eligible users", Audience{EligibleUsers: many("u", 12, "alice", "carol")}, []string{"alice", "carol"}},
		{"over 8 excluded sessions", Audience{ExcludeSessions: many("s", 10, "$anon", "$bob")}, []string{"alice", "bob2", "carol"}},
		{"over 8 eligible sessions", Audience{EligibleSessions: many("s", 9, "$alice")}, []string{"alice"}},
		{"over 8 roles", Audience{EligibleRoles: many("R", 9, "ROLE_ADMIN", "anonymous")}, []string{"anon", "bob", "bob2"}},
		{"over 8 excluded users", Audience{ExcludeUsers: many("u", 9, "bob", "carol")}, []string{"alice", "anon"}},
	}
	an := newAudienceNode(t, nil)
	for _, tc := range cases {
		a := tc.a
		a.ExcludeSessions, a.EligibleSessions = an.resolve(a.ExcludeSessions), an.resolve(a.EligibleSessions)
		a.ExcludeUsers, a.EligibleUsers = an.resolve(a.ExcludeUsers), an.resolve(a.EligibleUsers)
		for i, u := range a.ExcludeUsers {
			a.ExcludeUsers[i] = strings.ReplaceAll(u, "$anon", an.ids["anon"])
		}
		for i, u := range a.EligibleUsers {
			a.EligibleUsers[i] = strings.ReplaceAll(u, "$anon", an.ids["anon"])
		}
		t.Run(tc.name+"/BroadcastTo", func(t *testing.T) {
			n, err := an.f.node.BroadcastTo("chan/a", "x", a, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := an.receivers(); !slices.Equal(got, tc.want) || n != len(tc.want) {
				t.Errorf("got %q (count %d), want %q", got, n, tc.want)
			}
		})
		t.Run(tc.name+"/DeliverRelayed", func(t *testing.T) {
			n, err := an.f.node.DeliverRelayed("chan/a", []byte(`"x"`), a)
			if err != nil {
				t.Fatal(err)
			}
			if got := an.receivers(); !slices.Equal(got, tc.want) || n != len(tc.want) {
				t.Errorf("got %q (count %d), want %q", got, n, tc.want)
			}
		})
	}
}

// The identity a broadcast sees is the current one: Reidentify changes
// who a user list reaches without a new snapshot.
func TestAudienceFollowsReidentify(t *testing.T) {
	an := newAudienceNode(t, nil)
	s, ok := an.f.node.Clients().GetClient("carol")
	if !ok {
		t.Fatal("carol not found")
	}
	s.(*Session).Reidentify(ClientInfo{ConnID: "carol", Identity: handler.Identity{UserIdentifier: "dave"}})
	an.f.settle(t)
	an.receivers()
	if _, err := an.f.node.BroadcastTo("chan/a", "x", Audience{EligibleUsers: []string{"dave", "carol"}}, false); err != nil {
		t.Fatal(err)
	}
	if got := an.receivers(); !slices.Equal(got, []string{"carol"}) {
		t.Errorf("got %q, want the session now dave's", got)
	}
}

// A broadcast without lists allocates nothing per subscriber, and one
// with user and role lists of up to 8 entries nothing at all for the
// filter.
func TestAudienceFilterAllocations(t *testing.T) {
	an := newAudienceNode(t, nil)
	snap, _ := an.f.node.broker.snapshot("chan/a")
	subs := slices.Concat(snap.v1, snap.v2)
	for i := range subs {
		subs[i].peer = nopPeer{} // fakePeer allocates as it records
	}
	msg := []byte(`[8,"chan/a","x"]`)
	for _, a := range []Audience{
		{},
		{ExcludeSessions: []string{"x"}},
		{EligibleUsers: []string{"bob"}, ExcludeRoles: []string{"ROLE_X"}, EligibleRoles: []string{"anonymous"}},
	} {
		got := testing.AllocsPerRun(100, func() {
			f := newAudienceFilter(&a)
			fanout(subs, msg, &f)
		})
		if got != 0 {
			t.Errorf("%+v: %v allocations per fan-out, want 0", a, got)
		}
	}
}

// relayNodes are two nodes joined by a memRelay: A, where jdoe (ROLE_EDITOR)
// and kim subscribe to chan/a, and B, where pub (a v2 publisher) and
// local subscribe to chan/a.
type relayNodes struct {
	ra, rb         *memRelay
	a, b           *fixture
	pub            *Session
	pubPeer        *fakePeer
	jdoe, kim, loc *fakePeer
}

func newRelayNodes(t *testing.T) *relayNodes {
	t.Helper()
	ctx := context.Background()
	hub := &memHub{}
	r := &relayNodes{ra: hub.join(), rb: hub.join()}
	r.a = newFixture(t, func(c *NodeConfig) { c.Relay = r.ra })
	r.b = newFixture(t, func(c *NodeConfig) { c.Relay = r.rb })
	r.ra.node, r.rb.node = r.a.node, r.b.node
	sub := func(f *fixture, s *Session, p *fakePeer) {
		t.Helper()
		if err := s.Handle(ctx, []byte(`[5,"chan/a"]`)); err != nil {
			t.Fatal(err)
		}
		p.take()
	}
	var s *Session
	s, r.jdoe = r.a.open(t, "jdoe", ClientInfo{ConnID: "jdoe", Identity: handler.Identity{UserIdentifier: "jdoe", Roles: []string{"ROLE_EDITOR"}}})
	sub(r.a, s, r.jdoe)
	s, r.kim = r.a.open(t, "kim", ClientInfo{ConnID: "kim", Identity: handler.Identity{UserIdentifier: "kim", Roles: []string{"ROLE_USER"}}})
	sub(r.a, s, r.kim)
	s, r.loc = r.b.open(t, "loc", ClientInfo{ConnID: "loc", Identity: handler.Identity{UserIdentifier: "loc", Roles: []string{"ROLE_USER"}}})
	sub(r.b, s, r.loc)
	r.pub, r.pubPeer = r.b.openV2(t, ClientInfo{ConnID: "pub", Identity: handler.Identity{UserIdentifier: "pub", Roles: []string{"ROLE_USER"}}})
	if err := r.pub.Handle(ctx, []byte(`[32,1,{},"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	r.jdoe.take()
	r.kim.take()
	r.loc.take()
	r.pubPeer.take()
	r.ra.takeAudiences()
	r.rb.takeAudiences()
	return r
}

// A v2 PUBLISH naming users and roles connected only to another replica
// reaches them there: the Audience travels, the handler's lists (this
// node's sessions) do not limit it.
func TestPublishV2AudienceTravels(t *testing.T) {
	got := func(p *fakePeer) bool { return len(p.take()) > 0 }
	cases := []struct {
		name              string
		options           string
		want              Audience // $PUB = the publisher's session id
		jdoe, kim, loc, p bool
	}{
		{"eligible_authid of a user on another replica", `{"eligible_authid":["jdoe"]}`,
			Audience{ExcludeSessions: []string{"$PUB"}, EligibleUsers: []string{"jdoe"}}, true, false, false, false},
		{"exclude_authid of a user on another replica", `{"exclude_authid":["jdoe"]}`,
			Audience{ExcludeSessions: []string{"$PUB"}, ExcludeUsers: []string{"jdoe"}}, false, true, true, false},
		{"eligible_authrole", `{"eligible_authrole":["ROLE_EDITOR"],"exclude_me":false}`,
			Audience{EligibleRoles: []string{"ROLE_EDITOR"}}, true, false, false, false},
		{"exclude_authrole", `{"exclude_authrole":["ROLE_USER"],"exclude_me":false}`,
			Audience{ExcludeRoles: []string{"ROLE_USER"}}, true, false, false, false},
		{"eligible_authid and a session id", `{"eligible_authid":["jdoe"],"eligible":["$LOC"],"exclude_me":false}`,
			Audience{EligibleSessions: []string{"$LOC"}, EligibleUsers: []string{"jdoe"}}, true, false, true, false},
		{"eligible_authid empty: named nobody", `{"eligible_authid":[],"exclude_me":false}`,
			Audience{EligibleSessions: []string{""}, EligibleUsers: []string{}}, false, false, false, false},
		{"session ids only", `{"exclude":["$LOC"]}`,
			Audience{ExcludeSessions: []string{"$LOC", "$PUB"}}, true, true, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRelayNodes(t)
			locID := r.b.node.clients.mustGet(t, "loc").ID()
			opts := strings.ReplaceAll(tc.options, "$LOC", locID)
			if err := r.pub.Handle(context.Background(), []byte(`[16,2,`+opts+`,"chan/a",["hi"]]`)); err != nil {
				t.Fatal(err)
			}
			aud := r.rb.takeAudiences()
			if len(aud) != 1 {
				t.Fatalf("relay got %d broadcasts, want 1", len(aud))
			}
			want := tc.want
			for _, l := range []*[]string{&want.ExcludeSessions, &want.EligibleSessions} {
				*l = slices.Clone(*l)
				for i, x := range *l {
					(*l)[i] = strings.NewReplacer("$PUB", r.pub.ID(), "$LOC", locID).Replace(x)
				}
			}
			if !audienceEqual(aud[0], want) {
				t.Errorf("relay got %+v, want %+v", aud[0], want)
			}
			for name, c := range map[string]struct {
				p    *fakePeer
				want bool
			}{"jdoe": {r.jdoe, tc.jdoe}, "kim": {r.kim, tc.kim}, "loc": {r.loc, tc.loc}, "pub": {r.pubPeer, tc.p}} {
				if g := got(c.p); g != c.want {
					t.Errorf("%s got the event: %v, want %v", name, g, c.want)
				}
			}
		})
	}
}

// audienceEqual compares audiences, nil and empty lists alike except
// where the difference matters (named nobody is a one-element list).
func audienceEqual(a, b Audience) bool {
	norm := func(l []string) []string {
		if len(l) == 0 {
			return nil
		}
		return l
	}
	for _, p := range []*Audience{&a, &b} {
		p.ExcludeSessions, p.EligibleSessions = norm(p.ExcludeSessions), norm(p.EligibleSessions)
		p.ExcludeUsers, p.EligibleUsers = norm(p.ExcludeUsers), norm(p.EligibleUsers)
		p.ExcludeRoles, p.EligibleRoles = norm(p.ExcludeRoles), norm(p.EligibleRoles)
	}
	return reflect.DeepEqual(a, b)
}

func (c *clientIndex) mustGet(t *testing.T, connID string) *Session {
	t.Helper()
	s, ok := c.GetClient(connID)
	if !ok {
		t.Fatalf("no client %q", connID)
	}
	return s.(*Session)
}

// The TopicRef handed to OnPublish carries the publish's Audience only
// when the handler broadcasts with the very lists it got; lists of its
// own, even equal ones, target exactly those sessions.
func TestTopicRefRemembersAudience(t *testing.T) {
	rel := &memRelay{hub: &memHub{}, watched: map[string]int{}}
	f := newFixture(t, func(c *NodeConfig) { c.Relay = rel })
	rel.node = f.node
	pub, _ := f.openV2(t, ClientInfo{ConnID: "pub", Identity: handler.Identity{UserIdentifier: "pub"}})
	o, err := parsePublishOptions(json.RawMessage(`{"eligible_authid":["jdoe"],"exclude_authrole":["ROLE_X"]}`))
	if err != nil {
		t.Fatal(err)
	}
	exclude, eligible, p := f.node.receivers(pub, o)
	if p == nil {
		t.Fatal("no Audience remembered for a publish naming users")
	}
	// jdoe is not connected here: the handler's view names nobody.
	if !slices.Equal(exclude, []string{pub.ID()}) || !slices.Equal(eligible, []string{""}) {
		t.Fatalf("handler lists %q %q, want [%s] [\"\"]", exclude, eligible, pub.ID())
	}
	full := Audience{ExcludeSessions: []string{pub.ID()}, EligibleUsers: []string{"jdoe"}, ExcludeRoles: []string{"ROLE_X"}}
	ref := topicRef{n: f.node, uri: "chan/a", pub: p}
	cases := []struct {
		name              string
		exclude, eligible []string
		want              Audience
	}{
		{"the lists it got", exclude, eligible, full},
		{"copies", slices.Clone(exclude), slices.Clone(eligible), Audience{ExcludeSessions: exclude, EligibleSessions: eligible}},
		{"a shorter exclude", exclude[:0], eligible, Audience{ExcludeSessions: exclude[:0], EligibleSessions: eligible}},
		{"nil lists", nil, nil, Audience{}},
		{"one list of its own", exclude, []string{"42"}, Audience{ExcludeSessions: exclude, EligibleSessions: []string{"42"}}},
	}
	for _, tc := range cases {
		if err := ref.Broadcast("x", tc.exclude, tc.eligible); err != nil {
			t.Fatal(err)
		}
		got := rel.takeAudiences()
		if len(got) != 1 || !audienceEqual(got[0], tc.want) {
			t.Errorf("%s: relay got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// A publish with session ids only needs nothing remembered: the
	// lists are the Audience.
	o, _ = parsePublishOptions(json.RawMessage(`{"eligible":[7]}`))
	if _, _, p := f.node.receivers(pub, o); p != nil {
		t.Errorf("Audience remembered for a publish of session ids only: %+v", p)
	}
}

// The handler's lists are this node's sessions of the named users and
// roles, never an anonymous client's.
func TestReceiversExpandLocally(t *testing.T) {
	an := newAudienceNode(t, nil)
	pub := an.f.node.clients.mustGet(t, "carol")
	cases := []struct {
		options           string
		exclude, eligible []string
	}{
		{`{"eligible_authid":["bob"]}`, []string{"$carol"}, []string{"$bob", "$bob2"}},
		{`{"exclude_authid":["alice","anon-$anon"],"exclude_me":false}`, []string{"$alice"}, nil},
		{`{"eligible_authrole":["ROLE_ADMIN","anonymous"],"exclude":[1]}`, []string{"1", "$carol"}, []string{"$anon", "$bob", "$bob2"}},
		{`{"exclude_authrole":["ROLE_USER"],"eligible_authid":["carol"],"exclude_me":false}`, []string{"$alice", "$bob", "$bob2"}, []string{"$carol"}},
		{`{"eligible_authid":["zed"],"eligible":[]}`, []string{"$carol"}, []string{""}},
	}
	for _, tc := range cases {
		opts := strings.ReplaceAll(tc.options, "$anon", an.ids["anon"])
		o, err := parsePublishOptions(json.RawMessage(opts))
		if err != nil {
			t.Fatal(err)
		}
		exclude, eligible, _ := an.f.node.receivers(pub, o)
		slices.Sort(exclude)
		slices.Sort(eligible)
		wantEx, wantEl := an.resolve(tc.exclude), an.resolve(tc.eligible)
		slices.Sort(wantEx)
		slices.Sort(wantEl)
		if !slices.Equal(exclude, wantEx) || !slices.Equal(eligible, wantEl) {
			t.Errorf("%s: exclude %q eligible %q, want %q %q", tc.options, exclude, eligible, wantEx, wantEl)
		}
	}
}

func TestSessionIDLists(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		cases := []struct {
			in                string
			exclude, eligible []string
			ignored           int
		}{
			{`[7,"t",1,["a",123]]`, []string{"a", "123"}, nil, 0},
			{`[7,"t",1,[9007199254740992,0]]`, []string{"9007199254740992", "0"}, nil, 0},
			{`[7,"t",1,[9007199254740993]]`, []string{}, nil, 1},
			{`[7,"t",1,[1.5,-1,1e3,true,null,{},[],"ok"]]`, []string{"ok"}, nil, 7},
			{`[7,"t",1,["a\u0062"]]`, []string{"ab"}, nil, 0},
			{`[7,"t",1,[],["x",{}]]`, []string{}, []string{"x"}, 1},
			{`[7,"t",1,[],[null]]`, []string{}, []string{""}, 1},
			{`[7,"t",1,[],[]]`, []string{}, []string{}, 0},
			{`[7,"t",1,true,[5]]`, nil, []string{"5"}, 0},
		}
		for _, tc := range cases {
			m, err := parseMessageV1([]byte(tc.in), DefaultMaxJSONDepth)
			if err != nil {
				t.Errorf("%s: %v", tc.in, err)
				continue
			}
			if !slices.Equal(m.exclude, tc.exclude) || !slices.Equal(m.eligible, tc.eligible) || m.ignored != tc.ignored ||
				(m.eligible == nil) != (tc.eligible == nil) {
				t.Errorf("%s: exclude %q eligible %q ignored %d, want %q %q %d", tc.in, m.exclude, m.eligible, m.ignored, tc.exclude, tc.eligible, tc.ignored)
			}
		}
	})
	t.Run("v2", func(t *testing.T) {
		cases := []struct {
			options           string
			exclude, eligible []string
			bad               bool
		}{
			{`{"exclude":[1,"abc"],"eligible":["0f1e",9007199254740992]}`, []string{"1", "abc"}, []string{"0f1e", "9007199254740992"}, false},
			{`{"eligible":[]}`, nil, []string{}, false},
			{`{}`, nil, nil, false},
			{`{"exclude":[1.5]}`, nil, nil, true},
			{`{"exclude":[-1]}`, nil, nil, true},
			{`{"exclude":[9007199254740993]}`, nil, nil, true},
			{`{"eligible":[null]}`, nil, nil, true},
			{`{"eligible":[{}]}`, nil, nil, true},
			{`{"eligible":[true]}`, nil, nil, true},
			{`{"exclude":"x"}`, nil, nil, true},
			{`{"eligible_authrole":"x"}`, nil, nil, true},
			{`{"exclude_authrole":[1]}`, nil, nil, true},
		}
		for _, tc := range cases {
			o, err := parsePublishOptions(json.RawMessage(tc.options))
			if (err != nil) != tc.bad {
				t.Errorf("%s: error %v, want bad=%v", tc.options, err, tc.bad)
				continue
			}
			if !tc.bad && (!slices.Equal(o.exclude, tc.exclude) || !slices.Equal(o.eligible, tc.eligible) || (o.eligible == nil) != (tc.eligible == nil)) {
				t.Errorf("%s: exclude %q eligible %q, want %q %q", tc.options, o.exclude, o.eligible, tc.exclude, tc.eligible)
			}
		}
	})
}

// Through Handle: a v1 publisher is never closed for its lists, and a
// v2 session id it gives as a number selects the v2 subscriber; a v2
// publisher's bad list is answered, never a close.
func TestPublishListsThroughHandle(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	v1, p1 := f.open(t, "v1")
	v2, p2 := f.openV2(t, ClientInfo{ConnID: "v2", Identity: handler.Identity{UserIdentifier: "u2"}})
	if err := v1.Handle(ctx, []byte(`[5,"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	if err := v2.Handle(ctx, []byte(`[32,1,{},"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	p1.take()
	p2.take()
	for _, tc := range []struct {
		in         string
		v1Got      bool
		v2Got      bool
		v2Response []string
	}{
		{`[7,"chan/a","x",[` + v2.ID() + `]]`, true, false, nil},
		{`[7,"chan/a","x",[{}, null, 1.5]]`, true, true, nil},
		{`[7,"chan/a","x",[],[` + v2.ID() + `,{}]]`, false, true, nil},
		{`[7,"chan/a","x",[],[null]]`, false, false, nil},
	} {
		if err := v1.Handle(ctx, []byte(tc.in)); err != nil {
			t.Errorf("%s: %v, want the publisher kept", tc.in, err)
		}
		if g := len(p1.take()) > 0; g != tc.v1Got {
			t.Errorf("%s: v1 got the event %v, want %v", tc.in, g, tc.v1Got)
		}
		if g := len(p2.take()) > 0; g != tc.v2Got {
			t.Errorf("%s: v2 got the event %v, want %v", tc.in, g, tc.v2Got)
		}
	}
	// v2: a v1 session id as a string excludes the v1 subscriber; a bad
	// element is an ERROR, acknowledged or not.
	if err := v2.Handle(ctx, []byte(`[16,2,{"exclude":["`+v1.ID()+`"],"exclude_me":false},"chan/a",["x"]]`)); err != nil {
		t.Fatal(err)
	}
	if len(p1.take()) != 0 || len(p2.take()) != 1 {
		t.Error("v2 exclude of a v1 session id (string) not honoured")
	}
	for i, opts := range []string{`{"exclude":[{}]}`, `{"acknowledge":true,"eligible":[1,null]}`, `{"eligible":[1.5]}`} {
		in := fmt.Sprintf(`[16,%d,%s,"chan/a",["x"]]`, 10+i, opts)
		if err := v2.Handle(ctx, []byte(in)); err != nil {
			t.Errorf("%s: %v, want an ERROR, not a close", in, err)
		}
		want := fmt.Sprintf(`[8,16,%d,{},"wamp.error.invalid_argument",["invalid PUBLISH options"]]`, 10+i)
		expectMsgs(t, p2.take(), []string{want}, "")
		if len(p1.take()) != 0 {
			t.Errorf("%s: delivered despite bad options", in)
		}
	}
}
