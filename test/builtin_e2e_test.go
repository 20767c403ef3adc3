package test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/gateway/config"
)

// defaultRoutesYAML is the embedded default's routes as a routes: block, so
// that the test serves exactly what `make run` serves.
func defaultRoutesYAML(t *testing.T) string {
	t.Helper()
	cfg, err := config.Parse(config.DefaultYAML, "embedded", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes.Topics) == 0 || len(cfg.Routes.RPC) != 0 {
		t.Fatalf("embedded default routes %+v: want topic routes only", cfg.Routes)
	}
	names := make([]string, 0, len(cfg.Routes.Topics))
	for n := range cfg.Routes.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("routes:\n  topics:\n")
	for _, n := range names {
		r := cfg.Routes.Topics[n]
		fmt.Fprintf(&b, "    %s: {pattern: %q, handler: %s}\n", n, r.Pattern, r.Handler)
	}
	return b.String()
}

// TestBuiltinHandlersDefaultRoutes runs the embedded default's routes
// (public/{channel}: wsgate.relay, user/{username}: wsgate.user) in a real
// gateway: v1 clients relay to each other on a public channel, a
// logged-in user gets the app's push on its own channel, and nobody else
// (another user, an anonymous client) can subscribe to it.
func TestBuiltinHandlersDefaultRoutes(t *testing.T) {
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startReplica(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
api: {listen: "%%API%%", token: %q}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
`, replicaAPIToken, dir)+defaultRoutesYAML(t))
	if log := g.stderr.String(); !strings.Contains(log, "user: user/{username} → wsgate.user") {
		t.Errorf("start log does not list the user route:\n%s", log)
	}

	dial := func(cookieHeader string) *wampV1Client {
		t.Helper()
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookieHeader})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.close)
		return c
	}
	push := func(topic string, payload any) {
		t.Helper()
		if status, body := g.apiCall(t, "POST", "/api/publish", map[string]any{"topic": topic, "payload": payload}); status != 202 {
			t.Fatalf("POST /api/publish %s: %d %s", topic, status, body)
		}
	}
	a, anon := dial(cookie(alice)), dial("")

	// synced returns once c's messages so far are handled: a publish only
	// c is eligible for comes back after them (one connection's messages
	// are handled in order), so another client's publish or the app's
	// push cannot overtake c's SUBSCRIBE.
	synced := func(c *wampV1Client) {
		t.Helper()
		c.send(7, "public/lobby", "sync", []string{}, []string{c.SessionID})
		assertMsg(t, c.next(), `[8,"public/lobby","sync"]`)
	}

	// public/lobby relays between clients, the event as published.
	a.send(5, "public/lobby")
	synced(a)
	anon.send(5, "public/lobby")
	synced(anon)
	anon.send(7, "public/lobby", map[string]string{"text": "hi"})
	assertMsg(t, a.next(), `[8,"public/lobby",{"text":"hi"}]`)
	assertMsg(t, anon.next(), `[8,"public/lobby",{"text":"hi"}]`)
	a.send(7, "public/lobby", "from alice", true) // excludeMe
	assertMsg(t, anon.next(), `[8,"public/lobby","from alice"]`)

	// alice's own channel gets the app's push.
	a.send(5, "user/alice")
	synced(a)
	push("user/alice", map[string]int{"unread": 3})
	assertMsg(t, a.next(), `[8,"user/alice",{"unread":3}]`)

	// Someone else's channel, and any as anonymous, is refused with the
	// bundle's topic error; a push to it then reaches neither: the next
	// message each gets is the later public one.
	a.send(5, "user/bob")
	refused := a.next()
	if len(refused) < 4 || string(refused[0]) != "4" || string(refused[3]) != `"Access denied"` {
		t.Fatalf("subscribe user/bob as alice: got %s, want CALLERROR Access denied", refused)
	}
	anon.send(5, "user/alice")
	if refused := anon.next(); len(refused) < 4 || string(refused[3]) != `"Access denied"` {
		t.Fatalf("subscribe user/alice anonymously: got %s, want CALLERROR Access denied", refused)
	}
	push("user/bob", "for bob")
	push("user/alice", "for alice")
	assertMsg(t, a.next(), `[8,"user/alice","for alice"]`)
	push("public/lobby", "later")
	assertMsg(t, a.next(), `[8,"public/lobby","later"]`)
	assertMsg(t, anon.next(), `[8,"public/lobby","later"]`)

	// Clients cannot publish on a user channel.
	a.send(7, "user/alice", "spoof")
	if got := a.next(); len(got) < 4 || string(got[2]) != `"wamp.error.not_authorized"` {
		t.Fatalf("publish to user/alice: got %s, want CALLERROR wamp.error.not_authorized", got)
	}
}
