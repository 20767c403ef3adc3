package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/handler"
)

// eventsRecorder is an EventsObserver counting "kind/outcome".
type eventsRecorder struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *eventsRecorder) Event(kind, outcome string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[kind+"/"+outcome]++
}

func (o *eventsRecorder) get(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[key]
}

// gotEvent is a request the events test server received, signature checked.
type gotEvent struct {
	Event      string         `json:"event"`
	Connection map[string]any `json:"connection"`
	raw        []byte
	header     http.Header
}

// eventsServer starts a server that refuses a bad signature with 401,
// records each event on the returned channel (buffered, never blocking the
// handler) and lets answer reply.
func eventsServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, ev *gotEvent)) (*httptest.Server, chan *gotEvent) {
	t.Helper()
	got := make(chan *gotEvent, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// The verification helper applications written in Go would use.
		if _, err := VerifyRequest(testSecret, r, body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ev := &gotEvent{raw: body, header: r.Header.Clone()}
		if err := json.Unmarshal(body, ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case got <- ev:
		default:
		}
		answer(w, r, ev)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func answerJSON(s string) func(http.ResponseWriter, *http.Request, *gotEvent) {
	return func(w http.ResponseWriter, _ *http.Request, _ *gotEvent) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, s)
	}
}

// answerBlock holds the request until the gateway gives up on it.
func answerBlock(_ http.ResponseWriter, r *http.Request, _ *gotEvent) { <-r.Context().Done() }

// newEvents builds Events on url (connect and disconnect on) and closes it
// at the end of the test.
func newEvents(t *testing.T, url string, obs EventsObserver, mod func(*EventsConfig)) *Events {
	t.Helper()
	cfg := EventsConfig{URL: url, Secret: testSecret, Timeout: 5 * time.Second, Connect: true, Disconnect: true}
	if mod != nil {
		mod(&cfg)
	}
	e, err := NewEvents(cfg, obs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Close(ctx)
	})
	return e
}

var alice = ConnEvent{
	ConnID:      "c-1",
	SessionID:   "wamp-sess-1",
	Identity:    handler.Identity{Firewall: "main", UserIdentifier: "alice", Roles: []string{"ROLE_USER"}},
	Protocol:    "wamp",
	RemoteAddr:  "203.0.113.7:51234",
	ConnectedAt: time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC),
}

// recv returns the next event the server received, failing the test
// rather than hanging when none comes.
func recv(t *testing.T, got chan *gotEvent) *gotEvent {
	t.Helper()
	select {
	case ev := <-got:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event received")
		return nil
	}
}

