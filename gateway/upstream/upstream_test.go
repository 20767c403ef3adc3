package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/handler"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// fakeClient is a handler.Client that also implements HeaderSource.
type fakeClient struct {
	anon    bool
	headers map[string]string
}

func (fakeClient) ConnID() string    { return "conn-1" }
func (fakeClient) SessionID() string { return "sess-1" }
func (c fakeClient) UserIdentifier() string {
	if c.anon {
		return "anon-sess-1"
	}
	return "alice"
}
func (c fakeClient) Anonymous() bool { return c.anon }
func (c fakeClient) Roles() []string {
	if c.anon {
		return nil
	}
	return []string{"ROLE_USER"}
}
func (fakeClient) Firewall() string { return "main" }
func (c fakeClient) Identity() handler.Identity {
	return handler.Identity{UserIdentifier: c.UserIdentifier(), Roles: c.Roles(), Firewall: c.Firewall(), Anonymous: c.anon}
}
func (c fakeClient) Extra() json.RawMessage {
	if c.anon {
		return nil
	}
	return json.RawMessage(`{"plan":"gold"}`)
}
func (c fakeClient) HandshakeHeader(name string) string {
	return c.headers[http.CanonicalHeaderKey(name)]
}

// fakeTopic records broadcasts.
type fakeTopic struct {
	mu     sync.Mutex
	events []string
}

func (t *fakeTopic) ID() string { return "chat/room1" }
func (t *fakeTopic) Count() int { return 1 }
func (t *fakeTopic) Broadcast(event any, _, _ []string) error {
	b, err := json.Marshal(event)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.events = append(t.events, string(b))
	t.mu.Unlock()
	return nil
}

// received is what the test server saw.
type received struct {
	Body   requestBody
	Header http.Header
	Raw    []byte
}

