package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
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
	cmd.Env = append(os.Environ(), "WSGATE_UPSTREAM_SECRET="+secret)
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
