package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/gateway/cluster"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

func TestPushAPI(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		dir := t.TempDir()
		seedSession(t, dir, "alice1")
		addr, srv := startServer(t, mode, func(c *config.Config) {
			c.Session.Files.Path = dir
			c.Session.Files.GCMaxLifetime = 0
		})
		const token = "0123456789abcdef-token"
		api := httptest.NewServer(srv.APIHandler(token))
		defer api.Close()
		call := func(method, path, body, tok string) (int, string) {
			req, _ := http.NewRequest(method, api.URL+path, strings.NewReader(body))
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}

		alice, err := dialRaw(t, addr, http.Header{"Cookie": {"PHPSESSID=alice1"}})
		if err != nil {
			t.Fatal(err)
		}
		anon, err := dialRaw(t, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		alice.write(ws.NewTextFrame([]byte(`[5,"acme/channel/news"]`)))
		alice.readFrame() // her own join
		anon.write(ws.NewTextFrame([]byte(`[5,"acme/channel/news"]`)))
		alice.readFrame() // anon's join, to both
		anon.readFrame()

		if code, _ := call("POST", "/api/publish", `{"topic":"acme/channel/news","payload":1}`, "wrong-token-xxxxxxx"); code != 401 {
			t.Fatalf("wrong token: %d", code)
		}
		// Through the topic handler's OnPush: everyone, wrapped by acme.
		if code, body := call("POST", "/api/publish", `{"topic":"acme/channel/news","payload":{"n":1}}`, token); code != 202 {
			t.Fatalf("publish: %d %s", code, body)
		}
		for _, c := range []*rawClient{alice, anon} {
			if f := c.readFrame(); string(f.Payload) != `[8,"acme/channel/news",{"msg":{"n":1}}]` {
				t.Fatalf("got %q", f.Payload)
			}
		}
		// Only alice's connections.
		if code, body := call("POST", "/api/publish", `{"topic":"acme/channel/news","payload":"for alice","eligible_users":["alice"]}`, token); code != 202 {
			t.Fatalf("publish to alice: %d %s", code, body)
		}
		if f := alice.readFrame(); string(f.Payload) != `[8,"acme/channel/news","for alice"]` {
			t.Fatalf("alice got %q", f.Payload)
		}
		// Everyone but alice; then nobody (an empty eligible list); then
		// everyone again. Frames arrive in order, so each client's next
		// frame shows what it was (not) sent: anon never got "for alice",
		// alice never got "not alice", nobody got "nobody".
		for _, req := range []string{
			`{"topic":"acme/channel/news","payload":"not alice","excluded_users":["alice"]}`,
			`{"topic":"acme/channel/news","payload":"nobody","eligible_users":[]}`,
			`{"topic":"acme/channel/news","payload":{"n":2}}`,
		} {
			if code, body := call("POST", "/api/publish", req, token); code != 202 {
				t.Fatalf("publish %s: %d %s", req, code, body)
			}
		}
		if f := anon.readFrame(); string(f.Payload) != `[8,"acme/channel/news","not alice"]` {
			t.Fatalf("anon got %q, want not alice", f.Payload)
		}
		for _, c := range []*rawClient{alice, anon} {
			if f := c.readFrame(); string(f.Payload) != `[8,"acme/channel/news",{"msg":{"n":2}}]` {
				t.Fatalf("got %q, want the last push", f.Payload)
			}
		}
		if code, _ := call("POST", "/api/publish", `{"topic":"nowhere/x","payload":1}`, token); code != 404 {
			t.Fatalf("unrouted topic: %d", code)
		}
		if code, _ := call("POST", "/api/publish", `{"topic":"acme/channel/news","payload":1,"extra":true}`, token); code != 400 {
			t.Fatalf("unknown field: %d", code)
		}
		huge := `{"topic":"acme/channel/news","payload":"` + strings.Repeat("x", maxAPIBody) + `"}`
		if code, _ := call("POST", "/api/publish", huge, token); code != 413 {
			t.Fatalf("body over the limit: %d, want 413", code)
		}
		code, body := call("GET", "/api/clients?username=alice", "", token)
		var cl struct {
			Clients []struct {
				UserIdentifier string `json:"user_identifier"`
			}
		}
		if code != 200 || json.Unmarshal([]byte(body), &cl) != nil || len(cl.Clients) != 1 || cl.Clients[0].UserIdentifier != "alice" {
			t.Fatalf("clients: %d %s", code, body)
		}
		if code, body := call("POST", "/api/disconnect", `{"username":"alice"}`, token); code != 200 || !bytes.Contains([]byte(body), []byte(`"disconnected":1`)) {
			t.Fatalf("disconnect: %d %s", code, body)
		}
		if code := alice.expectClose(); code != closeAppDisconnect {
			t.Fatalf("close code %d, want 4002", code)
		}
	})
}

