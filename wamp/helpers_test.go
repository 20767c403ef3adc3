package wamp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/wamp/handler"
)

// fakePeer records what the node sends.
type fakePeer struct {
	mu     sync.Mutex
	msgs   [][]byte
	refuse bool
}

func (p *fakePeer) Send(m []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse {
		return false
	}
	p.msgs = append(p.msgs, m)
	return true
}

// take returns and clears the recorded messages.
func (p *fakePeer) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.msgs
	p.msgs = nil
	return out
}

// nopPeer accepts and discards, for benchmarks.
type nopPeer struct{}

func (nopPeer) Send([]byte) bool { return true }

// testRPC is an RPC handler whose methods exercise every result path.
type testRPC struct{}

func (testRPC) Name() string { return "test.rpc" }

func (testRPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{
		"echo": func(_ context.Context, _ handler.Client, _ handler.Request, p json.RawMessage) (any, error) {
			return p, nil
		},
		"fail": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return nil, errors.New("boom")
		},
		"custom": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return nil, &handler.Error{URI: "err:x", Desc: "nope", Details: map[string]int{"a": 1}}
		},
		"customcode": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			// Wrapped, to check errors.As is used.
			return nil, fmt.Errorf("wrapped: %w", &handler.Error{Desc: "forbidden", Code: 403})
		},
		"nil": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return nil, nil
		},
		"false": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return false, nil
		},
		"unencodable": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return make(chan int), nil
		},
		"scalar": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return 5, nil
		},
		"html": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			return map[string]string{"h": "<b>&"}, nil
		},
		"panic": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
			panic("secret internal detail")
		},
		"getUser": func(_ context.Context, _ handler.Client, r handler.Request, _ json.RawMessage) (any, error) {
			return []string{"getUser", r.Route, r.URI, r.Attributes["method"]}, nil
		},
		"whoami": func(_ context.Context, c handler.Client, _ handler.Request, _ json.RawMessage) (any, error) {
			return map[string]any{"conn": c.ConnID(), "user": c.UserIdentifier(), "anon": c.Anonymous(),
				"roles": c.Roles(), "firewall": c.Firewall(), "session": c.SessionID()}, nil
		},
		"slow": func(ctx context.Context, _ handler.Client, _ handler.Request, _ json.RawMessage) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
}

// testTopic broadcasts like the bundle's sample topic and records calls.
type testTopic struct {
	mu    sync.Mutex
	calls []string
	// slowSubscribe blocks OnSubscribe until ctx ends.
	slowSubscribe bool
}

func (*testTopic) Name() string { return "test.topic" }

func (t *testTopic) record(s string) {
	t.mu.Lock()
	t.calls = append(t.calls, s)
	t.mu.Unlock()
}

func (t *testTopic) takeCalls() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.calls
	t.calls = nil
	return out
}

func (t *testTopic) OnSubscribe(ctx context.Context, c handler.Client, ref handler.TopicRef, req handler.Request) error {
	t.record("sub " + c.ConnID() + " " + ref.ID() + " " + req.Route + " room=" + req.Attributes["room"])
	if req.Route == "deny" {
		return errors.New("denied")
	}
	if req.Route == "denycustom" {
		return &handler.Error{Desc: "not allowed", Code: 401}
	}
	if t.slowSubscribe {
		<-ctx.Done()
		return nil
	}
	return ref.Broadcast(map[string]string{"msg": c.ConnID() + " has joined " + ref.ID()}, nil, nil)
}

func (t *testTopic) OnUnsubscribe(_ context.Context, c handler.Client, ref handler.TopicRef, _ handler.Request) error {
	t.record("unsub " + c.ConnID() + " " + ref.ID())
	return ref.Broadcast(map[string]string{"msg": c.ConnID() + " has left " + ref.ID()}, nil, nil)
}

