package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

func boolp(b bool) *bool { return &b }

// accessRoutes adds routes with access rules to the test fixture.
func accessRoutes(c *NodeConfig) {
	c.Routes.RPC["admin"] = RouteConfig{Pattern: "admin/{method}", Handler: "test.rpc", Roles: []string{"ROLE_ADMIN"}}
	c.Routes.RPC["members"] = RouteConfig{Pattern: "members/{method}", Handler: "test.rpc", Anonymous: boolp(false)}
	c.Routes.Topics["private"] = RouteConfig{Pattern: "private/{room}", Handler: "test.topic", Anonymous: boolp(false)}
	c.Routes.Topics["staff"] = RouteConfig{Pattern: "staff/{room}", Handler: "test.topic", Roles: []string{"ROLE_ADMIN", "ROLE_STAFF"}}
	c.Realm = "realm1"
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

func runSteps2(t *testing.T, s *Session, p *fakePeer, steps []step) {
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
		want := make([]string, len(st.want))
		for j, w := range st.want {
			want[j] = strings.ReplaceAll(w, "$NSID", s.ID())
		}
		expectMsgs(t, got, want, s.ID())
	}
}

func TestV2Welcome(t *testing.T) {
	f := newFixture(t, accessRoutes)
	p := &fakePeer{}
	s := f.node.OpenProtocol(p, ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER", "ROLE_ADMIN"}, Firewall: "main"}}, ProtocolV2JSON)
	if err := s.Handle(context.Background(), []byte(`[1,"realm1",{}]`)); err != nil {
		t.Fatal(err)
	}
	msgs := p.take()
	if len(msgs) != 1 {
		t.Fatalf("got %q", msgs)
	}
	var w []json.RawMessage
	if err := json.Unmarshal(msgs[0], &w); err != nil || len(w) != 3 || string(w[0]) != "2" {
		t.Fatalf("WELCOME %s", msgs[0])
	}
	id, err := strconv.ParseUint(string(w[1]), 10, 64)
	if err != nil || id == 0 || id > 1<<53 || strconv.FormatUint(id, 10) != s.ID() {
		t.Errorf("session id %s (ID() %s) must be an integer in [1, 2^53]", w[1], s.ID())
	}
	var d struct {
		Realm, AuthID, AuthRole, AuthMethod string
		AuthExtra                           struct {
			Roles    []string
			Firewall string
		}
		Roles map[string]any
	}
	if err := json.Unmarshal(w[2], &d); err != nil {
		t.Fatal(err)
	}
	if d.Realm != "realm1" || d.AuthID != "alice" || d.AuthRole != "ROLE_USER" || d.AuthMethod != "cookie" ||
		strings.Join(d.AuthExtra.Roles, ",") != "ROLE_USER,ROLE_ADMIN" || d.AuthExtra.Firewall != "main" ||
		d.Roles["broker"] == nil || d.Roles["dealer"] == nil {
		t.Errorf("WELCOME details %s", w[2])
	}

	anon, ap := f.openV2(t, ClientInfo{ConnID: "c2", Identity: handler.Identity{Anonymous: true}})
	_ = ap
	if anon.UserIdentifier() != "anon-"+anon.ID() {
		t.Errorf("anonymous v2 client is %q, want anon-<session id>", anon.UserIdentifier())
	}
	if s.Protocol() != ProtocolV2JSON || s.Protocol().Subprotocol() != "wamp.2.json" {
		t.Error("Protocol")
	}

	// Session ids differ.
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		x := f.node.OpenProtocol(&fakePeer{}, ClientInfo{ConnID: "x" + strconv.Itoa(i)}, ProtocolV2JSON)
		if seen[x.ID()] {
			t.Fatal("v2 session id repeats")
		}
		seen[x.ID()] = true
		x.Close()
	}
}