// A publish request PUBLISHed on the Redis push channel reaches this
// gateway's subscribers.
func TestRedisPushChannel(t *testing.T) {
	redisAddr := testenv.Redis(t)
	channel := "wsgate-test-push-" + t.Name()
	addr, _ := startServer(t, config.ModeEpoll, func(c *config.Config) {
		c.Push = config.PushConfig{RedisChannel: channel, Redis: config.RedisConnConfig{Addrs: []string{redisAddr}, Mode: "standalone"}}
	})
	c, err := dialRaw(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.write(ws.NewTextFrame([]byte(`[5,"acme/channel/push"]`)))
	c.readFrame() // own join
	pub, err := net.Dial("tcp", redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	msg := `{"topic":"acme/channel/push","payload":{"from":"redis"}}`
	cmd := fmt.Sprintf("*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(channel), channel, len(msg), msg)
	// The gateway subscribes in the background: publish until it hears.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pub.Write([]byte(cmd))
		c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		f, err := ws.ReadFrame(c.br)
		if err == nil {
			if string(f.Payload) != `[8,"acme/channel/push",{"msg":{"from":"redis"}}]` {
				t.Fatalf("got %q", f.Payload)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push arrived within 10s: %v", err)
		}
	}
}

// TestAPIDisconnectRelay: with cluster.fanout, POST /api/disconnect
// answers 200 with "relayed": true only once Redis took the command, and
// 503 with Retry-After and "relayed": false when it could not (the local
// connections are closed either way, so a retry is harmless).
func TestAPIDisconnectRelay(t *testing.T) {
	redisAddr := testenv.Redis(t)
	dir := t.TempDir()
	seedSession(t, dir, "alice1")
	seedSession(t, dir, "alice2")
	addr, srv := startServer(t, config.ModeGoroutine, func(c *config.Config) {
		c.Session.Files.Path = dir
		c.Session.Files.GCMaxLifetime = 0
	})
	const token = "0123456789abcdef-token"
	api := srv.APIHandler(token)
	// The handler runs on this goroutine (no server in between), so the
	// control swapped in below is seen without a race.
	disconnect := func() (*httptest.ResponseRecorder, map[string]any) {
		req := httptest.NewRequest("POST", "/api/disconnect", strings.NewReader(`{"username":"alice"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("answer %d %q: %v", rec.Code, rec.Body, err)
		}
		return rec, body
	}
	connect := func(sid string) *rawClient {
		waitUserConns(t, srv, "alice", 0) // the previous one is gone
		c, err := dialRaw(t, addr, http.Header{"Cookie": {"PHPSESSID=" + sid}})
		if err != nil {
			t.Fatal(err)
		}
		waitUserConns(t, srv, "alice", 1)
		return c
	}
	control := func(redis string) *cluster.Control {
		ctl, err := cluster.NewControl(cluster.ControlOptions{
			Redis:        storage.RedisOptions{Addrs: []string{redis}, LookupTimeout: 300 * time.Millisecond},
			Prefix:       testenv.UniqueName(t, "wsgate_t_") + ":",
			NodeID:       "api-test",
			OnDisconnect: func(string, time.Time) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ctl.Close() })
		return ctl
	}
	defer func() { srv.control = nil }()

	// Redis hung: the local connection closes, the answer (within the
	// lookup timeout) says the others were not told.
	alice := connect("alice1")
	srv.control = control(testenv.Blackhole(t))
	rec, body := disconnect()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		body["disconnected"] != 1.0 || body["relayed"] != false || body["error"] == nil {
		t.Fatalf("with Redis hung: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if code := alice.expectClose(); code != closeAppDisconnect {
		t.Fatalf("close code %d, want 4002", code)
	}

	// Redis up: relayed.
	alice = connect("alice2")
	srv.control = control(redisAddr)
	rec, body = disconnect()
	if rec.Code != http.StatusOK || body["disconnected"] != 1.0 || body["relayed"] != true {
		t.Fatalf("with Redis up: %d %s", rec.Code, rec.Body)
	}
	if code := alice.expectClose(); code != closeAppDisconnect {
		t.Fatalf("close code %d, want 4002", code)
	}
}

// TestCloseUserConnectionsBefore: another replica's disconnect closes the
// connections established by the time it was sent, and spares those
// opened since (a command read late after a lost link).
func TestCloseUserConnectionsBefore(t *testing.T) {
	dir := t.TempDir()
	seedSession(t, dir, "alice1")
	addr, srv := startServer(t, config.ModeGoroutine, func(c *config.Config) {
		c.Session.Files.Path = dir
		c.Session.Files.GCMaxLifetime = 0
	})
	alice, err := dialRaw(t, addr, http.Header{"Cookie": {"PHPSESSID=alice1"}})
	if err != nil {
		t.Fatal(err)
	}
	waitUserConns(t, srv, "alice", 1)
	if n := srv.closeUserConnections("alice", time.Now().Add(-time.Minute)); n != 0 {
		t.Fatalf("a command sent before alice connected closed %d connections", n)
	}
	if n := srv.closeUserConnections("alice", time.Now()); n != 1 {
		t.Fatalf("a command sent after alice connected closed %d connections, want 1", n)
	}
	if code := alice.expectClose(); code != closeAppDisconnect {
		t.Fatalf("close code %d, want 4002", code)
	}
}

// waitUserConns waits until srv lists n connections of user: WELCOME
// can reach the client a moment before its connection is listed.
func waitUserConns(t *testing.T, srv *Server, user string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		for _, c := range srv.snapshotClients() {
			if c.identity().UserIdentifier == user {
				got++
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections of %s listed; want %d", got, user, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
