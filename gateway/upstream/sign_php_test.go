package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// captured is one request as the gateway sent it.
type captured struct {
	header http.Header
	body   []byte
}

// tamperProxy stands between the gateway and the PHP example: it records
// each request as sent, then lets tamper change its headers in flight
// (an attacker on the way, or a misconfigured proxy) before forwarding it.
type tamperProxy struct {
	target string
	mu     sync.Mutex // guards tamper and last
	tamper func(http.Header)
	last   *captured
}

func newTamperProxy(t *testing.T, target string) (*tamperProxy, string) {
	t.Helper()
	p := &tamperProxy{target: target}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *tamperProxy) set(f func(http.Header)) {
	p.mu.Lock()
	p.tamper = f
	p.mu.Unlock()
}

func (p *tamperProxy) lastRequest() *captured {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *tamperProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h := r.Header.Clone()
	p.mu.Lock()
	p.last = &captured{header: r.Header.Clone(), body: body}
	tamper := p.tamper
	p.mu.Unlock()
	if tamper != nil {
		tamper(h)
	}
	status, reply, ctype := postRaw(r.Context(), p.target+strings.TrimPrefix(r.URL.Path, "/"), h, body)
	if status == 0 {
		http.Error(w, reply, http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	io.WriteString(w, reply)
}

// postRaw POSTs body with exactly header h; status 0 means no answer.
func postRaw(ctx context.Context, url string, h http.Header, body []byte) (status int, reply, ctype string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error(), ""
	}
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// wantJSONError checks a refusal of the PHP example: status and
// {"error": msg}.
func wantJSONError(t *testing.T, what string, status int, reply string, wantStatus int, wantMsg string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if status != wantStatus || json.Unmarshal([]byte(reply), &e) != nil || e.Error != wantMsg {
		t.Fatalf("%s: %d %s, want %d {\"error\":%q}", what, status, reply, wantStatus, wantMsg)
	}
}

// TestPHPSignatureV2 runs requests of the real upstream and events clients
// through a proxy to examples/php-upstream: a valid request passes, the
// same request sent again is refused as a replay (409, on any endpoint),
// and a forwarded header added, changed or dropped on the way is refused
// (401).
func TestPHPSignatureV2(t *testing.T) {
	replayDir := filepath.Join(t.TempDir(), "replay")
	if err := os.Mkdir(replayDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// An expired marker (older than twice the window) and a live one: the
	// first request's sweep removes the first only.
	expired, live := filepath.Join(replayDir, strings.Repeat("a", 32)), filepath.Join(replayDir, strings.Repeat("b", 32))
	for _, f := range []string{expired, live} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2*DefaultReplayWindow - time.Minute)
	if err := os.Chtimes(expired, old, old); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSGATE_REPLAY_DIR", replayDir)
	php := startPHPUpstream(t, string(testSecret))
	proxy, url := newTamperProxy(t, php)
	u := newUp(t, url, func(c *Config) { c.ForwardHeaders = []string{"Cookie", "X-Forwarded-User"} })
	ctx := context.Background()
	client := fakeClient{headers: map[string]string{"Cookie": "PHPSESSID=abc"}}

	// Valid: passes, with the Cookie and the absent X-Forwarded-User signed.
	out, err := u.Call(ctx, client, callReq, json.RawMessage(`[1, 2, 3]`))
	if b, _ := json.Marshal(out); err != nil || string(b) != "6" {
		t.Fatalf("valid call: %s, %v", b, err)
	}
	sent := proxy.lastRequest()
	id := sent.header.Get(HeaderRequestID)
	if sent.header.Get(HeaderSignedHeaders) != "cookie,x-forwarded-user" || sent.header.Get("Cookie") != "PHPSESSID=abc" || !validRequestID(id) {
		t.Fatalf("sent headers %v", sent.header)
	}
	if _, err := os.Stat(filepath.Join(replayDir, id)); err != nil {
		t.Fatalf("no marker for the accepted request: %v", err)
	}
	if _, err := os.Stat(expired); !os.IsNotExist(err) {
		t.Fatalf("expired marker not swept: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("live marker swept: %v", err)
	}

	// Replay: the same bytes again, within the window, are refused; so is
	// the same request sent to another endpoint sharing the secret.
	status, reply, _ := postRaw(ctx, php, sent.header, sent.body)
	wantJSONError(t, "replay", status, reply, 409, "replayed request")
	status, reply, _ = postRaw(ctx, php+"events", sent.header, sent.body)
	wantJSONError(t, "replay to /events", status, reply, 409, "replayed request")

	// Forged forwarded headers, each on a fresh request: refused with 401,
	// which the WAMP client sees as a 502 naming it.
	for _, tc := range []struct {
		name   string
		tamper func(http.Header)
	}{
		{"identity header added", func(h http.Header) { h.Set("X-Forwarded-User", "jdoe") }},
		{"cookie changed", func(h http.Header) { h.Set("Cookie", "PHPSESSID=stolen") }},
		{"cookie dropped", func(h http.Header) { h.Del("Cookie") }},
		{"name dropped from the list", func(h http.Header) { h.Set(HeaderSignedHeaders, "cookie") }},
		{"identity header renamed to pass as X-Forwarded-User in PHP", func(h http.Header) { h["X_forwarded_user"] = []string{"jdoe"} }},
	} {
		proxy.set(tc.tamper)
		_, err := u.Call(ctx, client, callReq, json.RawMessage(`[1]`))
		wantError(t, err, 502, URIBadGateway, "upstream answered 401 Unauthorized")
		// The refusal as PHP answered it.
		h := proxy.lastRequest().header.Clone()
		h.Set(HeaderRequestID, newRequestID()) // unsigned change, still refused: the id is signed
		tc.tamper(h)
		status, reply, _ := postRaw(ctx, php, h, proxy.lastRequest().body)
		wantJSONError(t, tc.name, status, reply, 401, "bad signature")
	}
	proxy.set(nil)

	// Connection events, same scheme: a connect event passes once, its
	// replay is refused, a forged Cookie is refused.
	events := func(url string) *Events {
		e, err := NewEvents(EventsConfig{URL: url + "events", Secret: testSecret, Timeout: 5 * time.Second, Connect: true, ForwardHeaders: []string{"Cookie"}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(context.Background()) })
		return e
	}
	e := events(url + "/")
	if d, err := e.Connected(ctx, alice, HeaderMap{"Cookie": "PHPSESSID=abc"}); err != nil || d.Reject {
		t.Fatalf("connect: %+v, %v", d, err)
	}
	sent = proxy.lastRequest()
	status, reply, _ = postRaw(ctx, php+"events", sent.header, sent.body)
	wantJSONError(t, "connect replay", status, reply, 409, "replayed request")
	proxy.set(func(h http.Header) { h.Set("Cookie", "PHPSESSID=stolen") })
	if _, err := e.Connected(ctx, alice, HeaderMap{"Cookie": "PHPSESSID=abc"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("forged connect cookie: %v", err)
	}
	proxy.set(nil)
}

// The replay store fails closed: a directory others can read or write is
// refused, and so the request, with 500.
func TestPHPReplayDirMustBePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSGATE_REPLAY_DIR", dir)
	u := newUp(t, startPHPUpstream(t, string(testSecret)), nil)
	_, err := u.Call(context.Background(), fakeClient{}, callReq, json.RawMessage(`[1]`))
	wantError(t, err, 502, URIBadGateway, "upstream answered 500")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("markers written to a shared directory: %v", entries)
	}
}
