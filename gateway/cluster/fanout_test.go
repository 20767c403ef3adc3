package cluster

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// fanoutRecorder is a Deliver that keeps what it got.
type fanoutRecorder struct {
	mu  sync.Mutex
	got []FanoutMessage
}

func (r *fanoutRecorder) deliver(m FanoutMessage) {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
}

func (r *fanoutRecorder) all() []FanoutMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// payloads returns the payloads received on topic, in order.
func (r *fanoutRecorder) payloads(topic string) []string {
	var out []string
	for _, m := range r.all() {
		if m.Topic == topic {
			out = append(out, string(m.Payload))
		}
	}
	return out
}

// has reports whether payload arrived on topic.
func (r *fanoutRecorder) has(topic, payload string) bool {
	return slices.Contains(r.payloads(topic), payload)
}

// fanoutCounter is a FanoutObserver that counts.
type fanoutCounter struct {
	mu        sync.Mutex
	dropped   map[string]int
	published int
	relayed   int
	lost      map[string]uint64
	dups      int
	ups       []bool // SubscriptionUp calls, in order
}

func (c *fanoutCounter) Lost(origin string, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost == nil {
		c.lost = make(map[string]uint64)
	}
	c.lost[origin] += n
}

func (c *fanoutCounter) Duplicate(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dups++
}

func (c *fanoutCounter) SubscriptionUp(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ups = append(c.ups, up)
}

// lostFrom returns how many messages from origin were counted lost.
func (c *fanoutCounter) lostFrom(origin string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost[origin]
}

// lostTotal returns how many messages were counted lost, from anyone.
func (c *fanoutCounter) lostTotal() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n uint64
	for _, v := range c.lost {
		n += v
	}
	return n
}

// upCalls returns the SubscriptionUp calls so far.
func (c *fanoutCounter) upCalls() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ups)
}

func (c *fanoutCounter) Relayed(lag time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if lag < 0 {
		panic("negative lag")
	}
	c.relayed++
}

func (c *fanoutCounter) Dropped(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped == nil {
		c.dropped = make(map[string]int)
	}
	c.dropped[reason]++
}

func (c *fanoutCounter) Published(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.published += n
}

func (c *fanoutCounter) drops(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped[reason]
}

func (c *fanoutCounter) pubs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.published
}

// fanoutNode is one Fanout under test with what it received.
type fanoutNode struct {
	*Fanout
	rec *fanoutRecorder
	obs *fanoutCounter
}

// newFanoutNode starts a Fanout closed (and checked to close in time)
// when the test ends.
func newFanoutNode(t testing.TB, o FanoutOptions) *fanoutNode {
	t.Helper()
	n := &fanoutNode{rec: &fanoutRecorder{}, obs: &fanoutCounter{}}
	if o.Deliver == nil {
		o.Deliver = n.rec.deliver
	}
	o.Observer = n.obs
	o.Logger = testOptions(t, &o.Redis)
	f, err := NewFanout(o)
	if err != nil {
		t.Fatalf("NewFanout: %v", err)
	}
	n.Fanout = f
	closeAtEnd(t, f.Close)
	return n
}

// fanoutEnv is a Redis deployment the fan-out tests run against.
type fanoutEnv struct {
	redis storage.RedisOptions
	// numsub returns how many connections are subscribed to channel, as
	// Redis sees it (PUBSUB NUMSUB or SHARDNUMSUB, summed over nodes).
	numsub func(t testing.TB, channel string) int64
	// admin publishes raw bytes on a channel.
	publishRaw func(t testing.TB, channel string, data []byte)
}

// pollFor polls cond every 5ms until it holds, failing the test after
// within (generous: no assertion here is about speed).
func pollFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// standaloneFanoutEnv is the shared test Redis, in classic (standalone)
// or sharded pub/sub: a cluster-mode client on a single non-cluster Redis
// 7 falls back to one node, where SPUBLISH/SSUBSCRIBE work too, so the
// sharded code runs without a cluster.
func standaloneFanoutEnv(t testing.TB, sharded bool) fanoutEnv {
	t.Helper()
	addr := testenv.Redis(t)
	o := storage.RedisOptions{Addrs: []string{addr}}
	if sharded {
		o.Mode = storage.RedisCluster
	}
	return singleNodeFanoutEnv(redisAdmin(t, addr), o, sharded)
}

