package gateway

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/test/testenv"
	"github.com/wsgate/wsgate/wamp/handler"
)

// BenchmarkWatchLogout measures logout-to-close latency with session.watch
// and no revalidation pass: b.N clients connect with their own
// authenticated session, then their sessions are destroyed one every
// millisecond, as PHP's session_destroy does (unlink the file, DEL the
// key), and each client's time from the destroy to its close 4001 is
// recorded. It reports p50, p99 and max in ms, and the load average.
// Run: go test -run '^$' -bench WatchLogout -benchtime 1000x ./gateway/
func BenchmarkWatchLogout(b *testing.B) {
	for _, store := range []string{"files", "redis"} {
		b.Run(store, func(b *testing.B) { benchWatchLogout(b, store) })
	}
}

func benchWatchLogout(b *testing.B, store string) {
	data, err := os.ReadFile("../phpsession/testdata/m_username_password_php.sess")
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.AllowAnonymous = false
	cfg.Limits.MaxConnectionsPerUser = 0
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("benchlogout%06d", i)
	}
	var destroy func(id string)
	switch store {
	case "files":
		dir := b.TempDir()
		for _, id := range ids {
			if err := os.WriteFile(filepath.Join(dir, "sess_"+id), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		cfg.Session.Files.Path = dir
		destroy = func(id string) { os.Remove(filepath.Join(dir, "sess_"+id)) }
	case "redis":
		addr := testenv.Redis(b)
		prefix := testenv.UniqueName(b, "wsgate_b_") + "sf_s"
		admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			testenv.Missing(b, "Redis", err)
		}
		defer admin.Close()
		ctx := context.Background()
		for _, id := range ids {
			if err := admin.Do(ctx, admin.B().Set().Key(prefix+id).Value(string(data)).Ex(time.Hour).Build()).Error(); err != nil {
				b.Fatal(err)
			}
		}
		defer func() {
			for _, id := range ids {
				admin.Do(ctx, admin.B().Del().Key(prefix+id).Build())
			}
		}()
		cfg.Session.Store = config.StoreRedis
		cfg.Session.Redis.Addrs = []string{addr}
		cfg.Session.Redis.Prefix = prefix
		destroy = func(id string) { admin.Do(ctx, admin.B().Del().Key(prefix+id).Build()) }
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	srv, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), Handlers: handler.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	destroyed := make([]time.Time, b.N)
	latency := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards destroyed
	for i, id := range ids {
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Cookie": {"PHPSESSID=" + id}}), Protocols: []string{"wamp"}, Timeout: 10 * time.Second}
		nc, br, _, err := d.Dial(context.Background(), "ws://"+ln.Addr().String()+"/")
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		if br == nil {
			br = bufio.NewReader(nc)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer nc.Close()
			nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
			for {
				f, err := ws.ReadFrame(br)
				if err != nil {
					latency[i] = -1
					return
				}
				if f.Header.OpCode == ws.OpClose {
					at := time.Now()
					if code, _ := ws.ParseCloseFrameData(f.Payload); code != closeSessionEnded {
						latency[i] = -1
						return
					}
					mu.Lock()
					latency[i] = at.Sub(destroyed[i])
					mu.Unlock()
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the watcher's first "all" pass is over
	b.ResetTimer()
	for i, id := range ids {
		mu.Lock()
		destroyed[i] = time.Now()
		mu.Unlock()
		destroy(id)
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	b.StopTimer()
	failed := 0
	ok := latency[:0:0]
	for _, l := range latency {
		if l < 0 {
			failed++
		} else {
			ok = append(ok, l)
		}
	}
	if failed > 0 || len(ok) == 0 {
		b.Fatalf("%d of %d connections not closed with 4001", failed, b.N)
	}
	slices.Sort(ok)
	q := func(p float64) float64 { return float64(ok[int(p*float64(len(ok)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(0, "ns/op")
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average: %s", strings.TrimSpace(string(la)))
	}
}
