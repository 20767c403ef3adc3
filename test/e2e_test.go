package test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/test/testenv"
)

const appOrigin = "https://app.example.com"

const notAuthenticatedMsg = `{"error":true,"msg":"You must be authenticated to use this function."}`

func randomSuffix(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pdoFixture is a Symfony PdoSessionHandler table in the test MariaDB,
// created by Symfony itself and dropped when the test ends.
type pdoFixture struct {
	Table string
	DSN   string // go-sql-driver DSN for the gateway
}

func newPDOFixture(t *testing.T) pdoFixture {
	t.Helper()
	db := testenv.MariaDB(t)
	testenv.PHP(t)
	f := pdoFixture{Table: "wsgate_e2e_" + randomSuffix(t), DSN: testenv.MariaDBDSN()}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP TABLE IF EXISTS " + f.Table); err != nil {
			t.Errorf("drop %s: %v", f.Table, err)
		}
	})
	return f
}

// write stores a session through Symfony's PdoSessionHandler. user "" is a
// visitor without a security token.
func (f pdoFixture) write(t *testing.T, user string, roles ...string) phpSession {
	spec := map[string]any{
		"store": "pdo", "dsn": "mysql:host=127.0.0.1;dbname=test", "db_user": "root", "db_password": "",
		"table": f.Table, "create_table": true, "firewall": "main", "roles": roles, "ttl": 1440,
	}
	if user != "" {
		spec["user"] = user
	} else {
		spec["user"] = nil
	}
	return writePHPSession(t, spec)
}

func cookie(s phpSession) string { return s.Name + "=" + s.ID }

// TestEndToEndPDO drives the real wsgate binary reading Symfony's
// PdoSessionHandler table in MariaDB, with sessions written by real PHP,
// once per transport mode: both must behave the same.
func TestEndToEndPDO(t *testing.T) {
	for _, mode := range []string{"epoll", "goroutine"} {
		t.Run(mode, func(t *testing.T) { testEndToEndPDO(t, mode) })
	}
}

