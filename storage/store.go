// Package storage reads the sessions a legacy PHP application writes, straight
// from the store it writes them to, and keeps the registry of websocket
// clients.
//
// The package knows stores, not formats: a SessionStore hands back the raw
// serialized session bytes exactly as PHP stored them, and decoding them is
// someone else's job. Every SessionStore is strictly read-only towards the PHP
// application's data: it never writes, never takes a lock (no flock, no
// GET_LOCK, no SELECT ... FOR UPDATE), and so can never make a PHP request
// wait for the gateway.
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

// DefaultMaxSize bounds a session read when the options leave MaxSize at 0.
// Typical Symfony sessions are a few KiB; 4 MiB leaves ample room while
// keeping one pathological row or file from costing much memory.
const DefaultMaxSize int64 = 4 << 20

// SessionStore reads PHP sessions.
//
// Implementations never write, never lock (no GET_LOCK, no FOR UPDATE, no
// flock) and never block the PHP application. They are safe for concurrent
// use.
type SessionStore interface {
	// Read returns the raw serialized session data stored under id. It
	// returns an error wrapping ErrInvalidID, ErrNotFound, ErrExpired,
	// ErrTooLarge or ErrUnavailable. Error strings never contain the id,
	// since a session id is a bearer credential.
	Read(ctx context.Context, id string) ([]byte, error)
	// Ping reports whether the store can currently be read (for readiness
	// probes); failures wrap ErrUnavailable.
	Ping(ctx context.Context) error
	// Close releases the store's resources. Reads after Close fail with
	// ErrUnavailable.
	Close() error
	// BatchReader reads many sessions at once, for revalidation.
	BatchReader
}

// MaxSessionIDLength is PHP's PS_MAX_SID_LENGTH: the longest session id the
// session module accepts (session.sid_length is capped at it, and
// php_session_valid_key rejects longer ids).
const MaxSessionIDLength = 256

// ValidSessionID reports whether id is a session id PHP's session module
// could have issued or accepted.
//
// It mirrors php_session_valid_key in php-src ext/session/session.c: 1 to
// PS_MAX_SID_LENGTH (256) characters, each one of a-z, A-Z, 0-9, ',' and
// '-' (the alphabet of session.sid_bits_per_character 4, 5 and 6). PHP
// refuses any other id before it reaches a save handler, so nothing else can
// name a real session. Checking this before any I/O is what keeps ids like
// "../etc/passwd" away from file paths and queries.
func ValidSessionID(id string) bool {
	if len(id) == 0 || len(id) > MaxSessionIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ',', c == '-':
		default:
			return false
		}
	}
	return true
}

// unavailable wraps err as ErrUnavailable with a context message, keeping err
// itself matchable too (e.g. context.DeadlineExceeded, ErrClosed). what must
// not contain the session id.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}
