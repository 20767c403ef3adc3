package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Defaults for MemcachedOptions.
const (
	// DefaultMemcachedPrefix is Symfony's MemcachedSessionHandler default
	// prefix: session abc is the key "sf2sabc".
	DefaultMemcachedPrefix = "sf2s"
	// PHPMemcachedPrefix is the key prefix of php-memcached's native
	// session handler (session.save_handler=memcached), its ini
	// memcached.sess_prefix.
	PHPMemcachedPrefix = "memc.sess.key."
	// DefaultMemcachedLookupTimeout bounds a lookup when LookupTimeout is 0.
	DefaultMemcachedLookupTimeout = time.Second
	// DefaultMemcachedMaxConcurrent is MemcachedOptions.MaxConcurrent's
	// default. Each lookup in flight holds one connection (the text
	// protocol has no multiplexing), and memcached accepts 1024 by
	// default, shared with the PHP application.
	DefaultMemcachedMaxConcurrent = 256
	// memcachedMaxKey is memcached's longest key.
	memcachedMaxKey = 250
	// memcachedBatch is how many keys one multi-get asks for: a few
	// kilobytes of command line, and answers that arrive as they are found.
	memcachedBatch = 256
)

// MemcachedOptions configures a MemcachedStore.
type MemcachedOptions struct {
	// Addrs is the memcached server's host:port. Exactly one for now: with
	// several, PHP's client (libmemcached) puts each key on one server by
	// its own hashing (modula or ketama, per the app's options), which this
	// store does not reproduce; asking every server instead could find a
	// stale copy a logout left on a server the key no longer maps to.
	Addrs []string
	// Prefix is prepended to the session id to form the key: default
	// DefaultMemcachedPrefix ("sf2s", Symfony's MemcachedSessionHandler);
	// php-memcached's native handler uses PHPMemcachedPrefix
	// ("memc.sess.key."); use whatever the application configured
	// otherwise (with \Memcached::OPT_PREFIX_KEY, prepend that too).
	Prefix string
	// LookupTimeout bounds each Read, ReadMany and Ping, dialing included;
	// default DefaultMemcachedLookupTimeout.
	LookupTimeout time.Duration
	// MaxConcurrent bounds the lookups in flight, and so the connections
	// to memcached; a lookup that finds no free slot for BusyWait fails
	// with ErrBusy. The same number of connections is kept open between
	// lookups. 0 means DefaultMemcachedMaxConcurrent.
	MaxConcurrent int
	// BusyWait is how long a lookup waits for a free slot; 0 means
	// DefaultBusyWait.
	BusyWait time.Duration
	// MaxSize bounds the session a Read returns, after decompression: a
	// compressed value declaring more is ErrTooLarge before it is
	// decompressed. What one get fetches is bounded by memcached's own
	// item size limit (-I, 1 MiB by default). 0 means DefaultMaxSize.
	MaxSize int64
	// Observer, if set, is told about every lookup.
	Observer Observer
}

// withDefaults checks the options and fills in the defaults.
func (o MemcachedOptions) withDefaults() (MemcachedOptions, error) {
	if len(o.Addrs) != 1 {
		return o, fmt.Errorf("%d addresses: want exactly one (PHP's key distribution over several servers is not reproduced)", len(o.Addrs))
	}
	if _, _, err := net.SplitHostPort(o.Addrs[0]); err != nil {
		return o, fmt.Errorf("address %q: %w", o.Addrs[0], err)
	}
	if o.LookupTimeout < 0 || o.MaxConcurrent < 0 || o.BusyWait < 0 || o.MaxSize < 0 {
		return o, errors.New("negative LookupTimeout, MaxConcurrent, BusyWait or MaxSize")
	}
	orDefault(&o.Prefix, DefaultMemcachedPrefix)
	for i := 0; i < len(o.Prefix); i++ {
		if c := o.Prefix[i]; c <= ' ' || c == 0x7f {
			return o, fmt.Errorf("prefix %q: memcached keys have no spaces or control characters", o.Prefix)
		}
	}
	if len(o.Prefix) >= memcachedMaxKey {
		return o, fmt.Errorf("prefix of %d bytes: memcached keys have at most %d", len(o.Prefix), memcachedMaxKey)
	}
	orDefault(&o.LookupTimeout, DefaultMemcachedLookupTimeout)
	orDefault(&o.MaxConcurrent, DefaultMemcachedMaxConcurrent)
	orDefault(&o.MaxSize, DefaultMaxSize)
	return o, nil
}

