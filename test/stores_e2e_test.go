package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsgate/wsgate/test/testenv"
)

// redisSession writes (or, with action "logout", destroys as Symfony's logout
// does) a session through Symfony's RedisSessionHandler in real PHP.
func redisSession(t *testing.T, srv *testenv.RedisServer, spec map[string]any) phpSession {
	t.Helper()
	php := testenv.PHP(t)
	spec["handler"] = "symfony"
	spec["host"] = "127.0.0.1"
	spec["port"] = srv.Port
	arg, _ := json.Marshal(spec)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, "../storage/testdata/redis-session.php", string(arg))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("redis-session.php %s: %v\n%s", arg, err, errb.String())
	}
	var s phpSession
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.ID == "" {
		t.Fatalf("redis-session.php printed %q: %v", out.String(), err)
	}
	if s.Name == "" {
		s.Name = "PHPSESSID"
	}
	return s
}

func redisGatewayConfig(addr, onInvalid string) string {
	return fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
log: {level: debug}
session:
  store: redis
  lookup_timeout: 500ms
  redis: {addrs: ["%s"], client_cache: true}
  revalidate_interval: 1s
  on_invalid: %s
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
  topics:
    acme_topic: {pattern: "acme/channel/{room}", handler: acme.topic}
    private: {pattern: "private/{room}", handler: acme.topic, anonymous: false}
`, addr, onInvalid)
}

// TestRevalidationClosesLoggedOutClients: a PHP logout (Symfony destroys the
// session in Redis) closes the live websocket with 4001 at the next
// revalidation.
func TestRevalidationClosesLoggedOutClients(t *testing.T) {
	srv := testenv.StartRedis(t)
	alice := redisSession(t, srv, map[string]any{"user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, redisGatewayConfig(srv.Addr, "close"))
	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
	if err != nil {
		t.Fatal(err)
	}
	assertMsg(t, c.call("c1", "sample/sum", []int{1, 2}), `[3,"c1",{"result":3}]`)

	redisSession(t, srv, map[string]any{"action": "logout", "id": alice.ID, "user": "alice", "firewall": "main"})
	start := time.Now()
	if code := c.expectCloseWithin(5 * time.Second); code != 4001 {
		t.Fatalf("close code %d after logout, want 4001", code)
	}
	t.Logf("logout noticed after %v", time.Since(start).Round(time.Millisecond))
}

// TestRevalidationDowngradesLoggedOutClients: with on_invalid downgrade the
// client stays connected as anonymous and loses its secured subscription.
func TestRevalidationDowngradesLoggedOutClients(t *testing.T) {
	srv := testenv.StartRedis(t)
	alice := redisSession(t, srv, map[string]any{"user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, redisGatewayConfig(srv.Addr, "downgrade"))
	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
	if err != nil {
		t.Fatal(err)
	}
	c.send(5, "private/room")
	assertEvent(t, c.next(), "private/room", "has joined private/room")
	c.send(5, "acme/channel/open")
	assertEvent(t, c.next(), "acme/channel/open", "has joined acme/channel/open")

	redisSession(t, srv, map[string]any{"action": "logout", "id": alice.ID, "user": "alice", "firewall": "main"})
	// Poll with calls until the gateway has noticed: then sum refuses.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		m := c.call(fmt.Sprintf("p%d", i), "sample/sum", []int{1})
		var res map[string]any
		json.Unmarshal(m[2], &res)
		if res["error"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("client still authenticated 5s after logout")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Still subscribed to the open topic, no longer to the private one.
	other, err := dialWAMP(t, g.Addr, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other.send(7, "acme/channel/open", "still here?")
	assertMsg(t, c.next(), `[8,"acme/channel/open",{"msg":"still here?"}]`)
	body := metricsBody(t, g)
	if !strings.Contains(body, `wsgate_session_revalidations_total{outcome="downgraded"} 1`) {
		t.Errorf("metrics lack the downgrade:\n%s", grepLines(body, "revalidations"))
	}
}

// TestStoreOutage: with the session store killed, established connections
// keep working, new handshakes get 503 with the reason, and the gateway
// recovers by itself when the store is back. The store persists its data
// (SAVE before the crash), as a session store does: a restarted empty Redis
// would rightly log alice out at the next revalidation.
func TestStoreOutage(t *testing.T) {
	srv := testenv.StartRedis(t)
	alice := redisSession(t, srv, map[string]any{"user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, redisGatewayConfig(srv.Addr, "close"))
	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
	if err != nil {
		t.Fatal(err)
	}

	srv.Save()
	srv.Kill()
	time.Sleep(1500 * time.Millisecond) // a revalidation pass fails meanwhile: it must not close anyone
	assertMsg(t, c.call("c1", "sample/sum", []int{2, 2}), `[3,"c1",{"result":4}]`)
	_, err = dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
	if got := handshakeStatus(err); got != 503 {
		t.Fatalf("handshake with the store down: status %d (%v), want 503", got, err)
	}

	srv.Start()
	bob := redisSession(t, srv, map[string]any{"user": "bob", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	start := time.Now()
	for {
		c2, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(bob)})
		if err == nil {
			assertMsg(t, c2.call("c1", "sample/sum", []int{1}), `[3,"c1",{"result":1}]`)
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("gateway did not recover within 10s of the store's restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovered %v after the store restarted", time.Since(start).Round(time.Millisecond))
	// A revalidation pass against the recovered store keeps alice.
	time.Sleep(1500 * time.Millisecond)
	assertMsg(t, c.call("c2", "sample/sum", []int{3}), `[3,"c2",{"result":3}]`)
}

// TestEndToEndPostgres reads Symfony's PdoSessionHandler table in PostgreSQL.
func TestEndToEndPostgres(t *testing.T) {
	pool := testenv.PostgreSQL(t)
	table := "wsgate_e2e_" + randomSuffix(t)
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	s := writePHPSession(t, map[string]any{
		"store": "pdo", "dsn": "pgsql:host=127.0.0.1;dbname=test", "db_user": "postgres", "db_password": "",
		"table": table, "create_table": true, "user": "carol", "roles": []string{"ROLE_USER"}, "firewall": "main",
	})
	g := startGateway(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
allow_anonymous: false
session:
  store: pdo_pgsql
  pdo: {dsn: "%s", table: %s}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
`, testenv.PostgresDSN(), table))
	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(s)})
	if err != nil {
		t.Fatal(err)
	}
	assertMsg(t, c.call("c1", "sample/sum", []int{20, 22}), `[3,"c1",{"result":42}]`)
}

// expectCloseWithin reads until the server's close frame, for up to d.
func (c *wampV1Client) expectCloseWithin(d time.Duration) ws.StatusCode {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var m []json.RawMessage
		err := c.readJSON(&m)
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return ce.Code
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			c.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

// metricsBody fetches the gateway's /metrics.
func metricsBody(t *testing.T, g *gatewayProcess) string {
	t.Helper()
	resp, err := http.Get("http://" + g.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(body, substr string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
