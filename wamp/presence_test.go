package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// presenceRoutes adds presence topic routes to the test fixture: room/
// for everyone, staff/ for ROLE_ADMIN only.
func presenceRoutes(c *NodeConfig) {
	c.Routes.Topics["room"] = RouteConfig{Pattern: "room/{id}", Handler: "test.topic", Presence: true}
	c.Routes.Topics["staffroom"] = RouteConfig{Pattern: "staffroom/{id}", Handler: "test.topic", Presence: true, Roles: []string{"ROLE_ADMIN"}}
	// testTopic's OnSubscribe refuses the route named deny.
	c.Routes.Topics["deny"] = RouteConfig{Pattern: "deny/{x}", Handler: "test.topic", Presence: true}
}

// presenceEvents returns the payloads of the presence events of topic
// among what p got (v1 EVENT, or v2 EVENT of subscription subID).
func presenceEvents(t *testing.T, p *fakePeer, topic string, subID string) []string {
	t.Helper()
	var out []string
	for _, m := range p.take() {
		var a []json.RawMessage
		if err := json.Unmarshal(m, &a); err != nil {
			t.Fatalf("bad message %s", m)
		}
		switch {
		case string(a[0]) == "8" && string(a[1]) == `"`+PresencePrefix+topic+`"`:
			out = append(out, string(a[2]))
		case string(a[0]) == "36" && string(a[1]) == subID:
			var args []json.RawMessage
			_ = json.Unmarshal(a[4], &args)
			out = append(out, string(args[0]))
		}
	}
	return out
}

// subscribedIDIn returns the subscription id of the SUBSCRIBED among msgs.
func subscribedIDIn(t *testing.T, msgs [][]byte) string {
	t.Helper()
	for _, m := range msgs {
		var a []json.RawMessage
		if json.Unmarshal(m, &a) == nil && string(a[0]) == "33" {
			return string(a[2])
		}
	}
	t.Fatalf("no SUBSCRIBED in %q", msgs)
	return ""
}

// TestPresenceEvents: a v1 and a v2 watcher of room/1's companion topic
// see each user join once (however many tabs) and leave with its last
// subscription, anonymous clients as anonymous, each on its own; the
// list says who is there at each step.
func TestPresenceEvents(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, presenceRoutes)
	w1, w1p := f.open(t, "w1")
	w2, w2p := f.openV2(t, ClientInfo{ConnID: "w2", Identity: handler.Identity{UserIdentifier: "watcher"}})
	if err := w1.Handle(ctx, []byte(`[5,"`+PresencePrefix+`room/1"]`)); err != nil {
		t.Fatal(err)
	}
	if err := w2.Handle(ctx, []byte(`[32,1,{},"`+PresencePrefix+`room/1"]`)); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	w1p.take()
	w2sub := subscribedIDIn(t, w2p.take())

	alice1, _ := f.openV2(t, ClientInfo{ConnID: "alice1", Identity: handler.Identity{UserIdentifier: "alice"}})
	alice2, _ := f.open(t, "alice2", ClientInfo{ConnID: "alice2", Identity: handler.Identity{UserIdentifier: "alice"}})
	bob, _ := f.openV2(t, ClientInfo{ConnID: "bob", Identity: handler.Identity{UserIdentifier: "bob"}})
	anon1, _ := f.openV2(t, ClientInfo{ConnID: "anon1", Identity: handler.Identity{Anonymous: true}})
	anon2, _ := f.open(t, "anon2", ClientInfo{ConnID: "anon2", Identity: handler.Identity{Anonymous: true}})

	join := func(u string) string { return `{"event":"join","topic":"room/1","user":"` + u + `"}` }
	leave := func(u string) string { return `{"event":"leave","topic":"room/1","user":"` + u + `"}` }
	const anonJoin = `{"event":"join","topic":"room/1","user":null,"anonymous":true}`
	const anonLeave = `{"event":"leave","topic":"room/1","user":null,"anonymous":true}`
	steps := []struct {
		name  string
		do    func() error
		want  []string
		users string
		anon  int
	}{
		{"alice's first tab", func() error { return alice1.Handle(ctx, []byte(`[32,5,{},"room/1"]`)) }, []string{join("alice")}, "alice", 0},
		{"alice's second tab (v1)", func() error { return alice2.Handle(ctx, []byte(`[5,"room/1"]`)) }, nil, "alice", 0},
		{"bob", func() error { return bob.Handle(ctx, []byte(`[32,5,{},"room/1"]`)) }, []string{join("bob")}, "alice,bob", 0},
		{"another room", func() error { return bob.Handle(ctx, []byte(`[32,6,{},"room/2"]`)) }, nil, "alice,bob", 0},
		{"anonymous", func() error { return anon1.Handle(ctx, []byte(`[32,5,{},"room/1"]`)) }, []string{anonJoin}, "alice,bob", 1},
		{"another anonymous", func() error { return anon2.Handle(ctx, []byte(`[5,"room/1"]`)) }, []string{anonJoin}, "alice,bob", 2},
		{"alice closes her first tab", func() error { alice1.Close(); return nil }, nil, "alice,bob", 2},
		{"alice unsubscribes her last", func() error { return alice2.Handle(ctx, []byte(`[6,"room/1"]`)) }, []string{leave("alice")}, "bob", 2},
		{"bob leaves the other room", func() error { return bob.Handle(ctx, []byte(`[34,7,`+subOf(t, f, bob, "room/2")+`]`)) }, nil, "bob", 2},
		{"bob disconnects", func() error { bob.Close(); return nil }, []string{leave("bob")}, "", 2},
		{"an anonymous leaves", func() error { anon2.Close(); return nil }, []string{anonLeave}, "", 1},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		f.settle(t)
		if got := presenceEvents(t, w1p, "room/1", ""); strings.Join(got, "|") != strings.Join(st.want, "|") {
			t.Errorf("%s: v1 watcher got %q, want %q", st.name, got, st.want)
		}
		if got := presenceEvents(t, w2p, "room/1", w2sub); strings.Join(got, "|") != strings.Join(st.want, "|") {
			t.Errorf("%s: v2 watcher got %q, want %q", st.name, got, st.want)
		}
		users := "[]"
		if st.users != "" {
			users = `["` + strings.ReplaceAll(st.users, ",", `","`) + `"]`
		}
		want := fmt.Sprintf(`{"topic":"room/1","users":%s,"anonymous":%d,"truncated":false}`, users, st.anon)
		if err := w2.Handle(ctx, []byte(`[48,9,{},"`+PresenceListProcedure+`",["room/1"]]`)); err != nil {
			t.Fatal(err)
		}
		expectMsgs(t, w2p.take(), []string{`[50,9,{},[` + want + `]]`}, "")
		if err := w1.Handle(ctx, []byte(`[2,"c9","`+PresenceListProcedure+`","room/1"]`)); err != nil {
			t.Fatal(err)
		}
		expectMsgs(t, w1p.take(), []string{`[3,"c9",` + want + `]`}, "")
	}
}