func TestV2Handshake(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string
		err  error
	}{
		{"wrong realm", `[1,"other",{}]`, `[3,{"message":"no such realm"},"wamp.error.no_such_realm"]`, ErrGoodbye},
		{"call before hello", `[48,1,{},"sample/echo"]`, ``, ErrProtocol},
		{"malformed", `[1,"realm1"`, ``, ErrProtocol},
		{"v1 message", `[2,"c","sample/echo"]`, ``, ErrProtocol},
		{"hello details not a dict", `[1,"realm1",[]]`, ``, ErrProtocol},
		{"abort before hello", `[3,{},"wamp.close.normal"]`, ``, ErrGoodbye},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, accessRoutes)
			p := &fakePeer{}
			s := f.node.OpenProtocol(p, ClientInfo{ConnID: "c"}, ProtocolV2JSON)
			defer s.Close()
			err := s.Handle(context.Background(), []byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			got := p.take()
			if tc.want != "" {
				expectMsgs(t, got, []string{tc.want}, "")
			} else if errors.Is(tc.err, ErrProtocol) {
				if len(got) != 1 || !strings.Contains(string(got[0]), `"wamp.error.protocol_violation"]`) {
					t.Errorf("want ABORT protocol_violation, got %q", got)
				}
			}
		})
	}
}

