package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Redis topologies for RedisOptions.Mode.
const (
	RedisStandalone = "standalone"
	RedisSentinel   = "sentinel"
	RedisCluster    = "cluster"
)

// Defaults for RedisOptions.
const (
	// DefaultRedisPrefix is Symfony's RedisSessionHandler default prefix:
	// session abc is the key "sf_sabc". PHP's native phpredis handler
	// (session.save_handler=redis) uses "PHPREDIS_SESSION:" instead.
	DefaultRedisPrefix = "sf_s"
	// PHPRedisPrefix is the key prefix of phpredis' native session handler.
	PHPRedisPrefix = "PHPREDIS_SESSION:"
	// DefaultRedisLookupTimeout bounds a lookup when LookupTimeout is 0.
	DefaultRedisLookupTimeout = time.Second
	// DefaultRedisCacheTTL is how long a session may stay in the
	// client-side cache when CacheTTL is 0. Redis invalidates it earlier
	// on any change or deletion, and it never outlives the key's own TTL.
	DefaultRedisCacheTTL = time.Minute
	// DefaultRedisCacheBytes is the client-side cache size per connection
	// when CacheBytes is 0.
	DefaultRedisCacheBytes = 16 << 20
	// DefaultRedisMaxConcurrent is RedisOptions.MaxConcurrent's default.
	DefaultRedisMaxConcurrent = 4096
	// redisReconnectPause is the least time between two attempts to
	// create the client while Redis cannot be reached; lookups in between
	// fail at once with the last error.
	redisReconnectPause = 250 * time.Millisecond
)

// RedisOptions configures a RedisStore, and the connection of a
// RedisClientStorage.
type RedisOptions struct {
	// Addrs are host:port addresses: of the server (standalone), of the
	// Sentinels (sentinel), or of some cluster nodes (cluster).
	Addrs []string
	// Mode is RedisStandalone (default), RedisSentinel or RedisCluster.
	Mode string
	// MasterName is the Sentinel master set name; required for sentinel.
	MasterName string
	// Username and Password authenticate to Redis (ACL user or
	// requirepass); the same credentials are used for the Sentinels.
	Username, Password string
	// DB is the database number (SELECT); must be 0 for a cluster.
	DB int
	// TLS connects with TLS (Symfony's rediss:), checking the server's
	// certificate against the system's roots and its name against the
	// address's host.
	TLS bool
	// Prefix is prepended to the session id to form the key: default
	// DefaultRedisPrefix ("sf_s", Symfony's RedisSessionHandler); phpredis'
	// native handler uses PHPRedisPrefix ("PHPREDIS_SESSION:"); use
	// whatever the application configured otherwise.
	Prefix string
	// ClientCache turns on server-assisted client-side caching (RESP3
	// CLIENT TRACKING, Redis >= 6): a repeated lookup is served from
	// memory and Redis pushes an invalidation as soon as the key changes
	// or is deleted (logout), so the next lookup goes to the server again.
	ClientCache bool
	// CacheTTL bounds how long a cached session is served without asking
	// Redis; default DefaultRedisCacheTTL.
	CacheTTL time.Duration
	// CacheBytes bounds the client-side cache of each connection; default
	// DefaultRedisCacheBytes.
	CacheBytes int
	// LookupTimeout bounds each Read, ReadMany and Ping, and dialing;
	// default DefaultRedisLookupTimeout.
	LookupTimeout time.Duration
	// PipelineMultiplex sets how many pipelined connections are kept to
	// each node: 2^PipelineMultiplex (0 to 8; 0 lets rueidis choose from
	// GOMAXPROCS, at most 4). Lookups are pipelined over them, so a few
	// connections carry any load.
	PipelineMultiplex int
	// MaxConcurrent bounds the lookups in flight; a lookup that finds none
	// free for BusyWait fails with ErrBusy. 0 means
	// DefaultRedisMaxConcurrent.
	MaxConcurrent int
	// BusyWait is how long a lookup waits for a free slot; 0 means
	// DefaultBusyWait.
	BusyWait time.Duration
	// MaxSize bounds the session a Read returns: only MaxSize+1 bytes are
	// ever fetched (GETRANGE), and a longer session is ErrTooLarge.
	// 0 means DefaultMaxSize.
	MaxSize int64
	// Observer, if set, is told about every lookup and cache use.
	Observer Observer
	// Watch makes the store a working ChangeNotifier: a goroutine keeps one
	// dedicated connection per node with CLIENT TRACKING ON BCAST PREFIX
	// Prefix, so that Redis pushes the key of every session written,
	// deleted or expired under the prefix, whether or not ClientCache is
	// set; the store reports those of watched ids. Needs RESP3 (Redis >= 6).
	Watch bool
	// OnWatchError, if set, is told why watching failed (Redis down,
	// RESP2 only); the store tries again, and reports every watched
	// session changed once it is back.
	OnWatchError func(error)
}