// subOf returns s's subscription id of topic, as JSON.
func subOf(t *testing.T, f *fixture, s *Session, topic string) string {
	t.Helper()
	id, ok := s.subscribedTo(topic)
	if !ok {
		t.Fatalf("%s not subscribed to %s", s.ID(), topic)
	}
	return fmt.Sprint(id)
}

// TestPresenceAccess: only who may subscribe to a presence topic sees its
// presence; topics without presence have none; nobody publishes presence.
func TestPresenceAccess(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, presenceRoutes)
	user, up := f.openV2(t, ClientInfo{ConnID: "user", Identity: handler.Identity{UserIdentifier: "jdoe", Roles: []string{"ROLE_USER"}}})
	admin, ap := f.openV2(t, ClientInfo{ConnID: "admin", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}})
	v1, v1p := f.open(t, "v1")
	staff := PresencePrefix + "staffroom/1"
	chat := PresencePrefix + "chan/1"
	cases := []struct {
		name string
		s    *Session
		p    *fakePeer
		in   string
		want string
	}{
		{"v2 no role subscribe", user, up, `[32,1,{},"` + staff + `"]`, `[8,32,1,{},"wamp.error.not_authorized",["Access denied"]]`},
		{"v2 no role list", user, up, `[48,2,{},"` + PresenceListProcedure + `",["staffroom/1"]]`, `[8,48,2,{},"wamp.error.not_authorized",["Access denied"]]`},
		{"v1 no role subscribe", v1, v1p, `[5,"` + staff + `"]`, `[4,"` + staff + `","` + staff + `","Access denied",{"code":403,"topic":{},"request":{},"event":"onSubscribe"}]`},
		{"v1 no role list", v1, v1p, `[2,"c1","` + PresenceListProcedure + `","staffroom/1"]`, `[4,"c1","` + PresenceListProcedure + `","Access denied",{"code":403,"rpc":{},"params":["staffroom/1"],"request":{}}]`},
		{"no presence subscribe", admin, ap, `[32,3,{},"` + chat + `"]`, `[8,32,3,{},"wamp.error.invalid_uri",["no route for topic \"` + chat + `\""]]`},
		{"no presence list", admin, ap, `[48,4,{},"` + PresenceListProcedure + `",["chan/1"]]`, `[8,48,4,{},"wamp.error.invalid_argument",["no presence for this topic"]]`},
		{"list without topic", admin, ap, `[48,5,{},"` + PresenceListProcedure + `",[]]`, `[8,48,5,{},"wamp.error.invalid_argument",["wsgate.presence.list takes one argument: the topic"],{"code":400}]`},
		{"publish presence", admin, ap, `[16,6,{"acknowledge":true},"` + PresencePrefix + `room/1",[{"event":"join","user":"fake"}]]`, `[8,16,6,{},"wamp.error.not_authorized",["Access denied"]]`},
		{"admin subscribes", admin, ap, `[32,7,{},"` + staff + `"]`, `[33,7,SUB]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Handle(ctx, []byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			f.settle(t)
			got := tc.p.take()
			if len(got) > 0 && strings.Contains(tc.want, "SUB") {
				tc.want = strings.Replace(tc.want, "SUB", subscribedIDIn(t, got), 1)
			}
			expectMsgs(t, got, []string{tc.want}, "")
		})
	}
	// The admin loses the role: its companion subscription is revoked,
	// like one to staffroom/1 itself would be.
	admin.Reidentify(ClientInfo{ConnID: "admin", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_USER"}}})
	f.settle(t)
	if _, ok := admin.subscribedTo(staff); ok {
		t.Error("presence subscription kept after the role was lost")
	}
}

// TestPresenceAcrossNodes: presence events reach the companion's
// subscribers on the other node through the relay.
func TestPresenceAcrossNodes(t *testing.T) {
	ctx := context.Background()
	hub := &memHub{}
	ra, rb := hub.join(), hub.join()
	a := newFixture(t, func(c *NodeConfig) { presenceRoutes(c); c.Relay = ra })
	b := newFixture(t, func(c *NodeConfig) { presenceRoutes(c); c.Relay = rb })
	ra.node, rb.node = a.node, b.node
	w, wp := b.open(t, "w")
	if err := w.Handle(ctx, []byte(`[5,"`+PresencePrefix+`room/1"]`)); err != nil {
		t.Fatal(err)
	}
	alice, _ := a.open(t, "alice", ClientInfo{ConnID: "alice", Identity: handler.Identity{UserIdentifier: "alice"}})
	if err := alice.Handle(ctx, []byte(`[5,"room/1"]`)); err != nil {
		t.Fatal(err)
	}
	alice.Close()
	a.settle(t)
	got := presenceEvents(t, wp, "room/1", "")
	want := []string{`{"event":"join","topic":"room/1","user":"alice"}`, `{"event":"leave","topic":"room/1","user":"alice"}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("watcher on the other node got %q, want %q", got, want)
	}
}

