package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

func TestWelcome(t *testing.T) {
	f := newFixture(t, nil)
	p := &fakePeer{}
	s := f.node.Open(p, ClientInfo{ConnID: "c1"})
	msgs := p.take()
	if len(msgs) != 1 {
		t.Fatalf("got %q", msgs)
	}
	var w []any
	if err := json.Unmarshal(msgs[0], &w); err != nil {
		t.Fatal(err)
	}
	if len(w) != 4 || w[0] != float64(0) || w[1] != s.ID() || w[2] != float64(1) || w[3] != "test-ident" {
		t.Fatalf("welcome %s", msgs[0])
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(s.ID()) {
		t.Errorf("session id %q is not 128 random bits in hex", s.ID())
	}
	s2 := f.node.Open(&fakePeer{}, ClientInfo{ConnID: "c2"})
	if s2.ID() == s.ID() {
		t.Error("session ids repeat")
	}

	// Default ident.
	n, err := NewNode(NodeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p = &fakePeer{}
	n.Open(p, ClientInfo{ConnID: "x"})
	if got := p.take(); !strings.HasSuffix(string(got[0]), `,1,"wsgate"]`) {
		t.Errorf("default welcome %s", got[0])
	}
}

// step is one incoming message and what must come back to the sender.
type step struct {
	in   string
	want []string // expected messages to the sender; $SID = own session id
	err  error    // errors.Is target; nil = must succeed
}

func runSteps(t *testing.T, f *fixture, s *Session, p *fakePeer, steps []step) {
	t.Helper()
	for i, st := range steps {
		err := s.Handle(context.Background(), []byte(st.in))
		switch {
		case st.err == nil && err != nil:
			t.Errorf("step %d %s: unexpected error %v", i, st.in, err)
		case st.err != nil && !errors.Is(err, st.err):
			t.Errorf("step %d %s: error %v, want %v", i, st.in, err, st.err)
		}
		expectMsgs(t, p.take(), st.want, s.ID())
	}
}

func TestConformance(t *testing.T) {
	rpcDet := func(code, params string) string {
		return `{"code":` + code + `,"rpc":{},"params":` + params + `,"request":{}}`
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"call args: none", []step{{`[2,"c","sample/echo"]`, []string{`[3,"c",[]]`}, nil}}},
		{"call args: one scalar", []step{{`[2,"c","sample/echo",1]`, []string{`[3,"c",[1]]`}, nil}}},
		{"call args: one string", []step{{`[2,"c","sample/echo","x"]`, []string{`[3,"c",["x"]]`}, nil}}},
		{"call args: one array is the params", []step{{`[2,"c","sample/echo",[1,2]]`, []string{`[3,"c",[1,2]]`}, nil}}},
		{"call args: one object is the params", []step{{`[2,"c","sample/echo",{"a":1}]`, []string{`[3,"c",{"a":1}]`}, nil}}},
		{"call args: several", []step{{`[2,"c","sample/echo",[1],[2], 3 ,"x",null]`, []string{`[3,"c",[[1],[2],3,"x",null]]`}, nil}}},
		{"call id number echoed", []step{{`[2,7,"sample/echo"]`, []string{`[3,7,[]]`}, nil}}},
		{"call id with escapes echoed", []step{{`[2,"a\"b\u00e9","sample/echo"]`, []string{`[3,"a\"bé",[]]`}, nil}}},
		{"call scalar result wrapped", []step{{`[2,"c","sample/scalar"]`, []string{`[3,"c",[5]]`}, nil}}},
		{"call result without HTML escaping", []step{{`[2,"c","sample/html"]`, []string{`[3,"c",{"h":"<b>&"}]`}, nil}}},
		{"call unknown route 404", []step{{`[2,"c","nope/x",1]`,
			[]string{`[4,"c","nope/x","Unable to find route for \"nope/x\"",` + rpcDet("404", "[1]") + `]`}, nil}}},
		{"call unknown method 404", []step{{`[2,"c","sample/missing",{"k":"v"}]`,
			[]string{`[4,"c","sample/missing","Could not execute RPC callback, method not found",` + rpcDet("404", `{"k":"v"}`) + `]`}, nil}}},
		{"call failing handler 500", []step{{`[2,"c","sample/fail"]`,
			[]string{`[4,"c","sample/fail","boom",` + rpcDet("500", "[]") + `]`}, nil}}},
		{"call handler.Error passthrough", []step{{`[2,"c","sample/custom"]`,
			[]string{`[4,"c","err:x","nope",{"a":1}]`}, nil}}},
		{"call wrapped handler.Error with code", []step{{`[2,"c","sample/customcode",1,2]`,
			[]string{`[4,"c","sample/customcode","forbidden",` + rpcDet("403", "[1,2]") + `]`}, nil}}},
		{"call nil result is RPC Error", []step{{`[2,"c","sample/nil"]`,
			[]string{`[4,"c","sample/nil","RPC Error",` + rpcDet("500", "[]") + `]`}, nil}}},
		{"call false result is RPC Error", []step{{`[2,"c","sample/false"]`,
			[]string{`[4,"c","sample/false","RPC Error",` + rpcDet("500", "[]") + `]`}, nil}}},
		{"call unencodable result is RPC Error", []step{{`[2,"c","sample/unencodable"]`,
			[]string{`[4,"c","sample/unencodable","RPC Error",` + rpcDet("500", "[]") + `]`}, nil}}},
		{"call panic hidden", []step{{`[2,"c","sample/panic"]`,
			[]string{`[4,"c","sample/panic","Internal Server Error",` + rpcDet("500", "[]") + `]`}, nil}}},
		{"call snake_case method to camelCase", []step{{`[2,"c","sample/get_user"]`,
			[]string{`[3,"c",["getUser","sample","sample/get_user","get_user"]]`}, nil}}},
		{"call method case-insensitive", []step{{`[2,"c","sample/GETUSER"]`,
			[]string{`[3,"c",["getUser","sample","sample/GETUSER","GETUSER"]]`}, nil}}},
		{"call sees client", []step{{`[2,"c","sample/whoami"]`,
			[]string{`[3,"c",{"conn":"c1","user":"user-c1","anon":false,"roles":["ROLE_USER"],"firewall":"main","session":"$SID"}]`}, nil}}},

		{"prefix then CURIE call", []step{
			{`[1,"calc","http://example.com/calc"]`, nil, nil},
			{`[2,"c","calc:sum",1]`, []string{`[3,"c",[1]]`}, nil},
		}},
		{"CURIE with unknown prefix is literal", []step{
			{`[2,"c","calc:sum"]`, []string{`[4,"c","calc:sum","Unable to find route for \"calc:sum\"",` + rpcDet("404", "[]") + `]`}, nil},
		}},
		{"prefix redefinition wins", []step{
			{`[1,"calc","http://example.com/other"]`, nil, nil},
			{`[1,"calc","http://example.com/calc"]`, nil, nil},
			{`[2,"c","calc:sum"]`, []string{`[3,"c",[]]`}, nil},
		}},
		{"CURIE in subscribe and publish", []step{
			{`[1,"ch","chan"]`, nil, nil},
			{`[5,"ch:a"]`, nil, nil}, // resolves to "chan#a": no route, ignored
			{`[1,"x","http://h/p"]`, nil, nil},
			{`[5,"chan/x:y"]`, []string{`[8,"chan/x:y",{"msg":"c1 has joined chan/x:y"}]`}, nil},
		}},

		{"subscribe joins and broadcasts to self", []step{
			{`[5,"chan/a"]`, []string{`[8,"chan/a",{"msg":"c1 has joined chan/a"}]`}, nil},
			{`[5,"chan/a"]`, nil, nil}, // duplicate ignored
			{`[6,"chan/a"]`, nil, nil}, // leave is not sent to the leaver
			{`[6,"chan/a"]`, nil, nil}, // duplicate ignored
			{`[5,"chan/a"]`, []string{`[8,"chan/a",{"msg":"c1 has joined chan/a"}]`}, nil},
		}},
		{"subscribe unrouted ignored", []step{
			{`[5,"nope"]`, nil, nil},
			{`[6,"nope"]`, nil, nil},
			{`[7,"nope","x"]`, nil, nil},
		}},
		{"subscribe refused by handler", []step{
			{`[5,"deny/x"]`, []string{`[4,"deny/x","deny/x","denied",{"code":500,"topic":{},"request":{},"event":"onSubscribe"}]`}, nil},
			{`[7,"deny/x","hi"]`, nil, nil}, // not subscribed, so no echo
		}},
		{"subscribe refused with handler.Error", []step{
			{`[5,"denycustom/x"]`, []string{`[4,"denycustom/x","denycustom/x","not allowed",{"code":401,"topic":{},"request":{},"event":"onSubscribe"}]`}, nil},
		}},

		{"publish plain", []step{
			{`[5,"chan/a"]`, []string{`[8,"chan/a",{"msg":"c1 has joined chan/a"}]`}, nil},
			{`[7,"chan/a",{"x":1}]`, []string{`[8,"chan/a",{"msg":{"x":1}}]`}, nil},
			{`[7,"chan/a","hi",false]`, []string{`[8,"chan/a",{"msg":"hi"}]`}, nil},
			{`[7,"chan/a","hi",true]`, nil, nil},
			{`[7,"chan/a","hi",["$SID"]]`, nil, nil},
			{`[7,"chan/a","hi",[],["$SID"]]`, []string{`[8,"chan/a",{"msg":"hi"}]`}, nil},
			{`[7,"chan/a","hi",[],["other"]]`, nil, nil},
			{`[7,"chan/a","hi",true,["$SID"]]`, nil, nil},
			{`[7,"chan/a","fail"]`, []string{`[4,"chan/a","chan/a","publish failed",{"code":500,"topic":{},"request":{},"event":"onPublish"}]`}, nil},
		}},
		{"publish without subscription reaches nobody", []step{
			{`[7,"chan/a","hi"]`, nil, nil},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			s, p := f.open(t, "c1")
			// Replace $SID in inputs too.
			steps := make([]step, len(tc.steps))
			for i, st := range tc.steps {
				st.in = strings.ReplaceAll(st.in, "$SID", s.ID())
				steps[i] = st
			}
			runSteps(t, f, s, p, steps)
		})
	}
}

func TestMalformedIsProtocolError(t *testing.T) {
	inputs := []string{
		``, `not json`, `{}`, `[]`, `"x"`, `null`, `1`, `[1,2,3`, `[2,"c","u"] x`,
		"[5,\"\xff\"]", // invalid UTF-8
		`[9]`, `[-1]`, `[1000]`, `[0,"x",1,"y"]`, `[3,"c",1]`, `[4,"c","u","d"]`, `[8,"t",1]`,
		`["2","c","u"]`, `[2.0,"c","u"]`, `[1e0,"p","u"]`, `[true,"p","u"]`, `[null]`,
		`[1,"p"]`, `[1,"p","u","x"]`, `[1,1,"u"]`, `[1,"p",null]`,
		`[2]`, `[2,"c"]`, `[2,null,"u"]`, `[2,true,"u"]`, `[2,{},"u"]`, `[2,[],"u"]`, `[2,"c",5]`, `[2,"c",null]`,
		`[5]`, `[5,"t","x"]`, `[5,1]`, `[5,null]`, `[6]`, `[6,["t"]]`,
		`[7,"t"]`, `[7,1,2]`, `[7,"t",1,2]`, `[7,"t",1,"true"]`, `[7,"t",1,null]`, `[7,"t",1,[1]]`,
		`[7,"t",1,[],"x"]`, `[7,"t",1,[],[2]]`, `[7,"t",1,true,[],3]`,
	}
	for _, in := range inputs {
		f := newFixture(t, nil)
		s, p := f.open(t, "c1")
		err := s.Handle(context.Background(), []byte(in))
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: err %v, want ErrProtocol", in, err)
		}
		if errors.Is(err, ErrLimit) {
			t.Errorf("%q: malformed input reported as a limit", in)
		}
		if got := p.take(); len(got) != 0 {
			t.Errorf("%q: sent %q", in, got)
		}
	}
}

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