// WithDefaults checks the options and fills in the defaults. Besides the
// stores, packages that talk to the same Redis for something else than
// sessions (gateway/cluster) call it, then ClientOption, so that they
// connect as the stores do.
func (o RedisOptions) WithDefaults() (RedisOptions, error) {
	if len(o.Addrs) == 0 {
		return o, errors.New("no addresses")
	}
	for _, a := range o.Addrs {
		if isUnixSocket(a) {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return o, fmt.Errorf("address %q: %w", a, err)
		}
	}
	switch o.Mode {
	case "":
		o.Mode = RedisStandalone
	case RedisStandalone, RedisCluster:
	case RedisSentinel:
		if o.MasterName == "" {
			return o, errors.New("sentinel mode needs a master name")
		}
	default:
		return o, fmt.Errorf("unknown mode %q: want standalone, sentinel or cluster", o.Mode)
	}
	if o.Mode == RedisStandalone && len(o.Addrs) != 1 {
		return o, errors.New("standalone mode takes exactly one address")
	}
	if o.Mode != RedisStandalone && slices.ContainsFunc(o.Addrs, isUnixSocket) {
		return o, errors.New("a Unix socket is for a standalone server only")
	}
	if o.Mode == RedisCluster && o.DB != 0 {
		return o, errors.New("a cluster has only database 0")
	}
	if o.DB < 0 || o.CacheTTL < 0 || o.CacheBytes < 0 || o.LookupTimeout < 0 || o.MaxConcurrent < 0 || o.BusyWait < 0 || o.MaxSize < 0 {
		return o, errors.New("negative DB, CacheTTL, CacheBytes, LookupTimeout, MaxConcurrent, BusyWait or MaxSize")
	}
	if o.PipelineMultiplex < 0 || o.PipelineMultiplex > rueidis.MaxPipelineMultiplex {
		return o, fmt.Errorf("PipelineMultiplex %d: want 0 to %d", o.PipelineMultiplex, rueidis.MaxPipelineMultiplex)
	}
	orDefault(&o.Prefix, DefaultRedisPrefix)
	orDefault(&o.CacheTTL, DefaultRedisCacheTTL)
	orDefault(&o.CacheBytes, DefaultRedisCacheBytes)
	orDefault(&o.LookupTimeout, DefaultRedisLookupTimeout)
	orDefault(&o.MaxConcurrent, DefaultRedisMaxConcurrent)
	orDefault(&o.MaxSize, DefaultMaxSize)
	return o, nil
}

