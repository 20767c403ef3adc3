package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// startPHPUpstream runs examples/php-upstream with PHP's built-in server.
func startPHPUpstream(t *testing.T, secret string) string {
	t.Helper()
	php := testenv.PHP(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, php, "-S", addr, "../examples/php-upstream/index.php")
	// The example keeps one marker per request id there to refuse replays;
	// it must be private (0700), which t.TempDir itself is not.
	replay := filepath.Join(t.TempDir(), "replay")
	if err := os.Mkdir(replay, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "WSGATE_UPSTREAM_SECRET="+secret, "WSGATE_REPLAY_DIR="+replay)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return "http://" + addr + "/"
		}
		if time.Now().After(deadline) {
			t.Fatalf("php -S did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUpstreamPHP forwards calls and publishes through the real binary to
// the plain-PHP example upstream, signed with the shared secret.
func TestUpstreamPHP(t *testing.T) {
	testenv.PHP(t)
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	const secret = "0123456789abcdef0123456789abcdef"
	url := startPHPUpstream(t, secret)
	config := `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
upstreams:
  app: {url: "%s", secret: "%s", timeout: 3s}
  wrong: {url: "%s", secret: "not-the-app-secret-0000"}
routes:
  rpc:
    app_rpc: {pattern: "app/{method}", handler: upstream.app}
    wrong_rpc: {pattern: "wrong/{method}", handler: upstream.wrong}
  topics:
    app_topic: {pattern: "chat/{room}", handler: upstream.app}
`
	g := startGateway(t, fmt.Sprintf(config, dir, url, secret, url))

	c, err := dialWAMP(t, g.Addr, dialOptions{Cookie: cookie(alice)})
	if err != nil {
		t.Fatal(err)
	}
	assertMsg(t, c.call("c1", "app/sum", []int{1, 2, 3}), `[3,"c1",[6]]`)

	anon, err := dialWAMP(t, g.Addr, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := anon.call("c2", "app/sum", []int{1})
	assertErrorURI(t, m, "app.error.auth")

	// A gateway with another secret is refused by the app (401 → 502).
	assertErrorURI(t, c.call("c3", "wrong/sum", []int{1}), "wsgate.error.upstream_bad_gateway")

	// Publish: the app rewrites {"text"} events, adding who sent them.
	c.send(5, "chat/lobby")
	c.send(7, "chat/lobby", map[string]string{"text": "hi"})
	assertMsg(t, c.next(), `[8,"chat/lobby",{"text":"hi","by":"alice"}]`)
}

func assertErrorURI(t *testing.T, m []json.RawMessage, uri string) {
	t.Helper()
	var typ int
	var got string
	if len(m) < 4 || json.Unmarshal(m[0], &typ) != nil || typ != 4 || json.Unmarshal(m[2], &got) != nil || got != uri {
		b, _ := json.Marshal(m)
		t.Fatalf("got %s, want CALLERROR %s", b, uri)
	}
}

// TestSlowUpstreamBlocksNoOne holds every call to one upstream until the
// test lets go, with more of them in flight than the gateway has event
// loop workers: a call to another upstream must still be answered, and the
// held calls must all get their results once released.
func TestSlowUpstreamBlocksNoOne(t *testing.T) {
	release := make(chan struct{})
	var held sync.WaitGroup
	const slowCalls = 8
	held.Add(slowCalls)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held.Done()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"result":"slow"}`)
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"result":"fast"}`)
	}))
	defer fast.Close()
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	defer letGo() // before the servers close: they wait for their handlers

	const secret = "0123456789abcdef0123456789abcdef"
	config := `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
transport: {workers: 2}
limits: {call_timeout: 60s}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
upstreams:
  slow: {url: "%s", secret: "%s", timeout: 50s}
  fast: {url: "%s", secret: "%s", timeout: 5s}
routes:
  rpc:
    slow_rpc: {pattern: "slow/{method}", handler: upstream.slow}
    fast_rpc: {pattern: "fast/{method}", handler: upstream.fast}
`
	g := startGateway(t, fmt.Sprintf(config, t.TempDir(), slow.URL, secret, fast.URL, secret))

	clients := make([]*wampV1Client, slowCalls)
	for i := range clients {
		c, err := dialWAMP(t, g.Addr, dialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		c.send(2, fmt.Sprint("s", i), "slow/wait")
	}
	held.Wait() // every slow call has reached the upstream and is held there

	c, err := dialWAMP(t, g.Addr, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertMsg(t, c.call("f1", "fast/now"), `[3,"f1",["fast"]]`)
	// The caller of a held call is not blocked either.
	assertMsg(t, clients[0].call("f2", "fast/now"), `[3,"f2",["fast"]]`)

	letGo()
	for i, c := range clients {
		assertMsg(t, c.next(), fmt.Sprintf(`[3,"s%d",["slow"]]`, i))
	}
}
