package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
	"github.com/wsgate/wsgate/wamp/handler"
)

// startPHPUpstream runs examples/php-upstream with `php -S` on a free port
// and returns its URL. Its replay markers go to WSGATE_REPLAY_DIR when the
// test set it, else to a directory of the test's own.
func startPHPUpstream(t *testing.T, secret string) string {
	t.Helper()
	php := testenv.PHP(t)
	script, err := filepath.Abs("../../examples/php-upstream/index.php")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(php, "-n", "-S", addr, script)
	cmd.Env = append(os.Environ(), "WSGATE_UPSTREAM_SECRET="+secret)
	if os.Getenv("WSGATE_REPLAY_DIR") == "" {
		dir := filepath.Join(t.TempDir(), "replay")
		if err := os.Mkdir(dir, 0o700); err != nil { // private, as the example insists
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "WSGATE_REPLAY_DIR="+dir)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("php -S output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for testenv.TCPReachable(addr) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("php -S did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr + "/"
}

func TestPHPExample(t *testing.T) {
	url := startPHPUpstream(t, string(testSecret))
	u := newUp(t, url, func(c *Config) { c.Timeout = 5 * time.Second })
	ctx := context.Background()

	out, err := u.Call(ctx, fakeClient{}, callReq, json.RawMessage(`[1, 2, "3", 4.5]`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(out); string(b) != "10.5" {
		t.Fatalf("sum = %s, want 10.5", b)
	}
	out, err = u.Call(ctx, fakeClient{}, callReq, json.RawMessage(`[1, 2, 3]`))
	if b, _ := json.Marshal(out); err != nil || string(b) != "6" {
		t.Fatalf("sum = %s, %v, want 6", b, err)
	}

	_, err = u.Call(ctx, fakeClient{anon: true}, callReq, json.RawMessage(`[1]`))
	wantError(t, err, 403, "app.error.auth", "authenticated")

	_, err = u.Call(ctx, fakeClient{}, handler.Request{URI: "app/nope", Attributes: map[string]string{"method": "nope"}}, nil)
	wantError(t, err, 404, "app.error.not_found", "Unknown method")

	if err := u.OnSubscribe(ctx, fakeClient{anon: true}, &fakeTopic{}, handler.Request{URI: "chat/public"}); err != nil {
		t.Fatalf("anonymous on a public topic: %v", err)
	}
	err = u.OnSubscribe(ctx, fakeClient{anon: true}, &fakeTopic{}, handler.Request{URI: "chat/private/1"})
	wantError(t, err, 403, "", "private topics")
	if err := u.OnSubscribe(ctx, fakeClient{}, &fakeTopic{}, handler.Request{URI: "chat/private/1"}); err != nil {
		t.Fatalf("user on a private topic: %v", err)
	}

	topic := &fakeTopic{}
	if err := u.OnPublish(ctx, fakeClient{}, topic, handler.Request{URI: "chat/public"}, json.RawMessage(`{"text":"hi"}`), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := u.OnPublish(ctx, fakeClient{}, topic, handler.Request{URI: "chat/public"}, json.RawMessage(`[1,2]`), nil, nil); err != nil {
		t.Fatal(err)
	}
	var norm []string
	for _, e := range topic.events {
		var v any
		json.Unmarshal([]byte(e), &v)
		b, _ := json.Marshal(v) // sorts object keys
		norm = append(norm, string(b))
	}
	if got := fmt.Sprint(norm); got != `[{"by":"alice","text":"hi"} [1,2]]` {
		t.Fatalf("broadcasts %s", got)
	}

	un := newUp(t, url, func(c *Config) { c.NotifyUnsubscribe = true })
	if err := un.OnUnsubscribe(ctx, fakeClient{}, &fakeTopic{}, handler.Request{URI: "chat/public"}); err != nil {
		t.Fatal(err)
	}
	// A leave is acknowledged; the example checks its topics, so one
	// without a URI comes back as the app's error.
	subs := []handler.Subscription{
		{Topic: &fakeTopic{}, Request: handler.Request{Route: "chat", URI: "chat/public", Attributes: map[string]string{"room": "public"}}},
		{Topic: &fakeTopic{}, Request: handler.Request{Route: "chat", URI: "chat/private/1"}},
	}
	if err := un.OnUnsubscribeBatch(ctx, fakeClient{}, handler.LeaveDisconnect, subs); err != nil {
		t.Fatalf("leave: %v", err)
	}
	subs[1].Request.URI = ""
	wantError(t, un.OnUnsubscribeBatch(ctx, fakeClient{}, handler.LeaveRevoked, subs), 400, "app.error.bad_request", "leave topic without uri")

	// A wrong secret is refused by the PHP side with 401, which the client
	// sees as a 502 WAMP error naming the status.
	bad, err := New("bad", Config{URL: url, Secret: []byte("not-the-shared-secret")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Call(ctx, fakeClient{}, callReq, json.RawMessage(`[1]`))
	wantError(t, err, 502, URIBadGateway, "upstream answered 401 Unauthorized")

	// So is a stale timestamp with the right secret (replay window).
	stale := newUp(t, url, nil)
	stale.now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	_, err = stale.Call(ctx, fakeClient{}, callReq, json.RawMessage(`[1]`))
	wantError(t, err, 502, URIBadGateway, "401")

	// And an unsigned request never reaches the handler code.
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"kind":"call"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned request: %s", resp.Status)
	}
}
