package upstream

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

type recordingObserver struct {
	mu   sync.Mutex
	seen []string
}

func (o *recordingObserver) UpstreamRequest(upstream, route, kind, outcome string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d < 0 {
		outcome += " negative-duration"
	}
	o.seen = append(o.seen, upstream+" "+route+" "+kind+" "+outcome)
}

func (o *recordingObserver) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.seen
	o.seen = nil
	return out
}

// Every request reaches the observer with an outcome that tells the app's
// own errors from the gateway's, so dashboards can alert on the latter.
func TestObserverOutcomes(t *testing.T) {
	// block holds the slow handler until the subtest is done; it is
	// replaced per subtest and closed before the server shuts down.
	var block chan struct{}
	cases := []struct {
		name   string
		answer func(http.ResponseWriter, *received)
		mod    func(*Config)
		want   string
	}{
		{"ok", jsonReply(`{"result":3}`), nil, "app app_rpc call ok"},
		{"app error", jsonReply(`{"error":{"uri":"app.error.nope","desc":"no"}}`), nil, "app app_rpc call app_error"},
		{"non-2xx", func(w http.ResponseWriter, _ *received) { http.Error(w, "x", 500) }, nil, "app app_rpc call bad_gateway"},
		{"invalid reply", jsonReply(`[1]`), nil, "app app_rpc call bad_gateway"},
		{"timeout", func(w http.ResponseWriter, _ *received) {
			b := block
			select {
			case <-b:
			case <-time.After(5 * time.Second):
			}
		}, func(c *Config) { c.Timeout = 100 * time.Millisecond }, "app app_rpc call timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			block = make(chan struct{})
			srv, _ := server(t, tc.answer)
			b := block
			t.Cleanup(func() { close(b) }) // runs before srv.Close
			obs := &recordingObserver{}
			u := newUp(t, srv.URL, func(c *Config) {
				c.Observer = obs
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			_, _ = u.Call(context.Background(), fakeClient{}, callReq, nil)
			if got := obs.take(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("observed %q, want [%q]", got, tc.want)
			}
		})
	}
}
