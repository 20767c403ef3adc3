package wamp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

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
			runSteps(t, s, p, steps, nil)
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
		`[7,"t"]`, `[7,1,2]`, `[7,"t",1,2]`, `[7,"t",1,"true"]`, `[7,"t",1,null]`,
		`[7,"t",1,[],"x"]`, `[7,"t",1,true,[],3]`,
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

func TestResolveCURIE(t *testing.T) {
	s := &Session{}
	s.moreFields().prefixes = map[string]string{
		"calc": "http://example.com/calc",
		"p":    "base",
		"":     "empty",
	}
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
		if got := s.expandCURIE(in); got != want {
			t.Errorf("resolve(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestV1AccessRules(t *testing.T) {
	f := newFixture(t, accessRoutes)
	anon, p := f.open(t, "n", ClientInfo{ConnID: "n", Identity: handler.Identity{Anonymous: true}})
	runSteps(t, anon, p, []step{
		{in: `[2,"c1","admin/echo",1]`, want: []string{`[4,"c1","admin/echo","Access denied",{"code":403,"rpc":{},"params":[1],"request":{}}]`}},
		{in: `[2,"c2","members/echo",1]`, want: []string{`[4,"c2","members/echo","Access denied",{"code":403,"rpc":{},"params":[1],"request":{}}]`}},
		{in: `[5,"private/a"]`, want: []string{`[4,"private/a","private/a","Access denied",{"code":403,"topic":{},"request":{},"event":"onSubscribe"}]`}},
		{in: `[7,"private/a","x"]`, want: []string{`[4,"private/a","private/a","Access denied",{"code":403,"topic":{},"request":{},"event":"onPublish"}]`}},
		{in: `[6,"private/a"]`},
	}, nil)
	if n := f.node.broker.count("private/a"); n != 0 {
		t.Errorf("denied subscriber is subscribed (%d)", n)
	}
	if calls := f.topic.takeCalls(); len(calls) != 0 {
		t.Errorf("handler ran for denied requests: %q", calls)
	}
	admin, pa := f.open(t, "a", ClientInfo{ConnID: "a", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}})
	runSteps(t, admin, pa, []step{
		{in: `[2,"c1","admin/echo",1]`, want: []string{`[3,"c1",[1]]`}},
		{in: `[5,"staff/a"]`, want: []string{`[8,"staff/a",{"msg":"a has joined staff/a"}]`}},
	}, nil)
}

// seedMessages are well-formed and malformed messages for the fuzz
// corpora.
var seedMessages = []string{
	`[1,"calc","http://example.com/calc"]`,
	`[2,"c","calc:sum",1]`,
	`[2,"c","sample/echo",[1,2]]`,
	`[2,7,"sample/echo",{"a":1},"x"]`,
	`[2,"c","sample/get_user"]`,
	`[2,"c","sample/panic"]`,
	`[2,"c","sample/custom"]`,
	`[2,"c","sample/slow"]`,
	`[2,"c","nope/x"]`,
	`[5,"chan/a"]`,
	`[5,"deny/a"]`,
	`[6,"chan/a"]`,
	`[7,"chan/a",{"x":1}]`,
	`[7,"chan/a","x",true]`,
	`[7,"chan/a","x",["a"],["b"]]`,
	`[7,"chan/a","fail"]`,
	`[0,"x",1,"y"]`,
	`[9]`,
	`{}`,
	`[2,"\u2028",` + "\"sample/echo\"]",
	"[5,\"\xff\"]",
	`[1e0,"p","u"]`,
	" [ 2 , \"c\" ,\t\"sample/echo\" , [ 1 , \"a]\\\"[\" ] , { \"k\" : [ ] } , -1.5e3 , true ] ",
	`[[],{},"",0]`,
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range seedMessages {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Differential check of the hand-written splitter against
		// encoding/json on valid input.
		if json.Valid(data) {
			var want []json.RawMessage
			werr := json.Unmarshal(data, &want)
			got, ok := splitArray(data)
			if ok != (werr == nil) {
				t.Fatalf("splitArray ok=%v, json.Unmarshal err=%v", ok, werr)
			}
			if ok {
				if len(got) != len(want) {
					t.Fatalf("splitArray %d elements, json %d", len(got), len(want))
				}
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("element %d: %q vs %q", i, got[i], want[i])
					}
				}
			}
		}
		m, err := parseMessageV1(data, DefaultMaxJSONDepth)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		switch m.typ {
		case v1Prefix, v1Call, v1Subscribe, v1Unsubscribe, v1Publish:
		default:
			t.Fatalf("accepted message type %d", m.typ)
		}
		if m.typ == v1Call {
			// Everything echoed back verbatim must stay valid JSON.
			out := encodeCallResultV1(m.callID, callParams(m.args))
			if !json.Valid(out) || !utf8.Valid(out) {
				t.Fatalf("CALLRESULT %q is not valid JSON", out)
			}
			out = encodeCallErrorV1(m.callID, m.uri, m.uri, rpcDetails(500, callParams(m.args)))
			if !json.Valid(out) {
				t.Fatalf("CALLERROR %q is not valid JSON", out)
			}
		}
		if m.typ == v1Publish {
			if out := encodeEventV1(m.uri, m.event); !json.Valid(out) {
				t.Fatalf("EVENT %q is not valid JSON", out)
			}
		}
	})
}

// FuzzSessionHandle feeds a sequence of newline-separated messages to one
// session and checks that nothing panics, every error is a protocol error,
// everything sent is valid JSON in valid UTF-8, and Close leaves no state
// behind.
func FuzzSessionHandle(f *testing.F) {
	for _, s := range seedMessages {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[1,"p","chan"]` + "\n" + `[5,"p:a"]` + "\n" + `[5,"chan/b"]` + "\n" + `[7,"chan/b","hi",true]`))
	f.Add([]byte(`[5,"chan/a"]` + "\n" + `[5,"chan/a"]` + "\n" + `[6,"chan/a"]` + "\n" + `[6,"chan/a"]`))

	fixture := fuzzFixture(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := fixture(t)
		p := &fakePeer{}
		s := fx.node.Open(p, ClientInfo{ConnID: "fuzz"})
		other := &fakePeer{}
		o := fx.node.Open(other, ClientInfo{ConnID: "other"})
		_ = o.Handle(context.Background(), []byte(`[5,"chan/a"]`))
		handleLines(t, s, data, func(err error) bool { return errors.Is(err, ErrProtocol) })
		s.Close()
		o.Close()
		checkSent(t, append(p.take(), other.take()...), 3)
		checkEmpty(t, fx.node)
	})
}
