package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/wsgate/wsgate/metrics"
	"github.com/wsgate/wsgate/storage"
)

// registryBatch is how many removals one client storage call carries.
const registryBatch = 256

// clientRegistry takes the client storage's removals off the transport: a
// connection's teardown (a transport goroutine, which must not wait on
// Redis) queues its id, and one goroutine owned by the Server removes the
// queued ids in batches, one round trip per batch. The queue is bounded by
// max (limits.max_connections): every live connection queues at most one
// removal. Past it, which only a storage slower than the disconnect rate
// for that long can cause, an id is forgotten locally without a round trip
// (its shared entry lapses at its TTL) and counted.
type clientRegistry struct {
	store   storage.ClientStorage
	timeout time.Duration
	max     int
	log     *slog.Logger
	metrics *metrics.Gateway

	mu     sync.Mutex // guards ids and closed
	ids    []string
	closed bool
	wake   chan struct{} // capacity 1: ids has work
	stop   chan struct{} // closed by close: flush and end
}

func newClientRegistry(store storage.ClientStorage, timeout time.Duration, max int, log *slog.Logger, m *metrics.Gateway) *clientRegistry {
	return &clientRegistry{
		store: store, timeout: timeout, max: max, log: log, metrics: m,
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
}

// remove queues connID's removal; it never blocks.
func (r *clientRegistry) remove(connID string) {
	r.mu.Lock()
	if r.closed || len(r.ids) >= r.max {
		closed := r.closed
		r.mu.Unlock()
		if !closed {
			r.metrics.LimitExceeded.WithLabelValues("client_storage_queue").Inc()
			r.log.Warn("client storage: removal queue full, entry left to expire", "conn", connID)
		}
		r.forget(connID)
		return
	}
	r.ids = append(r.ids, connID)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// forget drops connID from the storage's local state without a round
// trip: a storage given a done context does no I/O. (After close the
// storage's own Close deletes what this replica still holds.)
func (r *clientRegistry) forget(connID string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.store.Remove(ctx, connID)
}

// run is the registry's goroutine: it removes what is queued until close.
func (r *clientRegistry) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-r.wake:
			r.flush()
		case <-r.stop:
			r.flush()
			return
		}
	}
}

// flush removes every queued id, a batch per round trip.
func (r *clientRegistry) flush() {
	for {
		r.mu.Lock()
		n := min(len(r.ids), registryBatch)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		batch := append([]string(nil), r.ids[:n]...)
		r.ids = r.ids[n:]
		if len(r.ids) == 0 {
			r.ids = nil // let the backing array go after a burst
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		err := r.store.RemoveMany(ctx, batch)
		cancel()
		if err != nil {
			r.log.Warn("client storage remove failed", "connections", len(batch), "err", err)
		}
	}
}

// close stops taking removals (later ones are forgotten locally) and makes
// run flush what is queued and end.
func (r *clientRegistry) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
}
