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
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Defaults for RedisClientStorageOptions.
const (
	// DefaultClientTTL is the bundle's client.storage.ttl default (900s).
	DefaultClientTTL = 900 * time.Second
	// DefaultClientPrefix namespaces the registry's keys when Prefix is
	// empty.
	DefaultClientPrefix = "wsgate:"
	// DefaultClientCheckInterval is how often a replica beats its
	// heartbeat and checks that Redis still holds its registration when
	// CheckInterval is 0: a lost registration is noticed within about a
	// second, for one small pipeline a second per replica.
	DefaultClientCheckInterval = time.Second
	// clientRefreshChunk is how many entries one refresh (or removal)
	// pipeline carries.
	clientRefreshChunk = 256
	// clientHeartbeatBeats is the heartbeat's TTL in check intervals: one
	// or two late beats (a busy Redis, a long pause) do not look like a
	// lost registration, and a replica that died is given up three
	// intervals after its last beat.
	clientHeartbeatBeats = 3
	// clientYoungBeats is the young marker's TTL in check intervals: long
	// enough for every live replica to beat at least once into a new epoch
	// (it then waits for them by name), short enough that a fresh cluster
	// answers within two seconds.
	clientYoungBeats = 2
	// clientRecoveryPolls is how many times per check interval the storage
	// looks while it is incomplete, so that lookups answer again soon after
	// the last replica re-registered.
	clientRecoveryPolls = 10
	// clientRecoveryCapBeats bounds, in heartbeat TTLs, how long a replica
	// that keeps beating but never re-registers (its writes fail) keeps the
	// others incomplete; past it they answer with what they have.
	clientRecoveryCapBeats = 10
	// clientClosedMark is the heartbeat value of a replica that closed
	// cleanly: nobody waits for it.
	clientClosedMark = "closed"
)

// Causes given to ClientStorageObserver.ClientDataLost and in
// ClientRecovery.Cause.
const (
	// ClientLossEpoch: the cluster epoch key was missing or new, so Redis
	// lost the whole registry (restarted empty, flushed, failed over to a
	// replica without it). Every replica re-registers.
	ClientLossEpoch = "epoch_changed"
	// ClientLossHeartbeat: only this replica's heartbeat key was gone (it
	// could not reach Redis for longer than the heartbeat TTL, or a partial
	// loss); it re-registers its own entries.
	ClientLossHeartbeat = "heartbeat_lost"
)

// ClientStorageObserver is told what a RedisClientStorage notices about the
// shared registry, so that the gateway can count it and log one line
// without this package logging. Calls come from the storage's own goroutine,
// one at a time, and must not block. Nothing passed carries a session id or
// a credential.
type ClientStorageObserver interface {
	// ClientDataLost is called once when this replica finds that Redis
	// lost its registration (cause is ClientLossEpoch or
	// ClientLossHeartbeat), before it re-registers. Lookups fail with
	// ErrIncomplete from then until ClientRecovered.
	ClientDataLost(cause string)
	// ClientRecovered is called once the registry is complete again after
	// a loss.
	ClientRecovered(r ClientRecovery)
}

// ClientRecovery describes how the registry came back after a data loss.
type ClientRecovery struct {
	// Cause is what ClientDataLost was told (ClientLossEpoch wins when
	// both happened).
	Cause string
	// Entries is how many entries of this replica were written again.
	Entries int
	// Incomplete is how long lookups were refused, by the storage's clock.
	Incomplete time.Duration
	// Waited counts the other replicas that re-registered (or closed)
	// while this one waited for them.
	Waited int
	// Expired counts the replicas waited for whose heartbeat expiry passed
	// first: they died with Redis, or are too slow to count.
	Expired int
	// GaveUp counts the replicas still beating but not re-registered after
	// ten heartbeat TTLs, when the storage stopped waiting for them.
	GaveUp int
}

