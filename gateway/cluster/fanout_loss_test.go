package cluster

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// TestFanoutSeen: the receiver's bookkeeping, message by message.
func TestFanoutSeen(t *testing.T) {
	s := newFanoutSeen()
	msg := func(origin string, epoch, seq uint64) *FanoutMessage {
		return &FanoutMessage{Origin: origin, Epoch: epoch, Seq: seq}
	}
	steps := []struct {
		topic string
		m     *FanoutMessage
		lost  uint64
		dup   bool
	}{
		{"T", msg("a", 1, 5), 0, false},  // first: the baseline
		{"T", msg("a", 1, 6), 0, false},  // next
		{"T", msg("a", 1, 9), 2, false},  // 7 and 8 missing
		{"T", msg("a", 1, 8), 0, true},   // late or repeated
		{"T", msg("a", 1, 9), 0, true},   // repeated
		{"T", msg("a", 1, 10), 0, false}, // the baseline stayed at 9
		{"U", msg("a", 1, 50), 0, false}, // another topic, its own stream
		{"T", msg("b", 1, 3), 0, false},  // another origin, its own stream
		{"T", msg("a", 2, 1), 0, false},  // new epoch: a new baseline
		{"T", msg("a", 2, 3), 1, false},
		{"T", msg("a", 0, 0), 0, false}, // version 1: never counted
		{"T", msg("a", 2, 4), 0, false},
	}
	for i, st := range steps {
		lost, dup := s.check(st.topic, st.m)
		if lost != st.lost || dup != st.dup {
			t.Fatalf("step %d (%s %+v): lost %d dup %v; want %d %v", i, st.topic, *st.m, lost, dup, st.lost, st.dup)
		}
	}
	// Forgetting T: its next message is a baseline again.
	s.forget("T")
	if lost, _ := s.check("T", msg("a", 2, 100)); lost != 0 {
		t.Fatalf("after forget: lost %d", lost)
	}
	if lost, _ := s.check("U", msg("a", 1, 52)); lost != 1 {
		t.Fatalf("U kept: lost %d; want 1", lost)
	}
	s.keepOnly(func(topic string) bool { return topic == "T" })
	if lost, _ := s.check("U", msg("a", 1, 60)); lost != 0 {
		t.Fatalf("U dropped by keepOnly: lost %d", lost)
	}
	// The bound: past it, every baseline goes.
	s = newFanoutSeen()
	for i := range fanoutMaxSeenStreams {
		s.check(fmt.Sprint("t", i), msg("a", 1, 1))
	}
	if s.n != fanoutMaxSeenStreams {
		t.Fatalf("%d streams held", s.n)
	}
	s.check("one more", msg("a", 1, 1))
	if s.n != 1 || len(s.topic) != 1 {
		t.Fatalf("after the bound: %d streams in %d topics; want 1", s.n, len(s.topic))
	}
	if lost, _ := s.check("t0", msg("a", 1, 10)); lost != 0 {
		t.Fatalf("t0 after the reset: lost %d", lost)
	}
}

// TestFanoutSeqsEpoch: the publisher numbers per topic from 1 and, when
// its map is full, starts a new epoch rather than growing it.
func TestFanoutSeqsEpoch(t *testing.T) {
	s := newFanoutSeqs(true, 100)
	env := mustEncodeFanout(t, FanoutMessage{Origin: "n", Seq: 1, Payload: []byte("1")})
	numbers := func(topic string) (uint64, uint64) {
		s.stamp(topic, env, func() {})
		m, err := decodeFanout(env)
		if err != nil {
			t.Fatal(err)
		}
		return m.Epoch, m.Seq
	}
	if e, q := numbers("a"); e != 100 || q != 1 {
		t.Fatalf("first: %d/%d", e, q)
	}
	if e, q := numbers("a"); e != 100 || q != 2 {
		t.Fatalf("second: %d/%d", e, q)
	}
	if e, q := numbers("b"); e != 100 || q != 1 {
		t.Fatalf("other topic: %d/%d", e, q)
	}
	for i := len(s.next); i < fanoutMaxSeqStreams; i++ {
		numbers(fmt.Sprint("t", i))
	}
	if e, q := numbers("a"); e != 100 || q != 3 {
		t.Fatalf("known topic at the bound: %d/%d", e, q)
	}
	if e, q := numbers("new"); e != 101 || q != 1 || len(s.next) != 1 {
		t.Fatalf("past the bound: %d/%d with %d topics; want a new epoch", e, q, len(s.next))
	}
	if e, q := numbers("a"); e != 101 || q != 1 {
		t.Fatalf("a in the new epoch: %d/%d", e, q)
	}
	// Streams mode: one counter for every topic.
	s = newFanoutSeqs(false, 1)
	numbers("a")
	if _, q := numbers("b"); q != 2 {
		t.Fatalf("streams mode: seq %d on another topic; want 2", q)
	}
}

