package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// The WAMP v2 end-to-end tests drive the real gateway with autobahn-js 26
// under Node.js (test/autobahn/client.mjs) and, for the mixed topic, with
// the Go WAMP v1 client of wampclient_test.go at the same time.

var (
	npmOnce sync.Once
	npmErr  error
	npmOut  []byte
)

// autobahnNode installs test/autobahn's pinned packages once (npm ci) and
// returns the Node.js runtime, or skips/fails t.
func autobahnNode(t *testing.T) testenv.NodeJS {
	t.Helper()
	node := testenv.Node(t)
	npmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node.NPM, "ci", "--prefix", "autobahn", "--no-audit", "--no-fund", "--loglevel=error")
		npmOut, npmErr = cmd.CombinedOutput()
	})
	if npmErr != nil {
		testenv.Missing(t, "npm packages of test/autobahn (npm ci)", fmt.Errorf("%v: %s", npmErr, npmOut))
	}
	return node
}

// autobahnProc is a running client.mjs scenario.
type autobahnProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan map[string]json.RawMessage
	stderr bytes.Buffer
	done   chan error
}

func startAutobahn(t *testing.T, scenario string, opts map[string]any) *autobahnProc {
	t.Helper()
	node := autobahnNode(t)
	arg, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, node.Args...), "autobahn/client.mjs", scenario, string(arg))
	p := &autobahnProc{t: t, lines: make(chan map[string]json.RawMessage, 16), done: make(chan error, 1)}
	p.cmd = exec.Command(node.Bin, args...)
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			// autobahn logs to stdout too; results are JSON object lines.
			line := sc.Bytes()
			if !bytes.HasPrefix(line, []byte(`{"`)) {
				continue
			}
			var m map[string]json.RawMessage
			if json.Unmarshal(line, &m) == nil {
				p.lines <- m
			}
		}
		close(p.lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("autobahn %s stderr:\n%s", scenario, p.stderr.String())
		}
	})
	return p
}

// next returns the next JSON line of the scenario.
func (p *autobahnProc) next() map[string]json.RawMessage {
	p.t.Helper()
	select {
	case m, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("autobahn client exited without a result")
		}
		if e, bad := m["error"]; bad {
			p.t.Fatalf("autobahn client failed: %s", e)
		}
		return m
	case <-time.After(30 * time.Second):
		p.t.Fatal("autobahn client gave no output within 30s")
	}
	return nil
}

// result waits for the scenario's final {"result": ...} line.
func (p *autobahnProc) result(v any) {
	p.t.Helper()
	for {
		m := p.next()
		if r, ok := m["result"]; ok {
			if err := json.Unmarshal(r, v); err != nil {
				p.t.Fatalf("result %s: %v", r, err)
			}
			return
		}
	}
}

// wampOutcome is client.mjs's settle() shape.
type wampOutcome struct {
	OK  json.RawMessage `json:"ok"`
	Err *struct {
		Error  string         `json:"error"`
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	} `json:"err"`
}

func (o wampOutcome) errURI() string {
	if o.Err == nil {
		return ""
	}
	return o.Err.Error
}

type basicResult struct {
	Session   uint64          `json:"session"`
	AuthID    string          `json:"authid"`
	AuthRole  string          `json:"authrole"`
	Realm     string          `json:"realm"`
	Protocol  string          `json:"protocol"`
	Sum       wampOutcome     `json:"sum"`
	SumList   wampOutcome     `json:"sumList"`
	NoRoute   wampOutcome     `json:"noRoute"`
	NoMethod  wampOutcome     `json:"noMethod"`
	Denied    wampOutcome     `json:"denied"`
	Subscribd bool            `json:"subscribed"`
	PubAck    wampOutcome     `json:"pubAck"`
	PubNoUser wampOutcome     `json:"pubNoUser"`
	PubDenied wampOutcome     `json:"pubDenied"`
	SubDenied wampOutcome     `json:"subDenied"`
	Events    []wampV2Event   `json:"events"`
	Unsub     wampOutcome     `json:"unsubscribed"`
	Close     json.RawMessage `json:"close"`
}

type wampV2Event struct {
	Args   []json.RawMessage `json:"args"`
	Kwargs map[string]any    `json:"kwargs"`
}