// TestPresenceListBound: the list holds at most max users, sorted, and
// says it was truncated.
func TestPresenceListBound(t *testing.T) {
	f := newFixture(t, presenceRoutes)
	var p presenceTable
	for i := range 5 {
		s, _ := f.open(t, fmt.Sprint(i), ClientInfo{ConnID: fmt.Sprint(i), Identity: handler.Identity{UserIdentifier: fmt.Sprintf("u%d", 4-i)}})
		p.join("room/1", s)
	}
	cases := []struct {
		max       int
		users     string
		truncated bool
	}{{10, "u0,u1,u2,u3,u4", false}, {5, "u0,u1,u2,u3,u4", false}, {2, "u0,u1", true}}
	for _, tc := range cases {
		l := p.list("room/1", tc.max)
		if strings.Join(l.Users, ",") != tc.users || l.Truncated != tc.truncated {
			t.Errorf("max %d: %+v, want %s truncated %v", tc.max, l, tc.users, tc.truncated)
		}
	}
}

// TestPresenceConfig: RPC routes refuse presence.
func TestPresenceConfig(t *testing.T) {
	reg := handler.NewRegistry()
	_ = reg.AddRPC(testRPC{})
	_, err := NewNode(NodeConfig{Handlers: reg, Routes: RoutesConfig{RPC: map[string]RouteConfig{"x": {Pattern: "x/{method}", Handler: "test.rpc", Presence: true}}}})
	if err == nil || !strings.Contains(err.Error(), "presence applies to topic routes only") {
		t.Errorf("got %v", err)
	}
}