func testEndToEndPDO(t *testing.T, mode string) {
	f := newPDOFixture(t)
	alice := f.write(t, "alice", "ROLE_USER", "ROLE_ADMIN")
	visitor := f.write(t, "")
	expired := f.write(t, "bob", "ROLE_USER")
	// Let bob's session run out as time would: Symfony 5.4 stores the
	// absolute expiry in sess_lifetime.
	db := testenv.MariaDB(t)
	if _, err := db.Exec("UPDATE "+f.Table+" SET sess_lifetime = UNIX_TIMESTAMP() - 10 WHERE sess_id = ?", expired.ID); err != nil {
		t.Fatal(err)
	}

	config := fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
log: {level: debug}
transport: {mode: %s}
origins:
  allowed: ["%s"]
session:
  store: pdo_mysql
  firewalls: [main]
  pdo:
    dsn: "%s"
    table: %s
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
  topics:
    acme_topic: {pattern: "acme/channel/{room}", handler: acme.topic}
`, mode, appOrigin, f.DSN, f.Table)
	g := startGateway(t, config)

	t.Run("authenticated user gets the sum", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: "other=1; " + cookie(alice), Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		if c.Server != "wsgate/e2e" {
			t.Errorf("WELCOME server ident = %q, want wsgate/e2e", c.Server)
		}
		m := c.call("c1", "sample/sum", []int{1, 2, 3, 4})
		assertMsg(t, m, `[3,"c1",{"result":10}]`)
		// Ratchet's argument rule: several arguments become the params list.
		m = c.call("c2", "sample/sum", 5, 6)
		assertMsg(t, m, `[3,"c2",{"result":11}]`)
	})

	t.Run("no cookie is anonymous and gets the seed's error", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		assertMsg(t, c.call("c1", "sample/sum", []int{1, 2}), `[3,"c1",`+notAuthenticatedMsg+`]`)
	})

	t.Run("visitor without token is anonymous", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(visitor), Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		assertMsg(t, c.call("c1", "sample/sum", []int{1}), `[3,"c1",`+notAuthenticatedMsg+`]`)
	})

	t.Run("expired session is anonymous", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(expired), Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		assertMsg(t, c.call("c1", "sample/sum", []int{1}), `[3,"c1",`+notAuthenticatedMsg+`]`)
	})

	t.Run("foreign origin gets 403", func(t *testing.T) {
		_, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice), Origin: "https://evil.example.org"})
		if got := handshakeStatus(err); got != 403 {
			t.Fatalf("handshake from foreign origin: status %d (err %v), want 403", got, err)
		}
	})

	t.Run("client without subprotocol is served", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice), Origin: appOrigin, Protocols: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		assertMsg(t, c.call("c1", "sample/sum", []int{2, 2}), `[3,"c1",{"result":4}]`)
	})

	t.Run("subscribe and publish within the gateway", func(t *testing.T) {
		a, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice), Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		b, err := dialWAMP(t, g.Addr, dialOptions{Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		const topic = "acme/channel/lobby"
		a.send(5, topic)
		ev := a.next() // a's own join
		assertEvent(t, ev, topic, "has joined "+topic)
		b.send(5, topic)
		assertEvent(t, a.next(), topic, "has joined "+topic)
		assertEvent(t, b.next(), topic, "has joined "+topic)
		b.send(7, topic, "hello from b")
		assertMsg(t, a.next(), `[8,"`+topic+`",{"msg":"hello from b"}]`)
		assertMsg(t, b.next(), `[8,"`+topic+`",{"msg":"hello from b"}]`)
		// excludeMe: the publisher does not get its own event.
		a.send(7, topic, "from a", true)
		assertMsg(t, b.next(), `[8,"`+topic+`",{"msg":"from a"}]`)
		b.send(6, topic)
		assertEvent(t, a.next(), topic, "has left "+topic)
	})

	t.Run("malformed message closes with 1007", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice), Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		c.sendRaw([]byte(`[2, "c1", "sample/sum"`))
		if code := c.expectClose(); code != ws.StatusInvalidFramePayloadData {
			t.Fatalf("close code %d, want 1007", code)
		}
		c2, err := dialWAMP(t, g.Addr, dialOptions{Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		c2.sendRaw([]byte(`[99, "x"]`))
		if code := c2.expectClose(); code != ws.StatusInvalidFramePayloadData {
			t.Fatalf("unknown message type: close code %d, want 1007", code)
		}
	})

	t.Run("session inspect", func(t *testing.T) {
		out, errOut, code := runWsgate(t, nil, "session", "inspect", "--config", g.Config, alice.ID)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var res struct {
			Status    string `json:"status"`
			Firewalls []struct {
				Firewall      string `json:"firewall"`
				Authenticated bool   `json:"authenticated"`
				Token         struct {
					TokenClass     string   `json:"token_class"`
					UserIdentifier string   `json:"user_identifier"`
					UserClass      string   `json:"user_class"`
					Roles          []string `json:"roles"`
				} `json:"token"`
			} `json:"firewalls"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if res.Status != "authenticated" || len(res.Firewalls) != 1 {
			t.Fatalf("inspect alice: %s", out)
		}
		fw := res.Firewalls[0]
		if fw.Firewall != "main" || !fw.Authenticated || fw.Token.UserIdentifier != "alice" ||
			fw.Token.TokenClass != `Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken` ||
			fw.Token.UserClass != `Symfony\Component\Security\Core\User\InMemoryUser` ||
			strings.Join(fw.Token.Roles, ",") != "ROLE_USER,ROLE_ADMIN" {
			t.Fatalf("inspect alice: %s", out)
		}
		for _, tc := range []struct{ id, status string }{
			{expired.ID, "expired"},
			{"abcdefabcdefabcdefabcdef01", "not_found"},
			{visitor.ID, "anonymous"},
			{"../../etc/passwd", "invalid_id"},
		} {
			out, errOut, code := runWsgate(t, nil, "session", "inspect", "--config", g.Config, tc.id)
			if code != 0 {
				t.Fatalf("inspect %s: exit %d: %s", tc.status, code, errOut)
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil || res.Status != tc.status {
				t.Errorf("inspect: got %s, want status %s", out, tc.status)
			}
		}
	})

	t.Run("metrics count handshakes", func(t *testing.T) {
		resp, err := http.Get("http://" + g.MetricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`wsgate_handshakes_total{outcome="authenticated"}`, `wsgate_handshakes_total{outcome="forbidden_origin"} 1`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("SIGTERM drains with close 1001", func(t *testing.T) {
		c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice), Origin: appOrigin})
		if err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- g.stop(t) }()
		if code := c.expectClose(); code != ws.StatusGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
		if err := <-stopped; err != nil {
			t.Fatalf("wsgate exit after SIGTERM: %v", err)
		}
	})
}

