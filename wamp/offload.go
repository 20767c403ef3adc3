package wamp

import (
	"context"
	"sync"
	"time"
)

// Offloader runs handler work off the connection's reader, which in the
// gateway's epoll mode is a socket worker shared by every connection: the
// calls of a handler.OffloadedRPC, the callbacks of a
// handler.OffloadedTopic, and the unsubscribes a disconnect leaves. The
// gateway gives the node one whose goroutines it owns, counts and bounds.
type Offloader interface {
	// TryGo runs f on a goroutine of its own, or returns false at once
	// when the bound of work in flight is reached.
	TryGo(f func()) bool
	// Go runs f on a goroutine of its own now or, past the bound, as
	// soon as running work ends; it never blocks and never refuses. The
	// node gives it only work that must happen (what a disconnect or an
	// identity change leaves), at most one lane of it per session, so what
	// waits is bounded by the sessions.
	Go(f func())
}

// Pool is an Offloader: a goroutine per task, at most max at once. TryGo
// refuses past that; Go puts the task in a backlog that running goroutines
// take from as they finish (bounded by what callers give it: the node
// gives Go at most one lane per session). Its owner waits for it to empty
// with Wait. The gateway owns one (limits.max_pending_calls); a node
// configured without an Offloader makes its own.
type Pool struct {
	max int

	mu      sync.Mutex // guards running and backlog
	running int
	backlog []func()
}

var _ Offloader = (*Pool)(nil)

// NewPool returns a Pool running at most limit goroutines (at least 1).
func NewPool(limit int) *Pool { return &Pool{max: max(limit, 1)} }

// TryGo implements Offloader.
func (p *Pool) TryGo(f func()) bool {
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

// Go implements Offloader.
func (p *Pool) Go(f func()) {
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
func (p *Pool) run(f func()) {
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

// Busy returns the goroutines running and the tasks waiting.
func (p *Pool) Busy() (running, waiting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, len(p.backlog)
}

// Wait returns once nothing runs or waits, or with ctx's error. Every task
// the node gives is bounded (by the call timeout and the handlers' own),
// so the pool empties once nothing feeds it.
func (p *Pool) Wait(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if r, w := p.Busy(); r == 0 && w == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// OffloadedCalls returns how much offloaded work (calls, topic callbacks,
// disconnect unsubscribes) is queued or running, so that a drain can wait
// for results to go out.
func (n *Node) OffloadedCalls() int64 { return n.offloaded.Load() }

// runCall runs finish, the rest of a CALL once it is routed and allowed:
// on the caller's goroutine or, for a handler.OffloadedRPC, on one of the
// Offloader's, so that the connection's reader is free at once. Offloaded
// calls of one client may run concurrently: WAMP matches results by call
// id. busy answers the call when the session or the node is at its bound
// of offloaded work: refusing is better than queueing without bound behind
// a slow backend.
func (s *Session) runCall(h *rpcHandler, finish, busy func()) {
	if !h.offload {
		finish()
		return
	}
	if !s.acquireOffload(false) {
		busy()
		return
	}
	if !s.node.offloader.TryGo(func() {
		defer s.releaseOffload()
		finish()
	}) {
		s.releaseOffload()
		s.node.obs.Limit(LimitPendingCalls)
		busy()
	}
}

// acquireOffload counts one more piece of offloaded work of this session,
// or returns false (and counts the limit) when the session is at
// Limits.MaxOffloadedCallsPerSession. must work is counted past the bound:
// it is what a disconnect or an identity change leaves, bounded by the
// subscriptions.
func (s *Session) acquireOffload(must bool) bool {
	if int(s.offloaded.Add(1)) > s.node.limits.MaxOffloadedCallsPerSession && !must {
		s.offloaded.Add(-1)
		s.node.obs.Limit(LimitPendingCallsPerClient)
		return false
	}
	s.node.offloaded.Add(1)
	return true
}

func (s *Session) releaseOffload() {
	s.node.offloaded.Add(-1)
	s.offloaded.Add(-1)
}

// lane runs a session's offloaded topic callbacks one at a time, in the
// order the client's messages asked for them, on the node's Offloader. A
// goroutine runs the lane while it has work and ends when it is empty, so
// an idle session holds none.
type lane struct {
	mu      sync.Mutex // guards tasks and running
	tasks   []func()
	running bool // a goroutine runs the lane (or is about to)
}

// topicTask runs task, a topic callback of h with what follows it: on the
// caller's goroutine when h is not offloaded, else on the session's lane.
// It returns false when the work was refused (the session or the node is
// at its bound); the caller answers "busy". must work is never refused.
// Callers hold s.cb, so lane work is queued by one goroutine at a time.
func (s *Session) topicTask(h *topicHandler, must bool, task func()) bool {
	if !h.offload {
		task()
		return true
	}
	return s.enqueueLane(must, task)
}

// enqueueLane queues task on the session's lane (see topicTask).
func (s *Session) enqueueLane(must bool, task func()) bool {
	if !s.acquireOffload(must) {
		return false
	}
	if s.lane == nil {
		s.lane = &lane{} // runLane reads it only after the go statement below
	}
	l := s.lane
	l.mu.Lock()
	l.tasks = append(l.tasks, task)
	if l.running {
		l.mu.Unlock()
		return true
	}
	l.running = true
	l.mu.Unlock()
	if must {
		s.node.offloader.Go(s.runLane)
		return true
	}
	if !s.node.offloader.TryGo(s.runLane) {
		// The lane was idle, so task is its only work (callers hold cb):
		// take it back.
		l.mu.Lock()
		l.tasks = l.tasks[:len(l.tasks)-1]
		l.running = false
		l.mu.Unlock()
		s.releaseOffload()
		s.node.obs.Limit(LimitPendingCalls)
		return false
	}
	return true
}

// runLane runs the lane's tasks until it is empty.
func (s *Session) runLane() {
	l := s.lane
	for {
		l.mu.Lock()
		if len(l.tasks) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		task := l.tasks[0]
		l.tasks[0] = nil
		l.tasks = l.tasks[1:]
		l.mu.Unlock()
		task()
		s.releaseOffload()
	}
}