// TestPresenceReidentify: a client whose identity changes on a presence
// topic that admits it either way leaves as its old user and joins as the
// new one; the list follows.
func TestPresenceReidentify(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, presenceRoutes)
	w, wp := f.open(t, "w")
	if err := w.Handle(ctx, []byte(`[5,"`+PresencePrefix+`room/1"]`)); err != nil {
		t.Fatal(err)
	}
	s, _ := f.open(t, "s", ClientInfo{ConnID: "s", Identity: handler.Identity{UserIdentifier: "alice"}})
	if err := s.Handle(ctx, []byte(`[5,"room/1"]`)); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	wp.take()
	cases := []struct {
		name string
		who  handler.Identity
		want []string
		list string
	}{
		{"same user, new roles", handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_X"}}, nil, `["alice"] 0`},
		{"downgraded", handler.Identity{Anonymous: true}, []string{
			`{"event":"leave","topic":"room/1","user":"alice"}`, `{"event":"join","topic":"room/1","user":null,"anonymous":true}`}, `[] 1`},
		{"logged in as bob", handler.Identity{UserIdentifier: "bob"}, []string{
			`{"event":"leave","topic":"room/1","user":null,"anonymous":true}`, `{"event":"join","topic":"room/1","user":"bob"}`}, `["bob"] 0`},
	}
	for _, tc := range cases {
		s.Reidentify(ClientInfo{Identity: tc.who})
		f.settle(t)
		if got := presenceEvents(t, wp, "room/1", ""); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: events %q, want %q", tc.name, got, tc.want)
		}
		l := f.node.LocalPresence("room/1", 10)
		users, _ := json.Marshal(l.Users)
		if got := fmt.Sprintf("%s %d", users, l.Anonymous); got != tc.list {
			t.Errorf("%s: list %s, want %s", tc.name, got, tc.list)
		}
	}
}

// TestPresenceRefusedSubscribe: a subscription the topic handler's
// OnSubscribe refuses never shows in presence.
func TestPresenceRefusedSubscribe(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, presenceRoutes)
	w, wp := f.open(t, "w")
	if err := w.Handle(ctx, []byte(`[5,"`+PresencePrefix+`deny/1"]`)); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"v1", "v2"} {
		var err error
		if proto == "v1" {
			s, _ := f.open(t, "s1", ClientInfo{ConnID: "s1", Identity: handler.Identity{UserIdentifier: "alice"}})
			err = s.Handle(ctx, []byte(`[5,"deny/1"]`))
		} else {
			s, _ := f.openV2(t, ClientInfo{ConnID: "s2", Identity: handler.Identity{UserIdentifier: "bob"}})
			err = s.Handle(ctx, []byte(`[32,1,{},"deny/1"]`))
		}
		if err != nil {
			t.Fatal(err)
		}
		f.settle(t)
		if got := presenceEvents(t, wp, "deny/1", ""); len(got) != 0 {
			t.Errorf("%s: refused subscription made presence events %q", proto, got)
		}
		if l := f.node.LocalPresence("deny/1", 10); len(l.Users) != 0 {
			t.Errorf("%s: refused subscription listed: %+v", proto, l)
		}
	}
}