// server starts an httptest server that verifies the signature (401 when
// wrong) and answers with answer(request).
func server(t *testing.T, answer func(w http.ResponseWriter, r *received)) (*httptest.Server, chan *received) {
	t.Helper()
	got := make(chan *received, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := VerifyRequest(testSecret, r, body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		rec := &received{Header: r.Header, Raw: body}
		if err := json.Unmarshal(body, &rec.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case got <- rec:
		default:
		}
		answer(w, rec)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func jsonReply(s string) func(http.ResponseWriter, *received) {
	return func(w http.ResponseWriter, _ *received) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, s)
	}
}

func newUp(t *testing.T, url string, mod func(*Config)) *Upstream {
	t.Helper()
	c := Config{URL: url, Secret: testSecret, Timeout: 2 * time.Second, ForwardHeaders: []string{"cookie"}}
	if mod != nil {
		mod(&c)
	}
	u, err := New("app", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var callReq = handler.Request{Route: "app_rpc", URI: "app/sum", Attributes: map[string]string{"method": "sum"}}

func wantError(t *testing.T, err error, code int, uri, desc string) *handler.Error {
	t.Helper()
	var he *handler.Error
	if !errors.As(err, &he) {
		t.Fatalf("error %v (%T), want *handler.Error", err, err)
	}
	if he.Code != code || (uri != "" && he.URI != uri) || !strings.Contains(he.Desc, desc) {
		t.Fatalf("error %+v, want code %d uri %q desc containing %q", he, code, uri, desc)
	}
	return he
}

func TestCallResult(t *testing.T) {
	srv, got := server(t, jsonReply(`{"result": {"sum": 6}}`))
	u := newUp(t, srv.URL, nil)
	c := fakeClient{headers: map[string]string{"Cookie": "PHPSESSID=abc", "Authorization": "secret"}}
	out, err := u.Call(context.Background(), c, callReq, json.RawMessage(`[1,2,3]`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(out); string(b) != `{"sum":6}` {
		t.Fatalf("result %s", b)
	}
	r := <-got
	b := r.Body
	if b.Kind != "call" || b.URI != "app/sum" || b.Route != "app_rpc" || b.Method != "sum" || string(b.Args) != "[1,2,3]" || b.Attributes["method"] != "sum" {
		t.Fatalf("request body %+v", b)
	}
	want := caller{Firewall: "main", UserIdentifier: "alice", Roles: []string{"ROLE_USER"}, WAMPSessionID: "sess-1", ConnID: "conn-1"}
	if b.Caller.Firewall != want.Firewall || b.Caller.UserIdentifier != want.UserIdentifier || len(b.Caller.Roles) != 1 || b.Caller.Anonymous || b.Caller.WAMPSessionID != "sess-1" || b.Caller.ConnID != "conn-1" {
		t.Fatalf("caller %+v", b.Caller)
	}
	if string(b.Caller.Extra) != `{"plan":"gold"}` {
		t.Errorf("caller extra %s, want what the app attached on connect", b.Caller.Extra)
	}
	if r.Header.Get("Cookie") != "PHPSESSID=abc" {
		t.Fatalf("Cookie not forwarded: %q", r.Header.Get("Cookie"))
	}
	if r.Header.Get("Authorization") != "" {
		t.Fatal("a header not in ForwardHeaders was forwarded")
	}
	// Signed with v2 (server verified it), covering the Cookie.
	if r.Header.Get(HeaderSignedHeaders) != "cookie" || !strings.HasPrefix(r.Header.Get(HeaderSignature), "v2=") {
		t.Fatalf("signature headers %v", r.Header)
	}
	// Methods exposes the configured names, bound to Call.
	if len(u.Methods()) != 0 {
		t.Fatal("Methods without Config.Methods should be empty")
	}
	u2 := newUp(t, srv.URL, func(c *Config) { c.Methods = []string{"sum"} })
	if _, err := u2.Methods()["sum"](context.Background(), c, callReq, json.RawMessage(`[1]`)); err != nil {
		t.Fatal(err)
	}
	// Each request has an id of its own.
	if r2 := <-got; r2.Header.Get(HeaderRequestID) == r.Header.Get(HeaderRequestID) || !validRequestID(r2.Header.Get(HeaderRequestID)) {
		t.Fatalf("request ids %q then %q", r.Header.Get(HeaderRequestID), r2.Header.Get(HeaderRequestID))
	}
}

func TestCallAppError(t *testing.T) {
	srv, _ := server(t, jsonReply(`{"error": {"uri": "app.error.auth", "desc": "log in", "code": 403, "details": {"why": "anon"}}}`))
	u := newUp(t, srv.URL, nil)
	_, err := u.Call(context.Background(), fakeClient{anon: true}, callReq, json.RawMessage(`[1]`))
	he := wantError(t, err, 403, "app.error.auth", "log in")
	if b, _ := json.Marshal(he.Details); string(b) != `{"why":"anon"}` {
		t.Fatalf("details %s", b)
	}
}

func TestAnonymousRolesAreEmptyList(t *testing.T) {
	srv, got := server(t, jsonReply(`{"result": 1}`))
	u := newUp(t, srv.URL, nil)
	if _, err := u.Call(context.Background(), fakeClient{anon: true}, callReq, nil); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.Body.Caller.Roles == nil || !r.Body.Caller.Anonymous || r.Body.Args != nil || r.Body.Caller.Extra != nil {
		t.Fatalf("caller %+v args %s", r.Body.Caller, r.Body.Args)
	}
}

func TestSubscribe(t *testing.T) {
	for _, tc := range []struct {
		reply string
		code  int
		desc  string
	}{
		{`{"allow": true}`, 0, ""},
		{`{"allow": false, "reason": "private"}`, 403, "private"},
		{`{"allow": false}`, 403, "subscription refused"},
		{`{"error": {"uri": "app.x", "desc": "nope", "code": 401}}`, 401, "nope"},
	} {
		srv, got := server(t, jsonReply(tc.reply))
		u := newUp(t, srv.URL, nil)
		err := u.OnSubscribe(context.Background(), fakeClient{}, &fakeTopic{}, handler.Request{Route: "chat", URI: "chat/room1", Attributes: map[string]string{"room": "room1"}})
		if tc.code == 0 {
			if err != nil {
				t.Fatalf("%s: %v", tc.reply, err)
			}
		} else {
			wantError(t, err, tc.code, "", tc.desc)
		}
		if r := <-got; r.Body.Kind != "subscribe" || r.Body.Attributes["room"] != "room1" {
			t.Fatalf("request %+v", r.Body)
		}
	}
}

func TestPublish(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  []string
	}{
		{`{}`, []string{`{"text":"hi"}`}},
		{`{"event": {"text": "hi", "by": "alice"}}`, []string{`{"by":"alice","text":"hi"}`}},
		{`{"event": null}`, []string{`null`}},
		{`{"drop": true}`, nil},
	} {
		srv, got := server(t, jsonReply(tc.reply))
		u := newUp(t, srv.URL, nil)
		topic := &fakeTopic{}
		err := u.OnPublish(context.Background(), fakeClient{}, topic, handler.Request{URI: "chat/room1"}, json.RawMessage(`{"text":"hi"}`), []string{"x"}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.reply, err)
		}
		var evs []string
		for _, e := range topic.events {
			var v any
			json.Unmarshal([]byte(e), &v)
			b, _ := json.Marshal(v)
			evs = append(evs, string(b))
		}
		if strings.Join(evs, "|") != strings.Join(tc.want, "|") {
			t.Fatalf("%s: broadcast %v, want %v", tc.reply, evs, tc.want)
		}
		r := <-got
		if r.Body.Kind != "publish" || string(r.Body.Event) != `{"text":"hi"}` || len(r.Body.Exclude) != 1 {
			t.Fatalf("request %+v", r.Body)
		}
	}
}

func TestUnsubscribe(t *testing.T) {
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *received) {
		hits.Add(1)
		jsonReply(`{}`)(w, r)
	})
	u := newUp(t, srv.URL, nil)
	if err := u.OnUnsubscribe(context.Background(), fakeClient{}, &fakeTopic{}, handler.Request{}); err != nil || hits.Load() != 0 {
		t.Fatalf("default unsubscribe: err %v, %d requests", err, hits.Load())
	}
	u = newUp(t, srv.URL, func(c *Config) { c.NotifyUnsubscribe = true })
	if err := u.OnUnsubscribe(context.Background(), fakeClient{}, &fakeTopic{}, handler.Request{}); err != nil || hits.Load() != 1 {
		t.Fatalf("notify unsubscribe: err %v, %d requests", err, hits.Load())
	}
}

func TestBadSecretIsRefused(t *testing.T) {
	srv, _ := server(t, jsonReply(`{"result": 1}`))
	u, err := New("app", Config{URL: srv.URL, Secret: []byte("another-secret-of-16+")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Call(context.Background(), fakeClient{}, callReq, nil)
	wantError(t, err, 502, URIBadGateway, "upstream answered 401 Unauthorized")
}

func TestNon2xx(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, _ *received) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	_, err := newUp(t, srv.URL, nil).Call(context.Background(), fakeClient{}, callReq, nil)
	wantError(t, err, 502, URIBadGateway, "500 Internal Server Error")

	// A redirect is not followed (it would turn the POST into a GET).
	srv2, _ := server(t, func(w http.ResponseWriter, _ *received) {
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusFound)
	})
	_, err = newUp(t, srv2.URL, nil).Call(context.Background(), fakeClient{}, callReq, nil)
	wantError(t, err, 502, URIBadGateway, "302 Found")
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := newUp(t, url, nil).Call(context.Background(), fakeClient{}, callReq, nil)
	wantError(t, err, 502, URIBadGateway, "upstream unreachable")
}

func TestBadReplies(t *testing.T) {
	big := `{"result": "` + strings.Repeat("x", 2000) + `"}`
	for _, tc := range []struct {
		name, ctype, body, desc string
	}{
		{"garbled", "application/json", `{"result": [1,`, "invalid upstream reply: reply is not valid JSON"},
		{"not object", "application/json", `[1]`, "not a JSON object"},
		{"empty", "application/json", ``, "empty reply"},
		{"unknown field", "application/json", `{"result": 1, "extra": 2}`, `unknown field "extra"`},
		{"both", "application/json", `{"result": 1, "error": {"desc": "x"}}`, `exactly one of "result" or "error"`},
		{"neither", "application/json", `{}`, `exactly one of "result" or "error"`},
		{"trailing", "application/json", `{"result": 1} {}`, "invalid upstream reply"},
		{"html", "text/html; charset=UTF-8", `<b>Warning</b>`, "not application/json"},
		{"oversized", "application/json", big, "larger than 1000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := server(t, func(w http.ResponseWriter, _ *received) {
				w.Header().Set("Content-Type", tc.ctype)
				io.WriteString(w, tc.body)
			})
			u := newUp(t, srv.URL, func(c *Config) { c.MaxReplyBytes = 1000 })
			_, err := u.Call(context.Background(), fakeClient{}, callReq, nil)
			wantError(t, err, 502, URIBadGateway, tc.desc)
		})
	}
}