// singleNodeFanoutEnv is one Redis server, reached through o, that admin
// talks to directly.
func singleNodeFanoutEnv(admin rueidis.Client, o storage.RedisOptions, sharded bool) fanoutEnv {
	env := fanoutEnv{redis: o}
	env.numsub = func(t testing.TB, channel string) int64 {
		return numsubOn(t, admin, channel, sharded)
	}
	env.publishRaw = func(t testing.TB, channel string, data []byte) {
		t.Helper()
		cmd := admin.B().Publish().Channel(channel).Message(rueidis.BinaryString(data)).Build()
		if sharded {
			cmd = admin.B().Spublish().Channel(channel).Message(rueidis.BinaryString(data)).Build()
		}
		if err := admin.Do(context.Background(), cmd).Error(); err != nil {
			t.Fatalf("publish raw: %v", err)
		}
	}
	return env
}

// numsubOn asks one node how many connections subscribe channel.
func numsubOn(t testing.TB, c rueidis.Client, channel string, sharded bool) int64 {
	t.Helper()
	cmd := c.B().PubsubNumsub().Channel(channel).Build()
	if sharded {
		cmd = c.B().PubsubShardnumsub().Channel(channel).Build()
	}
	a, err := c.Do(context.Background(), cmd).ToArray()
	if err != nil || len(a) != 2 {
		t.Fatalf("PUBSUB NUMSUB %s: %v %v", channel, a, err)
	}
	n, err := a[1].AsInt64()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB %s: %v", channel, err)
	}
	return n
}

// fanoutModes are the standalone-Redis variants every behaviour test runs in.
var fanoutModes = []struct {
	name    string
	sharded bool
}{{"classic", false}, {"sharded", true}}

func TestFanoutRelay(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			testFanoutRelay(t, standaloneFanoutEnv(t, m.sharded))
		})
	}
}