// ClientOption is the rueidis configuration for o, which must come from
// WithDefaults: the addresses, credentials, database and topology, the
// dial timeout (LookupTimeout), one immediate retry, and server-assisted
// client-side caching when ClientCache is set.
func (o RedisOptions) ClientOption() rueidis.ClientOption {
	co := rueidis.ClientOption{
		InitAddress:       append([]string(nil), o.Addrs...),
		Username:          o.Username,
		Password:          o.Password,
		SelectDB:          o.DB,
		ClientName:        "wsgate",
		DisableCache:      !o.ClientCache,
		CacheSizeEachConn: o.CacheBytes,
		PipelineMultiplex: o.PipelineMultiplex,
		Dialer:            net.Dialer{Timeout: o.LookupTimeout},
		// One immediate retry hides a connection that died while idle
		// (Redis restarted); more would turn "Redis is down" into a
		// wait of the whole lookup timeout instead of a fast failure.
		RetryDelay: func(attempts int, _ rueidis.Completed, _ error) time.Duration {
			if attempts <= 1 {
				return 0
			}
			return -1
		},
	}
	if o.TLS {
		// tls.Dialer takes ServerName from the address when it is empty.
		co.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if slices.ContainsFunc(o.Addrs, isUnixSocket) {
		co.DialCtxFn = dialRedis
	}
	switch o.Mode {
	case RedisStandalone:
		co.ForceSingleClient = true
	case RedisSentinel:
		co.Sentinel = rueidis.SentinelOption{
			MasterSet: o.MasterName,
			Username:  o.Username,
			Password:  o.Password,
			Dialer:    co.Dialer,
			TLSConfig: co.TLSConfig,
		}
	}
	return co
}

// isUnixSocket reports whether a Redis address is a Unix socket's path
// (Symfony's redis:///var/run/redis.sock) rather than host:port.
func isUnixSocket(addr string) bool { return strings.HasPrefix(addr, "/") }

// dialRedis is rueidis' dial for a server on a Unix socket; host:port
// addresses go over TCP, with TLS when configured, as rueidis would.
func dialRedis(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
	switch {
	case isUnixSocket(dst):
		return d.DialContext(ctx, "unix", dst)
	case cfg != nil:
		td := tls.Dialer{NetDialer: d, Config: cfg}
		return td.DialContext(ctx, "tcp", dst)
	}
	return d.DialContext(ctx, "tcp", dst)
}

// redisConn creates a rueidis client lazily and again after a failed
// attempt, so that a store can be opened while Redis is down and recovers by
// itself. Once created, the client reconnects by itself.
type redisConn struct {
	opt     rueidis.ClientOption
	client  atomic.Pointer[rueidis.Client]
	mu      sync.Mutex
	dialing chan struct{} // closed when the attempt in flight ends
	lastErr error
	lastAt  time.Time
	closed  bool
}

// get returns the client, creating it if needed; it waits for an attempt in
// flight at most until ctx ends.
func (c *redisConn) get(ctx context.Context) (rueidis.Client, error) {
	if p := c.client.Load(); p != nil {
		return *p, nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if p := c.client.Load(); p != nil {
		c.mu.Unlock()
		return *p, nil
	}
	if c.dialing == nil {
		if c.lastErr != nil && time.Since(c.lastAt) < redisReconnectPause {
			err := c.lastErr
			c.mu.Unlock()
			return nil, err
		}
		c.dialing = make(chan struct{})
		go c.dial(c.dialing)
	}
	done := c.dialing
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p := c.client.Load(); p != nil {
		return *p, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return nil, c.lastErr
}

// dial makes one attempt to create the client (bounded by the dial timeout)
// and closes done.
func (c *redisConn) dial(done chan struct{}) {
	client, err := rueidis.NewClient(c.opt)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(done)
	c.dialing = nil
	if err != nil {
		c.lastErr, c.lastAt = fmt.Errorf("connect: %w", err), time.Now()
		return
	}
	if c.closed {
		client.Close()
		return
	}
	c.lastErr = nil
	c.client.Store(&client)
}

// close closes the client, if any; later gets fail with ErrClosed.
func (c *redisConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if p := c.client.Swap(nil); p != nil {
		(*p).Close()
	}
}

// RedisStore reads sessions PHP keeps in Redis: Symfony's
// RedisSessionHandler (key "sf_s"+id) or phpredis' native handler (key
// "PHPREDIS_SESSION:"+id), through github.com/redis/rueidis, on a
// standalone server, through Sentinel, or on a cluster.
//
// Both handlers store the serialized session as a plain string with the
// session lifetime as the key's TTL, so Redis itself judges expiry: an
// expired session is a missing key, which is ErrNotFound (never
// ErrExpired). Empty data is no session, as for PHP.
//
// The store only reads (GETRANGE, PING): no SET, no EXPIRE, no lock keys,
// so phpredis' session locking is never contended. GETRANGE instead of GET
// bounds what one session costs to MaxSize+1 bytes.
type RedisStore struct {
	conn          *redisConn
	prefix        string
	cache         bool
	cacheTTL      time.Duration
	lookupTimeout time.Duration
	maxSize       int64
	lim           *limiter

	*watchSet               // the watched ids and their pending changes
	watchErr  func(error)   // OnWatchError, may be nil
	watchStop chan struct{} // closed by Close: ends the watcher
	watchDone chan struct{} // closed when the watcher returned; nil without Watch
	closeOnce sync.Once
}

var (
	_ SessionStore   = (*RedisStore)(nil)
	_ ChangeNotifier = (*RedisStore)(nil)
)

// OpenRedis validates the options and returns a store. It does not need
// Redis to be up: the client is created on the first lookup, and again
// after a failed attempt (at most every 250ms), so a store opened while
// Redis is down answers ErrUnavailable and recovers by itself.
func OpenRedis(o RedisOptions) (*RedisStore, error) {
	o, err := o.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("redis session store: %w", err)
	}
	s := &RedisStore{
		conn:          &redisConn{opt: o.ClientOption()},
		prefix:        o.Prefix,
		cache:         o.ClientCache,
		cacheTTL:      o.CacheTTL,
		lookupTimeout: o.LookupTimeout,
		maxSize:       o.MaxSize,
		lim:           newLimiter("redis", o.MaxConcurrent, o.BusyWait, o.Observer),
		watchSet:      newWatchSet(),
		watchErr:      o.OnWatchError,
		watchStop:     make(chan struct{}),
	}
	if o.Watch {
		s.watchDone = make(chan struct{})
		go s.watchLoop()
	}
	return s, nil
}

// cmd is the bounded read of session id.
func (s *RedisStore) cmd(c rueidis.Client, id string) rueidis.Cacheable {
	return c.B().Getrange().Key(s.prefix + id).Start(0).End(s.maxSize).Cache()
}

// judge turns one reply into a result. A missing key and an empty string
// both come back empty from GETRANGE: no session either way.
func (s *RedisStore) judge(r rueidis.RedisResult) (ReadResult, error) {
	v, err := r.ToString()
	if err != nil {
		var re *rueidis.RedisError
		if errors.As(err, &re) && !re.IsNil() {
			// WRONGTYPE and the like: phpredis' GET fails the same way
			// and PHP then starts a new session.
			return ReadResult{Err: fmt.Errorf("read session: not a string: %w", ErrNotFound)}, nil
		}
		if rueidis.IsRedisNil(err) {
			return ReadResult{Err: fmt.Errorf("read session: %w", ErrNotFound)}, nil
		}
		return ReadResult{}, err
	}
	switch {
	case int64(len(v)) > s.maxSize:
		return ReadResult{Err: fmt.Errorf("read session: over limit %d: %w", s.maxSize, ErrTooLarge)}, nil
	case len(v) == 0:
		return ReadResult{Err: fmt.Errorf("read session: %w", ErrNotFound)}, nil
	}
	return ReadResult{Data: []byte(v)}, nil
}

// begin starts a lookup: deadline, concurrency slot, client. It returns
// the context to use and whether it created a timer the caller must cancel
// (cancel is then non-nil); on error nothing is held.
func (s *RedisStore) begin(ctx context.Context, what string) (context.Context, context.CancelFunc, rueidis.Client, error) {
	if err := ctx.Err(); err != nil {
		// Checked here because a cache hit would not look at ctx.
		return nil, nil, nil, unavailable(what, err)
	}
	var cancel context.CancelFunc
	// The gateway usually passes a context that already ends sooner than
	// the lookup timeout; a second timer would only cost time.
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.lookupTimeout {
		ctx, cancel = context.WithTimeout(ctx, s.lookupTimeout)
	}
	if err := s.lim.acquire(ctx); err != nil {
		if cancel != nil {
			cancel()
		}
		return nil, nil, nil, err
	}
	c, err := s.conn.get(ctx)
	if err != nil {
		s.lim.release()
		if cancel != nil {
			cancel()
		}
		return nil, nil, nil, unavailable(what, err)
	}
	return ctx, cancel, c, nil
}

// end releases what begin took.
func (s *RedisStore) end(cancel context.CancelFunc) {
	s.lim.release()
	if cancel != nil {
		cancel()
	}
}

// Read returns the session stored under prefix+id. With ClientCache a
// repeated read is served from memory until Redis invalidates the key.
func (s *RedisStore) Read(ctx context.Context, id string) ([]byte, error) {
	if !ValidSessionID(id) {
		return nil, fmt.Errorf("read session: %w", ErrInvalidID)
	}
	var start time.Time
	if s.lim.obs != nil {
		start = time.Now()
	}
	data, err := s.read(ctx, id)
	if s.lim.obs != nil {
		s.lim.observe("read", start, err)
	}
	return data, err
}

// read is Read without the observation of the lookup.
func (s *RedisStore) read(ctx context.Context, id string) ([]byte, error) {
	ctx, cancel, c, err := s.begin(ctx, "read session")
	if err != nil {
		return nil, err
	}
	resp := c.DoCache(ctx, s.cmd(c, id), s.cacheTTL)
	s.end(cancel)
	if s.cache && resp.NonRedisError() == nil {
		if resp.IsCacheHit() {
			s.lim.observeCache(1, 0)
		} else {
			s.lim.observeCache(0, 1)
		}
	}
	r, err := s.judge(resp)
	if err != nil {
		return nil, unavailable("read session", err)
	}
	return r.Data, r.Err
}

// ReadMany reads all ids in one pipeline (DoMultiCache: cached keys are
// answered from memory, the others in one round trip per node).
func (s *RedisStore) ReadMany(ctx context.Context, ids []string) (_ map[string]ReadResult, err error) {
	start := time.Now()
	defer func() { s.lim.observe("read_many", start, err) }()
	out, valid := readManyPrepare(ids)
	if len(valid) == 0 {
		return out, nil
	}
	ctx, cancel, c, err := s.begin(ctx, "read sessions")
	if err != nil {
		return nil, err
	}
	defer s.end(cancel)
	cmds := make([]rueidis.CacheableTTL, len(valid))
	for i, id := range valid {
		cmds[i] = rueidis.CT(s.cmd(c, id), s.cacheTTL)
	}
	resps := c.DoMultiCache(ctx, cmds...)
	hits := 0
	for i, id := range valid {
		r, err := s.judge(resps[i])
		if err != nil {
			return nil, unavailable("read sessions", err)
		}
		if resps[i].IsCacheHit() {
			hits++
		}
		out[id] = r
	}
	if s.cache {
		s.lim.observeCache(hits, len(valid)-hits)
	}
	return out, nil
}

// Ping sends PING within the lookup timeout.
func (s *RedisStore) Ping(ctx context.Context) (err error) {
	defer func(start time.Time) { s.lim.observe("ping", start, err) }(time.Now())
	ctx, cancel, c, err := s.begin(ctx, "ping")
	if err != nil {
		return err
	}
	defer s.end(cancel)
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close stops the watcher, if any, and closes the client; lookups after it
// fail with ErrUnavailable.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() { close(s.watchStop) })
	if s.watchDone != nil {
		<-s.watchDone
	}
	s.conn.close()
	return nil
}
