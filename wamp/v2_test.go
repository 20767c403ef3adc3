package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsgate/wsgate/wamp/handler"
)

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
			{in: `[32,3,{"match":"regex"},"chan"]`, want: []string{`[8,32,3,{},"wamp.error.invalid_argument",["SUBSCRIBE option match \"regex\" is not exact, prefix nor wildcard"]]`}},
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
			// Publication ids are random: normalizePub replaces them.
			runSteps(t, s, p, tc.steps, normalizePub)
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

// seedMessagesV2 are well-formed and malformed WAMP v2 messages.
var seedMessagesV2 = []string{
	`[1,"realm1",{"roles":{"caller":{},"publisher":{},"subscriber":{}}}]`,
	`[1,"other",{}]`,
	`[6,{},"wamp.close.close_realm"]`,
	`[3,{"message":"x"},"wamp.error.x"]`,
	`[48,1,{},"sample/echo",[1,2],{"a":1}]`,
	`[48,2,{},"sample/echo",[[1]]]`,
	`[48,3,{},"sample/echo",[],{}]`,
	`[48,4,{},"sample/fail"]`,
	`[48,5,{},"sample/panic"]`,
	`[48,6,{},"sample/custom"]`,
	`[48,0,{},"sample/echo"]`,
	`[48,9007199254740993,{},"x"]`,
	`[32,7,{},"chan/a"]`,
	`[32,8,{"match":"prefix"},"chan"]`,
	`[32,9,{},"deny/x"]`,
	`[34,10,1]`,
	`[34,11,99]`,
	`[16,12,{"acknowledge":true},"chan/a",["hi"]]`,
	`[16,13,{"exclude_me":false,"eligible":[1,2],"exclude_authid":["u"]},"chan/a",[],{"k":1}]`,
	`[16,14,{"eligible_authid":"x"},"chan/a"]`,
	`[16,15,{},"chan/a","notalist"]`,
	`[49,1,{}]`,
	`[64,16,{},"p"]`,
	`[8,68,1,{},"x"]`,
	`[70,1,{}]`,
	`[2,"c","sample/echo"]`,
	`[1.0,"r",{}]`,
	`[]`,
}

func FuzzParseMessageV2(f *testing.F) {
	for _, s := range seedMessagesV2 {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMessageV2(data, DefaultMaxJSONDepth)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		switch m.typ {
		case v2Hello, v2Abort, v2Goodbye, v2Publish, v2Subscribe, v2Unsubscribe, v2Call, v2Cancel, v2Register, v2Unregister:
		default:
			t.Fatalf("accepted message type %d", m.typ)
		}
		if m.reqID > maxV2ID || m.subID > maxV2ID {
			t.Fatalf("id out of range: %d %d", m.reqID, m.subID)
		}
		if m.args != nil && !isJSONArray(m.args) {
			t.Fatalf("args %q not a list", m.args)
		}
		if m.kwargs != nil && (len(m.kwargs) == 0 || m.kwargs[0] != '{') {
			t.Fatalf("kwargs %q not a dict", m.kwargs)
		}
		// What is echoed back must stay valid JSON.
		for _, out := range [][]byte{
			encodeResultV2(m.reqID, paramsFromArgs(m.args, m.kwargs)),
			encodeEventV2(1, 2, nil, eventFromArgs(m.args, m.kwargs)),
			encodeErrorV2(m.typ, m.reqID, m.uri, m.uri, nil),
			encodeCloseV2(v2Abort, m.uri, m.uri),
		} {
			if !json.Valid(out) || !utf8.Valid(out) {
				t.Fatalf("output %q is not valid JSON", out)
			}
		}
	})
}

// FuzzSessionHandleV2 is FuzzSessionHandle for a WAMP v2 session that has
// joined, beside a v1 and a v2 subscriber of the same topic.
func FuzzSessionHandleV2(f *testing.F) {
	for _, s := range seedMessagesV2 {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[32,1,{},"chan/a"]` + "\n" + `[16,2,{"acknowledge":true,"exclude_me":false},"chan/a",[1]]` + "\n" + `[34,3,1]` + "\n" + `[6,{},"x"]`))
	f.Add([]byte(`[32,1,{},"chan/a"]` + "\n" + `[32,2,{},"chan/a"]` + "\n" + `[34,3,1]` + "\n" + `[34,4,1]`))
	// Progressive results, CANCEL and the caller's timeout (cancel.go).
	f.Add([]byte(`[48,1,{"receive_progress":true,"timeout":5},"sample/slow",[]]` + "\n" + `[49,1,{"mode":"kill"}]` + "\n" + `[49,2,{}]` + "\n" + `[49,3,{"mode":7}]`))
	// Pattern subscriptions and retention (pattern.go, retain.go).
	f.Add([]byte(`[32,1,{"match":"prefix"},"chan/"]` + "\n" + `[32,2,{"match":"wildcard"},"/a"]` + "\n" + `[16,3,{"retain":true,"exclude_me":false},"chan/a",[1]]` + "\n" + `[32,4,{"get_retained":true},"chan/a"]` + "\n" + `[34,5,1]`))

	fixture := fuzzFixture(accessRoutes)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := fixture(t)
		p := &fakePeer{}
		s := fx.node.OpenProtocol(p, ClientInfo{ConnID: "fuzz", Identity: handler.Identity{UserIdentifier: "u"}}, ProtocolV2JSON)
		if err := s.Handle(context.Background(), []byte(`[1,"realm1",{}]`)); err != nil {
			t.Fatal(err)
		}
		o1p, o2p := &fakePeer{}, &fakePeer{}
		o1 := fx.node.Open(o1p, ClientInfo{ConnID: "other1"})
		o2 := fx.node.OpenProtocol(o2p, ClientInfo{ConnID: "other2"}, ProtocolV2JSON)
		_ = o2.Handle(context.Background(), []byte(`[1,"realm1",{}]`))
		_ = o1.Handle(context.Background(), []byte(`[5,"chan/a"]`))
		_ = o2.Handle(context.Background(), []byte(`[32,1,{},"chan/a"]`))
		handleLines(t, s, data, func(err error) bool {
			return errors.Is(err, ErrProtocol) || errors.Is(err, ErrClosed)
		})
		if n := s.runningCalls(); n != 0 { // the fixture's calls run inline
			t.Fatalf("%d calls still listed after they returned", n)
		}
		s.Close()
		o1.Close()
		o2.Close()
		checkSent(t, append(append(p.take(), o1p.take()...), o2p.take()...), 2)
		checkEmpty(t, fx.node)
	})
}

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