// MemcachedStore reads sessions PHP keeps in memcached: Symfony's
// MemcachedSessionHandler over a \Memcached client (key "sf2s"+id) or
// php-memcached's native session handler (key "memc.sess.key."+id), through
// github.com/bradfitz/gomemcache.
//
// Both handlers store the serialized session with the session lifetime as
// the item's expiration, so memcached itself judges expiry: an expired
// session is a miss, which is ErrNotFound (never ErrExpired). Empty data is
// no session, as for PHP. Values Symfony writes go through php-memcached's
// value encoding: from 2000 bytes on (memcached.compression_threshold) they
// are compressed with FastLZ, zlib or zstd, as the item's flags say; the
// store decompresses them, bounded by MaxSize. A value PHP could not read
// back as a string is ErrNotFound: PHP starts a new session then.
//
// The store only reads (get, version): no touch, no set, and none of the
// native handler's lock keys. A lookup runs on a goroutine of its own so
// that the caller's deadline holds even though the client takes no
// context; the goroutine keeps its concurrency slot until the client's own
// socket timeout (LookupTimeout) ends it.
type MemcachedStore struct {
	client        *memcache.Client
	prefix        string
	lookupTimeout time.Duration
	dec           *memcDecoder
	lim           *limiter
	closed        atomic.Bool
	// lookups counts the lookup goroutines (gomemcache takes no context,
	// so each runs apart from its caller); Close waits for them, which
	// the client's socket timeout bounds.
	lookups sync.WaitGroup
	// startMu orders starting a lookup goroutine before Close's Wait:
	// none starts once closed is set.
	startMu sync.Mutex
}

var _ SessionStore = (*MemcachedStore)(nil)

// OpenMemcached validates the options and returns a store. It does not need
// memcached to be up: connections are made by the lookups, so a store opened
// while memcached is down answers ErrUnavailable and recovers by itself.
func OpenMemcached(o MemcachedOptions) (*MemcachedStore, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("memcached session store: %w", err)
	}
	c := memcache.New(o.Addrs...)
	c.Timeout = o.LookupTimeout
	c.MaxIdleConns = o.MaxConcurrent
	return &MemcachedStore{
		client:        c,
		prefix:        o.Prefix,
		lookupTimeout: o.LookupTimeout,
		dec:           newMemcDecoder(o.MaxSize),
		lim:           newLimiter("memcached", o.MaxConcurrent, o.BusyWait, o.Observer),
	}, nil
}

// key is the memcached key of a valid session id, or "" when prefix and id
// together are longer than a memcached key: libmemcached refuses such a key
// before sending it, so PHP cannot have stored a session under it.
func (s *MemcachedStore) key(id string) string {
	if len(s.prefix)+len(id) > memcachedMaxKey {
		return ""
	}
	return s.prefix + id
}

// judge turns one item (nil: a miss) into a result.
func (s *MemcachedStore) judge(it *memcache.Item) ReadResult {
	if it == nil {
		return ReadResult{Err: fmt.Errorf("read session: %w", ErrNotFound)}
	}
	data, err := s.dec.decode(it.Flags, it.Value)
	switch {
	case errors.Is(err, ErrTooLarge):
		return ReadResult{Err: fmt.Errorf("read session: %w", err)}
	case err != nil:
		return ReadResult{Err: fmt.Errorf("read session: %w: %w", ErrNotFound, err)}
	case len(data) == 0:
		return ReadResult{Err: fmt.Errorf("read session: %w", ErrNotFound)}
	}
	return ReadResult{Data: data}
}