// A slow route answers 504 within its timeout while calls to a fast route
// keep succeeding meanwhile.
func TestSlowUpstreamTimesOutWithoutBlockingOthers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow, _ := server(t, func(w http.ResponseWriter, r *received) {
		<-release
	})
	fast, _ := server(t, jsonReply(`{"result": 1}`))
	us := newUp(t, slow.URL, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	uf := newUp(t, fast.URL, nil)

	start := time.Now()
	done := callAsync(us, callReq)
	for i := 0; i < 5; i++ {
		if _, err := uf.Call(context.Background(), fakeClient{}, callReq, nil); err != nil {
			t.Fatalf("fast route failed while the slow one hangs: %v", err)
		}
	}
	select {
	case <-done:
		t.Fatal("slow call ended before its timeout")
	default:
	}
	err := <-done
	elapsed := time.Since(start)
	wantError(t, err, 504, URITimeout, "upstream timeout")
	if elapsed < 300*time.Millisecond {
		t.Fatalf("timeout after %v, before the 300ms timeout", elapsed)
	}

	// The gateway's own call timeout (the parent context) is also a 504.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = uf2(t, slow.URL).Call(ctx, fakeClient{}, callReq, nil)
	wantError(t, err, 504, URITimeout, "upstream timeout")

	// A client that went away gets its cancellation back, not a 504.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = uf2(t, slow.URL).Call(ctx, fakeClient{}, callReq, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
}

