package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Presence shares the presence of the node's presence topics between
// replicas through Redis, so that the presence list covers every replica
// (wamp.PresenceDirectory, adapted by the gateway).
//
// Each topic is one Redis hash, <prefix>presence:<topic>, with one field
// per replica that has subscribers of the topic: its NodeID, whose value
// is that replica's snapshot {"exp": Unix ms, "users": [...] (at most the
// list bound), "anon": n, "trunc": bool}. A replica rewrites its field
// when its local presence of the topic changes (coalesced: one goroutine
// writes what changed since its last pass) and every TTL/3 for all its
// topics, and sets the key's expiry to TTL each time; when its last
// subscriber of a topic goes, it deletes its field. A replica that
// crashed stops counting once its snapshots' exp has passed (readers skip
// them and delete them); the key itself lapses TTL after the last live
// replica's write. Memory is bounded: a field per replica and topic, each
// at most the list bound of users.
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

// PresenceSource is this replica's side: its local presence of a topic
// (at most max users) and its presence topics.
type PresenceSource struct {
	Local  func(topic string, max int) PresenceSnapshot
	Topics func() []string
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

// pass writes this replica's snapshot of the dirty topics (all, when all
// is set), deleting its field of those without local presence. Topics
// whose write failed stay dirty for the next pass.
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
		for _, t := range src.Topics() {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	if len(topics) == 0 {
		return
	}
	exp := time.Now().Add(p.ttl).UnixMilli()
	cmds := make(rueidis.Commands, 0, 2*len(topics))
	for _, t := range topics {
		snap := src.Local(t, p.max)
		if len(snap.Users) == 0 && snap.Anonymous == 0 {
			cmds = append(cmds, p.client.B().Hdel().Key(p.key(t)).Field(p.node).Build())
			continue
		}
		v, _ := json.Marshal(presenceField{Exp: exp, PresenceSnapshot: snap})
		cmds = append(cmds,
			p.client.B().Hset().Key(p.key(t)).FieldValue().FieldValue(p.node, string(v)).Build(),
			p.client.B().Pexpire().Key(p.key(t)).Milliseconds(p.ttl.Milliseconds()).Build())
	}
	// Bounded by the refresh period, and short enough not to hold up a
	// shutdown (Close runs a last pass) while Redis is down.
	ctx, cancel := context.WithTimeout(context.Background(), min(p.ttl/3, 5*time.Second))
	defer cancel()
	failed := 0
	for _, r := range p.client.DoMulti(ctx, cmds...) {
		if r.Error() != nil {
			failed++
		}
	}
	if failed > 0 {
		p.log.Warn("presence: Redis refused snapshots; retrying", "failed", failed, "topics", len(topics))
		p.mu.Lock()
		for _, t := range topics {
			p.dirty[t] = struct{}{}
		}
		p.mu.Unlock()
	}
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
