package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

const abuseAPIToken = "abuse-api-token-0123456789abcdef"

const abuseClientStorageConfig = `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
transport: {mode: %s}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
client_storage:
  driver: redis
  redis: {addrs: ["%s"]}
api: {listen: "%s", token: "%s"}
`

// TestAbuseClientStorageRestart: the Redis client storage is killed and
// comes back empty. GET /api/clients must never claim that connected
// clients are gone: every answer is 503 or lists them all, and within a
// bounded number of polls it lists them all again.
func TestAbuseClientStorageRestart(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		srv := testenv.StartRedis(t)
		dir := t.TempDir()
		api := freeAddr(t)
		g := startAbuseGateway(t, fmt.Sprintf(abuseClientStorageConfig, mode, dir, srv.Addr, api, abuseAPIToken))
		measureRSS(t, g, mode)

		const anonymous = 4
		// Authenticated clients too where PHP can write their sessions
		// (a subtest, so that a missing PHP skips only them, or fails
		// under CI as every missing service does).
		var cookies, users []string
		t.Run("php_sessions", func(t *testing.T) {
			testenv.PHP(t)
			for _, u := range []string{"alice", "bob"} {
				s := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": u, "roles": []string{"ROLE_USER"}, "firewall": "main"})
				cookies = append(cookies, cookie(s))
				users = append(users, u)
			}
		})
		n := anonymous + len(cookies)
		want := map[string]bool{}
		for i := range n {
			o := rawDialOpts{}
			if i < len(cookies) {
				o.Header = "Cookie: " + cookies[i] + "\r\n"
			}
			if _, err := dialV1(t, g.Addr, o); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
		// The registrations are in Redis once the gateway lists them.
		var first []string
		for range 50 {
			status, ids := listClients(t, api)
			if status == 200 && len(ids) == n {
				first = ids
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if first == nil {
			t.Fatalf("GET /api/clients never listed the %d clients before the restart", n)
		}
		for _, id := range first {
			want[id] = true
		}

		srv.Kill()
		if status, ids := listClients(t, api); status != 503 && !sameSet(ids, want) {
			t.Errorf("with Redis down: GET /api/clients answered %d with %d clients, want 503 or all %d", status, len(ids), n)
		}
		srv.Start() // empty: no persistence
		complete := 0
		for poll := 0; poll < 150 && complete < 5; poll++ {
			status, ids := listClients(t, api)
			switch {
			case status == 503:
			case status == 200 && sameSet(ids, want):
				complete++
			default:
				t.Fatalf("poll %d after the restart: GET /api/clients answered %d with %d of the %d connected clients (%v): the app would think the others offline",
					poll, status, countIn(ids, want), n, users)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if complete == 0 {
			t.Errorf("GET /api/clients never listed all %d clients again within 150 polls", n)
		}
	})
}

// listClients polls GET /api/clients?anonymous=true and returns the
// status and the connection ids listed.
func listClients(t *testing.T, api string) (int, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+api+"/api/clients?anonymous=true", nil)
	req.Header.Set("Authorization", "Bearer "+abuseAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /api/clients: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	var out struct {
		Clients []struct {
			ConnID string `json:"conn_id"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("GET /api/clients: %v: %s", err, body)
	}
	ids := make([]string, 0, len(out.Clients))
	for _, c := range out.Clients {
		ids = append(ids, c.ConnID)
	}
	sort.Strings(ids)
	return 200, ids
}

func sameSet(ids []string, want map[string]bool) bool {
	return len(ids) == len(want) && countIn(ids, want) == len(want)
}

func countIn(ids []string, want map[string]bool) int {
	n := 0
	for _, id := range ids {
		if want[id] {
			n++
		}
	}
	return n
}

const abuseStoreOutageConfig = `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
transport: {mode: %s}
limits: {max_handshakes: %d}
session:
  store: redis
  lookup_timeout: 1500ms
  redis: {addrs: ["%s"], client_cache: false}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
`

const outageMaxHandshakes = 4

// TestAbuseStoreOutage puts a proxy the test controls between the gateway
// and its Redis session store. Cut: new handshakes get 503 while an
// established client keeps getting answers; restored: handshakes get 101
// again. Stalled: handshakes waiting on the store fill
// limits.max_handshakes and the next ones get 503 at once.
func TestAbuseStoreOutage(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		srv := testenv.StartRedis(t)
		alice := redisSession(t, srv, map[string]any{"user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
		bob := redisSession(t, srv, map[string]any{"user": "bob", "roles": []string{"ROLE_USER"}, "firewall": "main"})
		proxy := testenv.StartProxy(t, srv.Addr)
		g := startAbuseGateway(t, fmt.Sprintf(abuseStoreOutageConfig, mode, outageMaxHandshakes, proxy.Addr()))
		withCookie := func(s phpSession) rawDialOpts { return rawDialOpts{Header: "Cookie: " + cookie(s) + "\r\n"} }

		t.Run("cut", func(t *testing.T) {
			measureRSS(t, g, mode)
			a, err := dialV1(t, g.Addr, withCookie(alice))
			if err != nil {
				t.Fatal(err)
			}
			assertMsg(t, expectAnswer(t, a, "c1", "sample/sum", []int{1, 2}), `[3,"c1",{"result":3}]`)

			proxy.Cut()
			for i := range 3 {
				_, err := dialV1(t, g.Addr, withCookie(bob))
				var se statusError
				if !errors.As(err, &se) || int(se) != 503 {
					t.Errorf("handshake %d with the store cut: %v, want 503", i, err)
				}
			}
			assertMsg(t, expectAnswer(t, a, "c2", "sample/sum", []int{2, 2}), `[3,"c2",{"result":4}]`)

			proxy.Restore()
			var b *wsRaw
			for range 100 {
				if b, err = dialV1(t, g.Addr, withCookie(bob)); err == nil {
					break
				}
				var se statusError
				if !errors.As(err, &se) || int(se) != 503 {
					t.Fatalf("handshake after the restore: %v, want 101 (or 503 until the gateway reconnects)", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if b == nil {
				t.Fatalf("handshakes still refused after the store came back: %v", err)
			}
			assertMsg(t, expectAnswer(t, b, "c3", "sample/sum", []int{3, 3}), `[3,"c3",{"result":6}]`)
			assertMsg(t, expectAnswer(t, a, "c4", "sample/sum", []int{4}), `[3,"c4",{"result":4}]`)
		})

		t.Run("stalled_max_handshakes", func(t *testing.T) {
			measureRSS(t, g, mode)
			a, err := dialV1(t, g.Addr, withCookie(alice))
			if err != nil {
				t.Fatal(err)
			}
			w := watchMetrics(t, g)
			proxy.Stall()
			const dials = 3 * outageMaxHandshakes
			statuses := make([]int, dials)
			var wg sync.WaitGroup
			for i := range dials {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := dialV1(t, g.Addr, withCookie(bob))
					var se statusError
					if errors.As(err, &se) {
						statuses[i] = int(se)
					} else if err == nil {
						statuses[i] = 101
					}
				}()
			}
			wg.Wait()
			// The established client is not touched by the stall.
			assertMsg(t, expectAnswer(t, a, "s1", "sample/sum", []int{5}), `[3,"s1",{"result":5}]`)
			proxy.Resume()
			for i, st := range statuses {
				if st != 503 {
					t.Errorf("handshake %d with the store stalled: status %d, want 503", i, st)
				}
			}
			// The dials past the bound are refused by it; the few that
			// might come after a slot holder's lookup timed out, under a
			// stalled machine, are let off.
			w.expectLimit("max_handshakes", dials/2)
			t.Logf("of %d handshakes: %v counted limit max_handshakes, %v overloaded, %v store_unavailable", dials,
				w.delta("wsgate_limit_exceeded_total", `limit="max_handshakes"`),
				w.delta("wsgate_handshakes_total", `outcome="overloaded"`),
				w.delta("wsgate_handshakes_total", `outcome="store_unavailable"`))
			var b *wsRaw
			for range 100 {
				if b, err = dialV1(t, g.Addr, withCookie(bob)); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if b == nil {
				t.Fatalf("handshakes still refused after the stall ended: %v", err)
			}
		})
	})
}