func uf2(t *testing.T, url string) *Upstream {
	return newUp(t, url, func(c *Config) { c.Timeout = 5 * time.Second })
}

// heldServer is an app that holds the requests hold selects until letGo,
// announcing each on entered, and answers the others at once. letGo is
// also called at cleanup, before the server's own, which waits for its
// handlers.
func heldServer(t *testing.T, hold func(*received) bool) (url string, entered <-chan struct{}, letGo func()) {
	t.Helper()
	release := make(chan struct{})
	in := make(chan struct{}, 8)
	srv, _ := server(t, func(w http.ResponseWriter, r *received) {
		if hold(r) {
			in <- struct{}{}
			<-release
		}
		jsonReply(`{"result": 1}`)(w, r)
	})
	var once sync.Once
	letGo = func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	return srv.URL, in, letGo
}

func holdAll(*received) bool { return true }

func TestConcurrencyLimit(t *testing.T) {
	url, entered, letGo := heldServer(t, holdAll)
	u := newUp(t, url, func(c *Config) { c.MaxConcurrent = 2; c.QueueWait = 20 * time.Millisecond })
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := u.Call(context.Background(), fakeClient{}, callReq, nil)
			errs <- err
		}()
	}
	<-entered
	<-entered
	_, err := u.Call(context.Background(), fakeClient{}, callReq, nil)
	wantError(t, err, 503, URIBusy, "upstream busy")
	letGo()
	wg.Wait()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Slots are given back.
	if _, err := u.Call(context.Background(), fakeClient{}, callReq, nil); err != nil {
		t.Fatal(err)
	}
}

// A route with limits of its own: its bound and timeout apply to it alone,
// and while it is at its bound the upstream's other routes still get slots.
func TestRouteLimits(t *testing.T) {
	url, entered, letGo := heldServer(t, func(r *received) bool { return r.Body.Route == "report" })
	u := newUp(t, url, func(c *Config) {
		c.MaxConcurrent = 4
		c.QueueWait = 20 * time.Millisecond
		c.Routes = map[string]RouteLimits{"report": {MaxConcurrent: 1, Timeout: 300 * time.Millisecond}}
	})
	report := handler.Request{Route: "report", URI: "app/report", Attributes: map[string]string{"method": "report"}}
	start := time.Now()
	done := callAsync(u, report)
	<-entered
	// The route's one slot is taken: a second report call is busy ...
	_, err := u.Call(context.Background(), fakeClient{}, report, nil)
	wantError(t, err, 503, URIBusy, "upstream busy")
	// ... while another route of the same upstream is served.
	if _, err := u.Call(context.Background(), fakeClient{}, callReq, nil); err != nil {
		t.Fatalf("other route: %v", err)
	}
	// The held report call ends at the route's timeout, not the upstream's 5s.
	wantError(t, <-done, 504, URITimeout, "upstream timeout")
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Fatalf("timeout after %v, before the route's 300ms", elapsed)
	}
	// Both slots were given back: the route takes a call again.
	letGo()
	if _, err := u.Call(context.Background(), fakeClient{}, report, nil); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}

	if _, err := New("app", Config{URL: "http://x/", Secret: testSecret, Routes: map[string]RouteLimits{"r": {MaxConcurrent: -1}}}, nil); err == nil || !strings.Contains(err.Error(), "routes.r.max_concurrent:") {
		t.Errorf("negative route bound: %v", err)
	}
}