// testFanoutRelay: A, B and C share Redis. B (and A) watch T, C watches U
// only. What A publishes on T reaches B once with everything intact, never
// A itself, never C; after B's Unwatch it no longer reaches B.
//
// "Never" is shown without sleeping: a marker published after the message
// on the same channel arrives after it (Redis keeps the order of one
// channel on one connection), and a message cannot reach a connection Redis
// says is not subscribed.
func testFanoutRelay(t *testing.T, env fanoutEnv) {
	prefix := uniqueName(t, "wsgate_t_") + ":"
	mk := func(node string) *fanoutNode {
		return newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: node})
	}
	a, b, c := mk("node-a"), mk("node-b"), mk("node-c")
	const T, U, V = "acme.topic/room.1", "acme.topic/room.2", "acme.topic/room.3"
	a.Watch(T)
	b.Watch(T)
	b.Watch(V)
	c.Watch(U)
	pollFor(t, 10*time.Second, "subscriptions", func() bool {
		return a.Watching() == 1 && b.Watching() == 2 && c.Watching() == 1
	})
	if n := env.numsub(t, prefix+"fanout:"+T); n != 2 {
		t.Fatalf("Redis counts %d subscribers of T; want 2 (A and B)", n)
	}
	if n := env.numsub(t, prefix+"fanout:"+U); n != 1 {
		t.Fatalf("Redis counts %d subscribers of U; want 1 (C)", n)
	}

	// A publishes; B gets it intact, once.
	payload := `{"msg":"hello","n":[1,2,3],"s":"é\"\\"}`
	aud := Audience{
		ExcludeSessions: []string{"sess-1", "sess-2"}, EligibleSessions: []string{"sess-3", "sess-4", "sess-5"},
		ExcludeUsers: []string{"mallory"}, EligibleUsers: []string{"alice", ""},
		ExcludeRoles: []string{"guest", "banned"}, EligibleRoles: []string{"admin"},
	}
	sent := time.Now()
	a.Publish(T, []byte(payload), aud)
	a.Publish(T, []byte(`"marker-a"`), Audience{})
	pollFor(t, 10*time.Second, "B receives A's marker", func() bool { return b.rec.has(T, `"marker-a"`) })
	got := b.rec.all()
	if len(got) != 2 {
		t.Fatalf("B got %d messages; want exactly 2: %+v", len(got), got)
	}
	m := got[0]
	if m.Topic != T || string(m.Payload) != payload || m.Origin != "node-a" || !reflect.DeepEqual(m.Audience, aud) {
		t.Fatalf("B got %+v", m)
	}
	// Numbered on A's stream of T, from 1, in one epoch.
	if m.Seq != 1 || got[1].Seq != 2 || m.Epoch == 0 || got[1].Epoch != m.Epoch {
		t.Fatalf("sequence numbers (epoch %d seq %d), (epoch %d seq %d); want 1 and 2 in one epoch", m.Epoch, m.Seq, got[1].Epoch, got[1].Seq)
	}
	if m.SentAt.Before(sent.Add(-time.Second)) || m.SentAt.After(time.Now()) {
		t.Fatalf("SentAt %v; published at %v", m.SentAt, sent)
	}
	if !reflect.DeepEqual(got[1].Audience, Audience{}) {
		t.Fatalf("empty lists came back as %+v", got[1].Audience)
	}

	// B answers on T: A gets it, and its own two echoes came before it,
	// so A ignoring them shows as A having nothing else.
	b.Publish(T, []byte(`"marker-b"`), Audience{})
	pollFor(t, 10*time.Second, "A receives B's marker", func() bool { return a.rec.has(T, `"marker-b"`) })
	if p := a.rec.payloads(T); !slices.Equal(p, []string{`"marker-b"`}) {
		t.Fatalf("A got %q on T; want only B's marker (its own publishes are ignored)", p)
	}
	// C is not subscribed to T (Redis said so above); it gets U.
	a.Publish(U, []byte(`"marker-u"`), Audience{})
	pollFor(t, 10*time.Second, "C receives U", func() bool { return c.rec.has(U, `"marker-u"`) })
	for _, m := range c.rec.all() {
		if m.Topic != U {
			t.Fatalf("C got %q on %s", m.Payload, m.Topic)
		}
	}
	pollFor(t, 5*time.Second, "observer counts", func() bool { return a.obs.pubs() == 3 && b.obs.pubs() == 1 })
	// Relayed follows Deliver, so it may lag the recorder a little.
	pollFor(t, 5*time.Second, "B's observer hears 2 relays", func() bool {
		b.obs.mu.Lock()
		defer b.obs.mu.Unlock()
		return b.obs.relayed == 2
	})

	// B unwatches T: once Redis agrees, what A publishes on T cannot reach
	// B; a marker on V (which B still watches) bounds the wait.
	b.Unwatch(T)
	pollFor(t, 10*time.Second, "B unsubscribed", func() bool {
		return b.Watching() == 1 && env.numsub(t, prefix+"fanout:"+T) == 1
	})
	a.Publish(T, []byte(`"after-unwatch"`), Audience{})
	a.Publish(V, []byte(`"marker-v"`), Audience{})
	pollFor(t, 10*time.Second, "B receives V", func() bool { return b.rec.has(V, `"marker-v"`) })
	if b.rec.has(T, `"after-unwatch"`) {
		t.Fatal("B received T after Unwatch")
	}

	// Garbage on the channel is counted as decode_error, not delivered.
	for _, raw := range [][]byte{[]byte("not an envelope"), mustEncodeFanout(t, FanoutMessage{Origin: "evil", Payload: []byte("{broken")})} {
		env.publishRaw(t, prefix+"fanout:"+V, raw)
	}
	pollFor(t, 10*time.Second, "decode errors counted", func() bool { return b.obs.drops(FanoutDropDecodeError) == 2 })
	if p := b.rec.payloads(V); !slices.Equal(p, []string{`"marker-v"`}) {
		t.Fatalf("B got %q on V", p)
	}

	// B watches T again: what A published on T meanwhile was never B's
	// to lose, so nothing is counted lost (B forgot T's baseline when its
	// unsubscription was confirmed).
	b.Watch(T)
	pollFor(t, 10*time.Second, "B subscribed again", func() bool { return b.Watching() == 2 })
	a.Publish(T, []byte(`"again"`), Audience{})
	pollFor(t, 10*time.Second, "B receives T again", func() bool { return b.rec.has(T, `"again"`) })
	for name, n := range map[string]*fanoutNode{"A": a, "B": b, "C": c} {
		if l := n.obs.lostTotal(); l != 0 {
			t.Errorf("%s counted %d messages lost; want 0", name, l)
		}
		if up := n.obs.upCalls(); !slices.Equal(up, []bool{true}) {
			t.Errorf("%s SubscriptionUp calls %v; want [true]", name, up)
		}
	}
}

