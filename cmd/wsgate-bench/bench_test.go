package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestMain removes the example plugin TestScenariosAgainstGateway built.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "idle", "--target", "ws://10.0.0.1:8080/"},
		{"--scenario", "idle", "--target", "ws://example.com:8080/"},
		{"--scenario", "idle", "--target", "wss://127.0.0.1:8080/"},
		{"--scenario", "idle", "--sources", "127.0.0.1,192.168.1.2"},
		{"--scenario", "idle", "--metrics", "http://10.1.1.1:9090/metrics"},
		{"--scenario", "nope"},
		{"--scenario", "rpc", "--conns", "0"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	if _, err := parseFlags([]string{"--scenario", "idle", "--target", "ws://localhost:1/", "--sources", "127.0.0.9"}, &bytes.Buffer{}); err != nil {
		t.Errorf("loopback refused: %v", err)
	}
}

func TestSessionFor(t *testing.T) {
	for _, user := range []string{"a", "bench7", "bench123456789"} {
		s, err := sessionFor(sessionTemplate, user)
		if err != nil {
			t.Fatal(err)
		}
		// The token string's length prefix must match its content.
		const key = `s:14:"_security_main";s:`
		i := bytes.Index(s, []byte(key)) + len(key)
		var n int
		if _, err := fmt.Sscanf(string(s[i:]), "%d:", &n); err != nil {
			t.Fatal(err)
		}
		start := bytes.IndexByte(s[i:], '"') + i + 1
		if start+n+2 > len(s) || string(s[start+n:start+n+2]) != `";` {
			t.Fatalf("%s: token length %d does not end at the closing quote", user, n)
		}
		want := fmt.Sprintf("\x00username\";s:%d:\"%s\";", len(user), user)
		if !bytes.Contains(s[start:start+n], []byte(want)) {
			t.Fatalf("%s: username not rewritten", user)
		}
	}
}

func TestHist(t *testing.T) {
	h := &hist{}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	s := h.summary()
	near := func(got, want float64) bool { return got >= want*0.99-1 && got <= want*1.01+1 }
	if s.Count != 1000 || !near(s.P50Us, 500) || !near(s.P90Us, 900) || !near(s.P99Us, 990) || s.MaxUs != 1000 {
		t.Fatalf("summary %+v", s)
	}
	for _, v := range []uint64{0, 1, 127, 128, 255, 256, 1 << 40, 1<<64 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets || histLow(i) > v {
			t.Fatalf("value %d: bucket %d low %d", v, i, histLow(i))
		}
	}
}

func TestEventRoundTrip(t *testing.T) {
	ts := time.Unix(1800000000, 123456789)
	e := eventJSON(42, ts, 100)
	if len(e) != 100 || !json.Valid(e) {
		t.Fatalf("event %q: len %d", e, len(e))
	}
	msg := []byte(`[8,"acme/channel/bench",{"msg":` + string(e) + `}]`)
	seq, got, ok := parseEvent(msg)
	if !ok || seq != 42 || got != ts.UnixNano() {
		t.Fatalf("parseEvent = %d %d %v", seq, got, ok)
	}
	if _, _, ok := parseEvent([]byte(`[8,"acme/channel/bench",{"msg":"x-1 has joined acme/channel/bench"}]`)); ok {
		t.Fatal("join event parsed as a bench event")
	}
}

// TestScenariosAgainstGateway builds the real wsgate binary and the acme
// example plugin (with the same flags, -race when this test is), runs the
// gateway on a files store seeded by the tool, and runs every scenario tiny
// against it.
func TestScenariosAgainstGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway")
	}
	dir := t.TempDir()
	bin, plugin := buildGateway(t, dir)
	echoAddr := startEcho(t)
	sessDir := filepath.Join(dir, "sessions")
	wsAddr, metricsAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: %q
allow_anonymous: false
session:
  store: files
  files: {path: %q, gc_maxlifetime: 0}
limits: {idle_timeout: 10m}
metrics: {listen: %q}
log: {level: warn}
plugins: [%q]
upstreams:
  echo: {url: "http://%s/", secret: %q, timeout: 2s}
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
    echo_rpc: {pattern: "echo/{method}", handler: upstream.echo}
  topics:
    acme_topic: {pattern: "acme/channel/{room}", handler: acme.topic}