// FuzzSessionPresence drives a v2 session, beside a v1 watcher of a
// presence topic and an admin of the meta topics, with arbitrary
// messages on a node with presence routes and the meta API: nothing
// breaks the others' streams, and once everyone closed no topic,
// presence or meta state is left.
func FuzzSessionPresence(f *testing.F) {
	for _, s := range []string{
		`[32,1,{},"room/1"]` + "\n" + `[32,2,{},"` + PresencePrefix + `room/1"]` + "\n" + `[48,3,{},"` + PresenceListProcedure + `",["room/1"]]`,
		`[32,1,{},"room/1"]` + "\n" + `[34,2,1]` + "\n" + `[16,3,{"acknowledge":true},"` + PresencePrefix + `room/1",[1]]`,
		`[32,1,{},"wamp.session.on_join"]` + "\n" + `[48,2,{},"wamp.subscription.lookup",["room/1",{"match":"exact"}]]` + "\n" + `[48,3,{},"wamp.subscription.get",[1]]`,
		`[48,1,{},"wamp.subscription.list"]` + "\n" + `[48,2,{},"wamp.subscription.match",[1]]` + "\n" + `[48,3,{},"wamp.subscription.list_subscribers",["x"]]`,
		`[32,1,{},"staffroom/1"]` + "\n" + `[32,2,{},"` + PresencePrefix + `deny/1"]` + "\n" + `[48,3,{},"` + PresenceListProcedure + `",[1,2]]`,
	} {
		f.Add([]byte(s))
	}
	fixture := fuzzFixture(func(c *NodeConfig) { accessRoutes(c); presenceRoutes(c); c.MetaAPI = MetaAPIAuthenticated })
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := fixture(t)
		ctx := context.Background()
		p := &fakePeer{}
		s := fx.node.OpenProtocol(p, ClientInfo{ConnID: "fuzz", Identity: handler.Identity{UserIdentifier: "u"}}, ProtocolV2JSON)
		if err := s.Handle(ctx, []byte(`[1,"realm1",{}]`)); err != nil {
			t.Fatal(err)
		}
		wp, ap := &fakePeer{}, &fakePeer{}
		w := fx.node.Open(wp, ClientInfo{ConnID: "watcher"})
		_ = w.Handle(ctx, []byte(`[5,"`+PresencePrefix+`room/1"]`))
		a := fx.node.OpenProtocol(ap, ClientInfo{ConnID: "admin", Identity: handler.Identity{UserIdentifier: "root"}}, ProtocolV2JSON)
		_ = a.Handle(ctx, []byte(`[1,"realm1",{}]`))
		_ = a.Handle(ctx, []byte(`[32,1,{},"wamp.subscription.on_subscribe"]`))
		handleLines(t, s, data, func(err error) bool {
			return errors.Is(err, ErrProtocol) || errors.Is(err, ErrClosed)
		})
		s.Close()
		w.Close()
		a.Close()
		fx.settle(t)
		checkSent(t, append(append(p.take(), wp.take()...), ap.take()...), 2)
		checkEmpty(t, fx.node)
		if topics := fx.node.PresenceTopics(); len(topics) != 0 {
			t.Fatalf("presence left after Close: %q", topics)
		}
		fx.node.metaTopics.mu.Lock()
		left := len(fx.node.metaTopics.topics)
		fx.node.metaTopics.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d meta topics left after Close", left)
		}
	})
}

// fakeDirectory is a PresenceDirectory that emits users' events itself.
type fakeDirectory struct {
	mu      sync.Mutex
	changed []string
}

func (d *fakeDirectory) Changed(topic string) {
	d.mu.Lock()
	d.changed = append(d.changed, topic)
	d.mu.Unlock()
}

func (d *fakeDirectory) List(context.Context, string, int) (PresenceList, error) {
	return PresenceList{}, nil
}

func (d *fakeDirectory) EmitsEvents() bool { return true }

// TestPresenceDirectoryEmits: with a directory that emits users' events
// cluster-wide, the node tells it of every change and broadcasts only
// anonymous sessions' events itself; Node.PresenceEvent broadcasts the
// directory's; PresenceWatched names the watched topics.
func TestPresenceDirectoryEmits(t *testing.T) {
	ctx := context.Background()
	dir := &fakeDirectory{}
	f := newFixture(t, func(c *NodeConfig) { presenceRoutes(c); c.Presence = dir })
	w, wp := f.open(t, "w")
	if err := w.Handle(ctx, []byte(`[5,"`+PresencePrefix+`room/1"]`)); err != nil {
		t.Fatal(err)
	}
	if got := f.node.PresenceWatched(); len(got) != 1 || got[0] != "room/1" {
		t.Errorf("PresenceWatched %q", got)
	}
	alice, _ := f.open(t, "alice", ClientInfo{ConnID: "alice", Identity: handler.Identity{UserIdentifier: "alice"}})
	anon, _ := f.open(t, "anon", ClientInfo{ConnID: "anon", Identity: handler.Identity{Anonymous: true}})
	for _, s := range []*Session{alice, anon} {
		if err := s.Handle(ctx, []byte(`[5,"room/1"]`)); err != nil {
			t.Fatal(err)
		}
	}
	f.settle(t)
	want := []string{`{"event":"join","topic":"room/1","user":null,"anonymous":true}`}
	if got := presenceEvents(t, wp, "room/1", ""); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("node broadcast %q, want only the anonymous join", got)
	}
	dir.mu.Lock()
	changed := strings.Join(dir.changed, ",")
	dir.mu.Unlock()
	if changed != "room/1,room/1" {
		t.Errorf("directory told of %q, want room/1 twice", changed)
	}
	f.node.PresenceEvent("room/1", true, "alice")
	want = []string{`{"event":"join","topic":"room/1","user":"alice"}`}
	if got := presenceEvents(t, wp, "room/1", ""); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("PresenceEvent broadcast %q, want %q", got, want)
	}
}
