package storage

import (
	"context"
	"fmt"
	"sync"
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

// ChangeNotifier is implemented by stores that can tell, without being
// polled, that a session changed or went away: Redis through the
// invalidations of CLIENT TRACKING (BCAST mode on the session prefix), the
// files store through inotify on the save path. The gateway re-reads a
// changed session at once instead of at its next revalidation pass, so a
// logout closes the connection within moments.
//
// A change is only a hint: the session may merely have been written again
// (every PHP request that touches it does). The caller re-reads it to learn
// what it holds now.
//
// Bounds: the watched set holds one entry per watched id (the caller's
// connections), and the pending changes are a set of watched ids, drained
// by TakeChanges; a change is never queued twice, so the pending set never
// outgrows the watched set. When the store itself lost track (a dropped
// Redis connection, an inotify queue overflow, a flush), TakeChanges says
// "all" instead of listing ids.
type ChangeNotifier interface {
	// Mark returns where the store's change reports stand now. A caller
	// takes it before it reads a session and hands it to Watch, which
	// then reports the session changed if the store told of a change of
	// it after the mark: a write between the read and the Watch would
	// otherwise go unseen.
	Mark() ChangeMark
	// Watch starts reporting changes of session id, and reports one at
	// once if it changed since mark (see Mark). Calls nest: the id is
	// watched until as many Unwatch calls as Watch calls were made. It
	// never blocks on I/O for long (at most one inotify_add_watch).
	Watch(id string, since ChangeMark)
	// Unwatch ends one Watch of id. It never waits.
	Unwatch(id string)
	// Changes receives a value when TakeChanges has something to return.
	// Its capacity is one: several changes before the receiver looks
	// coalesce into one wake-up.
	Changes() <-chan struct{}
	// TakeChanges returns the watched ids that changed since the last call
	// and empties the set. all is true when the store may have missed
	// changes: every watched session should then be re-read.
	TakeChanges() (ids []string, all bool)
}

// ChangeMark is a point in a ChangeNotifier's reports (Mark).
type ChangeMark uint64

// recentChanges bounds how many changes of unwatched sessions a watchSet
// remembers for Watch's since check. A handshake's read and its Watch are
// milliseconds apart, so only a store taking thousands of session writes
// in that time overflows it; then the check errs on the safe side (the
// session is read once more).
const recentChanges = 4096

// watchSet is the bookkeeping every ChangeNotifier shares: the watched ids
// with their Watch counts, the pending changes, coalesced, and the recent
// changes by id, for Watch's since check.
type watchSet struct {
	mu      sync.Mutex          // guards every field below but signal
	watched map[string]int      // id → Watch calls not yet undone
	changed map[string]struct{} // watched ids changed since TakeChanges
	all     bool                // changes may have been missed: re-read all
	// seq numbers the changes; recent holds the last number of each of
	// the latest recentChanges ids changed, ring their order (oldest at
	// next), forgotten the highest number evicted.
	seq       ChangeMark
	recent    map[string]ChangeMark
	ring      []string
	next      int
	forgotten ChangeMark
	signal    chan struct{} // capacity 1: wakes the receiver of Changes
}

func newWatchSet() *watchSet {
	return &watchSet{
		watched: make(map[string]int),
		changed: make(map[string]struct{}),
		recent:  make(map[string]ChangeMark),
		signal:  make(chan struct{}, 1),
	}
}

// Mark implements ChangeNotifier.
func (w *watchSet) Mark() ChangeMark {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// watch counts one Watch of id and reports whether it is the first. If
// id changed after since while nobody watched it, the change is recorded
// as a watched one.
func (w *watchSet) watch(id string, since ChangeMark) (first bool) {
	w.mu.Lock()
	w.watched[id]++
	first = w.watched[id] == 1
	at, known := w.recent[id]
	missed := w.forgotten > since || (known && at > since)
	if missed {
		w.changed[id] = struct{}{}
	}
	w.mu.Unlock()
	if missed {
		w.wake()
	}
	return first
}

// rememberLocked numbers a change of id and keeps its number in recent;
// w.mu is held.
func (w *watchSet) rememberLocked(id string) {
	w.seq++
	if _, ok := w.recent[id]; !ok {
		if len(w.ring) < recentChanges {
			w.ring = append(w.ring, id)
		} else {
			old := w.ring[w.next]
			w.forgotten = max(w.forgotten, w.recent[old])
			delete(w.recent, old)
			w.ring[w.next] = id
			w.next = (w.next + 1) % recentChanges
		}
	}
	w.recent[id] = w.seq
}

// unwatch undoes one watch of id and reports whether it was the last. An
// unwatched id's pending change is dropped: nobody needs it any more.
func (w *watchSet) unwatch(id string) (last bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.watched[id]
	switch {
	case !ok:
		return false
	case n > 1:
		w.watched[id] = n - 1
		return false
	}
	delete(w.watched, id)
	delete(w.changed, id)
	return true
}

// isWatched reports whether id is watched.
func (w *watchSet) isWatched(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watched[id] > 0
}

// changedID records a change of id if it is watched. Every change (with
// Redis BCAST every other user's writes too) is also remembered a while
// for Watch's since check: a map write, bounded by recentChanges. A
// watched id's too, as a second connection of the same session may have
// read it before this change and watch it only after the receiver of
// Changes took it.
func (w *watchSet) changedID(id string) {
	w.mu.Lock()
	w.rememberLocked(id)
	if w.watched[id] == 0 {
		w.mu.Unlock()
		return
	}
	w.changed[id] = struct{}{}
	w.mu.Unlock()
	w.wake()
}

// changedAll records that changes may have been missed: of the watched
// ids, and of any id a later Watch gives a mark from before now.
func (w *watchSet) changedAll() {
	w.mu.Lock()
	w.all = true
	w.seq++
	w.forgotten = w.seq
	clear(w.changed) // "all" covers them
	w.mu.Unlock()
	w.wake()
}

// wake signals Changes without ever blocking.
func (w *watchSet) wake() {
	select {
	case w.signal <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Changes implements ChangeNotifier.
func (w *watchSet) Changes() <-chan struct{} { return w.signal }

// TakeChanges implements ChangeNotifier.
func (w *watchSet) TakeChanges() (ids []string, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	all, w.all = w.all, false
	if all || len(w.changed) == 0 {
		return nil, all
	}
	ids = make([]string, 0, len(w.changed))
	for id := range w.changed {
		ids = append(ids, id)
	}
	clear(w.changed)
	return ids, false
}