// lookup runs fn with the client on a goroutine of its own, holding a slot
// of the concurrency limit until fn returns, and waits for it at most until
// ctx or the lookup timeout ends; what names the lookup in errors. fn's
// error comes back wrapped with ErrUnavailable.
func (s *MemcachedStore) lookup(ctx context.Context, what string, fn func(c *memcache.Client) error) error {
	if s.closed.Load() {
		return unavailable(what, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return unavailable(what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupTimeout)
	defer cancel()
	if err := s.lim.acquire(ctx); err != nil {
		return err
	}
	done := make(chan error, 1)
	s.startMu.Lock()
	if s.closed.Load() {
		s.startMu.Unlock()
		s.lim.release()
		return unavailable(what, ErrClosed)
	}
	s.lookups.Add(1)
	s.startMu.Unlock()
	go func() {
		defer s.lookups.Done()
		defer s.lim.release()
		err := fn(s.client)
		if err != nil && staleConn(err) && !s.closed.Load() {
			// memcached restarted since the pooled connections were made:
			// drop them all (Close keeps the client usable) and try once
			// more on a fresh one, so a restart costs no failed lookup.
			s.client.Close()
			err = fn(s.client)
		}
		if s.closed.Load() {
			// Closed meanwhile: the connection fn put back must not stay.
			s.client.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return unavailable(what, timedOut(err))
		}
		return nil
	case <-ctx.Done():
		return unavailable(what, ctx.Err())
	}
}

// timedOut makes the client's socket timeouts (which LookupTimeout sets)
// match context.DeadlineExceeded too, so that Result calls them "timeout"
// like a lookup that ran out of its context.
func timedOut(err error) error {
	var ne net.Error
	var cte *memcache.ConnectTimeoutError
	if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &cte) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

// staleConn reports whether err is what a pooled connection gives after the
// server closed it; a refused or timed-out connection is not.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Read returns the session stored under prefix+id, decompressed.
func (s *MemcachedStore) Read(ctx context.Context, id string) (data []byte, err error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	start := time.Now()
	defer func() { s.lim.observe("read", start, err) }()
	key := s.key(id)
	if key == "" {
		return nil, fmt.Errorf("read session: key too long for memcached: %w", ErrNotFound)
	}
	var it *memcache.Item
	err = s.lookup(ctx, "read session", func(c *memcache.Client) error {
		var err error
		it, err = c.Get(key)
		if errors.Is(err, memcache.ErrCacheMiss) {
			it, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	r := s.judge(it)
	return r.Data, r.Err
}

// ReadMany reads the sessions with multi-gets of up to 256 keys each, under
// one deadline and one slot.
func (s *MemcachedStore) ReadMany(ctx context.Context, ids []string) (_ map[string]ReadResult, err error) {
	start := time.Now()
	defer func() { s.lim.observe("read_many", start, err) }()
	out, valid := readManyPrepare(ids)
	keys := make([]string, 0, len(valid))
	for _, id := range valid {
		if k := s.key(id); k != "" {
			keys = append(keys, k)
		} else {
			out[id] = ReadResult{Err: fmt.Errorf("read session: key too long for memcached: %w", ErrNotFound)}
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	items := make(map[string]*memcache.Item, len(keys))
	err = s.lookup(ctx, "read sessions", func(c *memcache.Client) error {
		for rest := keys; len(rest) > 0; {
			chunk := rest[:min(len(rest), memcachedBatch)]
			m, err := c.GetMulti(chunk)
			if err != nil {
				return err
			}
			for k, it := range m {
				items[k] = it
			}
			rest = rest[len(chunk):]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range valid {
		if k := s.key(id); k != "" {
			out[id] = s.judge(items[k])
		}
	}
	return out, nil
}

// Ping asks the server for its version within the lookup timeout.
func (s *MemcachedStore) Ping(ctx context.Context) (err error) {
	defer func(start time.Time) { s.lim.observe("ping", start, err) }(time.Now())
	return s.lookup(ctx, "ping", func(c *memcache.Client) error { return c.Ping() })
}

// Close closes the idle connections; lookups after it fail with
// ErrUnavailable.
func (s *MemcachedStore) Close() error {
	s.startMu.Lock()
	already := s.closed.Swap(true)
	s.startMu.Unlock()
	if already {
		return nil
	}
	err := s.client.Close()
	// Lookups in flight end within the socket timeout (twice for one
	// retried after a restart) and close what they put back.
	s.lookups.Wait()
	if err != nil {
		return fmt.Errorf("close memcached connections: %w", err)
	}
	return nil
}
