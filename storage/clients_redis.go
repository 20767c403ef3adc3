package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Defaults for RedisClientStorageOptions.
const (
	// DefaultClientTTL is the bundle's client.storage.ttl default (900s).
	DefaultClientTTL = 900 * time.Second
	// DefaultClientPrefix namespaces the registry's keys when Prefix is
	// empty.
	DefaultClientPrefix = "wsgate:"
	// clientRefreshChunk is how many entries one refresh pipeline carries.
	clientRefreshChunk = 256
)

// RedisClientStorageOptions configures a RedisClientStorage.
type RedisClientStorageOptions struct {
	// Client is an existing rueidis client to use (the storage does not
	// close it). When nil, one is created from Redis.
	Client rueidis.Client
	// Redis gives the connection when Client is nil: Addrs, Mode,
	// MasterName, Username, Password, DB, PipelineMultiplex; its
	// LookupTimeout (default DefaultRedisLookupTimeout) bounds every call.
	// The session-reading fields (Prefix, ClientCache, ...) are ignored.
	Redis RedisOptions
	// Prefix is prepended to every key, like the bundle's
	// client.storage.prefix; default DefaultClientPrefix.
	Prefix string
	// TTL is how long an entry outlives the replica that stopped
	// refreshing it (it died); default DefaultClientTTL.
	TTL time.Duration
	// RefreshInterval is how often the entries of live connections are
	// rewritten with a fresh TTL; default TTL/3. It must be below TTL.
	RefreshInterval time.Duration
	// NodeID identifies this gateway replica in keys, so replicas whose
	// connection ids coincide never collide (the bundle keyed by its
	// per-process resource id for the same reason). Default: 16 random hex
	// digits, new for every process. It must not contain ':'.
	NodeID string
}

// RedisClientStorage is a ClientStorage shared by every gateway replica
// through Redis (rueidis), so that FindByUsername, FindAllByUsername,
// FindByRoles and GetAll see the connections of all replicas.
//
// Keys, with P the prefix and M the member "<NodeID>:<ConnID>":
//
//	P client:M   the entry as JSON, with a TTL
//	P clients    sorted set of every M, scored by its expiry (unix ms)
//	P user:NAME  sorted set of NAME's authenticated M, scored likewise
//
// Members past their score are ignored and pruned by the lookups that meet
// them, and the sets themselves carry a TTL, so a dead replica's entries
// lapse within TTL without anyone cleaning up.
//
// Goroutines: NewRedisClientStorage starts one refresher goroutine, owned by
// the storage, which rewrites this replica's entries every RefreshInterval
// (healing them after a Redis restart too); Close stops it, waits for it, and
// deletes this replica's entries. The storage keeps its own entries in memory
// for that purpose.
type RedisClientStorage struct {
	conn     *redisConn // nil when the caller gave a Client
	client   rueidis.Client
	prefix   string
	node     string
	ttl      time.Duration
	interval time.Duration
	timeout  time.Duration

	mu     sync.Mutex
	local  map[string]ClientEntry // by ConnID, this replica's entries
	closed bool

	stop chan struct{}
	done chan struct{}
	now  func() time.Time // injectable clock for tests
}

var _ ClientStorage = (*RedisClientStorage)(nil)

// NewRedisClientStorage checks the options and starts the refresher. It does
// not need Redis to be up when it creates its own client.
func NewRedisClientStorage(o RedisClientStorageOptions) (*RedisClientStorage, error) {
	if o.TTL < 0 || o.RefreshInterval < 0 {
		return nil, errors.New("redis client storage: negative TTL or RefreshInterval")
	}
	if o.TTL == 0 {
		o.TTL = DefaultClientTTL
	}
	if o.TTL < 3*time.Millisecond {
		return nil, errors.New("redis client storage: TTL under 3ms")
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = o.TTL / 3
	}
	if o.RefreshInterval >= o.TTL {
		return nil, errors.New("redis client storage: RefreshInterval must be below TTL")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultClientPrefix
	}
	if o.NodeID == "" {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("redis client storage: node id: %w", err)
		}
		o.NodeID = hex.EncodeToString(b)
	}
	if strings.Contains(o.NodeID, ":") {
		return nil, errors.New("redis client storage: NodeID contains ':'")
	}
	s := &RedisClientStorage{
		client:   o.Client,
		prefix:   o.Prefix,
		node:     o.NodeID,
		ttl:      o.TTL,
		interval: o.RefreshInterval,
		timeout:  o.Redis.LookupTimeout,
		local:    make(map[string]ClientEntry),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		now:      time.Now,
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRedisLookupTimeout
	}
	if o.Client == nil {
		ro := o.Redis
		ro.Prefix, ro.ClientCache = "", false
		ro, err := ro.withDefaults()
		if err != nil {
			return nil, fmt.Errorf("redis client storage: %w", err)
		}
		s.conn = &redisConn{opt: ro.clientOption(false)}
	}
	go s.refresher()
	return s, nil
}

