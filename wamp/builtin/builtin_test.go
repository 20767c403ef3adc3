package builtin

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

// peer records what the node sends a client.
type peer struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (p *peer) Send(m []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return true
}

func (p *peer) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.msgs
	p.msgs = nil
	return out
}

// routes are the embedded default's plus a wsgate.push route.
var routes = wamp.RoutesConfig{Topics: map[string]wamp.RouteConfig{
	"public": {Pattern: "public/{channel}", Handler: RelayName},
	"user":   {Pattern: "user/{username}", Handler: UserName},
	"news":   {Pattern: "news/{feed}", Handler: PushName},
}}

func newNode(t *testing.T) *wamp.Node {
	t.Helper()
	reg := handler.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	n, err := wamp.NewNode(wamp.NodeConfig{Handlers: reg, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func user(name string) wamp.ClientInfo {
	return wamp.ClientInfo{ConnID: "conn-" + name, Identity: handler.Identity{UserIdentifier: name, Roles: []string{"ROLE_USER"}}}
}

var anon = wamp.ClientInfo{ConnID: "conn-anon", Identity: handler.Identity{Anonymous: true}}

// client is one v1 (or v2, after HELLO) session with what it received.
type client struct {
	s *wamp.Session
	p *peer
}

func open(t *testing.T, n *wamp.Node, info wamp.ClientInfo, v2 bool) client {
	t.Helper()
	p := &peer{}
	var s *wamp.Session
	if v2 {
		s = n.OpenProtocol(p, info, wamp.ProtocolV2JSON)
		send(t, client{s, p}, `[1,"realm1",{}]`)
	} else {
		s = n.Open(p, info)
	}
	p.take() // WELCOME
	return client{s, p}
}

func send(t *testing.T, c client, msg string) {
	t.Helper()
	if err := c.s.Handle(context.Background(), []byte(msg)); err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
}

// expect compares received messages as JSON; a want ending in "*" only
// has to be a prefix of the message's text.
func expect(t *testing.T, what string, got [][]byte, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
	for i := range want {
		if p, ok := strings.CutSuffix(want[i], "*"); ok {
			if !strings.HasPrefix(string(got[i]), p) {
				t.Errorf("%s: message %d: got %s, want prefix %s", what, i, got[i], p)
			}
			continue
		}
		var g, w any
		if err := json.Unmarshal(got[i], &g); err != nil {
			t.Fatalf("%s: %s: %v", what, got[i], err)
		}
		if err := json.Unmarshal([]byte(want[i]), &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: message %d: got %s, want %s", what, i, got[i], want[i])
		}
	}
}

func TestRelay(t *testing.T) {
	n := newNode(t)
	a, b := open(t, n, user("alice"), false), open(t, n, anon, false)
	const topic = "public/lobby"
	send(t, a, `[5,"`+topic+`"]`)
	send(t, b, `[5,"`+topic+`"]`)
	expect(t, "no join announcement", append(a.p.take(), b.p.take()...))
	for _, tc := range []struct {
		name, publish string
		toA, toB      []string
	}{
		{"event as is", `[7,"public/lobby",{"text":"hi"}]`, []string{`[8,"public/lobby",{"text":"hi"}]`}, []string{`[8,"public/lobby",{"text":"hi"}]`}},
		{"excludeMe", `[7,"public/lobby","others",true]`, nil, []string{`[8,"public/lobby","others"]`}},
		{"eligible", `[7,"public/lobby","only a",[],["` + a.s.ID() + `"]]`, []string{`[8,"public/lobby","only a"]`}, nil},
		{"exclude", `[7,"public/lobby","not b",["` + b.s.ID() + `"]]`, []string{`[8,"public/lobby","not b"]`}, nil},
		{"other channel", `[7,"public/other","x"]`, nil, nil},
	} {
		send(t, a, tc.publish)
		expect(t, tc.name+" (a)", a.p.take(), tc.toA...)
		expect(t, tc.name+" (b)", b.p.take(), tc.toB...)
	}
	if err := n.Push(context.Background(), topic, json.RawMessage(`{"from":"app"}`), "http"); err != nil {
		t.Fatal(err)
	}
	expect(t, "push", a.p.take(), `[8,"public/lobby",{"from":"app"}]`)
	expect(t, "push", b.p.take(), `[8,"public/lobby",{"from":"app"}]`)
}

func TestUserChannel(t *testing.T) {
	n := newNode(t)
	for _, tc := range []struct {
		name   string
		info   wamp.ClientInfo
		v2     bool
		topic  string
		answer []string // to the SUBSCRIBE
		gets   bool     // the push to topic
	}{
		{"own channel v1", user("alice"), false, "user/alice", nil, true},
		{"own channel v2", user("alice"), true, "user/alice", []string{`[33,1,*`}, true},
		{"someone else's v1", user("mallory"), false, "user/alice", []string{`[4,"user/alice","user/alice","Access denied",*`}, false},
		{"someone else's v2", user("mallory"), true, "user/alice", []string{`[8,32,1,{},"wamp.error.not_authorized"*`}, false},
		{"anonymous v1", anon, false, "user/anon-x", []string{`[4,"user/anon-x","user/anon-x","Access denied",*`}, false},
		{"anonymous v2", anon, true, "user/alice", []string{`[8,32,1,{},"wamp.error.not_authorized"*`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t, n, tc.info, tc.v2)
			defer c.s.Close()
			if tc.v2 {
				send(t, c, `[32,1,{},"`+tc.topic+`"]`)
			} else {
				send(t, c, `[5,"`+tc.topic+`"]`)
			}
			expect(t, "subscribe", c.p.take(), tc.answer...)
			if err := n.Push(context.Background(), tc.topic, json.RawMessage(`{"n":1}`), "http"); err != nil {
				t.Fatal(err)
			}
			got := c.p.take()
			if (len(got) == 1) != tc.gets || len(got) > 1 {
				t.Fatalf("push: got %q, want an event: %v", got, tc.gets)
			}
			if tc.gets && !strings.Contains(string(got[0]), `{"n":1}`) {
				t.Errorf("push: got %s, want the payload as is", got[0])
			}
		})
	}
}

func TestUserChannelRevokedOnLogout(t *testing.T) {
	n := newNode(t)
	c := open(t, n, user("alice"), false)
	send(t, c, `[5,"user/alice"]`)
	if got := c.s.Reidentify(anon); got != 1 {
		t.Fatalf("Reidentify revoked %d subscriptions, want 1", got)
	}
	if err := n.Push(context.Background(), "user/alice", json.RawMessage(`1`), "http"); err != nil {
		t.Fatal(err)
	}
	expect(t, "push after logout", c.p.take())
}

func TestClientsCannotPublish(t *testing.T) {
	n := newNode(t)
	for _, topic := range []string{"user/alice", "news/sport"} {
		a := open(t, n, user("alice"), false)
		send(t, a, `[5,"`+topic+`"]`)
		send(t, a, `[7,"`+topic+`","spoof"]`)
		expect(t, topic+" v1 publish", a.p.take(), `[4,"`+topic+`","wamp.error.not_authorized","clients cannot publish to this topic",{"code":403,*`)
		v2 := open(t, n, user("alice"), true)
		send(t, v2, `[16,7,{"acknowledge":true},"`+topic+`",["spoof"]]`)
		expect(t, topic+" v2 publish", v2.p.take(), `[8,16,7,{},"wamp.error.not_authorized"*`)
		if err := n.Push(context.Background(), topic, json.RawMessage(`"app"`), "redis"); err != nil {
			t.Fatal(err)
		}
		expect(t, topic+" push", a.p.take(), `[8,"`+topic+`","app"]`)
		a.s.Close()
		v2.s.Close()
	}
}

func TestUserRouteNeedsUsername(t *testing.T) {
	reg := handler.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	bad := wamp.RoutesConfig{Topics: map[string]wamp.RouteConfig{"inbox": {Pattern: "inbox/{user}", Handler: UserName}}}
	err := wamp.CheckRoutes(bad, reg)
	if err == nil || !strings.Contains(err.Error(), `"inbox"`) || !strings.Contains(err.Error(), "{username}") {
		t.Fatalf("CheckRoutes = %v, want an error naming route inbox and {username}", err)
	}
	if err := wamp.CheckRoutes(routes, reg); err != nil {
		t.Fatalf("default routes: %v", err)
	}
}

func TestRegisterKeepsExisting(t *testing.T) {
	reg := handler.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg); err != nil {
		t.Fatalf("second Register: %v", err)
	}
	if got, want := reg.TopicNames(), []string{PushName, RelayName, UserName}; !reflect.DeepEqual(got, want) {
		t.Fatalf("topics %v, want %v", got, want)
	}
}

// nopTopic is a TopicRef whose broadcasts go nowhere.
type nopTopic struct{}

func (nopTopic) ID() string                              { return "public/x" }
func (nopTopic) Broadcast(any, []string, []string) error { return nil }
func (nopTopic) Count() int                              { return 0 }

// TestCallbacksLeaveAttributesAlone: the node shares one
// Request.Attributes map between every subscription to a topic
// (handler.Request documents it read-only), so no built-in callback may
// write to it; each is called with a map compared after the call.
func TestCallbacksLeaveAttributesAlone(t *testing.T) {
	ctx := context.Background()
	want := map[string]string{"channel": "x", UserPlaceholder: "alice"}
	req := handler.Request{Route: "r", URI: "public/x", Attributes: maps.Clone(want)}
	for _, h := range Topics() {
		h.OnSubscribe(ctx, nil, nopTopic{}, req)
		h.OnUnsubscribe(ctx, nil, nopTopic{}, req)
		h.OnPublish(ctx, nil, nopTopic{}, req, json.RawMessage(`{}`), nil, nil)
		if a, ok := h.(handler.SubscribeAuthorizer); ok {
			a.MaySubscribe(handler.Identity{UserIdentifier: "alice"}, req)
		}
		if p, ok := h.(interface {
			OnPush(context.Context, handler.TopicRef, handler.Request, json.RawMessage, string) error
		}); ok {
			p.OnPush(ctx, nopTopic{}, req, json.RawMessage(`{}`), "app")
		}
		if !maps.Equal(req.Attributes, want) {
			t.Fatalf("%s changed the attributes: %v", h.Name(), req.Attributes)
		}
	}
}