// downURL is the URL of a server that no longer listens.
func downURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func TestConnected(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answer   func(http.ResponseWriter, *http.Request, *gotEvent)
		down     bool                // the application does not listen
		mod      func(*EventsConfig) // config changes
		ctx      func() (context.Context, context.CancelFunc)
		want     ConnectDecision
		wantErr  string // substring of the error, "" for none
		timeout  bool   // the error wraps context.DeadlineExceeded
		outcome  string // reported to the observer
		noRecord bool   // no request expected
	}{
		{
			name:    "accept with extra",
			answer:  answerJSON(`{"accept": true, "extra": {"plan": "gold", "n": [1, 2]}}`),
			want:    ConnectDecision{Extra: json.RawMessage(`{"plan":"gold","n":[1,2]}`)},
			outcome: "connect/ok",
		},
		{
			name:    "accept, extra null",
			answer:  answerJSON(`{"accept":true,"extra":null}`),
			outcome: "connect/ok",
		},
		{
			name:    "reject with status and reason",
			answer:  answerJSON(`{"accept": false, "status": 451, "reason": "banned"}`),
			want:    ConnectDecision{Reject: true, Status: 451, Reason: "banned"},
			outcome: "connect/rejected",
		},
		{
			name:    "reject, default status",
			answer:  answerJSON(`{"accept": false}`),
			want:    ConnectDecision{Reject: true, Status: 403},
			outcome: "connect/rejected",
		},
		{
			name:    "app down, on_connect_error accept (default)",
			down:    true,
			wantErr: "application unreachable",
			outcome: "connect/error",
		},
		{
			name:    "app down, on_connect_error reject",
			down:    true,
			mod:     func(c *EventsConfig) { c.OnConnectError = OnConnectErrorReject },
			want:    ConnectDecision{Reject: true, Status: 503, Reason: "connection check unavailable"},
			wantErr: "application unreachable",
			outcome: "connect/error",
		},
		{
			name: "non-2xx is an error",
			answer: func(w http.ResponseWriter, _ *http.Request, _ *gotEvent) {
				http.Error(w, "boom", http.StatusInternalServerError)
			},
			wantErr: "application answered 500",
			outcome: "connect/error",
		},
		{
			name:    "undecodable reply is an error",
			answer:  answerJSON(`{"accept": "yes"}`),
			wantErr: `invalid reply: "accept" must be true or false`,
			outcome: "connect/error",
		},
		{
			name: "wrong content type is an error",
			answer: func(w http.ResponseWriter, _ *http.Request, _ *gotEvent) {
				w.Header().Set("Content-Type", "text/html")
				io.WriteString(w, `{"accept": true}`)
			},
			wantErr: "not application/json",
			outcome: "connect/error",
		},
		{
			name:    "reply over the size limit is an error",
			answer:  answerJSON(`{"accept": true, "extra": {"x": "` + strings.Repeat("a", 200) + `"}}`),
			mod:     func(c *EventsConfig) { c.MaxReplyBytes = 100 },
			wantErr: "reply too large",
			outcome: "connect/error",
		},
		{
			name:    "timeout honoured, reject policy",
			answer:  answerBlock,
			mod:     func(c *EventsConfig) { c.Timeout = 100 * time.Millisecond; c.OnConnectError = OnConnectErrorReject },
			want:    ConnectDecision{Reject: true, Status: 503, Reason: "connection check unavailable"},
			wantErr: "no reply within",
			timeout: true,
			outcome: "connect/timeout",
		},
		{
			name:   "caller's deadline honoured",
			answer: answerBlock,
			mod:    func(c *EventsConfig) { c.Timeout = time.Hour },
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			},
			wantErr: "caller's deadline",
			timeout: true,
			outcome: "connect/timeout",
		},
		{
			name:   "caller gone is an error, not a timeout",
			answer: answerBlock,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantErr: "cancelled",
			outcome: "connect/error",
		},
		{
			name:     "connect off accepts at once",
			answer:   answerJSON(`{"accept": false}`),
			mod:      func(c *EventsConfig) { c.Connect = false },
			noRecord: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := tc.answer
			if answer == nil {
				answer = answerJSON(`{"accept": true}`)
			}
			srv, got := eventsServer(t, answer)
			url := srv.URL
			if tc.down {
				url = downURL(t)
			}
			obs := &eventsRecorder{}
			e := newEvents(t, url, obs, tc.mod)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			d, err := e.Connected(ctx, alice, nil)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if got := errors.Is(err, context.DeadlineExceeded); got != tc.timeout {
				t.Fatalf("error %v: is DeadlineExceeded = %v, want %v", err, got, tc.timeout)
			}
			if d.Reject != tc.want.Reject || d.Status != tc.want.Status || d.Reason != tc.want.Reason || !bytes.Equal(d.Extra, tc.want.Extra) {
				t.Fatalf("decision %+v (extra %s), want %+v (extra %s)", d, d.Extra, tc.want, tc.want.Extra)
			}
			if tc.outcome != "" && obs.get(tc.outcome) != 1 {
				t.Fatalf("observer %v, want one %s", obs.counts, tc.outcome)
			}
			if tc.noRecord && len(got) != 0 {
				t.Fatal("a request was sent")
			}
		})
	}
}