func mustEncodeFanout(t testing.TB, m FanoutMessage) []byte {
	t.Helper()
	b, err := encodeFanout(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFanoutCoalescing: Watch/Unwatch calls made while the subscriber
// is busy land in one batch, and only their net effect reaches Redis.
func TestFanoutCoalescing(t *testing.T) {
	type op struct {
		watch bool
		topic string
	}
	W := func(t string) op { return op{true, t} }
	U := func(t string) op { return op{false, t} }
	cases := []struct {
		name        string
		pre         []string // watched and subscribed before
		ops         []op     // made while the subscriber is held
		subscribes  int64    // channels named in (S)SUBSCRIBE after pre
		unsubscribe int64    // and in (S)UNSUBSCRIBE
		watching    int
	}{
		{"watch then unwatch", nil, []op{W("a"), U("a")}, 0, 0, 0},
		{"watch twice", nil, []op{W("a"), W("a")}, 1, 0, 1},
		{"unwatch unknown", nil, []op{U("a")}, 0, 0, 0},
		{"watch unwatch watch", nil, []op{W("a"), U("a"), W("a")}, 1, 0, 1},
		{"one of two cancelled", nil, []op{W("a"), W("b"), U("a")}, 1, 0, 1},
		{"unwatch then watch a subscribed topic", []string{"a"}, []op{U("a"), W("a")}, 0, 0, 1},
		{"unwatch a subscribed topic", []string{"a", "b"}, []op{U("a"), U("a")}, 0, 1, 1},
	}
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					prefix := uniqueName(t, "wsgate_t_") + ":"
					f := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "n"})
					for _, p := range tc.pre {
						f.Watch(p)
					}
					pollFor(t, 10*time.Second, "pre subscribed", func() bool { return f.Watching() == len(tc.pre) })
					subs0, unsubs0 := f.subscribes.Load(), f.unsubscribes.Load()
					f.procMu.Lock()
					for _, o := range tc.ops {
						if o.watch {
							f.Watch(o.topic)
						} else {
							f.Unwatch(o.topic)
						}
					}
					f.procMu.Unlock()
					// A sentinel topic, watched after the batch: it is applied
					// with the batch (unsubscribes first) or after it, so
					// once Redis has it, the batch is through.
					f.Watch("sentinel")
					pollFor(t, 10*time.Second, "sentinel subscribed", func() bool {
						return env.numsub(t, prefix+"fanout:sentinel") == 1 && f.Watching() == tc.watching+1
					})
					if got := f.subscribes.Load() - subs0 - 1; got != tc.subscribes {
						t.Errorf("subscribed %d channels; want %d", got, tc.subscribes)
					}
					if got := f.unsubscribes.Load() - unsubs0; got != tc.unsubscribe {
						t.Errorf("unsubscribed %d channels; want %d", got, tc.unsubscribe)
					}
				})
			}
		})
	}
}

// TestFanoutPublishQueueFull: with the publisher stuck (Redis accepts
// and never answers: connecting takes the whole 2s timeout) and a queue of
// 1, Publish still returns at once and drops; every message ends up
// counted exactly once.
func TestFanoutPublishQueueFull(t *testing.T) {
	addr := blackhole(t)
	f := newFanoutNode(t, FanoutOptions{
		Redis:     storage.RedisOptions{Addrs: []string{addr}, LookupTimeout: 2 * time.Second},
		NodeID:    "n",
		QueueSize: 1,
	})
	// The first message wakes the publisher, which takes it and then
	// spends the 2s timeout trying to connect.
	f.Publish("t", []byte("0"), Audience{})
	pollFor(t, 5*time.Second, "publisher took the first message", func() bool { return len(f.outbound) == 0 })
	const n = 100
	for i := range n {
		f.Publish("t", []byte(strconv.Itoa(i+1)), Audience{})
	}
	// One goes in the queue, and one more may have joined the first
	// message's batch in the instant before the publisher started
	// connecting: the others were dropped by Publish itself.
	if d := f.obs.drops(FanoutDropPublishQueueFull); d < n-2 {
		t.Fatalf("%d publish_queue_full drops; want at least %d", d, n-2)
	}
	pollFor(t, 10*time.Second, "every message accounted for", func() bool {
		return f.obs.drops(FanoutDropPublishQueueFull)+f.obs.drops(FanoutDropPublishError) == n+1
	})
	if f.obs.pubs() != 0 {
		t.Fatalf("published %d", f.obs.pubs())
	}
}

