package storage

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is. ErrNotFound, ErrExpired,
// ErrInvalidID and ErrTooLarge say something about the session (it identifies
// nobody); ErrUnavailable says the store failed and nothing is known about the
// session, so the caller should answer 503 rather than treat the user as
// logged out.
var (
	// ErrNotFound means the store holds no session under the id, or holds
	// one with empty data, which PHP treats as no session either.
	ErrNotFound = errors.New("session not found")
	// ErrExpired means the session exists but is past its lifetime: PHP
	// would not use it, and garbage collection will delete it.
	ErrExpired = errors.New("session expired")
	// ErrInvalidID means the id is not one PHP's session module could have
	// issued; it is returned before any I/O, so a hostile cookie never reaches
	// a file path or a query.
	ErrInvalidID = errors.New("invalid session id")
	// ErrUnavailable means the store could not answer: it is down, timed out,
	// misconfigured or closed. The session may well be valid, so callers
	// should answer 503 rather than treating the user as logged out.
	ErrUnavailable = errors.New("session store unavailable")
	// ErrTooLarge means the stored session is bigger than the store's
	// MaxSize; it is refused rather than read so that one huge session cannot
	// exhaust the gateway's memory. It is a property of that session, not a
	// store failure: treat it like a session that cannot be decoded.
	ErrTooLarge = errors.New("session data too large")
	// ErrClosed is returned (wrapped) by stores used after Close. Session
	// stores wrap it together with ErrUnavailable.
	ErrClosed = errors.New("store closed")
)

// ErrBusy means the store's concurrency limit was exhausted for longer than
// its busy wait. Stores return it wrapped together with ErrUnavailable, so a
// caller that only checks ErrUnavailable answers 503 as for any store
// failure, and one that checks ErrBusy can say why.
var ErrBusy = errors.New("store busy")

// ErrInvalidClient is returned by ClientStorage.Add for an entry it cannot
// register (no ConnID).
var ErrInvalidClient = errors.New("invalid client entry")

// ErrIncomplete is returned (wrapped) by the lookups of a shared client
// storage (RedisClientStorage) while the registry is known to miss entries:
// Redis lost its data (it restarted empty, was flushed, or failed over
// without them) and this replica, or replicas it saw alive just before, have
// not written theirs again yet. An empty or short answer then would tell the
// application that online users are offline.
//
// Errors wrapping ErrIncomplete also match ErrUnavailable, on purpose: as
// with a store that is down, the storage cannot say who is connected, and
// every caller that already answers 503 (or falls back to this replica's own
// clients) on ErrUnavailable does the right thing unchanged. Callers that
// want to say why check ErrIncomplete (Result reports "incomplete"). The
// window is short: about one check interval after Redis comes back, at most
// a heartbeat TTL for a replica that died together with Redis.
var ErrIncomplete = errors.New("client registry incomplete")

// unavailable wraps err as ErrUnavailable with a context message, keeping err
// itself matchable too (e.g. context.DeadlineExceeded, ErrClosed). what must
// not contain the session id.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
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