const wamp2Config = `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
log: {level: debug}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
wamp:
  realm: realm1
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
    admin_rpc: {pattern: "admin/{method}", handler: acme.rpc, roles: [ROLE_ADMIN]}
  topics:
    acme_topic: {pattern: "acme/channel/{room}", handler: acme.topic}
    private_topic: {pattern: "private/{room}", handler: acme.topic, anonymous: false, roles: [ROLE_ADMIN]}
`

// wampSerializers are the serializers autobahn-js and the gateway share.
var wampSerializers = []string{"json", "msgpack", "cbor"}

// TestWAMP2Autobahn runs autobahn-js 26 against the real gateway: HELLO
// with the PHP session cookie, calls, errors, access rules, subscribe,
// publish with acknowledgement, unsubscribe and GOODBYE, in each
// serializer.
func TestWAMP2Autobahn(t *testing.T) {
	autobahnNode(t)
	testenv.PHP(t)
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, fmt.Sprintf(wamp2Config, dir))
	url := "ws://" + g.Addr + "/"
	const topic = "acme/channel/v2room"

	for _, ser := range wampSerializers {
		name := "authenticated"
		if ser != "json" {
			name += " " + ser
		}
		t.Run(name, func(t *testing.T) { autobahnAuthenticated(t, url, alice, ser) })
	}

	t.Run("anonymous", func(t *testing.T) {
		var r basicResult
		startAutobahn(t, "basic", map[string]any{"url": url, "realm": "realm1", "topic": topic}).result(&r)
		if r.AuthID != fmt.Sprintf("anon-%d", r.Session) || r.AuthRole != "anonymous" {
			t.Errorf("anonymous WELCOME: authid %q authrole %q session %d", r.AuthID, r.AuthRole, r.Session)
		}
		assertJSON(t, "anonymous sum", r.Sum.OK, notAuthenticatedMsg)
		if r.PubDenied.errURI() != "wamp.error.not_authorized" || r.SubDenied.errURI() != "wamp.error.not_authorized" {
			t.Errorf("anonymous on a private topic: publish %+v subscribe %+v", r.PubDenied, r.SubDenied)
		}
	})

	t.Run("wrong realm is aborted", func(t *testing.T) {
		p := startAutobahn(t, "hello", map[string]any{"url": url, "realm": "nope", "cookie": cookie(alice)})
		select {
		case m := <-p.lines:
			if e := string(m["error"]); !strings.Contains(e, "wamp.error.no_such_realm") {
				t.Errorf("want ABORT wamp.error.no_such_realm, got %v", m)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no output")
		}
	})
}

// autobahnAuthenticated is TestWAMP2Autobahn's authenticated client,
// speaking ser.
func autobahnAuthenticated(t *testing.T, url string, alice phpSession, ser string) {
	const topic = "acme/channel/v2room"
	var r basicResult
	startAutobahn(t, "basic", map[string]any{"url": url, "realm": "realm1", "cookie": cookie(alice), "topic": topic, "serializer": ser}).result(&r)
	if r.AuthID != "alice" || r.AuthRole != "ROLE_USER" || r.Realm != "realm1" || r.Protocol != "wamp.2."+ser {
		t.Errorf("WELCOME: authid %q authrole %q realm %q protocol %q", r.AuthID, r.AuthRole, r.Realm, r.Protocol)
	}
	if r.Session < 1 || r.Session > 1<<53 {
		t.Errorf("session id %d outside [1, 2^53]", r.Session)
	}
	assertJSON(t, "sum", r.Sum.OK, `{"result":6}`)
	assertJSON(t, "sum of a list", r.SumList.OK, `{"result":9}`)
	for name, c := range map[string]struct {
		got  wampOutcome
		want string
	}{
		"unrouted call":        {r.NoRoute, "wamp.error.no_such_procedure"},
		"unknown method":       {r.NoMethod, "wamp.error.no_such_procedure"},
		"call denied by roles": {r.Denied, "wamp.error.not_authorized"},
		"publish to no one":    {r.PubNoUser, "wamp.error.runtime_error"},
		"publish denied":       {r.PubDenied, "wamp.error.not_authorized"},
		"subscribe denied":     {r.SubDenied, "wamp.error.not_authorized"},
		"acknowledged publish": {r.PubAck, ""},
		"unsubscribe":          {r.Unsub, ""},
	} {
		if got := c.got.errURI(); got != c.want {
			t.Errorf("%s: error %q, want %q (outcome %+v)", name, got, c.want, c.got)
		}
	}
	if r.PubNoUser.Err != nil && (len(r.PubNoUser.Err.Args) != 1 || r.PubNoUser.Err.Args[0] != `user "nobody-here" is not connected`) {
		t.Errorf("publish to a missing user: args %v", r.PubNoUser.Err.Args)
	}
	if !r.Subscribd || len(r.Events) != 2 {
		t.Fatalf("subscribed %v, events %+v", r.Subscribd, r.Events)
	}
	if msg := mustField(t, r.Events[0].Args[0], "msg"); !strings.HasSuffix(msg, " has joined "+topic) {
		t.Errorf("join event %q", msg)
	}
	assertJSON(t, "published event", r.Events[1].Args[0], `{"msg":"hello v2"}`)
	if !strings.Contains(string(r.Close), `"reason":"closed"`) {
		t.Errorf("GOODBYE did not close cleanly: %s", r.Close)
	}
}