// RedisClientStorageOptions configures a RedisClientStorage.
type RedisClientStorageOptions struct {
	// Client is an existing rueidis client to use (the storage does not
	// close it). When nil, one is created from Redis.
	Client rueidis.Client
	// Redis gives the connection when Client is nil: Addrs, Mode,
	// MasterName, Username, Password, DB, PipelineMultiplex; its
	// LookupTimeout (default DefaultRedisLookupTimeout) bounds every call
	// (each pipeline of a bulk write).
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
	// CheckInterval is how often this replica beats its heartbeat and
	// checks that Redis still holds its registration; default
	// DefaultClientCheckInterval. A heartbeat lives three intervals. A
	// data loss is noticed within about one interval (at once by a lookup
	// that meets it), and lookups answer again once every replica
	// re-registered: about one interval later, at most a heartbeat TTL
	// when a replica died together with Redis. Every replica should use
	// the same interval, and three intervals should stay well above the
	// lookup timeout, or a slow Redis makes heartbeats lapse.
	CheckInterval time.Duration
	// Observer, if set, is told when Redis lost this replica's entries and
	// when the registry is complete again.
	Observer ClientStorageObserver
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
// Keys, with P the prefix, N a NodeID and M the member "<NodeID>:<ConnID>":
//
//	P client:M    the entry as JSON, with a TTL
//	P clients     sorted set of every M, scored by its expiry (unix ms)
//	P user:NAME   sorted set of NAME's authenticated M, scored likewise
//	P epoch       the cluster epoch: a random token, no TTL, created with
//	              SET NX by the first replica that finds it missing
//	P epoch:young marker set (PX two check intervals) just before a replica
//	              that was registered creates a new epoch after a loss:
//	              while it lives, replicas may still be on their way back
//	P node:N      N's heartbeat, PX three check intervals: the epoch N's
//	              entries are registered under, renewed with SET XX (so a
//	              lost key is never recreated unnoticed), or "closed" after
//	              a clean Close
//	P nodes       sorted set of the live N, scored by heartbeat expiry
//
// Members past their score are ignored and pruned by the lookups that meet
// them, and the sets themselves carry a TTL, so a dead replica's entries
// lapse within TTL without anyone cleaning up.
//
// Data loss. Redis may come back empty (restart without persistence,
// FLUSHALL, failover to a replica that had not caught up) while every
// replica still holds connections. Each replica beats every CheckInterval;
// when its heartbeat key is gone or the epoch changed, it re-registers all
// its entries at once (pipelines of 256) and only then writes its heartbeat
// under the current epoch. Lookups fail with ErrIncomplete (which also
// matches ErrUnavailable) rather than answer a partial registry as if
// complete: every lookup reads the epoch after its data (one GET in the
// existing pipeline, and the epoch key inside the MGET), so one that meets a
// lost or changed epoch fails, and after a loss a replica refuses lookups
// until (1) its own entries are back, (2) every replica it saw alive at its
// last consistent check, and every replica beating now, has a heartbeat
// under the new epoch or "closed", or its heartbeat expiry passed (it died
// with Redis), and (3) the young marker lapsed, so that replicas it never
// saw (a replica started just after the loss, one that joined just before
// it) had time to show up. A replica that closed cleanly is never waited
// for, except when Redis lost its "closed" mark within one check interval
// of the Close (then until its heartbeat expiry). Replicas that keep beating
// but never manage to re-register are waited for at most ten heartbeat TTLs.
// A newly started storage refuses lookups until its first registration
// (WaitComplete waits for it); in a new registry (no epoch yet) that is one
// round trip, so a cluster that starts together answers at once. The one
// case left open: a replica that starts after a loss but before any
// surviving replica noticed it (within one check interval) creates the new
// epoch itself, without a marker, and may answer without the survivors'
// entries until they are back, about one check interval. Heartbeat expiries are compared with the
// local clock, as entry expiries are: replicas' clocks must agree within a
// fraction of a check interval. In a Redis Cluster the epoch and heartbeats
// live on one shard each, so only a loss of those shards is detected; losses
// elsewhere heal at the next refresh, as before. An eviction policy that
// may evict these keys (allkeys-*) makes them look lost: use noeviction.
//
// Goroutines: NewRedisClientStorage starts one goroutine, owned by the
// storage, which beats and checks every CheckInterval (ten times faster
// while incomplete, at once when a lookup met a changed epoch) and rewrites
// this replica's entries every RefreshInterval; Close stops it, waits for
// it, deletes this replica's entries and marks its heartbeat "closed". The
// storage keeps its own entries in memory for that purpose.
type RedisClientStorage struct {
	conn     *redisConn // nil when the caller gave a Client
	client   rueidis.Client
	prefix   string
	node     string
	ttl      time.Duration
	interval time.Duration // refresh
	every    time.Duration // check
	hbTTL    time.Duration // heartbeat TTL
	timeout  time.Duration
	obs      ClientStorageObserver

	// mu guards local, gen, closed, and epoch, complete and changed,
	// which the run goroutine publishes for lookups.
	mu     sync.Mutex
	local  map[string]localClient // by ConnID, this replica's entries
	gen    uint64                 // last generation given to a local entry
	closed bool
	// epoch is the epoch lookups compare with; complete says whether they
	// may answer at all.
	epoch    string
	complete bool
	// changed is closed (and replaced) whenever complete or closed
	// changes, waking WaitComplete.
	changed chan struct{}

	reg registration // owned by the run goroutine

	// kick (capacity 1) asks the run goroutine for a check now; a full
	// kick already asks for one, so senders never block.
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	now  func() time.Time // injectable clock for tests
	// checks counts finished checks, so tests count intervals instead of
	// measuring time.
	checks atomic.Uint64
}

// localClient is one of this replica's entries, as kept in memory.
type localClient struct {
	e    ClientEntry
	json []byte // e as stored in Redis
	// gen is new at every Add, so a refresh can tell that the entry it
	// wrote was replaced meanwhile.
	gen uint64
}

// registration is what the run goroutine knows about this replica's place
// in the shared registry. Only run touches it (and Close, after run ended).
type registration struct {
	epoch      string // the epoch our entries are registered under
	registered bool   // entries and heartbeat written under epoch, none lost since
	complete   bool   // what run last published
	// view: seen comes from a consistent check under epoch.
	view bool
	// seen: the other replicas alive at the last consistent check, by
	// NodeID, with their heartbeat expiry (unix ms).
	seen map[string]int64
	// waiting: after a loss, the replicas still to re-register, by NodeID,
	// with the time (unix ms) after which they are no longer waited for;
	// back: those found re-registered since, never waited for again in
	// this recovery.
	waiting map[string]int64
	back    map[string]bool
	// young: the epoch's young marker still lived at the last look.
	young bool
	// loss is the recovery in progress, nil when none; lossAt when it was
	// noticed; capAt (unix ms) when waiting for anybody ends.
	loss   *ClientRecovery
	lossAt time.Time
	capAt  int64
}

var _ ClientStorage = (*RedisClientStorage)(nil)

// NewRedisClientStorage checks the options and starts the storage's
// goroutine, which registers this replica at once. It does not need Redis
// to be up when it creates its own client; lookups fail with ErrIncomplete
// until the first registration (see WaitComplete).
func NewRedisClientStorage(o RedisClientStorageOptions) (*RedisClientStorage, error) {
	return newRedisClientStorage(o, time.Now)
}

// newRedisClientStorage is NewRedisClientStorage with a clock.
func newRedisClientStorage(o RedisClientStorageOptions, now func() time.Time) (*RedisClientStorage, error) {
	if o.TTL < 0 || o.RefreshInterval < 0 || o.CheckInterval < 0 {
		return nil, errors.New("redis client storage: negative TTL, RefreshInterval or CheckInterval")
	}
	orDefault(&o.TTL, DefaultClientTTL)
	if o.TTL < 3*time.Millisecond {
		return nil, errors.New("redis client storage: TTL under 3ms")
	}
	orDefault(&o.RefreshInterval, o.TTL/3)
	if o.RefreshInterval >= o.TTL {
		return nil, errors.New("redis client storage: RefreshInterval must be below TTL")
	}
	orDefault(&o.CheckInterval, DefaultClientCheckInterval)
	if o.CheckInterval < 10*time.Millisecond {
		// The recovery polls at a tenth of it, and PX takes milliseconds.
		return nil, errors.New("redis client storage: CheckInterval under 10ms")
	}
	orDefault(&o.Prefix, DefaultClientPrefix)
	if o.NodeID == "" {
		var err error
		if o.NodeID, err = randomToken(); err != nil {
			return nil, fmt.Errorf("redis client storage: node id: %w", err)
		}
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
		every:    o.CheckInterval,
		hbTTL:    clientHeartbeatBeats * o.CheckInterval,
		timeout:  o.Redis.LookupTimeout,
		obs:      o.Observer,
		local:    make(map[string]localClient),
		changed:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		now:      now,
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRedisLookupTimeout
	}
	if o.Client == nil {
		ro := o.Redis
		ro.Prefix, ro.ClientCache = "", false
		ro, err := ro.WithDefaults()
		if err != nil {
			return nil, fmt.Errorf("redis client storage: %w", err)
		}
		s.conn = &redisConn{opt: ro.ClientOption()}
	}
	go s.run()
	return s, nil
}

// randomToken returns 16 random hex digits.
func randomToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// NodeID returns the replica id this storage writes into keys and entries.
func (s *RedisClientStorage) NodeID() string { return s.node }

// redisEntry is the JSON form of a ClientEntry in Redis, which replicas of
// different versions read: fields are only ever added.
type redisEntry struct {
	ConnID         string    `json:"conn_id"`
	WAMPSessionID  string    `json:"wamp_session_id,omitempty"`
	UserIdentifier string    `json:"user,omitempty"`
	Firewall       string    `json:"firewall,omitempty"`
	Roles          []string  `json:"roles,omitempty"`
	Anonymous      bool      `json:"anonymous,omitempty"`
	TokenClass     string    `json:"token_class,omitempty"`
	Impersonator   string    `json:"impersonator,omitempty"`
	ConnectedAt    time.Time `json:"connected_at"`
	Node           string    `json:"node"`
	// Extra must be valid JSON when set; the gateway only stores what
	// it decoded from the app's reply.
	Extra json.RawMessage `json:"extra,omitempty"`
}

func toRedisEntry(e ClientEntry) redisEntry {
	return redisEntry{
		ConnID: e.ConnID, WAMPSessionID: e.WAMPSessionID, ConnectedAt: e.ConnectedAt, Node: e.Node, Extra: e.Extra,
		UserIdentifier: e.UserIdentifier, Firewall: e.Firewall, Roles: e.Roles, Anonymous: e.Anonymous,
		TokenClass: e.TokenClass, Impersonator: e.Impersonator,
	}
}

func (re redisEntry) entry() ClientEntry {
	return ClientEntry{
		ConnID: re.ConnID, WAMPSessionID: re.WAMPSessionID, ConnectedAt: re.ConnectedAt, Node: re.Node, Extra: re.Extra,
		Identity: handler.Identity{
			UserIdentifier: re.UserIdentifier, Firewall: re.Firewall, Roles: re.Roles, Anonymous: re.Anonymous,
			TokenClass: re.TokenClass, Impersonator: re.Impersonator,
		},
	}
}

func (s *RedisClientStorage) member(connID string) string { return s.node + ":" + connID }
func (s *RedisClientStorage) entryKey(member string) string {
	return s.prefix + "client:" + member
}
func (s *RedisClientStorage) allKey() string             { return s.prefix + "clients" }
func (s *RedisClientStorage) userKey(user string) string { return s.prefix + "user:" + user }
func (s *RedisClientStorage) epochKey() string           { return s.prefix + "epoch" }
func (s *RedisClientStorage) youngKey() string           { return s.prefix + "epoch:young" }
func (s *RedisClientStorage) nodesKey() string           { return s.prefix + "nodes" }
func (s *RedisClientStorage) nodeKey(node string) string { return s.prefix + "node:" + node }

// get returns the client, after checking ctx and that the storage is open.
func (s *RedisClientStorage) get(ctx context.Context, what string) (rueidis.Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	return s.clientFor(ctx, what)
}

// clientFor is get without the checks, for Close itself; creating the
// client waits at most the lookup timeout.
func (s *RedisClientStorage) clientFor(ctx context.Context, what string) (rueidis.Client, error) {
	if s.client != nil {
		return s.client, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	c, err := s.conn.get(ctx)
	if err != nil {
		return nil, unavailable(what, err)
	}
	return c, nil
}

// bound gives ctx the lookup timeout: a lookup's round trips share one, a
// bulk write gives one to each pipeline.
func (s *RedisClientStorage) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// do sends one pipeline within the lookup timeout (see doRetry).
func (s *RedisClientStorage) do(ctx context.Context, c rueidis.Client, cmds rueidis.Commands) []rueidis.RedisResult {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return doRetry(ctx, c, cmds)
}

// doRetry sends cmds, and once more when the connection failed under them
// and ctx still allows: after Redis restarted, the first pipeline on each of
// the client's connections meets the dead socket, and rueidis retries only
// read-only pipelines by itself. Every command this storage sends is
// idempotent (SET, SET NX then GET, ZADD, PEXPIRE, DEL, ZREM, reads), so
// sending it twice is harmless. The commands are pinned so that rueidis does
// not recycle them after the first attempt.
func doRetry(ctx context.Context, c rueidis.Client, cmds rueidis.Commands) []rueidis.RedisResult {
	for i := range cmds {
		cmds[i] = cmds[i].Pin()
	}
	resps := c.DoMulti(ctx, cmds...)
	for _, r := range resps {
		if r.NonRedisError() != nil {
			if ctx.Err() == nil {
				return c.DoMulti(ctx, cmds...)
			}
			break
		}
	}
	return resps
}

// writeCmds appends the commands that (re)write lc with a fresh TTL.
func (s *RedisClientStorage) writeCmds(c rueidis.Client, cmds rueidis.Commands, lc localClient, expiry time.Time) rueidis.Commands {
	m := s.member(lc.e.ConnID)
	score := float64(expiry.UnixMilli())
	ttl := s.ttl.Milliseconds()
	cmds = append(cmds,
		c.B().Set().Key(s.entryKey(m)).Value(rueidis.BinaryString(lc.json)).Px(s.ttl).Build(),
		c.B().Zadd().Key(s.allKey()).ScoreMember().ScoreMember(score, m).Build(),
		c.B().Pexpire().Key(s.allKey()).Milliseconds(ttl).Build(),
	)
	if indexed(lc.e) {
		cmds = append(cmds,
			c.B().Zadd().Key(s.userKey(lc.e.UserIdentifier)).ScoreMember().ScoreMember(score, m).Build(),
			c.B().Pexpire().Key(s.userKey(lc.e.UserIdentifier)).Milliseconds(ttl).Build(),
		)
	}
	return cmds
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

// beatCmds appends this replica's heartbeat: its place in the nodes set
// and, when epoch is set, the renewal of its heartbeat key (SET XX, which
// answers nil when the key is gone: Redis lost it).
func (s *RedisClientStorage) beatCmds(c rueidis.Client, cmds rueidis.Commands, now time.Time, epoch string) rueidis.Commands {
	cmds = append(cmds,
		c.B().Zadd().Key(s.nodesKey()).ScoreMember().ScoreMember(float64(now.Add(s.hbTTL).UnixMilli()), s.node).Build(),
		c.B().Pexpire().Key(s.nodesKey()).Milliseconds(s.hbTTL.Milliseconds()).Build(),
	)
	if epoch != "" {
		cmds = append(cmds, c.B().Set().Key(s.nodeKey(s.node)).Value(epoch).Xx().Px(s.hbTTL).Build())
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

// firstFailure is firstError where a nil reply (a SET XX that did not set)
// is no failure.
func firstFailure(resps []rueidis.RedisResult) error {
	for _, r := range resps {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
	}
	return nil
}

// stringOrEmpty reads a string reply, a nil reply being "".
func stringOrEmpty(r rueidis.RedisResult) (string, error) {
	v, err := r.ToString()
	if rueidis.IsRedisNil(err) {
		return "", nil
	}
	return v, err
}

// Add registers e on this replica (e.Node is set to NodeID) and writes it to
// Redis with a TTL. The entry is kept locally even when the write fails
// (the error wraps ErrUnavailable): the refresher writes it once Redis is
// back, unless Remove comes first. An Extra that is not valid JSON is
// refused with ErrInvalidClient.
func (s *RedisClientStorage) Add(ctx context.Context, e ClientEntry) error {
	if e.ConnID == "" {
		return fmt.Errorf("add client: empty ConnID: %w", ErrInvalidClient)
	}
	c, err := s.get(ctx, "add client")
	if errors.Is(err, ErrClosed) {
		return err
	}
	e = e.clone()
	e.Node = s.node
	b, merr := json.Marshal(toRedisEntry(e))
	if merr != nil {
		// Kept locally, it would fail every refresh.
		return fmt.Errorf("add client: %w: %w", ErrInvalidClient, merr)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("add client: %w", ErrClosed)
	}
	old, had := s.local[e.ConnID]
	s.gen++
	lc := localClient{e: e, json: b, gen: s.gen}
	s.local[e.ConnID] = lc
	s.mu.Unlock()
	if err != nil {
		return err
	}
	var cmds rueidis.Commands
	if had && indexed(old.e) && (!indexed(e) || old.e.UserIdentifier != e.UserIdentifier) {
		cmds = append(cmds, c.B().Zrem().Key(s.userKey(old.e.UserIdentifier)).Member(s.member(e.ConnID)).Build())
	}
	cmds = s.writeCmds(c, cmds, lc, s.now().Add(s.ttl))
	if err := firstError(s.do(ctx, c, cmds)); err != nil {
		return unavailable("add client", err)
	}
	return nil
}

// Remove unregisters connID of this replica; unknown ids are ignored.
func (s *RedisClientStorage) Remove(ctx context.Context, connID string) error {
	return s.remove(ctx, "remove client", []string{connID})
}

// RemoveMany unregisters the connections of connIDs of this replica in
// pipelines of 256 (one round trip for a batch up to that size); unknown
// ids are ignored. The entries leave the local set even when Redis cannot
// be reached (the error wraps ErrUnavailable): they are then no longer
// refreshed and lapse within TTL.
func (s *RedisClientStorage) RemoveMany(ctx context.Context, connIDs []string) error {
	return s.remove(ctx, "remove clients", connIDs)
}

// remove is Remove and RemoveMany.
func (s *RedisClientStorage) remove(ctx context.Context, what string, connIDs []string) error {
	c, err := s.get(ctx, what)
	if errors.Is(err, ErrClosed) {
		return err
	}
	olds := make([]ClientEntry, 0, len(connIDs))
	s.mu.Lock()
	for _, id := range connIDs {
		old, had := s.local[id]
		delete(s.local, id)
		if !had {
			// Not ours (or already gone): its entry key and its place
			// in the registry, if any, are all we can name.
			old.e = ClientEntry{ConnID: id}
		}
		olds = append(olds, old.e)
	}
	s.mu.Unlock()
	if err != nil {
		// Not in Redis either way once its TTL runs out.
		return err
	}
	if err := s.removeEntries(ctx, c, olds); err != nil {
		return unavailable(what, err)
	}
	return nil
}

// removeEntries deletes es from Redis in pipelines of clientRefreshChunk,
// stopping at the first that fails.
func (s *RedisClientStorage) removeEntries(ctx context.Context, c rueidis.Client, es []ClientEntry) error {
	var cmds rueidis.Commands
	for len(es) > 0 {
		chunk := es[:min(len(es), clientRefreshChunk)]
		es = es[len(chunk):]
		cmds = cmds[:0]
		for _, e := range chunk {
			cmds = s.removeCmds(c, cmds, e)
		}
		if err := firstError(s.do(ctx, c, cmds)); err != nil {
			return err
		}
	}
	return nil
}

// answerable returns the epoch a lookup must find, or ErrIncomplete when
// the registry is known to miss entries.
func (s *RedisClientStorage) answerable(what string) (string, error) {
	s.mu.Lock()
	epoch, complete := s.epoch, s.complete
	s.mu.Unlock()
	if !complete {
		return "", unavailable(what, ErrIncomplete)
	}
	return epoch, nil
}

// lost is what a lookup returns when it met an epoch other than the one
// it needed: it asks for a check at once, which starts the recovery.
func (s *RedisClientStorage) lost(what string) error {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return unavailable(what, fmt.Errorf("epoch changed: %w", ErrIncomplete))
}

// reader is what a read of the registry starts with: the client, and the
// epoch the data must still carry when read (an error when the registry
// is known to be incomplete).
func (s *RedisClientStorage) reader(ctx context.Context, what string) (rueidis.Client, string, error) {
	c, err := s.get(ctx, what)
	if err != nil {
		return nil, "", err
	}
	epoch, err := s.answerable(what)
	if err != nil {
		return nil, "", err
	}
	return c, epoch, nil
}

// lookup returns the live entries of the sorted set key, pruning members
// whose score has passed. It reads the epoch after the data (the epoch key
// rides in the MGET), so that a registry lost before or during the lookup
// fails it rather than answering part of it.
func (s *RedisClientStorage) lookup(ctx context.Context, what, key string) ([]ClientEntry, error) {
	c, epoch, err := s.reader(ctx, what)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := strconv.FormatInt(s.now().UnixMilli(), 10)
	resps := doRetry(ctx, c, rueidis.Commands{
		c.B().Zremrangebyscore().Key(key).Min("-inf").Max("(" + now).Build(),
		c.B().Zrange().Key(key).Min(now).Max("+inf").Byscore().Build(),
		c.B().Get().Key(s.epochKey()).Build(),
	})
	members, err := resps[1].AsStrSlice()
	if err != nil {
		return nil, unavailable(what, err)
	}
	got, err := stringOrEmpty(resps[2])
	if err != nil {
		return nil, unavailable(what, err)
	}
	if got != epoch {
		return nil, s.lost(what)
	}
	if len(members) == 0 {
		return []ClientEntry{}, nil
	}
	out, err := s.entries(ctx, c, what, epoch, members)
	if err != nil {
		return nil, err
	}
	sortClients(out)
	return out, nil
}

// entries reads the entries of members with the epoch in one MGET: an
// epoch gone or changed means the registry was lost meanwhile, and fails
// the read rather than answering part of it. Entries that expired since
// the members were listed are left out, as are values that are not ours.
func (s *RedisClientStorage) entries(ctx context.Context, c rueidis.Client, what, epoch string, members []string) ([]ClientEntry, error) {
	keys := make([]string, len(members), len(members)+1)
	for i, m := range members {
		keys[i] = s.entryKey(m)
	}
	vals, err := rueidis.MGet(c, ctx, append(keys, s.epochKey()))
	if err != nil {
		return nil, unavailable(what, err)
	}
	if msg, ok := vals[s.epochKey()]; !ok || msg.IsNil() {
		return nil, s.lost(what)
	} else if got, err := msg.ToString(); err != nil || got != epoch {
		return nil, s.lost(what)
	}
	out := []ClientEntry{}
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
		out = append(out, re.entry())
	}
	return out, nil
}

// Get returns the entry of connection connID on any replica, or an empty
// result. The registry keys entries by the owning replica and the
// connection id, so it finds the member among the live ones (one ZRANGE of
// member names, no entry read), then reads that entry with the epoch, as
// lookup does.
func (s *RedisClientStorage) Get(ctx context.Context, connID string) ([]ClientEntry, error) {
	const what = "get client"
	c, epoch, err := s.reader(ctx, what)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	now := strconv.FormatInt(s.now().UnixMilli(), 10)
	members, err := c.Do(ctx, c.B().Zrange().Key(s.allKey()).Min(now).Max("+inf").Byscore().Build()).AsStrSlice()
	if err != nil {
		return nil, unavailable(what, err)
	}
	var found []string // the member of connID: none or one
	for _, m := range members {
		if strings.HasSuffix(m, ":"+connID) {
			found = []string{m}
			break
		}
	}
	es, err := s.entries(ctx, c, what, epoch, found)
	if err != nil {
		return nil, err
	}
	out := es[:0]
	for _, e := range es {
		if e.ConnID == connID {
			out = append(out, e)
		}
	}
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
		if _, err := s.get(ctx, "find clients"); err != nil {
			return nil, err
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

// WaitComplete waits until lookups answer (the storage registered and the
// registry is not known to miss entries), or ctx ends, or the storage is
// closed (ErrClosed). A gateway may call it at start, bounded, before it
// reports ready; nothing requires it.
func (s *RedisClientStorage) WaitComplete(ctx context.Context) error {
	for {
		s.mu.Lock()
		closed, complete, changed := s.closed, s.complete, s.changed
		s.mu.Unlock()
		switch {
		case closed:
			return fmt.Errorf("wait for client registry: %w", ErrClosed)
		case complete:
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for client registry: %w", ctx.Err())
		}
	}
}

// signalLocked wakes WaitComplete; s.mu must be held.
func (s *RedisClientStorage) signalLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// publish tells lookups which epoch to expect and whether to answer.
func (s *RedisClientStorage) publish(epoch string, complete bool) {
	s.reg.complete = complete
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch, s.complete = epoch, complete
	s.signalLocked()
}

// Refresh rewrites every entry of this replica with a fresh TTL now, in
// pipelines of 256 entries. The storage's goroutine calls it every
// RefreshInterval, and at once after a data loss.
func (s *RedisClientStorage) Refresh(ctx context.Context) error {
	c, err := s.get(ctx, "refresh clients")
	if err != nil {
		return err
	}
	_, err = s.refresh(ctx, c, "")
	return err
}

// refresh rewrites every local entry with a fresh TTL, in pipelines of
// clientRefreshChunk entries each carrying this replica's heartbeat (epoch:
// see beatCmds), so that rewriting many entries never lets it lapse. It
// returns how many entries it wrote.
func (s *RedisClientStorage) refresh(ctx context.Context, c rueidis.Client, epoch string) (int, error) {
	s.mu.Lock()
	es := make([]localClient, 0, len(s.local))
	for _, lc := range s.local {
		es = append(es, lc)
	}
	s.mu.Unlock()
	written := 0
	var cmds rueidis.Commands
	for len(es) > 0 {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			// Close waits for the goroutine that may be here.
			return written, fmt.Errorf("refresh clients: %w", ErrClosed)
		}
		chunk := es[:min(len(es), clientRefreshChunk)]
		es = es[len(chunk):]
		now := s.now()
		cmds = cmds[:0]
		for _, lc := range chunk {
			cmds = s.writeCmds(c, cmds, lc, now.Add(s.ttl))
		}
		cmds = s.beatCmds(c, cmds, now, epoch)
		if err := firstFailure(s.do(ctx, c, cmds)); err != nil {
			return written, unavailable("refresh clients", err)
		}
		written += len(chunk)
		if err := s.undoStale(ctx, c, chunk); err != nil {
			return written, err
		}
	}
	return written, nil
}

// undoStale repairs what a refresh just wrote for entries removed or
// replaced while it was in flight: their Remove or Add may have reached
// Redis before the refresh did, which would otherwise bring a closed
// connection back for a whole TTL. Whatever changes after this look sends
// its own writes after the refresh's.
func (s *RedisClientStorage) undoStale(ctx context.Context, c rueidis.Client, written []localClient) error {
	var cmds rueidis.Commands
	expiry := s.now().Add(s.ttl)
	s.mu.Lock()
	for _, lc := range written {
		cur, ok := s.local[lc.e.ConnID]
		switch {
		case !ok:
			cmds = s.removeCmds(c, cmds, lc.e)
		case cur.gen != lc.gen:
			if indexed(lc.e) && (!indexed(cur.e) || lc.e.UserIdentifier != cur.e.UserIdentifier) {
				cmds = append(cmds, c.B().Zrem().Key(s.userKey(lc.e.UserIdentifier)).Member(s.member(lc.e.ConnID)).Build())
			}
			cmds = s.writeCmds(c, cmds, cur, expiry)
		}
	}
	s.mu.Unlock()
	if len(cmds) == 0 {
		return nil
	}
	if err := firstError(s.do(ctx, c, cmds)); err != nil {
		return unavailable("refresh clients", err)
	}
	return nil
}

// run is the storage's goroutine: a check at once (the first
// registration), then every CheckInterval (a tenth of it while incomplete,
// at once when kicked), and a refresh every RefreshInterval, until Close.
func (s *RedisClientStorage) run() {
	defer close(s.done)
	refresh := time.NewTicker(s.interval)
	defer refresh.Stop()
	check := time.NewTimer(0)
	defer check.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-refresh.C:
			// A failure is retried at the next tick; entries outlive
			// two missed ticks by design (interval = TTL/3).
			if c, err := s.get(context.Background(), "refresh clients"); err == nil {
				epoch := ""
				if s.reg.registered {
					epoch = s.reg.epoch
				}
				_, _ = s.refresh(context.Background(), c, epoch)
			}
			continue
		case <-s.kick:
		case <-check.C:
		}
		s.check()
		next := s.every
		if !s.reg.complete {
			next /= clientRecoveryPolls
		}
		check.Reset(next)
	}
}

// check beats this replica's heartbeat and looks for a data loss: its
// heartbeat key gone (SET XX did not set) or the epoch changed. Then it
// (re)registers if needed and, while incomplete, looks whether the replicas
// it waits for are back. A check that cannot reach Redis changes nothing.
func (s *RedisClientStorage) check() {
	defer s.checks.Add(1)
	ctx := context.Background()
	c, err := s.get(ctx, "check clients")
	if err != nil {
		return
	}
	r := &s.reg
	now := s.now()
	nowMs := strconv.FormatInt(now.UnixMilli(), 10)
	cmds := rueidis.Commands{
		c.B().Zremrangebyscore().Key(s.nodesKey()).Min("-inf").Max("(" + nowMs).Build(),
		c.B().Zrange().Key(s.nodesKey()).Min(nowMs).Max("+inf").Byscore().Withscores().Build(),
	}
	epoch := ""
	if r.registered {
		epoch = r.epoch
	}
	cmds = s.beatCmds(c, cmds, now, epoch)
	// Last: if it still reads our epoch, nothing before it was lost.
	cmds = append(cmds, c.B().Get().Key(s.epochKey()).Build())
	resps := s.do(ctx, c, cmds)
	if firstFailure(resps) != nil {
		return
	}
	cur, err := stringOrEmpty(resps[len(resps)-1])
	if err != nil {
		return
	}
	alive, err := resps[1].AsZScores()
	if err != nil {
		return
	}
	if r.registered {
		switch beat := resps[len(resps)-2].Error(); {
		case cur != r.epoch:
			s.lose(ClientLossEpoch, now)
		case beat != nil: // nil reply: the key was gone
			s.lose(ClientLossHeartbeat, now)
		default:
			r.seen = make(map[string]int64, len(alive))
			for _, z := range alive {
				if z.Member != s.node {
					r.seen[z.Member] = int64(z.Score)
				}
			}
			r.view = true
		}
	}
	if !r.registered && !s.register(ctx, c, cur) {
		return
	}
	if !r.complete {
		s.settle(ctx, c, alive)
	}
}

// lose starts (or extends) a recovery: lookups fail from now on, and after
// an epoch change every replica of the last consistent view is waited for
// until its heartbeat expiry.
func (s *RedisClientStorage) lose(cause string, now time.Time) {
	r := &s.reg
	r.registered = false
	if r.loss == nil {
		r.loss = &ClientRecovery{Cause: cause}
		r.lossAt = now
		r.capAt = now.Add(clientRecoveryCapBeats * s.hbTTL).UnixMilli()
		s.publish(r.epoch, false)
		if s.obs != nil {
			s.obs.ClientDataLost(cause)
		}
	} else if cause == ClientLossEpoch {
		r.loss.Cause = cause
	}
	if cause == ClientLossEpoch && r.view {
		if r.waiting == nil {
			r.waiting = make(map[string]int64)
		}
		nowMs := now.UnixMilli()
		for node, exp := range r.seen {
			if exp > nowMs {
				r.waiting[node] = max(r.waiting[node], exp)
			}
		}
	}
	r.view, r.seen = false, nil
}

// register writes this replica's entries and then its heartbeat under the
// current epoch (creating one, after the young marker, when there is
// none). It reports whether it registered; if not (Redis failed, or the
// epoch changed meanwhile), the next check tries again.
func (s *RedisClientStorage) register(ctx context.Context, c rueidis.Client, epoch string) bool {
	r := &s.reg
	if r.capAt == 0 {
		// The first registration: bound the wait like a recovery's.
		r.capAt = s.now().Add(clientRecoveryCapBeats * s.hbTTL).UnixMilli()
	}
	if epoch == "" {
		token, err := randomToken()
		if err != nil {
			return false
		}
		var cmds rueidis.Commands
		if r.epoch != "" {
			// We were registered: this is a loss, and replicas may be on
			// their way back. The marker first: whoever reads the new
			// epoch also finds it. A replica's first registration finds
			// no epoch only in a new registry (or in one lost before any
			// survivor noticed): no marker, lookups answer at once.
			cmds = append(cmds, c.B().Set().Key(s.youngKey()).Value("1").Px(clientYoungBeats*s.every).Build())
		}
		cmds = append(cmds,
			c.B().Set().Key(s.epochKey()).Value(token).Nx().Build(),
			c.B().Get().Key(s.epochKey()).Build(),
		)
		resps := s.do(ctx, c, cmds)
		if firstFailure(resps) != nil {
			return false
		}
		if epoch, _ = stringOrEmpty(resps[len(resps)-1]); epoch == "" {
			return false
		}
	}
	n, err := s.refresh(ctx, c, "")
	if err != nil {
		return false
	}
	now := s.now()
	cmds := rueidis.Commands{c.B().Set().Key(s.nodeKey(s.node)).Value(epoch).Px(s.hbTTL).Build()}
	cmds = s.beatCmds(c, cmds, now, "")
	cmds = append(cmds,
		c.B().Exists().Key(s.youngKey()).Build(),
		c.B().Get().Key(s.epochKey()).Build(),
	)
	resps := s.do(ctx, c, cmds)
	if firstFailure(resps) != nil {
		return false
	}
	young, err := resps[len(resps)-2].AsInt64()
	if err != nil {
		return false
	}
	if got, err := stringOrEmpty(resps[len(resps)-1]); err != nil || got != epoch {
		return false // lost again while we wrote: start over
	}
	r.epoch, r.registered, r.young = epoch, true, young > 0
	if r.loss != nil {
		r.loss.Entries = n
	}
	return true
}

// settle looks whether the registry is complete again: the young marker is
// gone and every replica waited for (from the last view, and every replica
// beating now) has a heartbeat under our epoch or "closed", or is given up
// at its heartbeat expiry or the recovery's cap. Then lookups answer again.
func (s *RedisClientStorage) settle(ctx context.Context, c rueidis.Client, alive []rueidis.ZScore) {
	r := &s.reg
	if r.waiting == nil {
		r.waiting = make(map[string]int64)
	}
	for _, z := range alive {
		if z.Member != s.node && !r.back[z.Member] {
			r.waiting[z.Member] = max(r.waiting[z.Member], int64(z.Score))
		}
	}
	nowMs := s.now().UnixMilli()
	for node, until := range r.waiting {
		if until > nowMs && nowMs < r.capAt {
			continue
		}
		delete(r.waiting, node)
		if r.loss != nil {
			if until <= nowMs {
				r.loss.Expired++
			} else {
				r.loss.GaveUp++
			}
		}
	}
	nodes := make([]string, 0, len(r.waiting))
	cmds := make(rueidis.Commands, 0, len(r.waiting)+2)
	for node := range r.waiting {
		nodes = append(nodes, node)
		cmds = append(cmds, c.B().Get().Key(s.nodeKey(node)).Build())
	}
	cmds = append(cmds,
		c.B().Exists().Key(s.youngKey()).Build(),
		c.B().Get().Key(s.epochKey()).Build(),
	)
	resps := s.do(ctx, c, cmds)
	if firstFailure(resps) != nil {
		return
	}
	if got, err := stringOrEmpty(resps[len(resps)-1]); err != nil || got != r.epoch {
		return // the next check finds out
	}
	young, err := resps[len(resps)-2].AsInt64()
	if err != nil {
		return
	}
	r.young = young > 0
	for i, node := range nodes {
		if v, _ := stringOrEmpty(resps[i]); v == r.epoch || v == clientClosedMark {
			delete(r.waiting, node)
			if r.back == nil {
				r.back = make(map[string]bool)
			}
			r.back[node] = true
			if r.loss != nil {
				r.loss.Waited++
			}
		}
	}
	if len(r.waiting) > 0 || r.young {
		return
	}
	s.publish(r.epoch, true)
	r.capAt, r.back = 0, nil
	if r.loss != nil {
		rec := *r.loss
		rec.Incomplete = s.now().Sub(r.lossAt)
		r.loss = nil
		if s.obs != nil {
			s.obs.ClientRecovered(rec)
		}
	}
}

// Close stops the storage's goroutine, deletes this replica's entries from
// Redis and marks its heartbeat "closed" (best effort, each pipeline within
// the lookup timeout), and releases the client it created. Later calls fail
// with ErrClosed.
func (s *RedisClientStorage) Close() error {
	local, stopped := s.shutdown()
	if !stopped {
		return nil
	}
	var err error
	if c, gerr := s.clientFor(context.Background(), "close client storage"); gerr == nil {
		ctx := context.Background()
		es := make([]ClientEntry, 0, len(local))
		for _, lc := range local {
			es = append(es, lc.e)
		}
		if e := s.removeEntries(ctx, c, es); e != nil {
			err = unavailable("close client storage", e)
		}
		// After the entries: whoever sees "closed" finds them gone.
		if e := firstError(s.do(ctx, c, rueidis.Commands{
			c.B().Set().Key(s.nodeKey(s.node)).Value(clientClosedMark).Px(s.hbTTL).Build(),
			c.B().Zrem().Key(s.nodesKey()).Member(s.node).Build(),
		})); e != nil && err == nil {
			err = unavailable("close client storage", e)
		}
	}
	if s.conn != nil {
		s.conn.close()
	}
	return err
}

// shutdown marks the storage closed, so that calls fail with ErrClosed, and
// stops its goroutine. It returns this replica's entries, which it no
// longer holds, and false when the storage was already closed.
func (s *RedisClientStorage) shutdown() (local map[string]localClient, stopped bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false
	}
	local = s.local
	s.local = nil
	s.closed = true
	s.complete = false
	s.signalLocked()
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return local, true
}

// abandon stops the storage's goroutine without deleting anything, as if
// the process had died; for tests of TTL expiry and of data loss.
func (s *RedisClientStorage) abandon() {
	s.shutdown()
	if s.conn != nil {
		s.conn.close()
	}
}
