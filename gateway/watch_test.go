package gateway

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/test/testenv"
)

// authenticatedSession is a session of user "judy" on firewall main, as
// Symfony writes it with serialize_handler php.
func authenticatedSession(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../phpsession/testdata/m_username_password_php.sess")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dialSession connects with the session cookie id.
func dialSession(t *testing.T, addr, id string) *rawClient {
	t.Helper()
	c, err := dialRaw(t, addr, http.Header{"Cookie": {"PHPSESSID=" + id}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitAnonymous waits until the server's only client is anonymous.
func waitAnonymous(t *testing.T, srv *Server) {
	t.Helper()
	waitClient(t, srv, func(c *client) bool { return c.identity().Anonymous }, "downgraded")
}

// waitClient waits up to 10 s until the server has exactly one client and
// ok says yes to it; what names the state for the failure.
func waitClient(t *testing.T, srv *Server, ok func(*client) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cs := srv.snapshotClients()
		if len(cs) == 1 && ok(cs[0]) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("client not %s", what)
}

// TestWatchLogoutClosesFiles: with the files store, revalidate_interval 0
// (no pass ever runs) and session.watch on by default, unlinking the
// session file (session_destroy) closes the connection with 4001, and a
// session kept by another connection is left alone.
func TestWatchLogoutClosesFiles(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		dir := t.TempDir()
		data := authenticatedSession(t)
		for _, id := range []string{"logoutfiles1", "keptfiles1"} {
			if err := os.WriteFile(filepath.Join(dir, "sess_"+id), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		addr, srv := startServer(t, mode, func(c *config.Config) {
			c.Session.Files.Path = dir
			c.AllowAnonymous = false
		})
		if srv.cfg.Session.RevalidateInterval != 0 || !srv.cfg.Session.Watch {
			t.Fatal("defaults changed: want no revalidation pass and watch on")
		}
		out := dialSession(t, addr, "logoutfiles1")
		kept := dialSession(t, addr, "keptfiles1")
		if err := os.Remove(filepath.Join(dir, "sess_logoutfiles1")); err != nil {
			t.Fatal(err)
		}
		if code := out.expectClose(); code != closeSessionEnded {
			t.Fatalf("close code %d, want 4001", code)
		}
		// PHP writing the other session (a request) re-reads it: still valid.
		if err := os.WriteFile(filepath.Join(dir, "sess_keptfiles1"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		kept.write(ws.NewPingFrame([]byte("p"))) // still served
		if f := kept.readFrame(); f.Header.OpCode != ws.OpPong {
			t.Fatalf("kept connection answered %v, want pong", f.Header.OpCode)
		}
	})
}

// TestWatchLogoutDowngradesFiles: with on_invalid downgrade, the same
// logout makes the client anonymous instead.
func TestWatchLogoutDowngradesFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sess_downfiles1"), authenticatedSession(t), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, srv := startServer(t, config.ModeGoroutine, func(c *config.Config) {
		c.Session.Files.Path = dir
		c.Session.OnInvalid = "downgrade"
	})
	dialSession(t, addr, "downfiles1")
	// In goroutine mode the 101 may reach the client while the gateway
	// still opens the connection (the writer sends it as soon as it is
	// queued): wait until it is listed.
	waitClient(t, srv, func(c *client) bool { return !c.identity().Anonymous }, "authenticated")
	if err := os.Remove(filepath.Join(dir, "sess_downfiles1")); err != nil {
		t.Fatal(err)
	}
	waitAnonymous(t, srv)
}

// TestWatchOffKeepsLoggedOut: session.watch false restores the old
// behaviour: without a pass, a logout is not noticed.
func TestWatchOffKeepsLoggedOut(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sess_offfiles1"), authenticatedSession(t), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, srv := startServer(t, config.ModeGoroutine, func(c *config.Config) {
		c.Session.Files.Path = dir
		c.Session.Watch = false
	})
	if srv.resolver.Notifier() != nil {
		t.Fatal("watching with session.watch false")
	}
	c := dialSession(t, addr, "offfiles1")
	os.Remove(filepath.Join(dir, "sess_offfiles1"))
	time.Sleep(200 * time.Millisecond)
	c.write(ws.NewPingFrame([]byte("p")))
	if f := c.readFrame(); f.Header.OpCode != ws.OpPong {
		t.Fatalf("got %v, want pong", f.Header.OpCode)
	}
}

// TestWatchLogoutClosesRedis: with the Redis store (client cache off, so
// tracking is the watcher's own), DEL of the session key (Symfony's
// RedisSessionHandler destroy) closes the connection with 4001, in both
// transport modes, without a revalidation pass.
func TestWatchLogoutClosesRedis(t *testing.T) {
	redisAddr := testenv.Redis(t)
	forEachMode(t, func(t *testing.T, mode string) {
		prefix := testenv.UniqueName(t, "wsgate_t_") + "sf_s"
		admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			testenv.Missing(t, "Redis", err)
		}
		defer admin.Close()
		ctx := context.Background()
		id := "logoutredis1"
		if err := admin.Do(ctx, admin.B().Set().Key(prefix+id).Value(string(authenticatedSession(t))).Ex(time.Hour).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		defer admin.Do(ctx, admin.B().Del().Key(prefix+id).Build())
		addr, _ := startServer(t, mode, func(c *config.Config) {
			c.Session.Store = config.StoreRedis
			c.Session.Redis.Addrs = []string{redisAddr}
			c.Session.Redis.Prefix = prefix
			c.AllowAnonymous = false
		})
		c := dialSession(t, addr, id)
		if err := admin.Do(ctx, admin.B().Del().Key(prefix+id).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if code := c.expectClose(); code != closeSessionEnded {
			t.Fatalf("close code %d, want 4001", code)
		}
	})
}