// TestWAMP2AutobahnAdvanced runs autobahn-js 26 against the advanced
// features the gateway announces: publisher identification through
// disclose_me and the session meta API (wamp.meta_api enabled).
func TestWAMP2AutobahnAdvanced(t *testing.T) {
	autobahnNode(t)
	testenv.PHP(t)
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	cfg := strings.Replace(wamp2Config, "  realm: realm1\n", "  realm: realm1\n  meta_api: authenticated\n", 1)
	g := startGateway(t, fmt.Sprintf(cfg, dir))
	const topic = "acme/channel/advanced"

	var r struct {
		Session        uint64          `json:"session"`
		BrokerFeatures map[string]bool `json:"brokerFeatures"`
		Disclosed      wampOutcome     `json:"disclosed"`
		Undisclosed    wampOutcome     `json:"undisclosed"`
		Events         []struct {
			Args      []json.RawMessage `json:"args"`
			Publisher uint64            `json:"publisher"`
			AuthID    string            `json:"publisher_authid"`
			AuthRole  string            `json:"publisher_authrole"`
		} `json:"events"`
		Count wampOutcome `json:"count"`
		Get   wampOutcome `json:"get"`
	}
	startAutobahn(t, "advanced", map[string]any{"url": "ws://" + g.Addr + "/", "realm": "realm1", "cookie": cookie(alice), "topic": topic}).result(&r)
	for _, f := range []string{"publisher_identification", "subscriber_blackwhite_listing", "session_meta_api", "subscription_meta_api"} {
		if !r.BrokerFeatures[f] {
			t.Errorf("WELCOME broker features %v lack %s", r.BrokerFeatures, f)
		}
	}
	if r.Disclosed.Err != nil || r.Undisclosed.Err != nil {
		t.Fatalf("publishes: %+v %+v", r.Disclosed, r.Undisclosed)
	}
	if len(r.Events) != 3 {
		t.Fatalf("events %+v, want the join and two publications", r.Events)
	}
	if e := r.Events[1]; !jsonSame(e.Args[0], `{"msg":"disclosed"}`) || e.Publisher != r.Session || e.AuthID != "alice" || e.AuthRole != "ROLE_USER" {
		t.Errorf("disclosed event %+v, want publisher %d alice ROLE_USER", e, r.Session)
	}
	if e := r.Events[2]; !jsonSame(e.Args[0], `{"msg":"undisclosed"}`) || e.Publisher != 0 || e.AuthID != "" || e.AuthRole != "" {
		t.Errorf("undisclosed event %+v names its publisher", e)
	}
	assertJSON(t, "wamp.session.count", r.Count.OK, `1`)
	assertJSON(t, "wamp.session.get", r.Get.OK, fmt.Sprintf(`{"session":%d,"authid":"alice","authrole":"ROLE_USER","authmethod":"cookie","authprovider":"symfony"}`, r.Session))
}