// fanoutAllModes are the transports the loss tests run in.
var fanoutAllModes = []struct {
	name    string
	sharded bool
	mode    string
}{{"classic", false, FanoutPubSub}, {"sharded", true, FanoutPubSub}, {"streams", false, FanoutStreams}}

// TestFanoutLinkLoss: B's link to Redis is cut while A goes on
// publishing (all accepted by Redis). In pub/sub mode those messages are
// lost for B, and B counts exactly them as lost from A once the next one
// arrives; in streams mode B reads on from where it stopped and gets every
// one, nothing counted lost.
func TestFanoutLinkLoss(t *testing.T) {
	for _, m := range fanoutAllModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			proxy := testenv.StartProxy(t, env.redis.Addrs[0])
			prefix := uniqueName(t, "wsgate_t_") + ":"
			dropStreamAtEnd(t, env.redis.Addrs[0], prefix)
			viaProxy := env.redis
			viaProxy.Addrs = []string{proxy.Addr()}
			viaProxy.LookupTimeout = 2 * time.Second
			a := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-a", Mode: m.mode})
			b := newFanoutNode(t, FanoutOptions{Redis: viaProxy, Prefix: prefix, NodeID: "node-b", Mode: m.mode})
			const T = "T"
			b.Watch(T)
			pollFor(t, 10*time.Second, "B watching", func() bool { return b.Watching() == 1 })
			a.Publish(T, []byte(`"first"`), Audience{})
			pollFor(t, 10*time.Second, "B receives the first", func() bool { return b.rec.has(T, `"first"`) })

			proxy.Cut()
			pollFor(t, 10*time.Second, "B sees its link down", func() bool {
				up := b.obs.upCalls()
				return b.Watching() == 0 && len(up) > 0 && !up[len(up)-1]
			})
			const n = 50
			for i := range n {
				a.Publish(T, []byte(fmt.Sprint(i)), Audience{})
			}
			pollFor(t, 10*time.Second, "A's messages accepted by Redis", func() bool { return a.obs.pubs() == n+1 })

			restored := time.Now()
			proxy.Restore()
			pollFor(t, 20*time.Second, "B watching again", func() bool { return b.Watching() == 1 })
			t.Logf("B watching again %v after the link came back", time.Since(restored).Round(time.Millisecond))
			a.Publish(T, []byte(`"last"`), Audience{})
			pollFor(t, 10*time.Second, "B receives the last", func() bool { return b.rec.has(T, `"last"`) })
			got := len(b.rec.payloads(T))
			if m.mode == FanoutStreams {
				if got != n+2 || b.obs.lostTotal() != 0 {
					t.Fatalf("streams: B delivered %d of %d, counted %d lost; want all, none lost", got, n+2, b.obs.lostTotal())
				}
			} else if got != 2 || b.obs.lostFrom("node-a") != n {
				t.Fatalf("pub/sub: B delivered %d, counted %d lost from A; want 2 delivered and exactly %d lost", got, b.obs.lostFrom("node-a"), n)
			}
			if up := b.obs.upCalls(); !slices.Equal(up, []bool{true, false, true}) {
				t.Fatalf("SubscriptionUp calls %v; want [true false true]", up)
			}
			b.obs.mu.Lock()
			dups := b.obs.dups
			b.obs.mu.Unlock()
			if dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
		})
	}
}

