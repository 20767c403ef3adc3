package storage

import (
	"context"
	"fmt"
)

// DefaultMaxSize bounds a session read when the options leave MaxSize at 0.
// Typical Symfony sessions are a few KiB; 4 MiB leaves ample room while
// keeping one pathological row or file from costing much memory.
const DefaultMaxSize int64 = 4 << 20

// orDefault sets *v to d when *v is the zero value: the options of every
// store and of the client storage leave a setting at zero for its default.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

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