func TestV2Conformance(t *testing.T) {
	cases := []struct {
		name  string
		info  ClientInfo
		steps []step
	}{
		{"call args and kwargs", ClientInfo{}, []step{
			{in: `[48,1,{},"sample/echo",[1,2,3]]`, want: []string{`[50,1,{},[[1,2,3]]]`}},
			{in: `[48,2,{},"sample/echo",[[4,5]]]`, want: []string{`[50,2,{},[[4,5]]]`}},
			{in: `[48,3,{},"sample/echo",[{"a":1}]]`, want: []string{`[50,3,{},[{"a":1}]]`}},
			{in: `[48,4,{},"sample/echo",[],{"k":"v"}]`, want: []string{`[50,4,{},[{"k":"v"}]]`}},
			{in: `[48,5,{},"sample/echo"]`, want: []string{`[50,5,{},[[]]]`}},
			{in: `[48,6,{},"sample/scalar"]`, want: []string{`[50,6,{},[5]]`}},
			{in: `[48,7,{},"sample/get_user"]`, want: []string{`[50,7,{},[["getUser","sample","sample/get_user","get_user"]]]`}},
		}},
		{"call errors", ClientInfo{}, []step{
			{in: `[48,1,{},"sample/fail"]`, want: []string{`[8,48,1,{},"wamp.error.runtime_error",["boom"],{"code":500}]`}},
			{in: `[48,2,{},"sample/custom"]`, want: []string{`[8,48,2,{},"err:x",["nope"],{"code":500,"details":{"a":1}}]`}},
			{in: `[48,3,{},"sample/customcode"]`, want: []string{`[8,48,3,{},"wamp.error.runtime_error",["forbidden"],{"code":403}]`}},
			{in: `[48,4,{},"sample/nil"]`, want: []string{`[8,48,4,{},"wamp.error.runtime_error",["RPC Error"],{"code":500}]`}},
			{in: `[48,5,{},"sample/panic"]`, want: []string{`[8,48,5,{},"wamp.error.runtime_error",["Internal Server Error"],{"code":500}]`}},
			{in: `[48,6,{},"nope/x"]`, want: []string{`[8,48,6,{},"wamp.error.no_such_procedure",["Unable to find route for \"nope/x\""]]`}},
			{in: `[48,7,{},"sample/missing"]`, want: []string{`[8,48,7,{},"wamp.error.no_such_procedure",["Could not execute RPC callback, method not found"]]`}},
			{in: `[64,8,{},"my.proc"]`, want: []string{`[8,64,8,{},"wamp.error.not_authorized",["this router does not accept callees"]]`}},
			{in: `[49,8,{}]`},
		}},
		{"subscribe and unsubscribe", ClientInfo{ConnID: "c1"}, []step{
			{in: `[32,1,{},"chan/a"]`, want: []string{`[33,1,1]`, `[36,1,"$PUB",{},[{"msg":"c1 has joined chan/a"}]]`}},
			{in: `[32,2,{},"chan/a"]`, want: []string{`[33,2,1]`}},
			{in: `[32,3,{"match":"prefix"},"chan"]`, want: []string{`[8,32,3,{},"wamp.error.invalid_argument",["only exact topic matching is supported"]]`}},
			{in: `[32,4,{},"nowhere"]`, want: []string{`[8,32,4,{},"wamp.error.invalid_uri",["no route for topic \"nowhere\""]]`}},
			{in: `[34,5,99]`, want: []string{`[8,34,5,{},"wamp.error.no_such_subscription",["no such subscription"]]`}},
			{in: `[34,6,1]`, want: []string{`[35,6]`}},
			{in: `[34,7,1]`, want: []string{`[8,34,7,{},"wamp.error.no_such_subscription",["no such subscription"]]`}},
			{in: `[32,8,{},"deny/x"]`, want: []string{`[33,8,2]`, `[35,0,{"subscription":2,"reason":"wamp.error.runtime_error"}]`}},
		}},
		{"publish", ClientInfo{ConnID: "c1"}, []step{
			{in: `[32,1,{},"chan/a"]`, want: []string{`[33,1,1]`, `[36,1,"$PUB",{},[{"msg":"c1 has joined chan/a"}]]`}},
			// exclude_me defaults to true in v2
			{in: `[16,2,{},"chan/a",["hi"]]`},
			{in: `[16,3,{"acknowledge":true},"chan/a",["hi"]]`, want: []string{`[17,3,"$PUB"]`}},
			{in: `[16,4,{"exclude_me":false},"chan/a",["hi"]]`, want: []string{`[36,1,"$PUB",{},[{"msg":"hi"}]]`}},
			{in: `[16,5,{"exclude_me":false},"chan/a",[],{"k":1}]`, want: []string{`[36,1,"$PUB",{},[{"msg":{"k":1}}]]`}},
			{in: `[16,6,{"exclude_me":false},"chan/a",[1,2]]`, want: []string{`[36,1,"$PUB",{},[{"msg":[1,2]}]]`}},
			{in: `[16,7,{"exclude_me":false},"chan/a"]`, want: []string{`[36,1,"$PUB",{},[{"msg":null}]]`}},
			{in: `[16,8,{"exclude_me":false,"eligible":[1]},"chan/a",["x"]]`},
			{in: `[16,9,{"exclude_me":false,"eligible_authid":["nobody"]},"chan/a",["x"]]`},
			{in: `[16,10,{"exclude_me":false,"eligible_authid":["user-c1"]},"chan/a",["y"]]`, want: []string{`[36,1,"$PUB",{},[{"msg":"y"}]]`}},
			{in: `[16,11,{"exclude_me":false,"exclude_authid":["user-c1"]},"chan/a",["x"]]`},
			{in: `[16,12,{"acknowledge":true},"chan/a",["fail"]]`, want: []string{`[8,16,12,{},"wamp.error.runtime_error",["publish failed"],{"code":500}]`}},
			{in: `[16,13,{"acknowledge":true},"nowhere",["x"]]`, want: []string{`[8,16,13,{},"wamp.error.invalid_uri",["no route for topic \"nowhere\""]]`}},
			{in: `[16,14,{"acknowledge":true,"exclude":"x"},"chan/a",["x"]]`, want: []string{`[8,16,14,{},"wamp.error.invalid_argument",["invalid PUBLISH options"]]`}},
			{in: `[16,15,{},"nowhere",["x"]]`},
		}},
		{"access rules for anonymous", ClientInfo{ConnID: "c1", Identity: handler.Identity{Anonymous: true}}, []step{
			{in: `[48,1,{},"admin/echo",[1]]`, want: []string{`[8,48,1,{},"wamp.error.not_authorized",["Access denied"]]`}},
			{in: `[48,2,{},"members/echo",[1]]`, want: []string{`[8,48,2,{},"wamp.error.not_authorized",["Access denied"]]`}},
			{in: `[48,3,{},"sample/echo",[1]]`, want: []string{`[50,3,{},[[1]]]`}},
			{in: `[32,4,{},"private/a"]`, want: []string{`[8,32,4,{},"wamp.error.not_authorized",["Access denied"]]`}},
			{in: `[16,5,{"acknowledge":true},"private/a",[1]]`, want: []string{`[8,16,5,{},"wamp.error.not_authorized",["Access denied"]]`}},
			{in: `[16,6,{},"private/a",[1]]`},
		}},
		{"access rules by role", ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "bob", Roles: []string{"ROLE_USER"}}}, []step{
			{in: `[48,1,{},"admin/echo",[1]]`, want: []string{`[8,48,1,{},"wamp.error.not_authorized",["Access denied"]]`}},
			{in: `[48,2,{},"members/echo",[1]]`, want: []string{`[50,2,{},[[1]]]`}},
			{in: `[32,3,{},"staff/a"]`, want: []string{`[8,32,3,{},"wamp.error.not_authorized",["Access denied"]]`}},
			{in: `[32,4,{},"private/a"]`, want: []string{`[33,4,1]`, `[36,1,"$PUB",{},[{"msg":"c1 has joined private/a"}]]`}},
		}},
		{"admin", ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_USER", "ROLE_STAFF"}}}, []step{
			{in: `[32,1,{},"staff/a"]`, want: []string{`[33,1,1]`, `[36,1,"$PUB",{},[{"msg":"c1 has joined staff/a"}]]`}},
		}},
		{"violations", ClientInfo{}, []step{
			{in: `[48,0,{},"sample/echo"]`, want: []string{`[3,{"message":"wamp protocol error: CALL request id 0 is outside [1, 2^53]"},"wamp.error.protocol_violation"]`}, err: ErrProtocol},
		}},
		{"more violations", ClientInfo{}, []step{
			{in: `[48,9007199254740993,{},"sample/echo"]`, want: []string{`[3,{"message":"wamp protocol error: CALL request id must be an integer in [1, 2^53]"},"wamp.error.protocol_violation"]`}, err: ErrProtocol},
		}},
		{"hello twice", ClientInfo{}, []step{
			{in: `[1,"realm1",{}]`, want: []string{`[3,{"message":"wamp protocol error: HELLO in an established session"},"wamp.error.protocol_violation"]`}, err: ErrProtocol},
		}},
		{"client ERROR is a violation", ClientInfo{}, []step{
			{in: `[8,68,1,{},"x"]`, want: []string{`[3,{"message":"wamp protocol error: unexpected WAMP v2 message type 8"},"wamp.error.protocol_violation"]`}, err: ErrProtocol},
		}},
		{"goodbye", ClientInfo{ConnID: "c1"}, []step{
			{in: `[32,1,{},"chan/a"]`, want: []string{`[33,1,1]`, `[36,1,"$PUB",{},[{"msg":"c1 has joined chan/a"}]]`}},
			{in: `[6,{},"wamp.close.close_realm"]`, want: []string{`[6,{},"wamp.close.goodbye_and_out"]`}, err: ErrGoodbye},
			{in: `[48,1,{},"sample/echo"]`, err: ErrClosed},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, accessRoutes)
			info := tc.info
			if info.ConnID == "" {
				info.ConnID = "c1"
			}
			if info.Identity.UserIdentifier == "" && !info.Identity.Anonymous {
				info.Identity.UserIdentifier = "user-" + info.ConnID
			}
			s, p := f.openV2(t, info)
			for i, st := range tc.steps {
				err := s.Handle(context.Background(), []byte(st.in))
				switch {
				case st.err == nil && err != nil:
					t.Errorf("step %d %s: unexpected error %v", i, st.in, err)
				case st.err != nil && !errors.Is(err, st.err):
					t.Errorf("step %d %s: error %v, want %v", i, st.in, err, st.err)
				}
				got := p.take()
				// Publication ids are random: replace them before comparing.
				for j := range got {
					got[j] = normalizePub(got[j])
				}
				expectMsgs(t, got, st.want, s.ID())
			}
			s.Close()
			if n := f.node.broker.topicCount(); n != 0 {
				t.Errorf("%d topics left after Close", n)
			}
		})
	}
}