`, wsAddr, sessDir, metricsAddr, plugin, echoAddr, echoSecret)
	if err := os.MkdirAll(sessDir, 0o700); err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, bin, filepath.Join(dir, "wsgate.yaml"), cfg, metricsAddr)

	common := []string{
		"--target", "ws://" + wsAddr + "/", "--metrics", "http://" + metricsAddr + "/metrics",
		"--gateway-pid", fmt.Sprint(gw.Process.Pid), "--session-dir", sessDir,
		"--sources", "127.0.0.1,127.0.0.2", "--json",
	}
	const conns = 20
	runScenario := func(t *testing.T, extra ...string) *report {
		t.Helper()
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		code := run(ctx, append(append([]string{}, common...), extra...), &out, &errOut)
		var rep report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("exit %d, output %q, stderr %s: %v", code, out.String(), errOut.String(), err)
		}
		if code != 0 || rep.ErrorsTotal != 0 {
			t.Fatalf("exit %d, errors %v, stderr %s", code, rep.Errors, errOut.String())
		}
		if rep.Results.ConnectionsOpened != conns && rep.Scenario != "broadcast" {
			t.Errorf("opened %d connections, want %d", rep.Results.ConnectionsOpened, conns)
		}
		if rep.Before == nil || rep.After == nil || rep.Before.CPUSeconds == nil || rep.After.RSSBytes == 0 || rep.After.Goroutines == nil {
			t.Errorf("gateway samples missing: before %+v after %+v", rep.Before, rep.After)
		}
		return &rep
	}
	n := fmt.Sprint(conns)
	// The kernel floor in the same run, small: the smoke run of
	// --with-floor (the figures are the machine's, only their presence and
	// arithmetic are checked).
	withFloor := []string{"--with-floor", "--floor-pairs", "20", "--rounds", "5", "--handshakes", "100"}
	checkRatio := func(t *testing.T, name string, ratio, figure *float64, floor float64) {
		t.Helper()
		if ratio == nil || figure == nil || floor <= 0 || math.Abs(*ratio-*figure/floor) > 1e-9*(*ratio) {
			t.Errorf("%s: ratio %v, figure %v, floor %g: want figure / floor", name, ratio, figure, floor)
		}
	}

	t.Run("idle", func(t *testing.T) {
		rep := runScenario(t, "--scenario", "idle", "--conns", n, "--settle", "200ms", "--duration", "0", "--verify-auth", "--idle-subscribe", "acme/channel/idle{i}")
		if rep.Results.Subscribers != conns {
			t.Errorf("subscribed %d idle connections, want %d", rep.Results.Subscribers, conns)
		}
		if c := rep.After.Connections; c == nil || *c < conns {
			t.Errorf("gateway connections after = %v, want ≥ %d", c, conns)
		}
		if rep.Results.RSSPerConnBytes == nil || rep.Results.GoroutinesPerConn == nil {
			t.Error("per-connection figures missing")
		}
	})
	t.Run("connect", func(t *testing.T) {
		rep := runScenario(t, append([]string{"--scenario", "connect", "--conns", n, "--duration", "5s", "--verify-auth"}, withFloor...)...)
		r := rep.Results
		if r.CPUPerHandshakeUs == nil || r.Handshake.Count != conns {
			t.Errorf("handshake figures: %+v", r)
		}
		if r.Floor == nil || r.Floor.Handshake == nil || r.Floor.Handshake.Connections != 100 || r.RatiosToFloor == nil {
			t.Fatalf("floor %+v, ratios %+v: want the handshake floor of 100 connections and the ratios", r.Floor, r.RatiosToFloor)
		}
		checkRatio(t, "handshake", r.RatiosToFloor.CPUPerHandshake, r.CPUPerHandshakeUs, r.Floor.Handshake.CPUPerHandshakeUs)
	})
	t.Run("rpc", func(t *testing.T) {
		rep := runScenario(t, append([]string{"--scenario", "rpc", "--conns", n, "--duration", "1s", "--rate", "200"}, withFloor...)...)
		r := rep.Results
		if r.Calls < 150 || r.Calls > 200 || r.Call.Count != uint64(r.Calls) {
			t.Errorf("calls %d (latency count %d), want 150..200", r.Calls, r.Call.Count)
		}
		if r.Floor == nil || r.Floor.Delivery == nil || r.Floor.Delivery.Writes != 20*5 || r.RatiosToFloor == nil {
			t.Fatalf("floor %+v, ratios %+v: want 20 × 5 writes and the ratios", r.Floor, r.RatiosToFloor)
		}
		checkRatio(t, "call", r.RatiosToFloor.CPUPerCall, r.CPUPerCallUs, r.Floor.Delivery.CPUPerWriteUs)
	})
	t.Run("rpc via the Go upstream", func(t *testing.T) {
		rep := runScenario(t, "--scenario", "rpc", "--conns", n, "--duration", "1s", "--rate", "200", "--procedure", "echo/sum")
		if r := rep.Results; r.Calls < 150 || r.Calls > 200 || r.Call.Count != uint64(r.Calls) {
			t.Errorf("calls %d (latency count %d), want 150..200", r.Calls, r.Call.Count)
		}
		if rep.Params.Procedure != "echo/sum" {
			t.Errorf("report params procedure %q", rep.Params.Procedure)
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		rep := runScenario(t, append([]string{"--scenario", "broadcast", "--conns", n, "--duration", "1s", "--publish-rate", "10", "--settle", "200ms"}, withFloor...)...)
		r := rep.Results
		if r.Floor == nil || r.Floor.DeliveryWritev == nil || r.Floor.DeliveryWritev.FrameBytes != broadcastFrameBytes("acme/channel/bench", 100) || r.RatiosToFloor == nil {
			t.Fatalf("floor %+v, ratios %+v: want the writev floor of the broadcast's frame size and the ratios", r.Floor, r.RatiosToFloor)
		}
		checkRatio(t, "delivery writev", r.RatiosToFloor.CPUPerDeliveryWritev, r.CPUPerDeliveryUs, r.Floor.DeliveryWritev.CPUPerWriteUs)
		checkRatio(t, "delivery write", r.RatiosToFloor.CPUPerDeliveryWrite, r.CPUPerDeliveryUs, r.Floor.Delivery.CPUPerWriteUs)
		if r.Subscribers != conns || r.Published != 10 || r.Delivered != 10*conns || r.Lost != 0 || r.Delivery.Count != 10*conns {
			t.Errorf("broadcast: %+v", r)
		}
		if r.JoinEventsIgnored < conns {
			t.Errorf("join events ignored %d, want ≥ %d", r.JoinEventsIgnored, conns)
		}
	})
	t.Run("anonymous is an auth failure", func(t *testing.T) {
		var out bytes.Buffer
		args := []string{"--target", "ws://" + wsAddr + "/", "--metrics", "", "--json",
			"--scenario", "connect", "--conns", "2", "--cookie", "OTHER"}
		if code := run(context.Background(), args, &out, &bytes.Buffer{}); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		var rep report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Errors["handshake_status_403"] != 2 {
			t.Errorf("errors %v, want 2 handshake_status_403", rep.Errors)
		}
	})
}

// buildGateway builds cmd/wsgate into dir and the acme example plugin with
// the same flags (-race when this test is); it returns both paths.
func buildGateway(t *testing.T, dir string) (bin, plugin string) {
	t.Helper()
	testenv.StartAcmePlugin() // builds alongside the gateway
	bin = filepath.Join(dir, "wsgate")
	if err := testenv.GoBuild(bin, "../../cmd/wsgate"); err != nil {
		t.Fatalf("building the gateway: %v", err)
	}
	return bin, testenv.AcmePlugin(t)
}

// startGateway writes cfg to cfgPath, runs the gateway on it until the test
// ends (its log shown when the test failed) and waits for its /readyz.
func startGateway(t *testing.T, bin, cfgPath, cfg, metricsAddr string) *exec.Cmd {
	t.Helper()
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var gwLog bytes.Buffer
	gw := exec.Command(bin, "serve", "--config", cfgPath)
	gw.Stderr = &gwLog
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gw.Process.Kill()
		gw.Wait()
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", cfgPath, gwLog.String())
		}
	})
	waitReady(t, "http://"+metricsAddr+"/readyz")
	return gw
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gateway not ready at %s", url)
}

// startEcho runs `wsgate-bench upstream-echo` (secret echoSecret) on a free
// loopback port until the test ends and returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	addr := freePort(t)
	t.Setenv("BENCH_ECHO_SECRET", echoSecret)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"upstream-echo", "--listen", addr, "--secret-env", "BENCH_ECHO_SECRET"}, io.Discard, testLog{t})
	}()
	t.Cleanup(func() {
		stop()
		if code := <-done; code != 0 {
			t.Errorf("upstream-echo exit %d", code)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("upstream-echo exited with %d before listening", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream-echo not listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLog writes the echo's log lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