// TestWAMPMixedTopic: a WAMP v1 client (Go, over the wire) and a WAMP v2
// client (autobahn-js, in each serializer) on one topic of the real
// gateway see each other's joins and publications.
func TestWAMPMixedTopic(t *testing.T) {
	autobahnNode(t)
	testenv.PHP(t)
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	bob := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "bob", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, fmt.Sprintf(wamp2Config, dir))
	for _, ser := range wampSerializers {
		t.Run(ser, func(t *testing.T) { mixedTopic(t, g.Addr, cookie(alice), cookie(bob), ser) })
	}
}

// mixedTopic is TestWAMPMixedTopic with a v2 client speaking ser, alone
// on a topic of its own with the v1 client.
func mixedTopic(t *testing.T, addr, alice, bob, ser string) {
	topic := "acme/channel/mixed-" + ser

	v1, err := dialWAMP(t, addr, dialOptions{Cookie: alice})
	if err != nil {
		t.Fatal(err)
	}
	v1.send(5, topic)
	assertEvent(t, v1.next(), topic, "has joined "+topic)

	v2 := startAutobahn(t, "listen", map[string]any{
		"url": "ws://" + addr + "/", "realm": "realm1", "cookie": bob, "serializer": ser,
		"topic": topic, "expect": "from v1", "publish": "from v2", "awaitBeforeLeave": "for bob",
	})
	if ready := v2.next(); string(ready["ready"]) != "true" {
		t.Fatalf("want ready, got %v", ready)
	}
	// The v2 client's join reaches the v1 client.
	assertEvent(t, v1.next(), topic, "has joined "+topic)
	// v1 → v2 (and back to v1, which did not exclude itself).
	v1.send(7, topic, "from v1")
	assertMsg(t, v1.next(), `[8,"`+topic+`",{"msg":"from v1"}]`)
	// v2 → v1 (the v2 publisher excludes itself, v2's default).
	assertMsg(t, v1.next(), `[8,"`+topic+`",{"msg":"from v2"}]`)
	// A v1 publish carrying a username reaches only that user's
	// connections, whatever their protocol: bob's v2 session, not alice.
	v1.send(7, topic, map[string]string{"username": "bob", "text": "for bob"})
	fmt.Fprintln(v2.stdin, "leave")
	assertEvent(t, v1.next(), topic, "has left "+topic)

	var r struct {
		Events      []wampV2Event `json:"events"`
		GotExpected bool          `json:"gotExpected"`
		PubAck      wampOutcome   `json:"pubAck"`
	}
	v2.result(&r)
	if !r.GotExpected || r.PubAck.Err != nil {
		t.Fatalf("v2 side: got v1 event %v, publish %+v, events %+v", r.GotExpected, r.PubAck, r.Events)
	}
	var sawV1, sawForBob bool
	for _, e := range r.Events {
		if len(e.Args) == 1 && jsonSame(e.Args[0], `{"msg":"from v1"}`) {
			sawV1 = true
		}
		if len(e.Args) == 1 && jsonSame(e.Args[0], `{"msg":{"username":"bob","text":"for bob"}}`) {
			sawForBob = true
		}
	}
	if !sawV1 {
		t.Errorf("v2 subscriber did not get the v1 publication: %+v", r.Events)
	}
	if !sawForBob {
		t.Errorf("bob's v2 connection did not get the event a v1 client addressed to bob: %+v", r.Events)
	}
}

func mustField(t *testing.T, raw json.RawMessage, key string) string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m[key]
}