// TestFanoutRedisRestart kills a private Redis under A and B and starts
// it again: A's publishes in between fail and are dropped (counted by A),
// B's subscription comes back (well within a second on an idle machine;
// the deadline is generous) and counts exactly A's dropped messages as
// lost once the next one arrives. Up follows Redis on A. In streams mode
// with an append-only file that survives the crash, nothing Redis
// accepted is lost either.
func TestFanoutRedisRestart(t *testing.T) {
	for _, m := range fanoutAllModes {
		t.Run(m.name, func(t *testing.T) {
			var srv *testenv.RedisServer
			if m.mode == FanoutStreams {
				srv = testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
			} else {
				srv = testenv.StartRedis(t)
			}
			o := storage.RedisOptions{Addrs: []string{srv.Addr}, LookupTimeout: 2 * time.Second}
			if m.sharded {
				o.Mode = storage.RedisCluster
			}
			prefix := uniqueName(t, "wsgate_t_") + ":"
			a := newFanoutNode(t, FanoutOptions{Redis: o, Prefix: prefix, NodeID: "node-a", Mode: m.mode})
			b := newFanoutNode(t, FanoutOptions{Redis: o, Prefix: prefix, NodeID: "node-b", Mode: m.mode})
			const T = "T"
			b.Watch(T)
			pollFor(t, 10*time.Second, "B watching, A up", func() bool { return b.Watching() == 1 && a.Up() })
			for i := range 3 {
				a.Publish(T, []byte(fmt.Sprintf(`"before%d"`, i)), Audience{})
			}
			pollFor(t, 10*time.Second, "B receives before", func() bool { return len(b.rec.payloads(T)) == 3 })

			srv.Kill()
			pollFor(t, 10*time.Second, "B sees Redis gone", func() bool { return b.Watching() == 0 })
			const n = 5
			for i := range n {
				a.Publish(T, []byte(fmt.Sprintf(`"during%d"`, i)), Audience{})
			}
			aDropped := func() int {
				return a.obs.drops(FanoutDropPublishError) + a.obs.drops(FanoutDropPublishQueueFull)
			}
			if m.mode != FanoutStreams {
				pollFor(t, 20*time.Second, "A drops what it cannot publish", func() bool { return aDropped() == n })
			}
			// (Streams: A holds them and sends them again until Redis
			// takes them.)
			pollFor(t, 10*time.Second, "A not Up", func() bool { return !a.Up() })

			restarted := time.Now()
			srv.Start()
			pollFor(t, 20*time.Second, "B watching again", func() bool { return b.Watching() == 1 })
			t.Logf("B watching again %v after the restart", time.Since(restarted).Round(time.Millisecond))
			pollFor(t, 20*time.Second, "A Up again", func() bool { return a.Up() })
			// The first publish after the restart may still fail on a
			// connection the client has not found broken yet (cluster
			// client): A publishes until one gets through, and every one
			// A dropped is one B counts.
			i := 0
			pollFor(t, 20*time.Second, "B receives after", func() bool {
				i++
				a.Publish(T, []byte(fmt.Sprintf(`"after%d"`, i)), Audience{})
				time.Sleep(20 * time.Millisecond)
				return len(b.rec.payloads(T)) > 3
			})
			if m.mode == FanoutStreams {
				pollFor(t, 10*time.Second, "B receives what A held", func() bool { return b.rec.has(T, fmt.Sprintf(`"during%d"`, n-1)) })
				if l, d := b.obs.lostFrom("node-a"), aDropped(); l != 0 || d != 0 {
					t.Fatalf("streams: A dropped %d, B counted %d lost; want none", d, l)
				}
				got := b.rec.payloads(T)
				if len(got) < 3+n {
					t.Fatalf("streams: B delivered %v; want at least %d", got, 3+n)
				}
				if got, want := got[:3+n], []string{`"before0"`, `"before1"`, `"before2"`, `"during0"`, `"during1"`, `"during2"`, `"during3"`, `"during4"`}; !slices.Equal(got, want) {
					t.Fatalf("streams: B delivered %v first; want %v, in order", got, want)
				}
			} else if l := b.obs.lostFrom("node-a"); l != uint64(aDropped()) || l < n {
				t.Fatalf("B counted %d lost from A; want exactly the %d A dropped (at least %d)", l, aDropped(), n)
			}
			if got := len(b.rec.payloads(T)); got < 4 {
				t.Fatalf("B delivered %d; want at least 4", got)
			}
		})
	}
}

