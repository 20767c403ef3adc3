package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/wsgate/wsgate/wamp"
)

// workPool runs the WAMP node's handler work off the transport (it is the
// node's wamp.Offloader): offloaded calls, offloaded topic callbacks, and
// the unsubscribes a disconnect leaves. It starts a goroutine per task, at
// most max at once (limits.max_pending_calls); TryGo refuses past that,
// Go puts the task in a backlog that running goroutines take from as they
// finish. The node gives Go only work that must happen, one lane per
// session at most, so the backlog is bounded by the connections. The
// Server owns the pool: Shutdown waits for it to empty.
type workPool struct {
	max int

	mu      sync.Mutex // guards running and backlog
	running int
	backlog []func()
}

var _ wamp.Offloader = (*workPool)(nil)

func newWorkPool(max int) *workPool { return &workPool{max: max} }

// TryGo implements wamp.Offloader.
func (p *workPool) TryGo(f func()) bool {
	p.mu.Lock()
	if p.running >= p.max {
		p.mu.Unlock()
		return false
	}
	p.running++
	p.mu.Unlock()
	go p.run(f)
	return true
}

// Go implements wamp.Offloader.
func (p *workPool) Go(f func()) {
	p.mu.Lock()
	if p.running >= p.max {
		p.backlog = append(p.backlog, f)
		p.mu.Unlock()
		return
	}
	p.running++
	p.mu.Unlock()
	go p.run(f)
}

// run runs f, then backlog tasks until there are none.
func (p *workPool) run(f func()) {
	for {
		f()
		p.mu.Lock()
		if len(p.backlog) == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		f = p.backlog[0]
		p.backlog[0] = nil
		p.backlog = p.backlog[1:]
		p.mu.Unlock()
	}
}

// busy returns the running goroutines and the tasks waiting.
func (p *workPool) busy() (running, waiting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, len(p.backlog)
}

// wait returns once nothing runs or waits, or with ctx's error. Every task
// is bounded (by limits.call_timeout and the handlers' own timeouts), so
// the pool empties once the transport stopped feeding it.
func (p *workPool) wait(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if r, w := p.busy(); r == 0 && w == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