// TestFanoutEncodeError: what the envelope cannot carry is dropped at
// Publish, never sent.
func TestFanoutEncodeError(t *testing.T) {
	f := newFanoutNode(t, FanoutOptions{Redis: storage.RedisOptions{Addrs: []string{blackhole(t)}, LookupTimeout: 300 * time.Millisecond}, NodeID: "n"})
	f.Publish("t", nil, Audience{})
	f.Publish("t", []byte("1"), Audience{ExcludeSessions: []string{strings.Repeat("x", 256)}})
	f.Publish("t", bytes.Repeat([]byte("1"), fanoutMaxEnvelope), Audience{})
	if d := f.obs.drops(FanoutDropEncodeError); d != 3 {
		t.Fatalf("%d encode errors; want 3", d)
	}
}

// TestFanoutRefusesNULTopics: a topic holding a NUL byte, such as the
// previous release's control topic, is neither subscribed nor published,
// so that no client can reach that release's commands during an upgrade.
func TestFanoutRefusesNULTopics(t *testing.T) {
	env := standaloneFanoutEnv(t, false)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	f := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "n"})
	f.Watch(legacyControlTopic)
	f.Watch("a\x00b")
	// Watch calls are applied in order: once the sentinel is subscribed,
	// the refused ones would have been too.
	f.Watch("sentinel")
	// Redis counts the subscriber as soon as it handled SUBSCRIBE, the
	// fan-out once the reply came back: wait for both.
	pollFor(t, 10*time.Second, "sentinel subscribed", func() bool {
		return env.numsub(t, prefix+"fanout:sentinel") == 1 && f.Watching() >= 1
	})
	if n := f.Watching(); n != 1 {
		t.Fatalf("Watching = %d; want 1 (the sentinel only)", n)
	}
	if n := env.numsub(t, legacyControlChannel(prefix)); n != 0 {
		t.Fatalf("%d subscribers of the legacy control channel", n)
	}
	f.Publish(legacyControlTopic, []byte(`{"op":"disconnect","username":"bob"}`), Audience{})
	if d := f.obs.drops(FanoutDropEncodeError); d != 1 {
		t.Fatalf("%d encode errors; want 1", d)
	}
	f.Publish("sentinel", []byte("1"), Audience{})
	pollFor(t, 10*time.Second, "the sentinel published", func() bool { return f.obs.pubs() == 1 })
}

// fanoutSubConnIDs returns the ids of node's subscription connections.
func fanoutSubConnIDs(t testing.TB, admin rueidis.Client, node string) []string {
	t.Helper()
	list, err := admin.Do(context.Background(), admin.B().Arbitrary("CLIENT", "LIST", "TYPE", "pubsub").Build()).ToString()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var ids []string
	list = strings.TrimPrefix(list, "txt:") // RESP3 verbatim string
	for _, line := range strings.Split(list, "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			} else if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			}
		}
		if name == fanoutClientName(node) {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestFanoutReconnect kills B's subscription connection (by id, so
// that no other test's subscriber is touched): B reconnects, subscribes T
// again and receives what A publishes after that.
func TestFanoutReconnect(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			admin := redisAdmin(t, env.redis.Addrs[0])
			prefix := uniqueName(t, "wsgate_t_") + ":"
			node := uniqueName(t, "node-b-")
			a := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-a"})
			b := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: node})
			b.Watch("T")
			pollFor(t, 10*time.Second, "B subscribed", func() bool { return b.Watching() == 1 })
			a.Publish("T", []byte(`"before"`), Audience{})
			pollFor(t, 10*time.Second, "B receives before the kill", func() bool { return b.rec.has("T", `"before"`) })

			ids := fanoutSubConnIDs(t, admin, node)
			if len(ids) != 1 {
				t.Fatalf("B has %d subscription connections: %v", len(ids), ids)
			}
			if err := admin.Do(context.Background(), admin.B().Arbitrary("CLIENT", "KILL", "ID", ids[0]).Build()).Error(); err != nil {
				t.Fatalf("CLIENT KILL: %v", err)
			}
			// Messages published while B is away are lost (pub/sub keeps
			// nothing), so A publishes until one gets through.
			i := 0
			pollFor(t, 15*time.Second, "B receives after the kill", func() bool {
				i++
				a.Publish("T", []byte(fmt.Sprintf(`"after %d"`, i)), Audience{})
				time.Sleep(20 * time.Millisecond)
				for _, p := range b.rec.payloads("T") {
					if strings.HasPrefix(p, `"after`) {
						return true
					}
				}
				return false
			})
			if ids2 := fanoutSubConnIDs(t, admin, node); len(ids2) != 1 || ids2[0] == ids[0] {
				t.Fatalf("B's subscription connections after the kill: %v (killed %s)", ids2, ids[0])
			}
			if !m.sharded && b.connects.Load() < 2 {
				t.Fatalf("B connected %d times", b.connects.Load())
			}
			if b.Watching() != 1 {
				t.Fatalf("Watching = %d", b.Watching())
			}
		})
	}
}