// normalizePub replaces the publication id of EVENT and PUBLISHED by the
// string "$PUB" after checking its range.
func normalizePub(m []byte) []byte {
	var arr []json.RawMessage
	if json.Unmarshal(m, &arr) != nil || len(arr) < 3 {
		return m
	}
	i := -1
	switch string(arr[0]) {
	case "36":
		i = 2
	case "17":
		i = 2
	}
	if i < 0 {
		return m
	}
	id, err := strconv.ParseUint(string(arr[i]), 10, 64)
	if err != nil || id == 0 || id > 1<<53 {
		return m
	}
	arr[i] = json.RawMessage(`"$PUB"`)
	out, _ := json.Marshal(arr)
	return out
}

// TestMixedTopic: a v1 publisher reaches v2 subscribers of the same topic
// and the other way round, and each protocol's EVENT is encoded once.
func TestMixedTopic(t *testing.T) {
	f := newFixture(t, nil)
	v1a, p1a := f.open(t, "v1a")
	v1b, p1b := f.open(t, "v1b")
	v2a, p2a := f.openV2(t, ClientInfo{ConnID: "v2a", Identity: handler.Identity{UserIdentifier: "carol"}})
	v2b, p2b := f.openV2(t, ClientInfo{ConnID: "v2b", Identity: handler.Identity{UserIdentifier: "dave"}})
	ctx := context.Background()
	for _, s := range []*Session{v1a, v1b} {
		if err := s.Handle(ctx, []byte(`[5,"chan/mix"]`)); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range []*Session{v2a, v2b} {
		if err := s.Handle(ctx, []byte(`[32,`+strconv.Itoa(i+1)+`,{},"chan/mix"]`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*fakePeer{p1a, p1b, p2a, p2b} {
		p.take()
	}

	// v1 publish, excludeMe: both v2 and the other v1 get it.
	if err := v1a.Handle(ctx, []byte(`[7,"chan/mix",{"t":1},true]`)); err != nil {
		t.Fatal(err)
	}
	if got := p1a.take(); len(got) != 0 {
		t.Errorf("excluded v1 publisher got %q", got)
	}
	e1 := p1b.take()
	expectMsgs(t, e1, []string{`[8,"chan/mix",{"msg":{"t":1}}]`}, "")
	e2a, e2b := p2a.take(), p2b.take()
	if len(e2a) != 1 || len(e2b) != 1 {
		t.Fatalf("v2 subscribers got %q and %q", e2a, e2b)
	}
	expectMsgs(t, [][]byte{normalizePub(e2a[0])}, []string{`[36,1,"$PUB",{},[{"msg":{"t":1}}]]`}, "")
	if &e2a[0][0] != &e2b[0][0] {
		t.Error("v2 EVENT encoded once per subscriber, want once per protocol")
	}

	// v2 publish excluding one v1 session by id, eligible by authid
	// mixing: v2 exclude_me default.
	if err := v2a.Handle(ctx, []byte(`[16,9,{"exclude":[],"acknowledge":true},"chan/mix",["from v2"]]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, [][]byte{normalizePub(p2a.take()[0])}, []string{`[17,9,"$PUB"]`}, "")
	m1a, m1b, m2b := p1a.take(), p1b.take(), p2b.take()
	expectMsgs(t, m1a, []string{`[8,"chan/mix",{"msg":"from v2"}]`}, "")
	expectMsgs(t, m1b, []string{`[8,"chan/mix",{"msg":"from v2"}]`}, "")
	if &m1a[0][0] != &m1b[0][0] {
		t.Error("v1 EVENT encoded once per subscriber, want once per protocol")
	}
	if len(m2b) != 1 {
		t.Fatalf("v2 subscriber got %q", m2b)
	}

	// A v1 client can name a v2 session in its eligible list.
	if err := v1a.Handle(ctx, []byte(`[7,"chan/mix","only dave",[],["`+v2b.ID()+`"]]`)); err != nil {
		t.Fatal(err)
	}
	if len(p1a.take())+len(p1b.take())+len(p2a.take()) != 0 {
		t.Error("non-eligible sessions got the event")
	}
	if got := p2b.take(); len(got) != 1 || !strings.Contains(string(got[0]), "only dave") {
		t.Errorf("eligible v2 session got %q", got)
	}
	for _, s := range []*Session{v1a, v1b, v2a, v2b} {
		s.Close()
	}
	if st := f.node.Stats(); st.Topics != 0 || st.Subscriptions != 0 || st.Sessions[ProtocolV1] != 0 || st.Sessions[ProtocolV2JSON] != 0 {
		t.Errorf("stats after close %+v", st)
	}
}

func TestV1AccessRules(t *testing.T) {
	f := newFixture(t, accessRoutes)
	anon, p := f.open(t, "n", ClientInfo{ConnID: "n", Identity: handler.Identity{Anonymous: true}})
	runSteps(t, f, anon, p, []step{
		{in: `[2,"c1","admin/echo",1]`, want: []string{`[4,"c1","admin/echo","Access denied",{"code":403,"rpc":{},"params":[1],"request":{}}]`}},
		{in: `[2,"c2","members/echo",1]`, want: []string{`[4,"c2","members/echo","Access denied",{"code":403,"rpc":{},"params":[1],"request":{}}]`}},
		{in: `[5,"private/a"]`, want: []string{`[4,"private/a","private/a","Access denied",{"code":403,"topic":{},"request":{},"event":"onSubscribe"}]`}},
		{in: `[7,"private/a","x"]`, want: []string{`[4,"private/a","private/a","Access denied",{"code":403,"topic":{},"request":{},"event":"onPublish"}]`}},
		{in: `[6,"private/a"]`},
	})
	if n := f.node.broker.count("private/a"); n != 0 {
		t.Errorf("denied subscriber is subscribed (%d)", n)
	}
	if calls := f.topic.takeCalls(); len(calls) != 0 {
		t.Errorf("handler ran for denied requests: %q", calls)
	}
	admin, pa := f.open(t, "a", ClientInfo{ConnID: "a", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}})
	runSteps(t, f, admin, pa, []step{
		{in: `[2,"c1","admin/echo",1]`, want: []string{`[3,"c1",[1]]`}},
		{in: `[5,"staff/a"]`, want: []string{`[8,"staff/a",{"msg":"a has joined staff/a"}]`}},
	})
}

func TestCheckRoutesAccess(t *testing.T) {
	reg := handler.NewRegistry()
	if err := reg.AddRPC(testRPC{}); err != nil {
		t.Fatal(err)
	}
	err := CheckRoutes(RoutesConfig{RPC: map[string]RouteConfig{"x": {Pattern: "x/{method}", Handler: "test.rpc", Roles: []string{" "}}}}, reg)
	if err == nil || !strings.Contains(err.Error(), "empty role") {
		t.Errorf("empty role accepted: %v", err)
	}
}

// recObserver records observer calls.
type recObserver struct {
	mu     sync.Mutex
	in     map[string]int
	out    map[string]int
	calls  map[string]int
	failed int
	misses map[string]int
	denied map[string]int
}

func newRecObserver() *recObserver {
	return &recObserver{in: map[string]int{}, out: map[string]int{}, calls: map[string]int{}, misses: map[string]int{}, denied: map[string]int{}}
}

func (o *recObserver) MessageIn(p Protocol, typ string) {
	o.mu.Lock()
	o.in[p.String()+" "+typ]++
	o.mu.Unlock()
}

func (o *recObserver) MessagesOut(p Protocol, typ string, n int) {
	o.mu.Lock()
	o.out[p.String()+" "+typ] += n
	o.mu.Unlock()
}

func (o *recObserver) Call(h string, d time.Duration, failed bool) {
	o.mu.Lock()
	o.calls[h]++
	if failed {
		o.failed++
	}
	o.mu.Unlock()
}

func (o *recObserver) RoutingMiss(kind string) {
	o.mu.Lock()
	o.misses[kind]++
	o.mu.Unlock()
}

func (o *recObserver) Limit(string) {}

func (o *recObserver) AccessDenied(kind string) {
	o.mu.Lock()
	o.denied[kind]++
	o.mu.Unlock()
}

func TestObserver(t *testing.T) {
	obs := newRecObserver()
	f := newFixture(t, func(c *NodeConfig) { accessRoutes(c); c.Observer = obs })
	s1, _ := f.open(t, "a")
	s2, _ := f.openV2(t, ClientInfo{ConnID: "b", Identity: handler.Identity{Anonymous: true}})
	ctx := context.Background()
	for _, m := range []string{`[2,"c","sample/echo",1]`, `[2,"c","sample/fail"]`, `[2,"c","nope"]`, `[5,"chan/a"]`, `[5,"nope"]`, `[9]`} {
		_ = s1.Handle(ctx, []byte(m))
	}
	for _, m := range []string{`[32,1,{},"chan/a"]`, `[48,2,{},"admin/echo"]`, `[48,3,{},"sample/echo"]`} {
		_ = s2.Handle(ctx, []byte(m))
	}
	st := f.node.Stats()
	if st.Topics != 1 || st.Subscriptions != 2 || st.Sessions[ProtocolV1] != 1 || st.Sessions[ProtocolV2JSON] != 1 {
		t.Errorf("stats %+v", st)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	wantIn := map[string]int{"wamp1 CALL": 3, "wamp1 SUBSCRIBE": 2, "wamp1 INVALID": 1, "wamp2json HELLO": 1, "wamp2json SUBSCRIBE": 1, "wamp2json CALL": 2}
	for k, v := range wantIn {
		if obs.in[k] != v {
			t.Errorf("in[%s] = %d, want %d (all %v)", k, obs.in[k], v, obs.in)
		}
	}
	// Joins: a's join to a (v1), b's join to a (v1) and b (v2).
	wantOut := map[string]int{"wamp1 WELCOME": 1, "wamp1 CALLRESULT": 1, "wamp1 CALLERROR": 2, "wamp1 EVENT": 2, "wamp2json EVENT": 1,
		"wamp2json WELCOME": 1, "wamp2json SUBSCRIBED": 1, "wamp2json ERROR": 1, "wamp2json RESULT": 1}
	for k, v := range wantOut {
		if obs.out[k] != v {
			t.Errorf("out[%s] = %d, want %d (all %v)", k, obs.out[k], v, obs.out)
		}
	}
	if obs.calls["test.rpc"] != 3 || obs.failed != 1 {
		t.Errorf("calls %v failed %d", obs.calls, obs.failed)
	}
	if obs.misses["rpc"] != 1 || obs.misses["topic"] != 1 || obs.denied["rpc"] != 1 {
		t.Errorf("misses %v denied %v", obs.misses, obs.denied)
	}
}

// periodicTopic ticks and counts; pushes broadcast the payload.
type periodicTopic struct {
	testTopic
	ticks atomic.Int64
	after atomic.Int64 // ticks seen after the topic emptied
}

func (*periodicTopic) Name() string          { return "test.periodic" }
func (*periodicTopic) Period() time.Duration { return time.Millisecond }
func (p *periodicTopic) OnTick(ctx context.Context, t handler.TopicRef) {
	p.ticks.Add(1)
	if t.Count() == 0 && ctx.Err() == nil {
		// Possible only in the instant between the last unsubscribe and
		// the cancel; counted, never fatal.
		p.after.Add(1)
	}
	_ = t.Broadcast("tick", nil, nil)
}

func (p *periodicTopic) OnPush(_ context.Context, t handler.TopicRef, req handler.Request, payload json.RawMessage, provider string) error {
	if provider == "fail" {
		return errors.New("push refused")
	}
	if provider == "panic" {
		panic("push panic")
	}
	return t.Broadcast(map[string]any{"pushed": payload, "room": req.Attributes["room"], "via": provider}, nil, nil)
}

func newPeriodicFixture(t *testing.T) (*fixture, *periodicTopic) {
	t.Helper()
	pt := &periodicTopic{}
	f := newFixture(t, func(c *NodeConfig) {
		c.Routes.Topics["tick"] = RouteConfig{Pattern: "tick/{room}", Handler: "test.periodic"}
		if err := c.Handlers.AddTopic(pt); err != nil {
			t.Fatal(err)
		}
	})
	return f, pt
}

func TestPeriodicTopic(t *testing.T) {
	f, pt := newPeriodicFixture(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	// Many sessions subscribe and leave concurrently; one timer per topic.
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := f.node.Open(&fakePeer{}, ClientInfo{ConnID: "c" + strconv.Itoa(i)})
			defer s.Close()
			for j := 0; j < 20; j++ {
				topic := `"tick/r` + strconv.Itoa(j%3) + `"`
				_ = s.Handle(ctx, []byte(`[5,`+topic+`]`))
				time.Sleep(100 * time.Microsecond)
				_ = s.Handle(ctx, []byte(`[6,`+topic+`]`))
			}
		}(i)
	}
	wg.Wait()
	// All topics are empty: every timer goroutine must end.
	done := make(chan struct{})
	go func() { f.node.timers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("timer goroutines still running after every topic emptied")
	}
	before := pt.ticks.Load()
	time.Sleep(10 * time.Millisecond)
	if pt.ticks.Load() != before {
		t.Error("OnTick called after the topic emptied")
	}

	// A subscriber gets ticks while subscribed.
	p := &fakePeer{}
	s := f.node.Open(p, ClientInfo{ConnID: "x"})
	if err := s.Handle(ctx, []byte(`[5,"tick/solo"]`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0
		for _, m := range p.take() {
			if string(m) == `[8,"tick/solo","tick"]` {
				n++
			}
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no tick EVENT within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	f.node.timers.Wait()
}

func TestPush(t *testing.T) {
	f, _ := newPeriodicFixture(t)
	ctx := context.Background()
	s1, p1 := f.open(t, "a")
	s2, p2 := f.openV2(t, ClientInfo{ConnID: "b", Identity: handler.Identity{UserIdentifier: "bob"}})
	_ = s1.Handle(ctx, []byte(`[5,"tick/lobby"]`))
	_ = s2.Handle(ctx, []byte(`[32,1,{},"tick/lobby"]`))
	p1.take()
	p2.take()
	if err := f.node.Push(ctx, "tick/lobby", json.RawMessage(`{"n":1}`), "http"); err != nil {
		t.Fatal(err)
	}
	var got1 []string
	for _, m := range p1.take() {
		if !strings.Contains(string(m), `"tick"]`) {
			got1 = append(got1, string(m))
		}
	}
	if len(got1) != 1 || got1[0] != `[8,"tick/lobby",{"pushed":{"n":1},"room":"lobby","via":"http"}]` {
		t.Errorf("v1 push event %q", got1)
	}
	found := false
	for _, m := range p2.take() {
		if strings.Contains(string(m), `[{"pushed":{"n":1},"room":"lobby","via":"http"}]]`) {
			found = true
		}
	}
	if !found {
		t.Error("v2 subscriber did not get the push")
	}
	if err := f.node.Push(ctx, "nowhere", json.RawMessage(`1`), "http"); !errors.Is(err, ErrNoRoute) {
		t.Errorf("push to unrouted uri: %v", err)
	}
	if err := f.node.Push(ctx, "chan/a", json.RawMessage(`1`), "http"); !errors.Is(err, ErrNotPushable) {
		t.Errorf("push to non-pushable topic: %v", err)
	}
	if err := f.node.Push(ctx, "tick/a", json.RawMessage(`{`), "http"); err == nil {
		t.Error("invalid payload accepted")
	}
	if err := f.node.Push(ctx, "tick/a", json.RawMessage(`1`), "fail"); err == nil || err.Error() != "push refused" {
		t.Errorf("handler error: %v", err)
	}
	if err := f.node.Push(ctx, "tick/a", json.RawMessage(`1`), "panic"); !errors.Is(err, errPanic) {
		t.Errorf("handler panic: %v", err)
	}
	s1.Close()
	s2.Close()
	f.node.timers.Wait()
}

func TestProtocolFor(t *testing.T) {
	for sub, want := range map[string]Protocol{"wamp": ProtocolV1, "wamp.2.json": ProtocolV2JSON} {
		if p, ok := ProtocolFor(sub); !ok || p != want || p.Subprotocol() != sub {
			t.Errorf("ProtocolFor(%q) = %v %v", sub, p, ok)
		}
	}
	for _, sub := range []string{"wamp.2.msgpack", "", "WAMP"} {
		if _, ok := ProtocolFor(sub); ok {
			t.Errorf("ProtocolFor(%q) accepted", sub)
		}
	}
	if ProtocolV1.String() != "wamp1" || ProtocolV2JSON.String() != "wamp2json" {
		t.Error("String")
	}
}