// TestEndToEndFiles runs the gateway on PHP's native files store with
// anonymous clients refused.
func TestEndToEndFiles(t *testing.T) {
	testenv.PHP(t)
	dir := t.TempDir()
	carol := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "carol", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	if _, err := os.Stat(filepath.Join(dir, "sess_"+carol.ID)); err != nil {
		t.Fatalf("PHP did not write the session file: %v", err)
	}
	g := startGateway(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
allow_anonymous: false
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
`, dir))

	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(carol)})
	if err != nil {
		t.Fatal(err)
	}
	assertMsg(t, c.call("c1", "sample/sum", []float64{1.5, 2}), `[3,"c1",{"result":3.5}]`)

	_, err = dialWAMP(t, g.Addr, dialOptions{})
	if got := handshakeStatus(err); got != 403 {
		t.Fatalf("anonymous with allow_anonymous false: status %d (err %v), want 403", got, err)
	}

	// PHP's garbage collector would delete a file idle past gc_maxlifetime;
	// the gateway judges it expired the same way.
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "sess_"+carol.ID), old, old); err != nil {
		t.Fatal(err)
	}
	_, err = dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(carol)})
	if got := handshakeStatus(err); got != 403 {
		t.Fatalf("expired files session with allow_anonymous false: status %d (err %v), want 403", got, err)
	}
}

// TestConfigErrorsNameKey checks that the binary refuses a bad config and
// names the key and value, from the file and from the environment.
func TestConfigErrorsNameKey(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, randomSuffix(t)+".yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{"unknown key", "sesion:\n  cookie: X\n", nil, []string{"sesion", "unknown key"}},
		{"wrong type", "session:\n  lookup_timeout: soon\n", nil, []string{"session.lookup_timeout", `"soon"`}},
		{"impossible value", "limits:\n  max_connections: 0\n", nil, []string{"limits.max_connections", `"0"`}},
		{"bad env value", "", []string{"WSGATE_ALLOW_ANONYMOUS=maybe"}, []string{"allow_anonymous", `"maybe"`, "WSGATE_ALLOW_ANONYMOUS"}},
		{"unknown env", "", []string{"WSGATE_SESSION_COOKY=x"}, []string{"WSGATE_SESSION_COOKY", "unknown"}},
		{"unknown handler", "routes:\n  rpc:\n    r1: {pattern: \"a/{method}\", handler: nope}\n", nil, []string{"r1", "nope", "listed under plugins:"}},
		{"undefined upstream", "routes:\n  rpc:\n    r1: {pattern: \"a/{method}\", handler: upstream.app}\n", nil, []string{"r1", "upstream.app", "define upstreams.app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runWsgate(t, tc.env, "config", "check", "--config", write(tc.file))
			if code == 0 {
				t.Fatalf("config check accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("error %q does not mention %s", errOut, w)
				}
			}
		})
	}
	out, errOut, code := runWsgate(t, []string{"WSGATE_SESSION_COOKIE=MYSESS"}, "config", "check")
	if code != 0 || !strings.Contains(out, "config ok") {
		t.Fatalf("embedded default with env: exit %d: %s %s", code, out, errOut)
	}
	out, _, code = runWsgate(t, nil, "version")
	if code != 0 || strings.TrimSpace(out) != "wsgate e2e" {
		t.Fatalf("version: %q exit %d", out, code)
	}
}

func assertMsg(t *testing.T, got []json.RawMessage, want string) {
	t.Helper()
	b, _ := json.Marshal(got)
	var gv, wv any
	json.Unmarshal(b, &gv)
	if err := json.Unmarshal([]byte(want), &wv); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	gb, _ := json.Marshal(gv)
	wb, _ := json.Marshal(wv)
	if string(gb) != string(wb) {
		t.Fatalf("got %s, want %s", gb, wb)
	}
}

// assertEvent checks an EVENT on topic whose {"msg"} ends with suffix.
func assertEvent(t *testing.T, m []json.RawMessage, topic, suffix string) {
	t.Helper()
	var typ int
	var gotTopic string
	var ev struct{ Msg string }
	if len(m) != 3 || json.Unmarshal(m[0], &typ) != nil || typ != 8 ||
		json.Unmarshal(m[1], &gotTopic) != nil || gotTopic != topic || json.Unmarshal(m[2], &ev) != nil ||
		!strings.HasSuffix(ev.Msg, suffix) {
		b, _ := json.Marshal(m)
		t.Fatalf("got %s, want EVENT on %s ending %q", b, topic, suffix)
	}
}

// redisTestPrefix returns a client of the test Redis and a key prefix of
// this test's own, whose keys are deleted when the test ends (the server
// is shared: never FLUSHDB).
func redisTestPrefix(t *testing.T, redisAddr string) (rueidis.Client, string) {
	t.Helper()
	rdb, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "wsgate-e2e-" + randomSuffix(t) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Do(ctx, rdb.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		for _, k := range keys {
			rdb.Do(ctx, rdb.B().Del().Key(k).Build())
		}
		rdb.Close()
	})
	return rdb, prefix
}