// fanoutGoroutines returns the stacks of live goroutines running fan-out
// code.
func fanoutGoroutines() []string { return goroutinesRunning("(*Fanout)", "(*fanoutPublisher)") }

// TestFanoutCloseStopsGoroutines: after Close no fan-out goroutine is
// left, and the goroutine count (rueidis' included) comes back down.
func TestFanoutCloseStopsGoroutines(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			before := runtime.NumGoroutine()
			var nodes []*Fanout
			for _, id := range []string{"a", "b"} {
				o := env.redis
				o.LookupTimeout = 5 * time.Second
				f, err := NewFanout(FanoutOptions{Redis: o, Prefix: prefix, NodeID: id, Deliver: func(FanoutMessage) {}})
				if err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, f)
				for i := range 5 {
					f.Watch(fmt.Sprint("topic", i))
				}
			}
			pollFor(t, 10*time.Second, "subscribed", func() bool { return nodes[0].Watching() == 5 && nodes[1].Watching() == 5 })
			for i := range 100 {
				nodes[0].Publish(fmt.Sprint("topic", i%5), []byte("1"), Audience{})
			}
			if len(fanoutGoroutines()) == 0 {
				t.Fatal("no fan-out goroutine found while running: the check below would prove nothing")
			}
			for _, f := range nodes {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil { // idempotent
					t.Fatal(err)
				}
				f.Publish("topic0", []byte("1"), Audience{}) // ignored, no panic
				f.Watch("topic9")
			}
			// A goroutine's last instant (returning after wg.Done) may
			// still show: the check allows it a moment.
			deadline := time.Now().Add(5 * time.Second)
			for g := fanoutGoroutines(); len(g) > 0; g = fanoutGoroutines() {
				if time.Now().After(deadline) {
					t.Fatalf("%d fan-out goroutines left after Close:\n%s", len(g), strings.Join(g, "\n\n"))
				}
				time.Sleep(5 * time.Millisecond)
			}
			pollFor(t, 10*time.Second, fmt.Sprintf("goroutines back to %d", before), func() bool {
				return runtime.NumGoroutine() <= before
			})
		})
	}
}