// TestConnectWire checks the connect body and headers: signed, every field
// as documented, and the handshake headers forwarded only when configured.
func TestConnectWire(t *testing.T) {
	hdrs := HeaderMap{"Cookie": "PHPSESSID=abc; other=1", "Authorization": "Bearer x", "X-Real-Ip": "203.0.113.7"}
	for _, tc := range []struct {
		name    string
		forward []string
		want    map[string]string // header → value, "" for absent
	}{
		{"none configured", nil, map[string]string{"Cookie": "", "Authorization": "", "X-Real-Ip": ""}},
		{"cookie configured", []string{"cookie"}, map[string]string{"Cookie": "PHPSESSID=abc; other=1", "Authorization": "", "X-Real-Ip": ""}},
		{"two configured", []string{"Cookie", "x-real-ip", "COOKIE"}, map[string]string{"Cookie": "PHPSESSID=abc; other=1", "Authorization": "", "X-Real-Ip": "203.0.113.7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := eventsServer(t, answerJSON(`{"accept": true}`))
			e := newEvents(t, srv.URL, nil, func(c *EventsConfig) { c.ForwardHeaders = tc.forward })
			if _, err := e.Connected(context.Background(), alice, hdrs); err != nil {
				t.Fatal(err)
			}
			ev := recv(t, got) // only signed requests get here
			for h, v := range tc.want {
				if g := ev.header.Get(h); g != v {
					t.Errorf("header %s = %q, want %q", h, g, v)
				}
			}
			if ct := ev.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			want := `{"event":"connect","connection":{"conn_id":"c-1","wamp_session_id":"wamp-sess-1",` +
				`"firewall":"main","user_identifier":"alice","anonymous":false,"roles":["ROLE_USER"],` +
				`"protocol":"wamp","remote_addr":"203.0.113.7:51234","connected_at":"2024-05-01T12:00:00.123Z","extra":null}}`
			if string(ev.raw) != want {
				t.Fatalf("body\n%s\nwant\n%s", ev.raw, want)
			}
		})
	}

	// An anonymous client without roles sends [] and a zero ConnectedAt
	// becomes the time of the event.
	srv, got := eventsServer(t, answerJSON(`{"accept": true}`))
	e := newEvents(t, srv.URL, nil, nil)
	if _, err := e.Connected(context.Background(), ConnEvent{ConnID: "c-2", Identity: handler.Identity{Anonymous: true}, Protocol: "wamp.2.json"}, nil); err != nil {
		t.Fatal(err)
	}
	ev := recv(t, got)
	c := ev.Connection
	if roles, ok := c["roles"].([]any); !ok || len(roles) != 0 || c["anonymous"] != true || c["protocol"] != "wamp.2.json" {
		t.Fatalf("connection %v", c)
	}
	if at, _ := c["connected_at"].(string); at == "" {
		t.Fatalf("connected_at %v", c["connected_at"])
	} else if _, err := time.Parse(time.RFC3339, at); err != nil {
		t.Fatalf("connected_at: %v", err)
	}
	if _, ok := c["reason"]; ok {
		t.Fatal("connect event with a reason")
	}

	// A wrong secret is refused by the application (401): an error.
	bad, err := NewEvents(EventsConfig{URL: srv.URL, Secret: []byte("not-the-shared-secret"), Connect: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Connected(context.Background(), alice, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong secret: %v", err)
	}
	bad.Close(context.Background())
}

func TestDisconnectDeliveredOnClose(t *testing.T) {
	srv, got := eventsServer(t, func(w http.ResponseWriter, _ *http.Request, _ *gotEvent) {
		w.WriteHeader(http.StatusNoContent)
	})
	obs := &eventsRecorder{}
	e := newEvents(t, srv.URL, obs, func(c *EventsConfig) { c.Workers = 3 })
	const n = 200
	for i := range n {
		ev := alice
		ev.ConnID = fmt.Sprintf("c-%d", i)
		ev.Extra = json.RawMessage(`{"plan":"gold"}`)
		ev.Reason = ReasonDrain
		ev.Duration = 1500 * time.Millisecond
		e.Disconnected(ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != n || obs.get("disconnect/ok") != n || e.Dropped() != 0 {
		t.Fatalf("%d delivered, observer %v, %d dropped; want %d delivered", len(got), obs.counts, e.Dropped(), n)
	}
	seen := map[string]bool{}
	for range n {
		ev := <-got
		c := ev.Connection
		seen[c["conn_id"].(string)] = true
		extra, _ := json.Marshal(c["extra"])
		if ev.Event != "disconnect" || c["reason"] != "drain" || c["duration_ms"] != 1500.0 || string(extra) != `{"plan":"gold"}` ||
			c["wamp_session_id"] != "wamp-sess-1" || c["connected_at"] != "2024-05-01T12:00:00.123Z" {
			t.Fatalf("event %s", ev.raw)
		}
		if ev.header.Get(HeaderSignature) == "" {
			t.Fatal("unsigned")
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct connections, want %d", len(seen), n)
	}

	// After Close, events are dropped and counted, never sent.
	e.Disconnected(alice)
	if e.Dropped() != 1 || obs.get("disconnect/dropped") != 1 {
		t.Fatalf("after Close: %d dropped, observer %v", e.Dropped(), obs.counts)
	}
}

func TestDisconnectDefaults(t *testing.T) {
	srv, got := eventsServer(t, answerJSON(`{}`))
	e := newEvents(t, srv.URL, nil, nil)
	ev := alice
	ev.ConnectedAt = time.Now().Add(-90 * time.Second)
	e.Disconnected(ev) // no Reason, no Duration: computed by Disconnected
	c := recv(t, got).Connection
	ms, _ := c["duration_ms"].(float64)
	if c["reason"] != ReasonError || ms < 90000 || ms > 90000+3600000 || c["extra"] != nil {
		t.Fatalf("connection %v", c)
	}
}

func TestDisconnectQueueFullDrops(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	srv, got := eventsServer(t, func(w http.ResponseWriter, r *http.Request, _ *gotEvent) {
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	obs := &eventsRecorder{}
	e := newEvents(t, srv.URL, obs, func(c *EventsConfig) { c.Workers = 1; c.QueueSize = 2 })
	e.Disconnected(alice)
	<-started // the only worker is busy with the first event
	for range 5 {
		e.Disconnected(alice) // 2 fit in the queue, 3 are dropped
	}
	if e.Dropped() != 3 || obs.get("disconnect/dropped") != 3 {
		t.Fatalf("%d dropped, observer %v, want 3", e.Dropped(), obs.counts)
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || obs.get("disconnect/ok") != 3 {
		t.Fatalf("%d delivered, observer %v, want 3", len(got), obs.counts)
	}
}

// eventsGoroutines counts the goroutines running Events code.
func eventsGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	c := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "upstream.(*Events).") || strings.Contains(g, "upstream.NewEvents") {
			c++
		}
	}
	return c
}

// waitEventsGoroutines fails unless exactly want Events goroutines run
// soon: a goroutine just started may not have reached Events code yet, and
// one that has signalled its end may still be returning.
func waitEventsGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for eventsGoroutines() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d Events goroutines, want %d", eventsGoroutines(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseStopsWorkers(t *testing.T) {
	waitEventsGoroutines(t, 0) // earlier tests' instances are closed
	srv, _ := eventsServer(t, answerJSON(`{}`))
	e, err := NewEvents(EventsConfig{URL: srv.URL, Secret: testSecret, Disconnect: true, Workers: 8}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	waitEventsGoroutines(t, 9) // 8 workers and the one closing done
	e.Disconnected(alice)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitEventsGoroutines(t, 0)
	if err := e.Close(context.Background()); err != nil { // idempotent
		t.Fatal(err)
	}
}

// TestCloseDeadline: an application that never answers cannot hold Close
// past its context; what was not delivered is counted.
func TestCloseDeadline(t *testing.T) {
	waitEventsGoroutines(t, 0)
	started := make(chan struct{}, 10)
	srv, _ := eventsServer(t, func(w http.ResponseWriter, r *http.Request, ev *gotEvent) {
		started <- struct{}{}
		answerBlock(w, r, ev)
	})
	obs := &eventsRecorder{}
	e, err := NewEvents(EventsConfig{URL: srv.URL, Secret: testSecret, Disconnect: true, Workers: 1, Timeout: time.Hour}, obs, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	for range 4 {
		e.Disconnected(alice)
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = e.Close(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "4 disconnect events not delivered") {
		t.Fatalf("Close: %v", err)
	}
	// The one in flight was cut (an error), the three queued were dropped.
	if obs.get("disconnect/error") != 1 || obs.get("disconnect/dropped") != 3 || e.Dropped() != 3 {
		t.Fatalf("observer %v, %d dropped", obs.counts, e.Dropped())
	}
	waitEventsGoroutines(t, 0)
}

// A bad field is a *config.Error naming it as the events: config does, with
// the bad value (never the secret's).
func TestNewEventsValidates(t *testing.T) {
	ok := EventsConfig{URL: "http://app.internal/events", Secret: testSecret, Connect: true}
	for _, tc := range []struct {
		mod               func(*EventsConfig)
		key, value, inMsg string // key "": accepted
	}{
		{func(c *EventsConfig) { c.URL = "" }, "url", "", "scheme must be http or https"},
		{func(c *EventsConfig) { c.URL = "ftp://x/" }, "url", "ftp://x/", `got "ftp"`},
		{func(c *EventsConfig) { c.URL = "http:///events" }, "url", "http:///events", "has no host"},
		{func(c *EventsConfig) { c.URL = "http://u:p@app/events" }, "url", "http://u:xxxxx@app/events", "must not carry credentials"},
		{func(c *EventsConfig) { c.URL = "http://app/events#x" }, "url", "http://app/events#x", "must not have a fragment"},
		{func(c *EventsConfig) { c.URL = "://bad" }, "url", "", "missing protocol scheme"},
		{func(c *EventsConfig) { c.Secret = nil }, "secret", "", "is 0 bytes, want at least 16"},
		{func(c *EventsConfig) { c.Secret = []byte("short") }, "secret", "", "is 5 bytes"},
		{func(c *EventsConfig) { c.Timeout = -time.Second }, "timeout", "-1s", "must not be negative"},
		{func(c *EventsConfig) { c.OnConnectError = "maybe" }, "on_connect_error", "maybe", "must be accept or reject"},
		{func(c *EventsConfig) { c.QueueSize = -1 }, "queue_size", "-1", "must not be negative"},
		{func(c *EventsConfig) { c.QueueSize = 1<<22 + 1 }, "queue_size", "4194305", "must be at most 4194304"},
		{func(c *EventsConfig) { c.Workers = -1 }, "workers", "-1", "must not be negative"},
		{func(c *EventsConfig) { c.Workers = 1025 }, "workers", "1025", "must be at most 1024"},
		{func(c *EventsConfig) { c.MaxReplyBytes = -1 }, "max_reply_bytes", "-1", "must not be negative"},
		{func(c *EventsConfig) { c.MaxExtraBytes = -1 }, "max_extra_bytes", "-1", "must not be negative"},
		{func(c *EventsConfig) { c.ForwardHeaders = []string{"Bad Header"} }, "forward_headers", "", `"Bad Header" is not a header name`},
		{func(c *EventsConfig) { c.ForwardHeaders = []string{"content-length"} }, "forward_headers", "", "cannot be forwarded"},
		{func(c *EventsConfig) { c.ForwardHeaders = []string{"x-wsgate-signature"} }, "forward_headers", "", "cannot be forwarded"},
		{nil, "", "", ""},
		{func(c *EventsConfig) { c.OnConnectError = OnConnectErrorReject; c.Disconnect = true; c.Workers = 1024 }, "", "", ""},
	} {
		cfg := ok
		if tc.mod != nil {
			tc.mod(&cfg)
		}
		e, err := NewEvents(cfg, nil, nil)
		if tc.key == "" {
			if err != nil {
				t.Fatalf("%+v: %v", cfg, err)
			}
			if e.timeout != DefaultEventsTimeout || e.onErr == "" || e.maxExtra != DefaultMaxExtraBytes {
				t.Fatalf("defaults not applied: %+v", e)
			}
			e.Close(context.Background())
			continue
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || ce.Value != tc.value || !strings.Contains(ce.Reason, tc.inMsg) ||
			!strings.HasPrefix(err.Error(), "upstream events: ") || strings.Contains(err.Error(), string(testSecret)) {
			t.Errorf("%+v: error %v, want key %q value %q reason with %q", cfg, err, tc.key, tc.value, tc.inMsg)
		}
	}
	if _, err := NewEvents(EventsConfig{URL: ok.URL, Secret: testSecret}, nil, nil); err == nil || !strings.Contains(err.Error(), "neither connect nor disconnect") {
		t.Errorf("nothing enabled: %v", err)
	}
}

func TestParseConnectReply(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	for _, tc := range []struct {
		body string
		want ConnectDecision
		err  string
	}{
		{body: `{"accept":true}`, want: ConnectDecision{}},
		{body: " \n{\"accept\" : true , \"extra\" : { \"a\" : 1 } }\r\n", want: ConnectDecision{Extra: json.RawMessage(`{"a":1}`)}},
		{body: `{"extra":{},"accept":true}`, want: ConnectDecision{Extra: json.RawMessage(`{}`)}},
		{body: `{"accept":false,"reason":"a\r\nb\u0000c"}`, want: ConnectDecision{Reject: true, Status: 403, Reason: "a  b c"}},
		{body: `{"accept":false,"status":599,"reason":"` + long + `"}`, want: ConnectDecision{Reject: true, Status: 599, Reason: strings.Repeat("é", 100)}},
		{body: ``, err: "empty reply body"},
		{body: `[]`, err: "not a JSON object"},
		{body: `null`, err: "not a JSON object"},
		{body: "{\"accept\":true,\"extra\":{\"a\":\"\xff\"}}", err: "not valid UTF-8"},
		{body: `{}`, err: `no "accept"`},
		{body: `{"accept":null}`, err: `"accept" must be true or false`},
		{body: `{"accept":1}`, err: `"accept" must be true or false`},
		{body: `{"Accept":true}`, err: `unexpected field "Accept"`},
		{body: `{"accept":true,"accept":false}`, err: `duplicate field "accept"`},
		{body: `{"accept":true,"drop":true}`, err: `unexpected field "drop"`},
		{body: `{"accept":true} {}`, err: "data after the reply object"},
		{body: `{"accept":true}x`, err: "data after the reply object"},
		{body: `{"accept":true`, err: "malformed reply"},
		{body: `{"accept":true,}`, err: "malformed reply"},
		{body: `{"accept":true,"extra":[1]}`, err: `"extra" must be a JSON object or null`},
		{body: `{"accept":true,"extra":"x"}`, err: `"extra" must be a JSON object or null`},
		{body: `{"accept":true,"extra":{"x":"` + strings.Repeat("a", 100) + `"}}`, err: `"extra" is 108 bytes, more than 64`},
		{body: `{"accept":true,"status":403}`, err: `go with "accept": false`},
		{body: `{"accept":true,"reason":"x"}`, err: `go with "accept": false`},
		{body: `{"accept":false,"extra":{}}`, err: `"extra" goes with "accept": true`},
		{body: `{"accept":false,"status":200}`, err: `"status" must be an integer from 400 to 599`},
		{body: `{"accept":false,"status":403.5}`, err: `"status" must be an integer`},
		{body: `{"accept":false,"status":"403"}`, err: `"status" must be an integer`},
		{body: `{"accept":false,"status":null}`, err: `"status" must be an integer`},
		{body: `{"accept":false,"reason":5}`, err: `"reason" must be a string`},
		{body: `{"` + strings.Repeat("k", 500) + `":1}`, err: `unexpected field "kkkk`},
	} {
		d, err := parseConnectReply([]byte(tc.body), 64)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one containing %q", tc.body, err, tc.err)
			}
			if err != nil && len(err.Error()) > 200 {
				t.Errorf("%q: error of %d bytes", tc.body, len(err.Error()))
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.body, err)
			continue
		}
		if d.Reject != tc.want.Reject || d.Status != tc.want.Status || d.Reason != tc.want.Reason || !bytes.Equal(d.Extra, tc.want.Extra) {
			t.Errorf("%q: %+v (extra %s), want %+v (extra %s)", tc.body, d, d.Extra, tc.want, tc.want.Extra)
		}
	}
}

func TestHeaderMap(t *testing.T) {
	m := HeaderMap{"Cookie": "a=1"}
	if m.HandshakeHeader("cookie") != "a=1" || m.HandshakeHeader("COOKIE") != "a=1" || m.HandshakeHeader("Origin") != "" {
		t.Fatal("HeaderMap lookup")
	}
	var _ HeaderSource = m
}
