package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdingUpstream is an HTTP upstream of the PHP app that, while holding,
// keeps every request it gets until the test releases them, and counts
// them by kind. It does not check signatures: it stands for a slow app,
// not for the signing contract.
type holdingUpstream struct {
	srv *httptest.Server

	mu      sync.Mutex
	cond    *sync.Cond     // signalled on every change of held
	holding bool           // new requests are held
	release chan struct{}  // closed by releaseAll; replaced by hold
	held    map[string]int // requests held right now, by kind
	total   map[string]int // requests received, by kind
	done    map[string]int // requests answered, by kind
	log     []string       // "kind uri" of every request, in order
}

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	t.Helper()
	u := &holdingUpstream{release: make(chan struct{}), held: map[string]int{}, total: map[string]int{}, done: map[string]int{}}
	u.cond = sync.NewCond(&u.mu)
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(func() {
		u.releaseAll() // the server's Close waits for its handlers
		u.srv.Close()
	})
	return u
}

func (u *holdingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	var req struct {
		Kind string `json:"kind"`
		URI  string `json:"uri"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	u.mu.Lock()
	u.total[req.Kind]++
	u.log = append(u.log, req.Kind+" "+req.URI)
	hold, release := u.holding, u.release
	if hold {
		u.held[req.Kind]++
		u.cond.Broadcast()
	}
	u.mu.Unlock()
	if hold {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		u.mu.Lock()
		u.held[req.Kind]--
		u.cond.Broadcast()
		u.mu.Unlock()
		if r.Context().Err() != nil {
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	switch req.Kind {
	case "call":
		io.WriteString(w, `{"result":"slow"}`)
	case "subscribe":
		io.WriteString(w, `{"allow":true}`)
	default: // publish (broadcast as published), unsubscribe
		io.WriteString(w, `{}`)
	}
	u.mu.Lock()
	u.done[req.Kind]++
	u.cond.Broadcast()
	u.mu.Unlock()
}

// received lists the requests received so far as "kind uri", in order.
func (u *holdingUpstream) received() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.log...)
}

// hold makes the upstream hold every request from now on.
func (u *holdingUpstream) hold() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.holding = true
	select {
	case <-u.release:
		u.release = make(chan struct{})
	default:
	}
}

// releaseAll answers every held request and stops holding new ones.
func (u *holdingUpstream) releaseAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.holding = false
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

// heldNow returns the requests held right now, by kind.
func (u *holdingUpstream) heldNow() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int, len(u.held))
	for k, v := range u.held {
		out[k] = v
	}
	return out
}

// waitHeld waits until ok(held) or d passes; it returns the last counts
// and whether ok held.
func (u *holdingUpstream) waitHeld(d time.Duration, ok func(map[string]int) bool) (map[string]int, bool) {
	return u.wait(d, &u.held, ok)
}

// waitDone waits until ok(answered) or d passes, as waitHeld.
func (u *holdingUpstream) waitDone(d time.Duration, ok func(map[string]int) bool) (map[string]int, bool) {
	return u.wait(d, &u.done, ok)
}

func (u *holdingUpstream) wait(d time.Duration, counts *map[string]int, ok func(map[string]int) bool) (map[string]int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		u.mu.Lock()
		u.cond.Broadcast()
		u.mu.Unlock()
	})
	defer stop()
	u.mu.Lock()
	defer u.mu.Unlock()
	for !ok(*counts) {
		if ctx.Err() != nil {
			break
		}
		u.cond.Wait()
	}
	out := make(map[string]int, len(*counts))
	for k, v := range *counts {
		out[k] = v
	}
	return out, ok(*counts)
}

const abuseOffloadConfig = `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
transport: {mode: %s, workers: 2, writers: 1}
limits: {call_timeout: 60s, max_pending_calls_per_connection: %d}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
upstreams:
  slow: {url: "%s", secret: "0123456789abcdef0123456789abcdef", timeout: 50s, max_concurrent: 256, notify_unsubscribe: true}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
    slow_rpc: {pattern: "slow/{method}", handler: upstream.slow}
  topics:
    slow_topic: {pattern: "slowtopic/{room}", handler: upstream.slow}
`

const offloadPendingPerConn = 4

// TestAbuseOffload: a slow app holds every upstream subscribe, publish,
// unsubscribe and call; with two transport workers, more clients blocked
// on it than workers, and a disconnect whose unsubscribes are held, other
// clients' plugin calls are still answered, a new client still connects,
// a blocked client can still call a plugin, its over-limit requests are
// refused at once, and everything held completes once released.
func TestAbuseOffload(t *testing.T) {
	forEachMode(t, testAbuseOffload)
}

func testAbuseOffload(t *testing.T, mode string) {
	const blocked = 8
	up := newHoldingUpstream(t)
	g := startAbuseGateway(t, fmt.Sprintf(abuseOffloadConfig, mode, offloadPendingPerConn, t.TempDir(), up.srv.URL))
	// Cleanups run last-in first-out: let go of held requests before the
	// gateway is stopped, whose drain would wait for them.
	t.Cleanup(up.releaseAll)
	defer func() {
		if t.Failed() {
			t.Logf("upstream requests received: %v", up.received())
		}
	}()
	measureRSS(t, g, mode)
	w := watchMetrics(t, g)

	// Before holding: an observer (v2, acknowledged) subscribes to the
	// topics the blocked clients will publish to, and a leaver subscribes
	// to 16 topics it will drop by disconnecting.
	observer := mustV2(t, g.Addr)
	for i := range blocked {
		v2Subscribe(t, observer, 100+i, fmt.Sprintf("slowtopic/p%d", i))
	}
	leaver := mustV2(t, g.Addr)
	for i := range 16 {
		v2Subscribe(t, leaver, 200+i, fmt.Sprintf("slowtopic/leave%d", i))
	}

	// A v2 SUBSCRIBED may go out before the app allowed the subscription:
	// wait for the app's answers before holding.
	if got, ok := up.waitDone(10*time.Second, func(d map[string]int) bool { return d["subscribe"] >= blocked+16 }); !ok {
		t.Fatalf("the upstream answered %v, want %d subscribes", got, blocked+16)
	}
	up.hold()
	// Each blocked client subscribes (held by the app) and then publishes:
	// one client's offloaded topic callbacks run in order, so its publish
	// waits in the gateway behind its subscribe (and counts against its
	// bound). Other clients publish on their own, held by the app too.
	clients := make([]*wsRaw, blocked)
	for i := range clients {
		c, err := dialV1(t, g.Addr, rawDialOpts{})
		if err != nil {
			t.Fatalf("blocked client %d: %v", i, err)
		}
		clients[i] = c
		c.sendJSON(5, fmt.Sprintf("slowtopic/s%d", i))
		c.sendJSON(7, fmt.Sprintf("slowtopic/p%d", i), map[string]int{"from": i})
	}
	for i := range blocked {
		p, err := dialV1(t, g.Addr, rawDialOpts{})
		if err != nil {
			t.Fatalf("publisher %d: %v", i, err)
		}
		p.sendJSON(7, fmt.Sprintf("slowtopic/p%d", i), map[string]int{"publisher": i})
	}
	held, ok := up.waitHeld(5*time.Second, func(h map[string]int) bool { return h["subscribe"] >= blocked && h["publish"] >= blocked })
	if !ok {
		t.Errorf("the upstream holds %v, want %d subscribes and %d publishes: the gateway does not send them all while some are held", held, blocked, blocked)
	}
	leaver.nc.Close()
	// One request per topic or one batch ("leave"): either counts.
	held, ok = up.waitHeld(5*time.Second, func(h map[string]int) bool {
		return h["unsubscribe"]+h["leave"] >= 1
	})
	if !ok {
		t.Errorf("the upstream holds %v, want the leaver's unsubscribe(s)", held)
	}

	// Meanwhile: a plugin call of a client that waits on nothing, a new
	// client, and a plugin call of a client whose requests are held.
	expectAnswer(t, freshV1(t, g), "free", "sample/sum", []int{1, 2})
	checkServed(t, g.Addr, "sample/sum")
	expectAnswer(t, clients[0], "busy-client", "sample/sum", []int{3, 4})
	if got := up.heldNow(); got["subscribe"] < blocked || got["publish"] < blocked {
		t.Errorf("the upstream lets go early: holds %v", got)
	}

	// The per-connection bound counts subscribes and publishes too: the
	// blocked client has 2 held, 2 more calls fill it, then everything
	// offloaded is refused at once.
	b := clients[0]
	b.sendJSON(2, "held1", "slow/wait")
	b.sendJSON(2, "held2", "slow/wait")
	if held, ok := up.waitHeld(5*time.Second, func(h map[string]int) bool { return h["call"] >= 2 }); !ok {
		t.Errorf("the upstream holds %v, want the 2 calls", held)
	}
	b.sendJSON(2, "over", "slow/wait")
	b.sendJSON(5, "slowtopic/over")
	b.sendJSON(7, "slowtopic/p0", map[string]string{"over": "limit"})
	for _, what := range []string{"CALL", "SUBSCRIBE", "PUBLISH"} {
		m, err := b.tryNext(5 * time.Second)
		if err != nil {
			t.Errorf("v1 %s over max_pending_calls_per_connection: no answer before the upstream lets go: %v", what, err)
			break
		}
		if code := callErrorCode(m); code != 503 {
			t.Errorf("v1 %s over max_pending_calls_per_connection: got %s, want CALLERROR with details code 503", what, msgString(m))
		}
	}
	v := mustV2(t, g.Addr)
	v.sendJSON(32, 1, map[string]any{}, "slowtopic/v")
	v.sendJSON(16, 2, map[string]any{"acknowledge": true}, "slowtopic/v", []string{"x"})
	v.sendJSON(48, 3, map[string]any{}, "slow/wait")
	v.sendJSON(48, 4, map[string]any{}, "slow/wait")
	if held, ok := up.waitHeld(5*time.Second, func(h map[string]int) bool { return h["call"] >= 4 }); !ok {
		t.Errorf("the upstream holds %v, want the v2 client's calls too", held)
	}
	v.sendJSON(48, 5, map[string]any{}, "slow/wait")
	v.sendJSON(32, 6, map[string]any{}, "slowtopic/v2over")
	v.sendJSON(16, 7, map[string]any{"acknowledge": true}, "slowtopic/v", []string{"y"})
	// Its SUBSCRIBED may come at once, before the app answers: skip it.
	subscribed := false
	for _, req := range []struct {
		what string
		typ  int
	}{{"CALL", 48}, {"SUBSCRIBE", 32}, {"PUBLISH", 16}} {
		m, err := v.tryNext(5 * time.Second)
		if err == nil && msgType(m) == 33 && !subscribed {
			subscribed = true
			m, err = v.tryNext(5 * time.Second)
		}
		if err != nil {
			t.Errorf("v2 %s over max_pending_calls_per_connection: no answer before the upstream lets go: %v", req.what, err)
			break
		}
		if !isV2Error(m, req.typ, "wsgate.error.busy") {
			t.Errorf("v2 %s over max_pending_calls_per_connection: got %s, want ERROR wsgate.error.busy", req.what, msgString(m))
		}
	}
	w.expectLimit("max_pending_calls_per_connection", 6)
	// The v2 client's acknowledged publish waits behind its held subscribe.
	if got := up.heldNow(); got["subscribe"] < blocked+1 || got["publish"] < blocked || got["call"] < 4 {
		t.Errorf("the upstream lets go early or got refused requests: holds %v", got)
	}

	// Let go: every held operation completes.
	up.releaseAll()
	for range 2 {
		m := b.nextMsg(10 * time.Second)
		var id string
		if msgType(m) != 3 || json.Unmarshal(m[1], &id) != nil || !strings.HasPrefix(id, "held") {
			t.Errorf("blocked client after the release: got %s, want its held CALLRESULTs", msgString(m))
		}
	}
	got := map[int]int{}
	if subscribed {
		got[33]++
	}
	for got[33] < 1 || got[17] < 1 || got[50] < 2 {
		m, err := v.tryNext(10 * time.Second)
		if err != nil {
			t.Errorf("v2 client after the release: %v; got message types %v, want SUBSCRIBED, PUBLISHED and 2 RESULTs", err, got)
			break
		}
		got[msgType(m)]++
	}
	// The held publishes (the publishers', then the blocked clients')
	// reach the observer.
	events := 0
	for events < 2*blocked {
		m, err := observer.tryNext(10 * time.Second)
		if err != nil {
			t.Errorf("observer got %d of the %d held publishes: %v", events, 2*blocked, err)
			break
		}
		if msgType(m) == 36 {
			events++
		}
	}
	// The held subscribes took: a publish to each topic reaches its client.
	for i, c := range clients {
		topic := fmt.Sprintf("slowtopic/s%d", i)
		if !v1GetsEvent(t, observer, c, topic) {
			t.Errorf("blocked client %d is not subscribed to %s after the release", i, topic)
		}
	}
}

// freshV1 is a new v1 client, one whose requests nobody holds.
func freshV1(t *testing.T, g *gatewayProcess) *wsRaw {
	t.Helper()
	c, err := dialV1(t, g.Addr, rawDialOpts{})
	if err != nil {
		t.Fatalf("a client connecting while the upstream holds requests: %v", err)
	}
	return c
}

// v2Subscribe subscribes c to topic and waits for SUBSCRIBED.
func v2Subscribe(t *testing.T, c *wsRaw, reqID int, topic string) {
	t.Helper()
	c.sendJSON(32, reqID, map[string]any{}, topic)
	for {
		m := c.nextMsg(10 * time.Second)
		var id int
		if len(m) > 1 && json.Unmarshal(m[1], &id) == nil && id == reqID {
			if msgType(m) != 33 {
				t.Fatalf("SUBSCRIBE %s: got %s", topic, msgString(m))
			}
			return
		}
	}
}

// callErrorCode is the details code of a v1 CALLERROR, 0 for another
// message.
func callErrorCode(m []json.RawMessage) int {
	if msgType(m) != 4 || len(m) < 5 {
		return 0
	}
	var d struct {
		Code int `json:"code"`
	}
	if json.Unmarshal(m[4], &d) != nil {
		return 0
	}
	return d.Code
}

// isV2Error reports whether m is ERROR [8, reqType, id, details, uri].
func isV2Error(m []json.RawMessage, reqType int, uri string) bool {
	if msgType(m) != 8 || len(m) < 5 {
		return false
	}
	var typ int
	var got string
	return json.Unmarshal(m[1], &typ) == nil && typ == reqType && json.Unmarshal(m[4], &got) == nil && got == uri
}

// v1GetsEvent has the v2 publisher publish (acknowledged) to topic until
// the v1 client c gets the EVENT, at most 20 times.
func v1GetsEvent(t *testing.T, pub, c *wsRaw, topic string) bool {
	t.Helper()
	for i := range 20 {
		pub.sendJSON(16, 1000+i, map[string]any{"acknowledge": true}, topic, []string{"ping"})
		for {
			m, err := c.tryNext(250 * time.Millisecond)
			if err != nil {
				break
			}
			var got string
			if msgType(m) == 8 && json.Unmarshal(m[1], &got) == nil && got == topic {
				return true
			}
		}
	}
	return false
}