// By default a request waits for a slot as long as its timeout allows: a
// burst queues rather than being refused, and one that never gets a slot
// is "busy", not a timeout of the app.
func TestQueueWaitDefault(t *testing.T) {
	url, entered, letGo := heldServer(t, holdAll)
	// The held call's route outlives the other's 300ms timeout.
	u := newUp(t, url, func(c *Config) {
		c.MaxConcurrent = 1
		c.Timeout = 300 * time.Millisecond
		c.Routes = map[string]RouteLimits{"slow": {Timeout: time.Minute}}
	})
	slow := handler.Request{Route: "slow", URI: "app/slow", Attributes: map[string]string{"method": "slow"}}
	first := callAsync(u, slow)
	<-entered
	// The slot stays taken past the second call's whole timeout.
	_, err := u.Call(context.Background(), fakeClient{}, callReq, nil)
	wantError(t, err, 503, URIBusy, "upstream busy")

	// A call queued behind the slow one gets the slot when it frees, however
	// long that takes within its own timeout (a fixed queue wait of tens of
	// milliseconds would have refused it during the pause below).
	second := callAsync(u, slow)
	time.Sleep(200 * time.Millisecond)
	letGo()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("queued call: %v", err)
	}
}

// callAsync runs one call in the background; its error arrives on the
// channel.
func callAsync(u *Upstream, req handler.Request) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := u.Call(context.Background(), fakeClient{}, req, nil)
		done <- err
	}()
	return done
}

