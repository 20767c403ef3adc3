package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/handler"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// copyFixture writes phpsession's fixture name into dir as session id.
func copyFixture(t *testing.T, dir, id, name string) {
	t.Helper()
	data, err := os.ReadFile("../phpsession/testdata/" + name + ".sess")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sess_"+id), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Every reason a client is anonymous is counted by reason and logged once
// with its likely cause, never with the session id.
func TestAnonymousReasons(t *testing.T) {
	dir := t.TempDir()
	copyFixture(t, dir, "sessAlice1", "upt_inmemory_roles")
	copyFixture(t, dir, "sessAnon01", "anonymous_token")
	copyFixture(t, dir, "sessNoTok1", "no_token")
	copyFixture(t, dir, "sessOld001", "upt_inmemory_roles")
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "sess_sessOld001"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sess_sessJunk01"), []byte("not|a session"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cookie, reason string
		firewalls            []string
		logged               []string // in the log line
	}{
		{"no cookie", "", AnonNoCookie, nil, []string{"cookie=PHPSESSID", "SameSite"}},
		{"cookie of another name", "SESSID=sessAlice1", AnonNoCookie, nil, nil},
		// Go's cookie parser unquotes this and trims that; PHP does
		// neither, so the id is not one PHP accepts.
		{"quoted id", `PHPSESSID="sessAlice1"`, AnonInvalidID, nil, nil},
		// A space before the ';' (one at the header's end is HTTP's, and
		// trimmed before PHP or the gateway see it).
		{"trailing space", "PHPSESSID=sessAlice1 ; x=1", AnonInvalidID, nil, nil},
		{"not found", "PHPSESSID=sessNobody", AnonNotFound, nil, []string{"prefix"}},
		{"expired", "PHPSESSID=sessOld001", AnonExpired, nil, nil},
		{"undecodable", "PHPSESSID=sessJunk01", AnonUndecodable, nil, []string{"serialize_handler=php"}},
		{"no token at all", "PHPSESSID=sessNoTok1", AnonNoTokenForFirewall, nil, []string{"keys_read=_security_main", `session_keys=""`}},
		{"token of another firewall", "PHPSESSID=sessAlice1", AnonNoTokenForFirewall, []string{"api"},
			[]string{"keys_read=_security_api", `session_keys="_security_main (token firewall main)"`}},
		{"anonymous token", "PHPSESSID=sessAnon01", AnonNotAuthenticated, nil, []string{"firewall_main=AnonymousToken"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			cfg := config.Default()
			cfg.Transport.Mode = config.ModeGoroutine
			cfg.Listen = "127.0.0.1:0"
			cfg.Session.Files.Path = dir
			cfg.Session.Files.GCMaxLifetime = time.Hour
			if tc.firewalls != nil {
				cfg.Session.Firewalls = tc.firewalls
			}
			addr, srv := serveConfigLog(t, cfg, handler.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))
			header := http.Header{}
			if tc.cookie != "" {
				header.Set("Cookie", tc.cookie)
			}
			for range 3 {
				c, err := dialRaw(t, addr, header)
				if err != nil {
					t.Fatal(err)
				}
				c.nc.Close()
			}
			for _, r := range AnonymousReasons() {
				want := 0.0
				if r == tc.reason {
					want = 3
				}
				if got := testutil.ToFloat64(srv.metrics.AnonymousHandshakes.WithLabelValues(r)); got != want {
					t.Errorf("wsgate_anonymous_handshakes_total{reason=%q} = %v, want %v", r, got, want)
				}
			}
			out := logs.String()
			if n := strings.Count(out, "clients are anonymous"); n != 1 {
				t.Fatalf("%d anonymous lines for 3 handshakes, want 1 per minute:\n%s", n, out)
			}
			for _, want := range append([]string{"reason=" + tc.reason, "handshakes=1", "cause="}, tc.logged...) {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			if _, id, ok := strings.Cut(tc.cookie, "="); ok && strings.Contains(out, strings.Trim(id, `" ;x=1`)) {
				t.Errorf("log names the session id:\n%s", out)
			}
		})
	}
}

// The same session through a quote-free cookie is the user: the reasons
// above are the cookie's and the session's, not the fixture's.
func TestAnonymousControl(t *testing.T) {
	dir := t.TempDir()
	copyFixture(t, dir, "sessAlice1", "upt_inmemory_roles")
	addr, srv := startServer(t, config.ModeGoroutine, func(c *config.Config) {
		c.Session.Files.Path = dir
		c.Session.Files.GCMaxLifetime = time.Hour
	})
	c, err := dialRaw(t, addr, http.Header{"Cookie": {"other=1; PHPSESSID=sessAlice1"}})
	if err != nil {
		t.Fatal(err)
	}
	c.nc.Close()
	for _, r := range AnonymousReasons() {
		if got := testutil.ToFloat64(srv.metrics.AnonymousHandshakes.WithLabelValues(r)); got != 0 {
			t.Errorf("authenticated client counted anonymous (%s)", r)
		}
	}
}
