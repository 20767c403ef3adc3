package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBusy means the store's concurrency limit was exhausted for longer than
// its busy wait. Stores return it wrapped together with ErrUnavailable, so a
// caller that only checks ErrUnavailable answers 503 as for any store
// failure, and one that checks ErrBusy can say why.
var ErrBusy = errors.New("store busy")

// ReadResult is the outcome of one id in a batch read (BatchReader.ReadMany):
// either Data (non-empty) or Err, which wraps ErrNotFound, ErrExpired,
// ErrInvalidID or ErrTooLarge. A store failure is never a per-id result: it
// fails the whole batch.
type ReadResult struct {
	// Data is the raw serialized session, as Read returns it.
	Data []byte
	// Err says why there is no Data; nil when there is.
	Err error
}

// BatchReader reads many sessions in one round trip, for revalidating
// established connections: Redis sends one pipeline of GETs (served from the
// client-side cache where it can), SQL stores one SELECT ... WHERE id IN
// (...) per chunk of ids, the files store reads the files one by one.
type BatchReader interface {
	// ReadMany returns one ReadResult for every distinct id in ids, keyed by
	// id (ids PHP could not have issued get ErrInvalidID without I/O). When
	// the store cannot answer, it returns a nil map and an error wrapping
	// ErrUnavailable: nothing is known about any of the sessions, so a caller
	// must keep its connections rather than treat them as logged out. The
	// whole batch runs under the store's lookup timeout and counts as one
	// lookup against its concurrency limit, so keep batches to a few
	// hundred ids. Errors never contain ids.
	ReadMany(ctx context.Context, ids []string) (map[string]ReadResult, error)
}

// Observer receives what the stores measure, so that the gateway can export
// metrics without this package importing a metrics library. Implementations
// must be safe for concurrent use and cheap: they are called on every lookup,
// on the lookup's goroutine.
type Observer interface {
	// ObserveLookup is called once per Read, ReadMany or Ping: store is the
	// store's kind ("files", "mysql", "postgres", "redis"), op is "read",
	// "read_many" or "ping", result is Result(err) of the call's error
	// (for ReadMany the batch error, not the per-id results), d is how long
	// it took, limit wait included.
	ObserveLookup(store, op, result string, d time.Duration)
	// ObserveCache is called by stores with a client-side cache (Redis with
	// ClientCache) once per Read or ReadMany that reached the cache, with how
	// many keys were served from memory and how many went to the server.
	ObserveCache(store string, hits, misses int)
}

// Results that Result returns, usable as metric label values.
const (
	ResultOK          = "ok"
	ResultNotFound    = "not_found"
	ResultExpired     = "expired"
	ResultInvalidID   = "invalid_id"
	ResultTooLarge    = "too_large"
	ResultBusy        = "busy"
	ResultTimeout     = "timeout"
	ResultClosed      = "closed"
	ResultIncomplete  = "incomplete"
	ResultUnavailable = "unavailable"
)

// Result classifies an error returned by a store into a short, stable word
// (one of the Result* constants) for metric labels and for the reason of a
// 503: "ok" for nil; "not_found", "expired", "invalid_id", "too_large" for
// what the store said about a session; "busy" (concurrency limit), "timeout"
// (lookup timeout or a caller's deadline), "closed" and "unavailable" (any
// other store failure) for errors wrapping ErrUnavailable; "incomplete" for
// a client registry lookup refused with ErrIncomplete.
func Result(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case errors.Is(err, ErrNotFound):
		return ResultNotFound
	case errors.Is(err, ErrExpired):
		return ResultExpired
	case errors.Is(err, ErrInvalidID):
		return ResultInvalidID
	case errors.Is(err, ErrTooLarge):
		return ResultTooLarge
	case errors.Is(err, ErrIncomplete):
		return ResultIncomplete
	case errors.Is(err, ErrBusy):
		return ResultBusy
	case errors.Is(err, context.DeadlineExceeded):
		return ResultTimeout
	case errors.Is(err, ErrClosed):
		return ResultClosed
	}
	return ResultUnavailable
}

// Defaults for the concurrency limit every store applies.
const (
	// DefaultBusyWait is how long a lookup waits for a free slot of the
	// store's concurrency limit before failing with ErrBusy.
	DefaultBusyWait = 50 * time.Millisecond
)

// lookupObserver reports one store's lookups to its Observer, if any.
type lookupObserver struct {
	store string
	obs   Observer
}

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

// observe reports one lookup to the Observer, if any.
func (l lookupObserver) observe(op string, start time.Time, err error) {
	if l.obs != nil {
		l.obs.ObserveLookup(l.store, op, Result(err), time.Since(start))
	}
}

// observeCache reports cache use to the Observer, if any.
func (l lookupObserver) observeCache(hits, misses int) {
	if l.obs != nil && hits+misses > 0 {
		l.obs.ObserveCache(l.store, hits, misses)
	}
}

// readManyPrepare validates ids for ReadMany: invalid ones get their result
// at once, the valid distinct ones are returned for the store to look up.
func readManyPrepare(ids []string) (map[string]ReadResult, []string) {
	out := make(map[string]ReadResult, len(ids))
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := out[id]; dup {
			continue
		}
		if !ValidSessionID(id) {
			out[id] = ReadResult{Err: fmt.Errorf("read session: %w", ErrInvalidID)}
			continue
		}
		out[id] = ReadResult{} // placeholder, marks the id as seen
		valid = append(valid, id)
	}
	return out, valid
}