func jsonSame(got json.RawMessage, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

func assertJSON(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	if !jsonSame(got, want) {
		t.Errorf("%s: got %s, want %s", what, got, want)
	}
}

// TestWAMPV1ConformanceWire is the WAMP v1 conformance table over a real
// websocket: each row is what a Ratchet/autobahn 0.8 client sends and
// what it must get back (the same rules as wamp's in-process
// TestConformance, seen through the gateway).
func TestWAMPV1ConformanceWire(t *testing.T) {
	testenv.PHP(t)
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
    admin_rpc: {pattern: "admin/{method}", handler: acme.rpc, roles: [ROLE_ADMIN]}
    calc: {pattern: "http://example.com/calc#sum", handler: acme.rpc, defaults: {method: sum}}
  topics:
    acme_topic: {pattern: "acme/channel/{room}", handler: acme.topic}
    staff_topic: {pattern: "staff/{room}", handler: acme.topic, roles: [ROLE_ADMIN]}
`, dir))
	const topic = "acme/channel/conf"
	rows := []struct {
		name string
		send string   // raw message; $SID is the client's own session id
		want []string // messages back, in order; "" entries are skipped
	}{
		{"single array argument is the params", `[2,"c1","sample/sum",[1,2,3]]`, []string{`[3,"c1",{"result":6}]`}},
		{"several arguments are the params list", `[2,"c2","sample/sum",1,2,3]`, []string{`[3,"c2",{"result":6}]`}},
		{"object argument", `[2,"c3","sample/sum",{"a":1,"b":2}]`, []string{`[3,"c3",{"result":3}]`}},
		{"numeric call id echoed", `[2,7,"sample/sum",1]`, []string{`[3,7,{"result":1}]`}},
		{"PREFIX", `[1,"calc","http://example.com/calc"]`, nil},
		{"CURIE call", `[2,"c4","calc:sum",[2,2]]`, []string{`[3,"c4",{"result":4}]`}},
		{"unknown route is 404", `[2,"c5","nowhere/x"]`, []string{`[4,"c5","nowhere/x","Unable to find route for \"nowhere/x\"",{"code":404,"rpc":{},"params":[],"request":{}}]`}},
		{"unknown method is 404", `[2,"c6","sample/nope",1]`, []string{`[4,"c6","sample/nope","Could not execute RPC callback, method not found",{"code":404,"rpc":{},"params":[1],"request":{}}]`}},
		{"access rule refuses a call with 403", `[2,"c7","admin/sum",1]`, []string{`[4,"c7","admin/sum","Access denied",{"code":403,"rpc":{},"params":[1],"request":{}}]`}},
		{"access rule refuses a subscription", `[5,"staff/x"]`, []string{`[4,"staff/x","staff/x","Access denied",{"code":403,"topic":{},"request":{},"event":"onSubscribe"}]`}},
		{"subscribe: own join", `[5,"` + topic + `"]`, []string{"join"}},
		{"duplicate subscribe ignored", `[5,"` + topic + `"]`, nil},
		{"publish", `[7,"` + topic + `","hi"]`, []string{`[8,"` + topic + `",{"msg":"hi"}]`}},
		{"publish excludeMe", `[7,"` + topic + `","hi",true]`, nil},
		{"publish excludeMe false", `[7,"` + topic + `","hi",false]`, []string{`[8,"` + topic + `",{"msg":"hi"}]`}},
		{"publish exclude list", `[7,"` + topic + `","hi",["$SID"]]`, nil},
		{"publish eligible list", `[7,"` + topic + `","me",[],["$SID"]]`, []string{`[8,"` + topic + `",{"msg":"me"}]`}},
		{"publish eligible someone else", `[7,"` + topic + `","x",[],["nobody"]]`, nil},
		{"publish to a missing user", `[7,"` + topic + `",{"username":"zed"}]`, []string{`[4,"` + topic + `","` + topic + `","user \"zed\" is not connected",{"code":404,"topic":{},"request":{},"event":"onPublish"}]`}},
		{"unsubscribe", `[6,"` + topic + `"]`, nil},
		{"unsubscribe again ignored", `[6,"` + topic + `"]`, nil},
		{"publish after unsubscribe reaches nobody here", `[7,"` + topic + `","gone"]`, nil},
	}
	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		c.sendRaw([]byte(strings.ReplaceAll(row.send, "$SID", c.SessionID)))
		for _, want := range row.want {
			m := c.next()
			if want == "join" {
				assertEvent(t, m, topic, "has joined "+topic)
				continue
			}
			b, _ := json.Marshal(m)
			if !jsonSame(b, want) {
				t.Fatalf("%s: got %s, want %s", row.name, b, want)
			}
		}
	}
	// Rows without an answer must really have none: a final call is
	// answered first.
	assertMsg(t, c.call("last", "sample/sum", 1), `[3,"last",{"result":1}]`)

	// Malformed input closes with 1007, as the bundle does.
	for _, bad := range []string{`[2,"c","sample/sum"`, `[99,"x"]`, `{"a":1}`, `[5,1]`, `[7,"t"]`} {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
		if err != nil {
			t.Fatal(err)
		}
		c.sendRaw([]byte(bad))
		if code := c.expectClose(); code != 1007 {
			t.Errorf("%s: close code %d, want 1007", bad, code)
		}
	}
}