func TestNewFanoutRejectsBadOptions(t *testing.T) {
	ok := FanoutOptions{Redis: storage.RedisOptions{Addrs: []string{"127.0.0.1:6379"}}, NodeID: "n", Deliver: func(FanoutMessage) {}}
	cases := []struct {
		name  string
		edit  func(o *FanoutOptions)
		field string
	}{
		{"no address", func(o *FanoutOptions) { o.Redis.Addrs = nil }, "Redis"},
		{"bad mode", func(o *FanoutOptions) { o.Redis.Mode = "ring" }, "Redis"},
		{"sentinel without master", func(o *FanoutOptions) { o.Redis.Mode = storage.RedisSentinel }, "Redis"},
		{"no node id", func(o *FanoutOptions) { o.NodeID = "" }, "NodeID"},
		{"long node id", func(o *FanoutOptions) { o.NodeID = strings.Repeat("n", 256) }, "NodeID"},
		{"no deliver", func(o *FanoutOptions) { o.Deliver = nil }, "Deliver"},
		{"negative queue", func(o *FanoutOptions) { o.QueueSize = -1 }, "QueueSize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			f, err := NewFanout(o)
			if err == nil {
				f.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

// TestFanoutSentinel runs the relay through a Sentinel that monitors
// a private master.
func TestFanoutSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	conf := fmt.Sprintf("sentinel monitor wsgatefanout 127.0.0.1 %d 1\nsentinel down-after-milliseconds wsgatefanout 1000\n", master.Port)
	sentinel := testenv.StartRedisConfig(t, conf, "--sentinel")
	o := storage.RedisOptions{Addrs: []string{sentinel.Addr}, Mode: storage.RedisSentinel, MasterName: "wsgatefanout"}
	testFanoutRelay(t, singleNodeFanoutEnv(redisAdmin(t, master.Addr), o, false))
}

// TestFanoutCluster runs the relay on a private three-master cluster,
// with topics spread over the masters, in sharded pub/sub.
func TestFanoutCluster(t *testing.T) {
	nodes := testenv.StartRedisCluster(t, 3)
	admins := make([]rueidis.Client, len(nodes))
	for i, n := range nodes {
		admins[i] = redisAdmin(t, n)
	}
	cluster, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: nodes[:1], DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	env := fanoutEnv{
		redis: storage.RedisOptions{Addrs: nodes[:1], Mode: storage.RedisCluster},
		numsub: func(t testing.TB, channel string) int64 {
			var sum int64
			for _, a := range admins {
				sum += numsubOn(t, a, channel, true)
			}
			return sum
		},
		publishRaw: func(t testing.TB, channel string, data []byte) {
			t.Helper()
			if err := cluster.Do(context.Background(), cluster.B().Spublish().Channel(channel).Message(rueidis.BinaryString(data)).Build()).Error(); err != nil {
				t.Fatalf("SPUBLISH: %v", err)
			}
		},
	}
	t.Run("relay", func(t *testing.T) { testFanoutRelay(t, env) })
	// The control channel and the legacy one hash to different slots:
	// each has a receiver of its own.
	t.Run("control", func(t *testing.T) { testControlDisconnect(t, env) })

	// Many topics: their channels hash to every master, and each
	// replica's subscriptions follow them there.
	t.Run("spread", func(t *testing.T) {
		prefix := uniqueName(t, "wsgate_t_") + ":"
		a := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "a"})
		b := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "b"})
		const n = 30
		owners := map[int]bool{}
		for i := range n {
			b.Watch(fmt.Sprint("topic", i))
		}
		pollFor(t, 10*time.Second, "B subscribed", func() bool { return b.Watching() == n })
		for i := range n {
			ch := prefix + "fanout:" + fmt.Sprint("topic", i)
			for j, adm := range admins {
				if numsubOn(t, adm, ch, true) == 1 {
					owners[j] = true
				}
			}
			a.Publish(fmt.Sprint("topic", i), []byte(strconv.Itoa(i)), Audience{EligibleSessions: []string{"s"}})
		}
		if len(owners) != len(nodes) {
			t.Fatalf("subscriptions on %d of %d masters", len(owners), len(nodes))
		}
		pollFor(t, 10*time.Second, "B receives every topic", func() bool { return len(b.rec.all()) == n })
		for i := range n {
			if p := b.rec.payloads(fmt.Sprint("topic", i)); !slices.Equal(p, []string{strconv.Itoa(i)}) {
				t.Fatalf("topic%d: %q", i, p)
			}
		}
		for i := range n {
			b.Unwatch(fmt.Sprint("topic", i))
		}
		pollFor(t, 10*time.Second, "B unsubscribed everywhere", func() bool {
			if b.Watching() != 0 {
				return false
			}
			for i := range n {
				if env.numsub(t, prefix+"fanout:"+fmt.Sprint("topic", i)) != 0 {
					return false
				}
			}
			return true
		})
	})
}

// BenchmarkFanoutPublish measures relay throughput from A to B through
// the real Redis in classic and sharded pub/sub (see benchFanout).
func BenchmarkFanoutPublish(b *testing.B) {
	for _, m := range fanoutModes {
		b.Run(m.name, func(b *testing.B) { benchFanout(b, FanoutPubSub, m.sharded) })
	}
}
