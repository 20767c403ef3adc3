package wamp

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// recObserver records observer calls.
type recObserver struct {
	mu     sync.Mutex
	in     map[string]int
	out    map[string]int
	calls  map[string]int
	failed int
	misses map[string]int
	denied map[string]int
}

func newRecObserver() *recObserver {
	return &recObserver{in: map[string]int{}, out: map[string]int{}, calls: map[string]int{}, misses: map[string]int{}, denied: map[string]int{}}
}

func (o *recObserver) MessageIn(p Protocol, typ string) {
	o.mu.Lock()
	o.in[p.String()+" "+typ]++
	o.mu.Unlock()
}

func (o *recObserver) MessagesOut(p Protocol, typ string, n int) {
	o.mu.Lock()
	o.out[p.String()+" "+typ] += n
	o.mu.Unlock()
}

func (o *recObserver) Call(h string, d time.Duration, failed bool) {
	o.mu.Lock()
	o.calls[h]++
	if failed {
		o.failed++
	}
	o.mu.Unlock()
}

func (o *recObserver) RoutingMiss(kind string) {
	o.mu.Lock()
	o.misses[kind]++
	o.mu.Unlock()
}

func (o *recObserver) Limit(string) {}

func (o *recObserver) AccessDenied(kind string) {
	o.mu.Lock()
	o.denied[kind]++
	o.mu.Unlock()
}

func TestObserver(t *testing.T) {
	obs := newRecObserver()
	f := newFixture(t, func(c *NodeConfig) { accessRoutes(c); c.Observer = obs })
	s1, _ := f.open(t, "a")
	s2, _ := f.openV2(t, ClientInfo{ConnID: "b", Identity: handler.Identity{Anonymous: true}})
	ctx := context.Background()
	for _, m := range []string{`[2,"c","sample/echo",1]`, `[2,"c","sample/fail"]`, `[2,"c","nope"]`, `[5,"chan/a"]`, `[5,"nope"]`, `[9]`} {
		_ = s1.Handle(ctx, []byte(m))
	}
	for _, m := range []string{`[32,1,{},"chan/a"]`, `[48,2,{},"admin/echo"]`, `[48,3,{},"sample/echo"]`} {
		_ = s2.Handle(ctx, []byte(m))
	}
	st := f.node.Stats()
	if st.Topics != 1 || st.Subscriptions != 2 || st.Sessions[ProtocolV1] != 1 || st.Sessions[ProtocolV2JSON] != 1 {
		t.Errorf("stats %+v", st)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	wantIn := map[string]int{"wamp1 CALL": 3, "wamp1 SUBSCRIBE": 2, "wamp1 INVALID": 1, "wamp2json HELLO": 1, "wamp2json SUBSCRIBE": 1, "wamp2json CALL": 2}
	for k, v := range wantIn {
		if obs.in[k] != v {
			t.Errorf("in[%s] = %d, want %d (all %v)", k, obs.in[k], v, obs.in)
		}
	}
	// Joins: a's join to a (v1), b's join to a (v1) and b (v2).
	wantOut := map[string]int{"wamp1 WELCOME": 1, "wamp1 CALLRESULT": 1, "wamp1 CALLERROR": 2, "wamp1 EVENT": 2, "wamp2json EVENT": 1,
		"wamp2json WELCOME": 1, "wamp2json SUBSCRIBED": 1, "wamp2json ERROR": 1, "wamp2json RESULT": 1}
	for k, v := range wantOut {
		if obs.out[k] != v {
			t.Errorf("out[%s] = %d, want %d (all %v)", k, obs.out[k], v, obs.out)
		}
	}
	if obs.calls["test.rpc"] != 3 || obs.failed != 1 {
		t.Errorf("calls %v failed %d", obs.calls, obs.failed)
	}
	if obs.misses["rpc"] != 1 || obs.misses["topic"] != 1 || obs.denied["rpc"] != 1 {
		t.Errorf("misses %v denied %v", obs.misses, obs.denied)
	}
}