// NodeID returns the replica id this storage writes into keys and entries.
func (s *RedisClientStorage) NodeID() string { return s.node }

// redisEntry is the JSON form of a ClientEntry in Redis.
type redisEntry struct {
	ConnID         string    `json:"conn_id"`
	WAMPSessionID  string    `json:"wamp_session_id,omitempty"`
	UserIdentifier string    `json:"user,omitempty"`
	Firewall       string    `json:"firewall,omitempty"`
	Roles          []string  `json:"roles,omitempty"`
	Anonymous      bool      `json:"anonymous,omitempty"`
	ConnectedAt    time.Time `json:"connected_at"`
	Node           string    `json:"node"`
	// Extra must be valid JSON when set; the gateway only stores what
	// it decoded from the app's reply.
	Extra json.RawMessage `json:"extra,omitempty"`
}

func (s *RedisClientStorage) member(connID string) string { return s.node + ":" + connID }
func (s *RedisClientStorage) entryKey(member string) string {
	return s.prefix + "client:" + member
}
func (s *RedisClientStorage) allKey() string             { return s.prefix + "clients" }
func (s *RedisClientStorage) userKey(user string) string { return s.prefix + "user:" + user }

// get returns the client for one call, with the call's timeout.
func (s *RedisClientStorage) get(ctx context.Context, what string) (context.Context, context.CancelFunc, rueidis.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	return s.clientFor(ctx, what)
}

// clientFor is get without the closed check, for Close itself.
func (s *RedisClientStorage) clientFor(ctx context.Context, what string) (context.Context, context.CancelFunc, rueidis.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	c := s.client
	if c == nil {
		var err error
		if c, err = s.conn.get(ctx); err != nil {
			cancel()
			return nil, nil, nil, unavailable(what, err)
		}
	}
	return ctx, cancel, c, nil
}

// writeCmds appends the commands that (re)write e with a fresh TTL.
func (s *RedisClientStorage) writeCmds(c rueidis.Client, cmds rueidis.Commands, e ClientEntry, expiry time.Time) (rueidis.Commands, error) {
	b, err := json.Marshal(redisEntry(e))
	if err != nil {
		return cmds, err
	}
	m := s.member(e.ConnID)
	score := float64(expiry.UnixMilli())
	ttl := s.ttl.Milliseconds()
	cmds = append(cmds,
		c.B().Set().Key(s.entryKey(m)).Value(rueidis.BinaryString(b)).Px(s.ttl).Build(),
		c.B().Zadd().Key(s.allKey()).ScoreMember().ScoreMember(score, m).Build(),
		c.B().Pexpire().Key(s.allKey()).Milliseconds(ttl).Build(),
	)
	if indexed(e) {
		cmds = append(cmds,
			c.B().Zadd().Key(s.userKey(e.UserIdentifier)).ScoreMember().ScoreMember(score, m).Build(),
			c.B().Pexpire().Key(s.userKey(e.UserIdentifier)).Milliseconds(ttl).Build(),
		)
	}
	return cmds, nil
}

// removeCmds appends the commands that delete old.
func (s *RedisClientStorage) removeCmds(c rueidis.Client, cmds rueidis.Commands, old ClientEntry) rueidis.Commands {
	m := s.member(old.ConnID)
	cmds = append(cmds,
		c.B().Del().Key(s.entryKey(m)).Build(),
		c.B().Zrem().Key(s.allKey()).Member(m).Build(),
	)
	if indexed(old) {
		cmds = append(cmds, c.B().Zrem().Key(s.userKey(old.UserIdentifier)).Member(m).Build())
	}
	return cmds
}