func TestResolveCURIE(t *testing.T) {
	s := &Session{prefixes: map[string]string{
		"calc": "http://example.com/calc",
		"p":    "base",
		"":     "empty",
	}}
	cases := map[string]string{
		"calc:add":               "http://example.com/calc#add",
		"p:x":                    "base#x",
		"p:x:y":                  "base#x", // PHP list($prefix, $action) = explode(':') drops the rest
		"p:":                     "base#",
		":x":                     "empty#x",
		"q:x":                    "q:x",
		"calc":                   "calc",
		"http://example.com/a:b": "http://example.com/a:b",
		"p:https://x":            "p:https://x", // contains a scheme anywhere: untouched
		"p:httpsss://x":          "p:httpsss://x",
		"p:http:/x":              "base#http",
		"p:httpx://x":            "base#httpx",
	}
	for in, want := range cases {
		if got := s.resolve(in); got != want {
			t.Errorf("resolve(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPublishFanoutAcrossSessions(t *testing.T) {
	f := newFixture(t, nil)
	a, pa := f.open(t, "a")
	b, pb := f.open(t, "b")
	c, pc := f.open(t, "c")
	ctx := context.Background()
	for _, s := range []*Session{a, b, c} {
		if err := s.Handle(ctx, []byte(`[5,"chan/r"]`)); err != nil {
			t.Fatal(err)
		}
	}
	pa.take()
	pb.take()
	pc.take()

	type expect struct{ a, b, c int }
	cases := []struct {
		msg  string
		want expect
	}{
		{`[7,"chan/r","x"]`, expect{1, 1, 1}},
		{`[7,"chan/r","x",true]`, expect{0, 1, 1}},
		{`[7,"chan/r","x",false]`, expect{1, 1, 1}},
		{`[7,"chan/r","x",["` + b.ID() + `"]]`, expect{1, 0, 1}},
		{`[7,"chan/r","x",[],["` + b.ID() + `"]]`, expect{0, 1, 0}},
		{`[7,"chan/r","x",["` + b.ID() + `"],["` + b.ID() + `","` + c.ID() + `"]]`, expect{0, 0, 1}},
		{`[7,"chan/r","x",true,["` + a.ID() + `","` + c.ID() + `"]]`, expect{0, 0, 1}},
	}
	for _, tc := range cases {
		if err := a.Handle(ctx, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		got := expect{len(pa.take()), len(pb.take()), len(pc.take())}
		if got != tc.want {
			t.Errorf("%s: deliveries %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}

func TestFanoutSharesOneEncoding(t *testing.T) {
	f := newFixture(t, nil)
	var peers []*fakePeer
	for i := 0; i < 5; i++ {
		s, p := f.open(t, "c"+string(rune('0'+i)))
		if err := s.Handle(context.Background(), []byte(`[5,"chan/x"]`)); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	for _, p := range peers {
		p.take()
	}
	if err := f.node.Topic("chan/x").Broadcast(map[string]int{"n": 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	var first []byte
	for i, p := range peers {
		got := p.take()
		if len(got) != 1 {
			t.Fatalf("peer %d got %q", i, got)
		}
		if !jsonEqual(t, got[0], `[8,"chan/x",{"n":1}]`) {
			t.Errorf("peer %d got %s", i, got[0])
		}
		if i == 0 {
			first = got[0]
		} else if &got[0][0] != &first[0] {
			t.Errorf("peer %d got a different backing array: the event was encoded more than once", i)
		}
	}
	if err := f.node.Topic("chan/x").Broadcast(make(chan int), nil, nil); err == nil {
		t.Error("unencodable event: want error")
	}
	if n := f.node.Topic("chan/x").Count(); n != 5 {
		t.Errorf("Count = %d", n)
	}
	if n := f.node.Topic("chan/none").Count(); n != 0 {
		t.Errorf("Count of unknown topic = %d", n)
	}
}

func TestCloseUnsubscribesAndForgets(t *testing.T) {
	f := newFixture(t, nil)
	a, _ := f.open(t, "a")
	b, pb := f.open(t, "b")
	ctx := context.Background()
	for _, m := range []string{`[5,"chan/1"]`, `[5,"chan/2"]`} {
		if err := a.Handle(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Handle(ctx, []byte(`[5,"chan/1"]`)); err != nil {
		t.Fatal(err)
	}
	pb.take()
	f.topic.takeCalls()

	if _, ok := f.node.Clients().GetClient("a"); !ok {
		t.Fatal("a not indexed")
	}
	a.Close()
	a.Close() // idempotent
	f.settle(t)
	expectMsgs(t, pb.take(), []string{`[8,"chan/1",{"msg":"a has left chan/1"}]`}, b.ID())
	calls := f.topic.takeCalls()
	if want := []string{"unsub a chan/1", "unsub a chan/2"}; strings.Join(calls, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", calls, want)
	}
	if _, ok := f.node.Clients().GetClient("a"); ok {
		t.Error("a still indexed after Close")
	}
	if err := a.Handle(ctx, []byte(`[5,"chan/3"]`)); !errors.Is(err, ErrClosed) {
		t.Errorf("Handle after Close: %v", err)
	}
	if n := f.node.broker.topicCount(); n != 1 {
		t.Errorf("%d topics left, want 1 (chan/2 must be deleted when empty)", n)
	}
	b.Close()
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("%d topics left after everyone closed", n)
	}
}

func TestUnsubscribeRemovesEmptyTopic(t *testing.T) {
	f := newFixture(t, nil)
	s, _ := f.open(t, "a")
	ctx := context.Background()
	_ = s.Handle(ctx, []byte(`[5,"chan/1"]`))
	_ = s.Handle(ctx, []byte(`[5,"deny/1"]`))
	if n := f.node.broker.topicCount(); n != 1 {
		t.Fatalf("topics %d", n)
	}
	_ = s.Handle(ctx, []byte(`[6,"chan/1"]`))
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("topics %d after unsubscribe", n)
	}
}

func TestCloseDuringHandle(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = -1 })
	f.topic.slowSubscribe = true
	s, _ := f.open(t, "a")
	done := make(chan error, 1)
	go func() { done <- s.Handle(context.Background(), []byte(`[5,"chan/1"]`)) }()
	// Wait until the handler is running.
	deadline := time.Now().Add(5 * time.Second)
	for f.node.broker.count("chan/1") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscribe never started")
		}
		time.Sleep(time.Millisecond)
	}
	s.Close() // must not wait for the handler, and must cancel its ctx
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Handle: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context was not cancelled by Close")
	}
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("cleanup after in-flight Handle left %d topics", n)
	}
	if _, ok := f.node.Clients().GetClient("a"); ok {
		t.Error("session still indexed")
	}
}

func TestCallTimeout(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = 20 * time.Millisecond })
	s, p := f.open(t, "a")
	if err := s.Handle(context.Background(), []byte(`[2,"c","sample/slow"]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, p.take(), []string{`[4,"c","sample/slow","context deadline exceeded",{"code":500,"rpc":{},"params":[],"request":{}}]`}, s.ID())
}

func TestConcurrentHandleRejected(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = -1 })
	s, _ := f.open(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for {
			// The probe below may hold the session at the instant this
			// starts; that is the misuse being tested, seen from this side.
			err := s.Handle(ctx, []byte(`[2,"c","sample/slow"]`))
			if !errors.Is(err, errConcurrentHandle) {
				done <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.Handle(context.Background(), []byte(`[2,"c","sample/echo"]`))
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				t.Fatalf("misuse reported as protocol error: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("concurrent Handle never detected")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestClientManipulator(t *testing.T) {
	f := newFixture(t, nil)
	// Plugins capture the registry's manipulator before the node exists;
	// it must see the node's clients.
	m := f.reg.Clients()
	a, _ := f.open(t, "a", ClientInfo{ConnID: "a", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}, Firewall: "main"}})
	a2, _ := f.open(t, "a2", ClientInfo{ConnID: "a2", Identity: handler.Identity{UserIdentifier: "alice"}})
	anon, _ := f.open(t, "n", ClientInfo{ConnID: "n", Identity: handler.Identity{Anonymous: true}})
	empty, _ := f.open(t, "e", ClientInfo{ConnID: "e"})

	if anon.UserIdentifier() != "anon-"+anon.ID() || !anon.Anonymous() {
		t.Errorf("anonymous naming: %q", anon.UserIdentifier())
	}
	if empty.UserIdentifier() != "anon-"+empty.ID() || !empty.Anonymous() {
		t.Errorf("empty user must be anonymous: %q", empty.UserIdentifier())
	}
	c, ok := m.GetClient("a")
	if !ok || c.SessionID() != a.ID() || c.UserIdentifier() != "alice" || c.Firewall() != "main" || c.Roles()[0] != "ROLE_USER" {
		t.Errorf("GetClient: %v %v", c, ok)
	}
	c.Roles()[0] = "mutated"
	if a.Roles()[0] != "ROLE_USER" {
		t.Error("Roles exposes internal slice")
	}
	if _, ok := m.GetClient("zz"); ok {
		t.Error("GetClient of unknown conn")
	}
	ids := func(cs []handler.Client) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ConnID())
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	if got := ids(m.FindAllByUsername("alice")); got != "a,a2" {
		t.Errorf("FindAllByUsername = %s", got)
	}
	if c, ok := m.FindByUsername("alice"); !ok || c.ConnID() != "a" {
		t.Errorf("FindByUsername must return the oldest connection, got %v %v", c, ok)
	}
	if _, ok := m.FindByUsername("nobody"); ok {
		t.Error("FindByUsername(nobody) found a client")
	}
	if got := ids(m.FindAllByUsername("anon-" + anon.ID())); got != "n" {
		t.Errorf("FindAllByUsername(anon) = %s", got)
	}
	if got := ids(m.FindByRoles([]string{"ROLE_NOPE", "ROLE_USER"})); got != "a" {
		t.Errorf("FindByRoles = %s", got)
	}
	if got := ids(m.FindByRoles(nil)); got != "" {
		t.Errorf("FindByRoles(nil) = %s", got)
	}
	if got := ids(m.GetAll(false)); got != "a,a2" {
		t.Errorf("GetAll(false) = %s", got)
	}
	if got := ids(m.GetAll(true)); got != "a,a2,e,n" {
		t.Errorf("GetAll(true) = %s", got)
	}
	a2.Close()
	if got := ids(f.node.Clients().FindAllByUsername("alice")); got != "a" {
		t.Errorf("after close FindByUsername = %s", got)
	}
}

func TestRegistry(t *testing.T) {
	r := handler.NewRegistry()
	if c := r.Clients(); c != nil {
		if _, ok := c.GetClient("x"); ok || c.GetAll(true) != nil || c.FindAllByUsername("u") != nil {
			t.Error("unbound manipulator found clients")
		}
	}
	if err := r.AddRPC(testRPC{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRPC(testRPC{}); err == nil {
		t.Error("duplicate RPC accepted")
	}
	if err := r.AddTopic(&testTopic{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddTopic(&testTopic{}); err == nil {
		t.Error("duplicate topic accepted")
	}
	if err := r.AddRPC(nil); err == nil {
		t.Error("nil RPC accepted")
	}
	// CheckRoutes must not bind: a node can still be built afterwards.
	if err := CheckRoutes(RoutesConfig{RPC: map[string]RouteConfig{"r": {Pattern: "a/{method}", Handler: "test.rpc"}}}, r); err != nil {
		t.Fatal(err)
	}
	if _, err := NewNode(NodeConfig{Handlers: r}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRPC(namedRPC("late")); !errors.Is(err, handler.ErrFrozen) {
		t.Errorf("AddRPC after bind: %v", err)
	}
	if _, err := NewNode(NodeConfig{Handlers: r}); err == nil {
		t.Error("registry shared by two nodes")
	}
}

type namedRPC string

func (n namedRPC) Name() string                          { return string(n) }
func (n namedRPC) Methods() map[string]handler.RPCMethod { return nil }

type caseClashRPC struct{}

func (caseClashRPC) Name() string { return "clash" }
func (caseClashRPC) Methods() map[string]handler.RPCMethod {
	m := func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) { return 1, nil }
	return map[string]handler.RPCMethod{"doIt": m, "doit": m}
}

func TestNewNodeErrors(t *testing.T) {
	cases := []struct {
		name   string
		routes RoutesConfig
		want   []string // substrings of the error
	}{
		{"unknown rpc handler", RoutesConfig{RPC: map[string]RouteConfig{"r1": {Pattern: "a/{method}", Handler: "nope"}}}, []string{`"r1"`, `"nope"`}},
		{"topic handler used as rpc", RoutesConfig{RPC: map[string]RouteConfig{"r1": {Pattern: "a", Handler: "test.topic"}}}, []string{`"r1"`, `"test.topic"`}},
		{"unknown topic handler", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a", Handler: "test.rpc"}}}, []string{`"t1"`, `"test.rpc"`}},
		{"no handler", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a"}}}, []string{`"t1"`, "no handler"}},
		{"empty pattern", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Handler: "test.topic"}}}, []string{`"t1"`, "empty pattern"}},
		{"mixed segment", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/user-{id}", Handler: "test.topic"}}}, []string{`"t1"`, `"user-{id}"`}},
		{"unbalanced brace", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id", Handler: "test.topic"}}}, []string{`"t1"`, `"{id"`}},
		{"bad placeholder name", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{1x}", Handler: "test.topic"}}}, []string{`"t1"`, `{1x}`}},
		{"long placeholder name", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{" + strings.Repeat("x", 33) + "}", Handler: "test.topic"}}}, []string{`"t1"`, "longer"}},
		{"duplicate placeholder", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "{a}/{a}", Handler: "test.topic"}}}, []string{`"t1"`, "{a}"}},
		{"bad regexp", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id}", Handler: "test.topic", Requirements: map[string]string{"id": `(\d+`}}}}, []string{`"t1"`, `{id}`, `(\d+`}},
		{"PCRE-only regexp", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id}", Handler: "test.topic", Requirements: map[string]string{"id": `(?=x)x`}}}}, []string{`"t1"`, `{id}`}},
		{"requirement without placeholder", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id}", Handler: "test.topic", Requirements: map[string]string{"room": `\d+`}}}}, []string{`"t1"`, `"room"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := handler.NewRegistry()
			_ = reg.AddRPC(testRPC{})
			_ = reg.AddTopic(&testTopic{})
			checkErr := CheckRoutes(tc.routes, reg)
			_, err := NewNode(NodeConfig{Routes: tc.routes, Handlers: reg})
			if err == nil {
				t.Fatal("no error")
			}
			if checkErr == nil || checkErr.Error() != err.Error() {
				t.Errorf("CheckRoutes = %v, NewNode = %v", checkErr, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
	reg := handler.NewRegistry()
	_ = reg.AddRPC(caseClashRPC{})
	if _, err := NewNode(NodeConfig{Handlers: reg}); err == nil || !strings.Contains(err.Error(), "differ only in case") {
		t.Errorf("case clash: %v", err)
	}
}

func TestPeerRefusalIsHarmless(t *testing.T) {
	f := newFixture(t, nil)
	s, p := f.open(t, "a")
	p.refuse = true
	for _, m := range []string{`[5,"chan/1"]`, `[2,"c","sample/echo"]`, `[7,"chan/1","x"]`} {
		if err := s.Handle(context.Background(), []byte(m)); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

// TestConcurrentSessions is for -race: many sessions subscribing,
// publishing, broadcasting and closing at once.
func TestConcurrentSessions(t *testing.T) {
	f := newFixture(t, nil)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := &fakePeer{}
			s := f.node.Open(p, ClientInfo{ConnID: "c" + string(rune('a'+i))})
			ctx := context.Background()
			for j := 0; j < 50; j++ {
				room := []string{`"chan/1"`, `"chan/2"`, `"chan/3"`}[j%3]
				for _, m := range []string{`[5,` + room + `]`, `[7,` + room + `,{"j":1}]`, `[2,"c","sample/echo",1]`, `[6,` + room + `]`} {
					if err := s.Handle(ctx, []byte(m)); err != nil {
						t.Error(err)
						return
					}
				}
				_ = f.node.Topic("chan/1").Broadcast("x", nil, nil)
				f.node.Clients().GetAll(true)
				p.take()
			}
			_ = s.Handle(ctx, []byte(`[5,"chan/1"]`))
			s.Close()
		}(i)
	}
	wg.Wait()
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("%d topics left", n)
	}
	if n := len(f.node.Clients().GetAll(true)); n != 0 {
		t.Errorf("%d clients left", n)
	}
}