func (t *testTopic) OnPublish(_ context.Context, c handler.Client, ref handler.TopicRef, _ handler.Request, event json.RawMessage, exclude, eligible []string) error {
	t.record("pub " + c.ConnID() + " " + ref.ID() + " " + string(event))
	if string(event) == `"fail"` {
		return errors.New("publish failed")
	}
	return ref.Broadcast(map[string]json.RawMessage{"msg": event}, exclude, eligible)
}

func testRoutes() RoutesConfig {
	return RoutesConfig{
		RPC: map[string]RouteConfig{
			"sample": {Pattern: "sample/{method}", Handler: "test.rpc"},
			"calc":   {Pattern: "http://example.com/calc#sum", Handler: "test.rpc", Defaults: map[string]string{"method": "echo"}},
		},
		Topics: map[string]RouteConfig{
			"chan":       {Pattern: "chan/{room}", Handler: "test.topic"},
			"deny":       {Pattern: "deny/{x}", Handler: "test.topic"},
			"denycustom": {Pattern: "denycustom/{x}", Handler: "test.topic"},
		},
	}
}

func boolp(b bool) *bool { return &b }

// accessRoutes adds routes with access rules to the test fixture.
func accessRoutes(c *NodeConfig) {
	c.Routes.RPC["admin"] = RouteConfig{Pattern: "admin/{method}", Handler: "test.rpc", Roles: []string{"ROLE_ADMIN"}}
	c.Routes.RPC["members"] = RouteConfig{Pattern: "members/{method}", Handler: "test.rpc", Anonymous: boolp(false)}
	c.Routes.Topics["private"] = RouteConfig{Pattern: "private/{room}", Handler: "test.topic", Anonymous: boolp(false)}
	c.Routes.Topics["staff"] = RouteConfig{Pattern: "staff/{room}", Handler: "test.topic", Roles: []string{"ROLE_ADMIN", "ROLE_STAFF"}}
	c.Realm = "realm1"
}

type fixture struct {
	node  *Node
	topic *testTopic
	reg   *handler.Registry
}

func newFixture(t testing.TB, mod func(*NodeConfig)) *fixture {
	t.Helper()
	reg := handler.NewRegistry()
	tt := &testTopic{}
	if err := reg.AddRPC(testRPC{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddTopic(tt); err != nil {
		t.Fatal(err)
	}
	cfg := NodeConfig{ServerIdent: "test-ident", Routes: testRoutes(), Handlers: reg}
	if mod != nil {
		mod(&cfg)
	}
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{node: n, topic: tt, reg: reg}
}

// settle waits until the node has no offloaded work left: the
// unsubscribes a Close or a Reidentify leaves run off the caller.
func (f *fixture) settle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.node.OffloadedCalls() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("offloaded work still running after 5s: %d", f.node.OffloadedCalls())
		}
		time.Sleep(time.Millisecond)
	}
}

// open opens a session and discards its WELCOME.
func (f *fixture) open(t testing.TB, connID string, info ...ClientInfo) (*Session, *fakePeer) {
	t.Helper()
	p := &fakePeer{}
	ci := ClientInfo{ConnID: connID, Identity: handler.Identity{UserIdentifier: "user-" + connID, Firewall: "main", Roles: []string{"ROLE_USER"}}}
	if len(info) > 0 {
		ci = info[0]
	}
	s := f.node.Open(p, ci)
	if got := p.take(); len(got) != 1 {
		t.Fatalf("want 1 WELCOME, got %q", got)
	}
	return s, p
}

// openV2 opens a v2 session and completes HELLO/WELCOME.
func (f *fixture) openV2(t testing.TB, info ClientInfo) (*Session, *fakePeer) {
	t.Helper()
	p := &fakePeer{}
	s := f.node.OpenProtocol(p, info, ProtocolV2JSON)
	if got := p.take(); len(got) != 0 {
		t.Fatalf("v2 session sent %q before HELLO", got)
	}
	realm := f.node.realm
	if realm == "" {
		realm = "any.realm"
	}
	if err := s.Handle(context.Background(), []byte(`[1,"`+realm+`",{"roles":{"subscriber":{},"publisher":{},"caller":{}}}]`)); err != nil {
		t.Fatal(err)
	}
	got := p.take()
	if len(got) != 1 || !strings.HasPrefix(string(got[0]), "[2,") {
		t.Fatalf("want WELCOME, got %q", got)
	}
	return s, p
}

