package storage

import (
	"context"
	"fmt"
	"time"
)

// Defaults for the concurrency limit every store applies.
const (
	// DefaultBusyWait is how long a lookup waits for a free slot of the
	// store's concurrency limit before failing with ErrBusy.
	DefaultBusyWait = 50 * time.Millisecond
)

// limiter is the per-store concurrency limit and observation hook, shared by
// the stores that do their I/O on the caller's goroutine (the files store
// has a pool of readers instead). The zero value is not usable; use
// newLimiter.
type limiter struct {
	lookupObserver
	sem  chan struct{}
	wait time.Duration
}

// newLimiter returns a limiter allowing max concurrent lookups (max > 0),
// each waiting at most wait (0: DefaultBusyWait) for a slot.
func newLimiter(store string, max int, wait time.Duration, obs Observer) *limiter {
	if wait <= 0 {
		wait = DefaultBusyWait
	}
	return &limiter{lookupObserver: lookupObserver{store: store, obs: obs}, sem: make(chan struct{}, max), wait: wait}
}

// acquire takes a slot, waiting at most l.wait and never past ctx. A lookup
// that gets none fails with ErrBusy (wrapped with ErrUnavailable), or with
// ctx's error.
func (l *limiter) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return unavailable("wait for a lookup slot", err)
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %d lookups in flight: %w", ErrUnavailable, cap(l.sem), ErrBusy)
	case <-ctx.Done():
		return unavailable("wait for a lookup slot", ctx.Err())
	}
}

// release gives the slot back.
func (l *limiter) release() { <-l.sem }