func TestKeepAlive(t *testing.T) {
	var mu sync.Mutex
	addrs := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		addrs[r.RemoteAddr] = true
		mu.Unlock()
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"result": 1}`)
	}))
	defer srv.Close()
	u := newUp(t, srv.URL, nil)
	for i := 0; i < 10; i++ {
		if _, err := u.Call(context.Background(), fakeClient{}, callReq, nil); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(addrs) != 1 {
		t.Fatalf("%d connections for 10 sequential calls, want 1 (keep-alive)", len(addrs))
	}
}

// A bad field is a *config.Error naming it as the upstreams: config does,
// with the bad value (never the secret's), wrapped with the upstream's name.
func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		c                 Config
		key, value, inMsg string
	}{
		{Config{URL: "ftp://x", Secret: testSecret}, "url", "ftp://x", `scheme must be http or https, got "ftp"`},
		{Config{URL: "http://", Secret: testSecret}, "url", "http:", "has no host"},
		{Config{URL: "://bad", Secret: testSecret}, "url", "", "missing protocol scheme"},
		{Config{URL: "http://u:p@x/", Secret: testSecret}, "url", "http://u:xxxxx@x/", "credentials"},
		{Config{URL: "http://x/"}, "secret", "", "is 0 bytes, want at least 16"},
		{Config{URL: "http://x/", Secret: []byte("short")}, "secret", "", "is 5 bytes"},
		{Config{URL: "http://x/", Secret: testSecret, Timeout: -1}, "timeout", "-1ns", "must not be negative"},
		{Config{URL: "http://x/", Secret: testSecret, MaxConcurrent: -1}, "max_concurrent", "-1", "must not be negative"},
		{Config{URL: "http://x/", Secret: testSecret, MaxReplyBytes: -2}, "max_reply_bytes", "-2", "must not be negative"},
		{Config{URL: "http://x/", Secret: testSecret, ForwardHeaders: []string{"Bad Header"}}, "forward_headers", "", "not a header name"},
		{Config{URL: "http://x/", Secret: testSecret, ForwardHeaders: []string{"content-length"}}, "forward_headers", "", "cannot be forwarded"},
		{Config{URL: "http://x/", Secret: testSecret, ForwardHeaders: []string{"X-Wsgate-Signature"}}, "forward_headers", "", "cannot be forwarded"},
		{Config{URL: "http://x/", Secret: testSecret, Methods: []string{""}}, "methods", "", "empty method name"},
		{Config{URL: "http://x/", Secret: testSecret, Routes: map[string]RouteLimits{"r": {Timeout: -time.Second}}}, "routes.r.timeout", "-1s", "must not be negative"},
		{Config{URL: "http://x/", Secret: testSecret, Routes: map[string]RouteLimits{"r": {MaxConcurrent: -1}}}, "routes.r.max_concurrent", "-1", "must not be negative"},
	} {
		_, err := New("app", tc.c, nil)
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || ce.Value != tc.value || !strings.Contains(ce.Reason, tc.inMsg) ||
			!strings.HasPrefix(err.Error(), `upstream "app": `) || strings.Contains(err.Error(), string(testSecret)) {
			t.Errorf("%+v: error %v, want key %q value %q reason with %q", tc.c, err, tc.key, tc.value, tc.inMsg)
		}
	}
	if _, err := New("", Config{URL: "http://x/", Secret: testSecret}, nil); err == nil {
		t.Error("empty name accepted")
	}
	u, err := New("app", Config{URL: "https://x/", Secret: testSecret}, nil)
	if err != nil || u.Name() != "app" {
		t.Fatalf("%v %v", u, err)
	}
	if u.timeout != DefaultTimeout || cap(u.slots) != DefaultMaxConcurrent || u.max != DefaultMaxReplyBytes {
		t.Fatalf("defaults not applied: timeout %v slots %d max %d", u.timeout, cap(u.slots), u.max)
	}
	u, err = New("app", Config{URL: "https://x/", Secret: testSecret, Timeout: time.Second, Routes: map[string]RouteLimits{"r": {}, "s": {Timeout: time.Minute, MaxConcurrent: 3}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, s := u.routes["r"], u.routes["s"]; r.timeout != time.Second || r.slots != nil || s.timeout != time.Minute || cap(s.slots) != 3 {
		t.Fatalf("route limits: r %+v s %+v", r, s)
	}
}

// TestCallbacksLeaveAttributesAlone: the node shares one
// Request.Attributes map between every subscription to a topic
// (handler.Request documents it read-only), so no callback may write to
// it; each is called with a map compared after the call.
func TestCallbacksLeaveAttributesAlone(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *received) {
		switch r.Body.Kind {
		case "call":
			jsonReply(`{"result": 1}`)(w, r)
		case "subscribe":
			jsonReply(`{"allow": true}`)(w, r)
		default:
			jsonReply(`{}`)(w, r)
		}
	})
	u := newUp(t, srv.URL, func(c *Config) { c.NotifyUnsubscribe = true })
	ctx := context.Background()
	want := map[string]string{"room": "room1", "method": "sum"}
	req := handler.Request{Route: "chat", URI: "chat/room1", Attributes: maps.Clone(want)}
	calls := map[string]func() error{
		"OnSubscribe":   func() error { return u.OnSubscribe(ctx, fakeClient{}, &fakeTopic{}, req) },
		"OnUnsubscribe": func() error { return u.OnUnsubscribe(ctx, fakeClient{}, &fakeTopic{}, req) },
		"OnUnsubscribeBatch": func() error {
			return u.OnUnsubscribeBatch(ctx, fakeClient{}, handler.LeaveDisconnect, []handler.Subscription{{Topic: &fakeTopic{}, Request: req}})
		},
		"OnPublish": func() error {
			return u.OnPublish(ctx, fakeClient{}, &fakeTopic{}, req, json.RawMessage(`{}`), nil, nil)
		},
		"Call": func() error { _, err := u.Call(ctx, fakeClient{}, req, json.RawMessage(`[]`)); return err },
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !maps.Equal(req.Attributes, want) {
			t.Fatalf("%s changed the attributes: %v", name, req.Attributes)
		}
	}
}