// step is one incoming message and what must come back to the sender.
type step struct {
	in   string
	want []string // expected messages to the sender; $SID = own session id
	err  error    // errors.Is target; nil = must succeed
}

// runSteps feeds each step's message to s and checks the error Handle
// returns and what came back to p ($SID in expectations is s's id).
// normalize, when not nil, rewrites each message received before the
// comparison.
func runSteps(t *testing.T, s *Session, p *fakePeer, steps []step, normalize func([]byte) []byte) {
	t.Helper()
	for i, st := range steps {
		err := s.Handle(context.Background(), []byte(st.in))
		switch {
		case st.err == nil && err != nil:
			t.Errorf("step %d %s: unexpected error %v", i, st.in, err)
		case st.err != nil && !errors.Is(err, st.err):
			t.Errorf("step %d %s: error %v, want %v", i, st.in, err, st.err)
		}
		got := p.take()
		if normalize != nil {
			for j := range got {
				got[j] = normalize(got[j])
			}
		}
		expectMsgs(t, got, st.want, s.ID())
	}
}

// fuzzFixture returns what gives a session fuzz target its fixture: one
// node for all inputs, made on first use with mod and the small limits and
// call timeout the targets run into.
func fuzzFixture(mod func(*NodeConfig)) func(t *testing.T) *fixture {
	var (
		once sync.Once
		fx   *fixture
	)
	return func(t *testing.T) *fixture {
		once.Do(func() {
			fx = newFixture(t, func(c *NodeConfig) {
				if mod != nil {
					mod(c)
				}
				c.CallTimeout = time.Millisecond
				c.Limits = Limits{MaxURILength: 64, MaxPrefixes: 4, MaxSubscriptions: 4}
			})
		})
		return fx
	}
}

// handleLines hands s up to 32 newline-separated messages of data, until
// Handle fails, with an error expected must accept: the gateway closes the
// connection there.
func handleLines(t *testing.T, s *Session, data []byte, expected func(error) bool) {
	t.Helper()
	for i, msg := range bytes.Split(data, []byte("\n")) {
		if i >= 32 {
			return
		}
		if err := s.Handle(context.Background(), msg); err != nil {
			if !expected(err) {
				t.Fatalf("message %q: unexpected error %v", msg, err)
			}
			return
		}
	}
}

// checkSent checks what a fuzzed session and its neighbours were sent:
// valid JSON in valid UTF-8, arrays of at least minElems elements.
func checkSent(t *testing.T, sent [][]byte, minElems int) {
	t.Helper()
	for _, out := range sent {
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("sent invalid JSON %q", out)
		}
		var arr []json.RawMessage
		if json.Unmarshal(out, &arr) != nil || len(arr) < minElems {
			t.Fatalf("sent non-WAMP message %q", out)
		}
	}
}

// checkEmpty checks that a node whose sessions all closed keeps no topic
// and no client.
func checkEmpty(t *testing.T, n *Node) {
	t.Helper()
	if c := n.broker.topicCount(); c != 0 {
		t.Fatalf("%d topics left after Close", c)
	}
	if c := n.broker.patterns.n.Load(); c != 0 {
		t.Fatalf("%d patterns left after Close", c)
	}
	if c := len(n.Clients().GetAll(true)); c != 0 {
		t.Fatalf("%d clients left after Close", c)
	}
}

// jsonEqual compares two JSON texts semantically.
func jsonEqual(t testing.TB, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("output %q is not JSON: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func expectMsgs(t testing.TB, got [][]byte, want []string, sid string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d messages %q, want %d %q", len(got), got, len(want), want)
		return
	}
	for i := range want {
		w := strings.ReplaceAll(want[i], "$SID", sid)
		if !jsonEqual(t, got[i], w) {
			t.Errorf("message %d: got %s, want %s", i, got[i], w)
		}
	}
}