// firstError returns the first error among resps.
func firstError(resps []rueidis.RedisResult) error {
	for _, r := range resps {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// Add registers e on this replica (e.Node is set to NodeID) and writes it to
// Redis with a TTL. The entry is kept locally even when the write fails
// (the error wraps ErrUnavailable): the refresher writes it once Redis is
// back, unless Remove comes first.
func (s *RedisClientStorage) Add(ctx context.Context, e ClientEntry) error {
	if e.ConnID == "" {
		return fmt.Errorf("add client: empty ConnID: %w", ErrInvalidClient)
	}
	ctx, cancel, c, err := s.get(ctx, "add client")
	e = e.clone()
	e.Node = s.node
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return fmt.Errorf("add client: %w", ErrClosed)
	}
	old, had := s.local[e.ConnID]
	s.local[e.ConnID] = e
	s.mu.Unlock()
	if err != nil {
		return err
	}
	defer cancel()
	var cmds rueidis.Commands
	if had && indexed(old) && (!indexed(e) || old.UserIdentifier != e.UserIdentifier) {
		cmds = append(cmds, c.B().Zrem().Key(s.userKey(old.UserIdentifier)).Member(s.member(e.ConnID)).Build())
	}
	if cmds, err = s.writeCmds(c, cmds, e, s.now().Add(s.ttl)); err != nil {
		return fmt.Errorf("add client: %w", err)
	}
	if err := firstError(c.DoMulti(ctx, cmds...)); err != nil {
		return unavailable("add client", err)
	}
	return nil
}

// Remove unregisters connID of this replica; unknown ids are ignored.
func (s *RedisClientStorage) Remove(ctx context.Context, connID string) error {
	ctx, cancel, c, err := s.get(ctx, "remove client")
	if err != nil && errors.Is(err, ErrClosed) {
		return err
	}
	s.mu.Lock()
	old, had := s.local[connID]
	delete(s.local, connID)
	s.mu.Unlock()
	if err != nil {
		// Not in Redis either way once its TTL runs out.
		return err
	}
	defer cancel()
	if !had {
		old = ClientEntry{ConnID: connID}
	}
	if err := firstError(c.DoMulti(ctx, s.removeCmds(c, nil, old)...)); err != nil {
		return unavailable("remove client", err)
	}
	return nil
}

// lookup returns the live entries of the sorted set key, pruning members
// whose score has passed.
func (s *RedisClientStorage) lookup(ctx context.Context, what, key string) ([]ClientEntry, error) {
	ctx, cancel, c, err := s.get(ctx, what)
	if err != nil {
		return nil, err
	}
	defer cancel()
	now := strconv.FormatInt(s.now().UnixMilli(), 10)
	resps := c.DoMulti(ctx,
		c.B().Zremrangebyscore().Key(key).Min("-inf").Max("("+now).Build(),
		c.B().Zrange().Key(key).Min(now).Max("+inf").Byscore().Build(),
	)
	members, err := resps[1].AsStrSlice()
	if err != nil {
		return nil, unavailable(what, err)
	}
	out := []ClientEntry{}
	if len(members) == 0 {
		return out, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = s.entryKey(m)
	}
	vals, err := rueidis.MGet(c, ctx, keys)
	if err != nil {
		return nil, unavailable(what, err)
	}
	for _, k := range keys {
		msg, ok := vals[k]
		if !ok || msg.IsNil() {
			continue // expired between the two calls
		}
		b, err := msg.AsBytes()
		if err != nil {
			return nil, unavailable(what, err)
		}
		var re redisEntry
		if err := json.Unmarshal(b, &re); err != nil {
			continue // not ours: ignore rather than fail every lookup
		}
		out = append(out, ClientEntry(re))
	}
	sortClients(out)
	return out, nil
}

// FindByUsername returns user's oldest authenticated connection on any
// replica, or an empty result.
func (s *RedisClientStorage) FindByUsername(ctx context.Context, user string) ([]ClientEntry, error) {
	all, err := s.FindAllByUsername(ctx, user)
	return firstOnly(all), err
}

// FindAllByUsername returns user's authenticated connections on every
// replica.
func (s *RedisClientStorage) FindAllByUsername(ctx context.Context, user string) ([]ClientEntry, error) {
	if user == "" {
		if _, cancel, _, err := s.get(ctx, "find clients"); err != nil {
			return nil, err
		} else {
			cancel()
		}
		return []ClientEntry{}, nil
	}
	es, err := s.lookup(ctx, "find clients", s.userKey(user))
	if err != nil {
		return nil, err
	}
	// The index only holds authenticated entries of user; filter anyway
	// so that a stale member can never name someone else.
	out := es[:0]
	for _, e := range es {
		if indexed(e) && e.UserIdentifier == user {
			out = append(out, e)
		}
	}
	return out, nil
}

// FindByRoles returns the authenticated connections on every replica that
// hold one of roles. It reads the whole registry (one ZRANGE and one MGET).
func (s *RedisClientStorage) FindByRoles(ctx context.Context, roles []string) ([]ClientEntry, error) {
	es, err := s.lookup(ctx, "find clients", s.allKey())
	if err != nil {
		return nil, err
	}
	out := es[:0]
	for _, e := range es {
		if hasAnyRole(e, roles) {
			out = append(out, e)
		}
	}
	return out, nil
}

// GetAll returns the authenticated connections on every replica, plus the
// anonymous ones when anonymous is true.
func (s *RedisClientStorage) GetAll(ctx context.Context, anonymous bool) ([]ClientEntry, error) {
	es, err := s.lookup(ctx, "get clients", s.allKey())
	if err != nil {
		return nil, err
	}
	out := es[:0]
	for _, e := range es {
		if e.Anonymous && !anonymous {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// Refresh rewrites every entry of this replica with a fresh TTL now, in
// pipelines of 256 entries. The refresher calls it every RefreshInterval;
// tests and a gateway that knows Redis just came back may call it too.
func (s *RedisClientStorage) Refresh(ctx context.Context) error {
	ctx, cancel, c, err := s.get(ctx, "refresh clients")
	if err != nil {
		return err
	}
	defer cancel()
	s.mu.Lock()
	es := make([]ClientEntry, 0, len(s.local))
	for _, e := range s.local {
		es = append(es, e)
	}
	s.mu.Unlock()
	expiry := s.now().Add(s.ttl)
	var cmds rueidis.Commands
	for len(es) > 0 {
		chunk := es[:min(len(es), clientRefreshChunk)]
		es = es[len(chunk):]
		cmds = cmds[:0]
		for _, e := range chunk {
			if cmds, err = s.writeCmds(c, cmds, e, expiry); err != nil {
				return fmt.Errorf("refresh clients: %w", err)
			}
		}
		if err := firstError(c.DoMulti(ctx, cmds...)); err != nil {
			return unavailable("refresh clients", err)
		}
	}
	return nil
}

// refresher calls Refresh every interval until Close.
func (s *RedisClientStorage) refresher() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// A failure is retried at the next tick; entries outlive
			// two missed ticks by design (interval = TTL/3).
			_ = s.Refresh(context.Background())
		}
	}
}

// Close stops the refresher, deletes this replica's entries from Redis
// (best effort, within the lookup timeout) and releases the client it
// created. Later calls fail with ErrClosed.
func (s *RedisClientStorage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	es := s.local
	s.local = nil
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done

	var err error
	ctx, cancel, c, gerr := s.clientFor(context.Background(), "close client storage")
	if gerr == nil {
		var cmds rueidis.Commands
		for _, e := range es {
			cmds = s.removeCmds(c, cmds, e)
		}
		if len(cmds) > 0 {
			if e := firstError(c.DoMulti(ctx, cmds...)); e != nil {
				err = unavailable("close client storage", e)
			}
		}
		cancel()
	}
	if s.conn != nil {
		s.conn.close()
	}
	return err
}

// abandon stops the refresher without deleting anything, as if the process
// had died; for tests of TTL expiry.
func (s *RedisClientStorage) abandon() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	if s.conn != nil {
		s.conn.close()
	}
}
