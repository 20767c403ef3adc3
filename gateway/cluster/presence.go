package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Presence shares the presence of the node's presence topics between
// replicas through Redis, so that the presence list covers every replica
// and users join and leave once cluster-wide (wamp.PresenceDirectory,
// adapted by the gateway).
//
// Each topic is one Redis hash, <prefix>presence:<topic>, with one field
// per replica that has subscribers of the topic: its NodeID, whose value
// is that replica's snapshot {"exp": Unix ms, "users": [all its users of
// the topic], "anon": n, "trunc": false}. A replica rewrites its field
// when its local presence of the topic changes (coalesced: one goroutine
// writes what changed since its last pass) and every TTL/3 for all its
// topics, and sets the key's expiry to TTL each time; when its last
// subscriber of a topic goes, it deletes its field. Each write is one Lua
// script (presenceScript) that also deletes expired fields and returns how
// the union of the live fields' users changed: the writer announces those
// joins and leaves (PresenceSource.Emit), so each change of the union is
// announced once, by the replica that made it. A replica that crashed
// stops counting once its snapshots' exp has passed: readers skip them,
// and the next write or refresh of the topic by any replica (also one
// where somebody only watches the topic) deletes them and announces its
// users' leave. The key lapses TTL after the last live replica's write.
// Memory is bounded: a field per replica and topic, each at most that
// replica's subscribers of the topic.
type Presence struct {
	client rueidis.Client
	prefix string // of the keys: <client storage prefix>presence:
	node   string
	ttl    time.Duration
	max    int
	log    *slog.Logger

	src atomic.Pointer[PresenceSource]

	// mu guards dirty.
	mu    sync.Mutex
	dirty map[string]struct{}
	wake  chan struct{} // capacity 1: a pass is due
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// PresenceSnapshot is the presence of one topic: on one replica (what a
// PresenceSource returns) or on all (what List returns).
type PresenceSnapshot struct {
	// Users are user identifiers, sorted, at most the bound.
	Users []string `json:"users"`
	// Anonymous counts anonymous sessions.
	Anonymous int `json:"anon"`
	// Truncated is set when there were more users than Users holds.
	Truncated bool `json:"trunc"`
}

// PresenceSource is this replica's side.
type PresenceSource struct {
	// Local is its presence of topic, at most max users.
	Local func(topic string, max int) PresenceSnapshot
	// Topics are the topics it has presence on.
	Topics func() []string
	// Watched are the topics whose presence someone here watches: the
	// writer also checks them every TTL/3, so that the users of a
	// crashed replica leave even where nobody else is subscribed.
	Watched func() []string
	// Emit, when set, announces a change of topic's cluster-wide
	// presence: users that joined, users that left, and anonymous
	// sessions that left with a crashed replica. It runs on the writer
	// goroutine and must not block.
	Emit func(topic string, joins, leaves []string, anonymousLeft int)
}

// presenceField is a replica's field value.
type presenceField struct {
	Exp int64 `json:"exp"`
	PresenceSnapshot
}

// NewPresence connects to redis (the client storage's Redis) for the
// presence of replica node: keys start with prefix (the client storage's,
// storage.DefaultClientPrefix when empty), snapshots last ttl, lists hold
// at most max users. Call SetSource before the node has subscribers, and
// Close at shutdown.
func NewPresence(redis storage.RedisOptions, prefix, node string, ttl time.Duration, max int, log *slog.Logger) (*Presence, error) {
	l, err := newLink(redis, prefix, node, log)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	if ttl <= 0 || max <= 0 {
		return nil, fmt.Errorf("presence: ttl %v and max %d must be positive", ttl, max)
	}
	c, err := rueidis.NewClient(cloneClientOption(l.client))
	if err != nil {
		return nil, fmt.Errorf("presence: Redis: %w", err)
	}
	p := &Presence{client: c, prefix: l.prefix + "presence:", node: node, ttl: ttl, max: max, log: l.log,
		dirty: map[string]struct{}{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// SetSource sets this replica's side.
func (p *Presence) SetSource(s PresenceSource) { p.src.Store(&s) }

// Changed marks topic for the next pass. It never blocks.
func (p *Presence) Changed(topic string) {
	p.mu.Lock()
	p.dirty[topic] = struct{}{}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// key returns topic's hash.
func (p *Presence) key(topic string) string { return p.prefix + topic }

// run writes what changed, and everything every ttl/3, until Close.
func (p *Presence) run() {
	defer close(p.done)
	tick := time.NewTicker(p.ttl / 3)
	defer tick.Stop()
	for {
		all := false
		select {
		case <-p.stop:
			p.pass(false)
			return
		case <-p.wake:
		case <-tick.C:
			all = true
		}
		p.pass(all)
	}
}

// presenceScript writes (ARGV[2], a snapshot) or deletes (ARGV[2] = "")
// replica ARGV[1]'s field of the hash KEYS[1], deletes the fields expired
// at ARGV[3] (Unix ms), sets the key's expiry to ARGV[4] ms when writing,
// and returns how the union of the live replicas' users changed: {joins,
// leaves, anonymous sessions of other replicas' expired fields}. Being
// one script, each change of the union is seen by exactly one writer,
// which announces it: a user joins once cluster-wide and leaves when its
// last replica let it go, or expired.
var presenceScript = rueidis.NewLuaScript(`
local key, node, now = KEYS[1], ARGV[1], tonumber(ARGV[3])
local fields = redis.call('HGETALL', key)
local before, after, expired, anon = {}, {}, {}, 0
for i = 1, #fields, 2 do
  local f, v = fields[i], fields[i + 1]
  local ok, s = pcall(cjson.decode, v)
  if not ok or type(s) ~= 'table' then
    table.insert(expired, f)
  else
    local users = s.users
    if type(users) ~= 'table' then users = {} end
    for _, u in ipairs(users) do before[u] = true end
    if (tonumber(s.exp) or 0) < now then
      table.insert(expired, f)
      if f ~= node then anon = anon + (tonumber(s.anon) or 0) end
    elseif f ~= node then
      for _, u in ipairs(users) do after[u] = true end
    end
  end
end
if ARGV[2] ~= '' then
  local s = cjson.decode(ARGV[2])
  if type(s.users) == 'table' then
    for _, u in ipairs(s.users) do after[u] = true end
  end
  redis.call('HSET', key, node, ARGV[2])
  redis.call('PEXPIRE', key, ARGV[4])
else
  redis.call('HDEL', key, node)
end
for _, f in ipairs(expired) do
  if f ~= node then redis.call('HDEL', key, f) end
end
local joins, leaves = {}, {}
for u in pairs(after) do if not before[u] then table.insert(joins, u) end end
for u in pairs(before) do if not after[u] then table.insert(leaves, u) end end
return {joins, leaves, anon}
`)

// pass writes this replica's snapshot of the dirty topics (all its
// topics, and those watched here, when all is set), deleting its field of
// those without local presence, and announces how each topic's
// cluster-wide presence changed (PresenceSource.Emit). Topics whose write
// failed stay dirty for the next pass.
func (p *Presence) pass(all bool) {
	src := p.src.Load()
	if src == nil {
		return
	}
	p.mu.Lock()
	topics := make([]string, 0, len(p.dirty))
	for t := range p.dirty {
		topics = append(topics, t)
	}
	clear(p.dirty)
	p.mu.Unlock()
	if all {
		var more []string
		more = append(more, src.Topics()...)
		if src.Watched != nil {
			more = append(more, src.Watched()...)
		}
		for _, t := range more {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	if len(topics) == 0 {
		return
	}
	now := time.Now()
	exp := now.Add(p.ttl).UnixMilli()
	execs := make([]rueidis.LuaExec, len(topics))
	for i, t := range topics {
		// The whole local set: the union must be exact for the events.
		snap := src.Local(t, math.MaxInt)
		v := ""
		if len(snap.Users) > 0 || snap.Anonymous > 0 {
			b, _ := json.Marshal(presenceField{Exp: exp, PresenceSnapshot: snap})
			v = string(b)
		}
		execs[i] = rueidis.LuaExec{Keys: []string{p.key(t)},
			Args: []string{p.node, v, strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatInt(p.ttl.Milliseconds(), 10)}}
	}
	// Bounded by the refresh period, and short enough not to hold up a
	// shutdown (Close runs a last pass) while Redis is down.
	ctx, cancel := context.WithTimeout(context.Background(), min(p.ttl/3, 5*time.Second))
	defer cancel()
	var failed []string
	for i, r := range presenceScript.ExecMulti(ctx, p.client, execs...) {
		joins, leaves, anon, err := presenceDiff(r)
		if err != nil {
			failed = append(failed, topics[i])
			continue
		}
		if src.Emit != nil && (len(joins)+len(leaves)+anon > 0) {
			src.Emit(topics[i], joins, leaves, anon)
		}
	}
	if len(failed) > 0 {
		p.log.Warn("presence: Redis refused snapshots; retrying", "failed", len(failed), "topics", len(topics))
		p.mu.Lock()
		for _, t := range failed {
			p.dirty[t] = struct{}{}
		}
		p.mu.Unlock()
	}
}

// presenceDiff reads presenceScript's answer: joins and leaves sorted.
func presenceDiff(r rueidis.RedisResult) (joins, leaves []string, anon int, err error) {
	a, err := r.ToArray()
	if err != nil {
		return nil, nil, 0, err
	}
	if len(a) != 3 {
		return nil, nil, 0, fmt.Errorf("presence script answered %d values", len(a))
	}
	if joins, err = a[0].AsStrSlice(); err != nil {
		return nil, nil, 0, err
	}
	if leaves, err = a[1].AsStrSlice(); err != nil {
		return nil, nil, 0, err
	}
	n, err := a[2].AsInt64()
	if err != nil {
		return nil, nil, 0, err
	}
	slices.Sort(joins)
	slices.Sort(leaves)
	return joins, leaves, int(n), nil
}

// List returns the presence of topic on every live replica: the union of
// their users, sorted, at most max (Truncated when there were more, or
// when a replica truncated its own), and the sum of their anonymous
// sessions. Expired snapshots (crashed replicas) are skipped and deleted.
func (p *Presence) List(ctx context.Context, topic string, max int) (PresenceSnapshot, error) {
	fields, err := p.client.Do(ctx, p.client.B().Hgetall().Key(p.key(topic)).Build()).AsStrMap()
	if err != nil && !rueidis.IsRedisNil(err) {
		return PresenceSnapshot{}, fmt.Errorf("presence of %q: %w", topic, err)
	}
	now := time.Now().UnixMilli()
	out := PresenceSnapshot{Users: []string{}}
	seen := map[string]struct{}{}
	var stale []string
	for node, v := range fields {
		var f presenceField
		if json.Unmarshal([]byte(v), &f) != nil || f.Exp < now {
			stale = append(stale, node)
			continue
		}
		out.Anonymous += f.Anonymous
		out.Truncated = out.Truncated || f.Truncated
		for _, u := range f.Users {
			if _, dup := seen[u]; !dup {
				seen[u] = struct{}{}
				out.Users = append(out.Users, u)
			}
		}
	}
	if len(stale) > 0 {
		// Best effort: a failure leaves them for the next reader.
		_ = p.client.Do(ctx, p.client.B().Hdel().Key(p.key(topic)).Field(stale...).Build()).Error()
	}
	slices.Sort(out.Users)
	if len(out.Users) > max {
		out.Users, out.Truncated = out.Users[:max], true
	}
	return out, nil
}

// Close writes the last changes (the fields of topics this replica left),
// stops the writer and closes the connection.
func (p *Presence) Close() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		p.client.Close()
	})
}