// TestFanoutStreamTrimmed: in streams mode, what was trimmed away while
// B's link was down is counted lost, exactly: B delivers some, counts the
// rest.
func TestFanoutStreamTrimmed(t *testing.T) {
	// Small stream nodes, so that MAXLEN ~ trims close to the cap.
	srv := testenv.StartRedis(t, "--stream-node-max-entries", "4")
	proxy := testenv.StartProxy(t, srv.Addr)
	o := storage.RedisOptions{Addrs: []string{srv.Addr}, LookupTimeout: 2 * time.Second}
	viaProxy := o
	viaProxy.Addrs = []string{proxy.Addr()}
	prefix := uniqueName(t, "wsgate_t_") + ":"
	a := newFanoutNode(t, FanoutOptions{Redis: o, Prefix: prefix, NodeID: "node-a", Mode: FanoutStreams, StreamMaxLen: 10})
	b := newFanoutNode(t, FanoutOptions{Redis: viaProxy, Prefix: prefix, NodeID: "node-b", Mode: FanoutStreams, StreamMaxLen: 10})
	b.Watch("T")
	pollFor(t, 10*time.Second, "B watching", func() bool { return b.Watching() == 1 })
	a.Publish("T", []byte(`"first"`), Audience{})
	pollFor(t, 10*time.Second, "B receives the first", func() bool { return b.rec.has("T", `"first"`) })
	proxy.Cut()
	pollFor(t, 10*time.Second, "B sees its link down", func() bool { return b.Watching() == 0 })
	const n = 100
	for i := range n {
		a.Publish("T", []byte(fmt.Sprint(i)), Audience{})
		if i%10 == 9 { // several batches, each trimmed
			pollFor(t, 10*time.Second, "A's batch accepted", func() bool { return a.obs.pubs() == i+2 })
		}
	}
	proxy.Restore()
	pollFor(t, 20*time.Second, "B receives the last", func() bool { return b.rec.has("T", fmt.Sprint(n-1)) })
	got := len(b.rec.payloads("T"))
	lost := b.obs.lostFrom("node-a")
	t.Logf("B delivered %d, counted %d lost", got, lost)
	if lost == 0 || uint64(got)+lost != n+1 {
		t.Fatalf("B delivered %d and counted %d lost; want some lost and %d in all", got, lost, n+1)
	}
}

// benchFanout measures the cost per relayed message from A to B through
// the real Redis in one mode: b.N messages published by A on one topic,
// timed until B has delivered them all. Publish never blocks, so the loop
// leaves room in A's queue rather than dropping.
func benchFanout(b *testing.B, mode string, sharded bool) {
	env := standaloneFanoutEnv(b, sharded)
	prefix := uniqueName(b, "wsgate_b_") + ":"
	dropStreamAtEnd(b, env.redis.Addrs[0], prefix)
	var mu sync.Mutex
	delivered := 0
	const queue = 1 << 16
	a := newFanoutNode(b, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "a", QueueSize: queue, Mode: mode})
	rb := newFanoutNode(b, FanoutOptions{Redis: env.redis, Prefix: prefix, NodeID: "b", QueueSize: queue, Mode: mode, Deliver: func(FanoutMessage) {
		mu.Lock()
		delivered++
		mu.Unlock()
	}})
	rb.Watch("T")
	pollFor(b, 10*time.Second, "B watching", func() bool { return rb.Watching() == 1 })
	payload := []byte(`{"type":"chat","room":42,"user":"alice","text":"hello, this is a typical small event payload"}`)
	aud := Audience{ExcludeSessions: []string{"1234567890123456"}}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if i%1024 == 0 {
			for len(a.outbound) > queue/2 {
				runtime.Gosched()
			}
		}
		a.Publish("T", payload, aud)
	}
	dropped := func() int {
		return a.obs.drops(FanoutDropPublishQueueFull) + a.obs.drops(FanoutDropPublishError) +
			rb.obs.drops(FanoutDropDeliverQueueFull)
	}
	pollFor(b, time.Minute, "B delivers everything", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered+dropped() >= b.N
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/msg")
	b.ReportMetric(float64(dropped()), "dropped")
	b.ReportMetric(float64(rb.obs.lostTotal()), "lost")
}

// dropStreamAtEnd deletes the stream of prefix from the Redis at addr
// when the test ends, after its fan-outs have closed (cleanups run last
// registered first), so that streams-mode tests on the shared Redis leave
// nothing behind.
func dropStreamAtEnd(t testing.TB, addr, prefix string) {
	admin := redisAdmin(t, addr)
	t.Cleanup(func() {
		// Seen once: the admin connection, idle through the test, answered
		// EOF; the delete is idempotent, so it is sent again on a fresh
		// connection before the test is failed for leaving the stream.
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if err = admin.Do(context.Background(), admin.B().Del().Key(prefix+"fanout-stream").Build()).Error(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("delete the test stream: %v", err)
	})
}

// BenchmarkFanoutPubSub: classic pub/sub, for comparison with streams.
func BenchmarkFanoutPubSub(b *testing.B) { benchFanout(b, FanoutPubSub, false) }

// BenchmarkFanoutStreams: the durable mode, XADD and XREAD.
func BenchmarkFanoutStreams(b *testing.B) { benchFanout(b, FanoutStreams, false) }
