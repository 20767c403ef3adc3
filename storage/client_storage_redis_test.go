package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/test/testenv"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Tests of RedisClientStorage when Redis loses its data: lookups either
// answer the whole registry or fail with ErrIncomplete, never a part of it
// as if complete.

// testClock is a clock that stands still until the test moves it, shared by
// the replicas of a test as synchronised clocks would be. Heartbeat
// expiries are judged by it; Redis' own TTLs (PX) still run in real time.
type testClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recObserver records what a storage reports.
type recObserver struct {
	mu         sync.Mutex // guards lost and recoveries
	lost       []string
	recoveries []ClientRecovery
}

func (o *recObserver) ClientDataLost(cause string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lost = append(o.lost, cause)
}

func (o *recObserver) ClientRecovered(r ClientRecovery) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.recoveries = append(o.recoveries, r)
}

func (o *recObserver) snapshot() ([]string, []ClientRecovery) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.lost), slices.Clone(o.recoveries)
}

// lossReplica starts a replica on addr with the shared clock.
func lossReplica(t *testing.T, addr, prefix, node string, clock *testClock, every time.Duration) (*RedisClientStorage, *recObserver) {
	t.Helper()
	obs := &recObserver{}
	s, err := newRedisClientStorage(RedisClientStorageOptions{
		Redis:  RedisOptions{Addrs: []string{addr}, LookupTimeout: 2 * time.Second},
		Prefix: prefix, TTL: time.Minute, NodeID: node, CheckInterval: every, Observer: obs,
	}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, obs
}

// seed gives s three connections: one of the shared user erin, one of a
// user of its own, one anonymous; it returns their "node/conn" names.
func seed(t *testing.T, s *RedisClientStorage, t0 time.Time) []string {
	t.Helper()
	ctx := context.Background()
	n := s.NodeID()
	es := []ClientEntry{
		{ConnID: "1", Identity: handler.Identity{UserIdentifier: "erin", Roles: []string{"ROLE_USER"}}, ConnectedAt: t0},
		{ConnID: "2", Identity: handler.Identity{UserIdentifier: "u-" + n, Roles: []string{"ROLE_USER"}}, ConnectedAt: t0.Add(time.Second)},
		{ConnID: "3", Identity: handler.Identity{UserIdentifier: "anon-" + n, Anonymous: true}, ConnectedAt: t0.Add(2 * time.Second)},
	}
	var names []string
	for _, e := range es {
		if err := s.Add(ctx, e); err != nil {
			t.Fatalf("Add on %s: %v", n, err)
		}
		names = append(names, n+"/"+e.ConnID)
	}
	return names
}

// names returns the sorted "node/conn" names of es.
func names(es []ClientEntry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Node+"/"+e.ConnID)
	}
	sort.Strings(out)
	return out
}

// expectation is the registry a successful lookup must answer in full.
type expectation struct {
	all  []string // GetAll(true)
	erin []string // FindAllByUsername("erin")
}

func expect(replicas ...[]string) *expectation {
	x := &expectation{}
	for _, r := range replicas {
		x.all = append(x.all, r...)
		x.erin = append(x.erin, r[0])
	}
	sort.Strings(x.all)
	sort.Strings(x.erin)
	return x
}

// hammer runs lookups on every storage until stopped and judges each: a
// success must be the whole expected registry, a failure must match
// ErrUnavailable (ErrIncomplete does).
type hammer struct {
	want       atomic.Pointer[expectation]
	stop       chan struct{}
	wg         sync.WaitGroup
	ok         atomic.Int64
	incomplete atomic.Int64
	down       atomic.Int64
	mu         sync.Mutex // guards bad
	bad        []string
}

func startHammer(stores []*RedisClientStorage, want *expectation) *hammer {
	h := &hammer{stop: make(chan struct{})}
	h.want.Store(want)
	for _, s := range stores {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-h.stop:
					return
				default:
				}
				want := h.want.Load()
				var (
					es   []ClientEntry
					err  error
					what string
					full []string
				)
				if i%2 == 0 {
					es, err = s.GetAll(ctx, true)
					what, full = "GetAll", want.all
				} else {
					es, err = s.FindAllByUsername(ctx, "erin")
					what, full = "FindAllByUsername", want.erin
				}
				switch {
				case err == nil:
					if got := names(es); !slices.Equal(got, full) {
						h.fail(fmt.Sprintf("%s on %s answered %v as complete, want %v", what, s.NodeID(), got, full))
					}
					h.ok.Add(1)
				case errors.Is(err, ErrIncomplete):
					if !errors.Is(err, ErrUnavailable) {
						h.fail(fmt.Sprintf("%v does not match ErrUnavailable", err))
					}
					h.incomplete.Add(1)
				case errors.Is(err, ErrUnavailable):
					h.down.Add(1)
				default:
					h.fail(fmt.Sprintf("%s on %s: %v", what, s.NodeID(), err))
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return h
}

func (h *hammer) fail(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) < 10 {
		h.bad = append(h.bad, msg)
	}
}

// finish stops the lookups and reports what they saw.
func (h *hammer) finish(t *testing.T) {
	t.Helper()
	close(h.stop)
	h.wg.Wait()
	for _, b := range h.bad {
		t.Error(b)
	}
	t.Logf("lookups: %d complete answers, %d ErrIncomplete, %d other unavailable", h.ok.Load(), h.incomplete.Load(), h.down.Load())
}

// waitChecks waits until cond holds, failing once s ran more than n checks
// (a recovery polls ten times per interval) — a bound counted in the
// storage's own work, not in wall-clock time. The long wall-clock limit only
// keeps a stuck storage from hanging the test.
func waitChecks(t *testing.T, s *RedisClientStorage, n uint64, what string, cond func() bool) {
	t.Helper()
	start := s.checks.Load()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if done := s.checks.Load() - start; done > n {
			t.Fatalf("%s: not within %d checks of %s", what, n, s.NodeID())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s stopped checking", what, s.NodeID())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// answersFull reports whether s answers the whole expected registry.
func answersFull(s *RedisClientStorage, want *expectation) bool {
	es, err := s.GetAll(context.Background(), true)
	return err == nil && slices.Equal(names(es), want.all)
}

// TestRedisClientStorageDataLoss: three replicas with entries; Redis is
// killed and comes back empty. Every lookup meanwhile either fails or
// answers the whole registry, and every replica answers it again within a
// bounded number of checks, each having reported the loss and its recovery.
func TestRedisClientStorageDataLoss(t *testing.T) {
	srv := testenv.StartRedis(t)
	clock := newTestClock()
	t0 := clock.now()
	var stores []*RedisClientStorage
	var obs []*recObserver
	var seeded [][]string
	for _, n := range []string{"nodeA", "nodeB", "nodeC"} {
		s, o := lossReplica(t, srv.Addr, "wsgate:", n, clock, testCheckInterval)
		waitComplete(t, s)
		stores, obs = append(stores, s), append(obs, o)
		seeded = append(seeded, seed(t, s, t0))
	}
	want := expect(seeded...)
	for _, s := range stores {
		waitChecks(t, s, 50, "registry complete before the restart", func() bool { return answersFull(s, want) })
		// Two more checks: its view of the live replicas is current.
		n := s.checks.Load() + 2
		waitChecks(t, s, 50, "two checks", func() bool { return s.checks.Load() >= n })
	}

	h := startHammer(stores, want)
	srv.Kill()
	srv.Start() // empty: no persistence
	for _, s := range stores {
		waitChecks(t, s, 100, "registry complete after the restart", func() bool { return answersFull(s, want) })
	}
	h.finish(t)
	if h.incomplete.Load() == 0 {
		t.Error("no lookup was refused with ErrIncomplete after the restart")
	}
	for i, o := range obs {
		lost, recs := o.snapshot()
		if !slices.Equal(lost, []string{ClientLossEpoch}) {
			t.Errorf("%s reported losses %v, want one %q", stores[i].NodeID(), lost, ClientLossEpoch)
		}
		if len(recs) != 1 {
			t.Fatalf("%s reported recoveries %+v, want one", stores[i].NodeID(), recs)
		}
		// Each waited for the two others it had seen, none died.
		if r := recs[0]; r.Cause != ClientLossEpoch || r.Entries != 3 || r.Waited != 2 || r.Expired != 0 || r.GaveUp != 0 {
			t.Errorf("%s recovery = %+v", stores[i].NodeID(), r)
		}
	}
}

// TestRedisClientStorageDeadReplicaAfterLoss: of five replicas, C closes
// cleanly before Redis loses its data, D dies together with Redis, E closes
// cleanly after Redis is back but before it re-registered. A and B refuse
// lookups while D might still come back, and answer the whole registry once
// the clock passes D's last heartbeat expiry; neither C nor E is waited for.
func TestRedisClientStorageDeadReplicaAfterLoss(t *testing.T) {
	srv := testenv.StartRedis(t)
	admin := redisAdmin(t, srv.Addr)
	ctx := context.Background()
	clock := newTestClock()
	t0 := clock.now()
	const prefix = "wsgate:"
	// A first: it creates the epoch (and its young marker, which lives two
	// of the creator's check intervals).
	a, obsA := lossReplica(t, srv.Addr, prefix, "nodeA", clock, testCheckInterval)
	waitComplete(t, a)
	b, obsB := lossReplica(t, srv.Addr, prefix, "nodeB", clock, testCheckInterval)
	c, _ := lossReplica(t, srv.Addr, prefix, "nodeC", clock, testCheckInterval)
	d, _ := lossReplica(t, srv.Addr, prefix, "nodeD", clock, testCheckInterval)
	// E checks once, at its start, and never again during the test: after
	// the restart it has not re-registered when it closes.
	e, _ := lossReplica(t, srv.Addr, prefix, "nodeE", clock, time.Hour)
	for _, s := range []*RedisClientStorage{b, c, d} {
		waitComplete(t, s)
	}
	waitChecks(t, a, 50, "E registered", func() bool {
		v, _ := admin.Do(ctx, admin.B().Get().Key(prefix+"node:nodeE").Build()).ToString()
		return v != ""
	})
	seedA, seedB := seed(t, a, t0), seed(t, b, t0)
	for _, s := range []*RedisClientStorage{c, d, e} {
		seed(t, s, t0)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Two checks each: A's and B's view of the live replicas lost C.
	for _, s := range []*RedisClientStorage{a, b} {
		n := s.checks.Load() + 2
		waitChecks(t, s, 50, "two checks", func() bool { return s.checks.Load() >= n })
	}

	d.abandon()
	srv.Kill()
	// From now on the whole registry is A's and B's entries: D died, C
	// and E leave cleanly.
	want := expect(seedA, seedB)
	h := startHammer([]*RedisClientStorage{a, b}, want)
	srv.Start()

	// E talks to the new server (its first call may meet the dead
	// connection), then closes without having re-registered.
	waitChecks(t, a, 100, "E reconnected", func() bool {
		return e.Add(ctx, ClientEntry{ConnID: "probe", Identity: handler.Identity{UserIdentifier: "probe"}}) == nil
	})
	if err := e.Close(); err != nil {
		t.Fatalf("E's Close: %v", err)
	}

	// A and B re-register, the young marker lapses, E is closed: only D,
	// whose last heartbeat expiry has not passed by the clock, is missing.
	epoch := func() string {
		v, _ := stringOrEmpty(admin.Do(ctx, admin.B().Get().Key(prefix+"epoch").Build()))
		return v
	}
	for _, s := range []*RedisClientStorage{a, b} {
		waitChecks(t, s, 100, "re-registered", func() bool {
			v, _ := stringOrEmpty(admin.Do(ctx, admin.B().Get().Key(prefix+"node:"+s.NodeID()).Build()))
			return v != "" && v == epoch()
		})
	}
	waitChecks(t, a, 100, "young marker gone", func() bool {
		n, err := admin.Do(ctx, admin.B().Exists().Key(prefix+"epoch:young").Build()).AsInt64()
		return err == nil && n == 0
	})
	for _, s := range []*RedisClientStorage{a, b} {
		n := s.checks.Load() + 10
		waitChecks(t, s, 50, "ten more checks", func() bool { return s.checks.Load() >= n })
		for _, lookup := range []func() error{
			func() error { _, err := s.GetAll(ctx, true); return err },
			func() error { _, err := s.FindAllByUsername(ctx, "erin"); return err },
			func() error { _, err := s.FindByUsername(ctx, "erin"); return err },
			func() error { _, err := s.FindByRoles(ctx, []string{"ROLE_USER"}); return err },
		} {
			if err := lookup(); !errors.Is(err, ErrIncomplete) {
				t.Errorf("lookup on %s while D may come back = %v, want ErrIncomplete", s.NodeID(), err)
			}
		}
	}

	// D's last heartbeat expiry passes: it died with Redis.
	clock.advance(clientHeartbeatBeats*testCheckInterval + time.Millisecond)
	for _, s := range []*RedisClientStorage{a, b} {
		waitChecks(t, s, 20, "complete once D expired", func() bool { return answersFull(s, want) })
	}
	h.finish(t)
	for _, o := range []*recObserver{obsA, obsB} {
		_, recs := o.snapshot()
		if len(recs) != 1 {
			t.Fatalf("recoveries %+v, want one", recs)
		}
		// B (or A) and E were waited for, D expired; C was not waited for.
		if r := recs[0]; r.Entries != 3 || r.Waited != 2 || r.Expired != 1 || r.GaveUp != 0 {
			t.Errorf("recovery = %+v, want 3 entries, 2 waited, 1 expired", r)
		}
	}
}

// TestRedisClientStorageLookupSeesLoss: a lookup that meets a lost registry
// fails at once, without waiting for the next check, and has the storage
// re-register at once.
func TestRedisClientStorageLookupSeesLoss(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	admin := redisAdmin(t, addr, prefix)
	ctx := context.Background()
	// An old epoch: no young marker, the storage answers at once.
	if err := admin.Do(ctx, admin.B().Set().Key(prefix+"epoch").Value("old").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	clock := newTestClock()
	// One check at the start, the next in an hour unless kicked.
	s, obs := lossReplica(t, addr, prefix, "solo", clock, time.Hour)
	waitComplete(t, s)
	seeded := seed(t, s, clock.now())
	if got, err := s.GetAll(ctx, true); err != nil || !slices.Equal(names(got), seeded) {
		t.Fatalf("GetAll = %v, %v", names(got), err)
	}

	deleteRedisPrefix(t, admin, ctx, prefix) // Redis lost everything
	for _, lookup := range []func() ([]ClientEntry, error){
		func() ([]ClientEntry, error) { return s.GetAll(ctx, true) },
		func() ([]ClientEntry, error) { return s.FindAllByUsername(ctx, "erin") },
	} {
		if got, err := lookup(); !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("lookup after the loss = %v, %v; want ErrIncomplete", names(got), err)
		}
	}
	// The lookup asked for a check: the loss is noticed and the entries
	// written again long before the hourly check.
	waitFor(t, 10*time.Second, "loss noticed", func() bool {
		lost, _ := obs.snapshot()
		return slices.Equal(lost, []string{ClientLossEpoch})
	})
	waitFor(t, 10*time.Second, "entries written again", func() bool {
		n, err := admin.Do(ctx, admin.B().Zcard().Key(prefix+"clients").Build()).AsInt64()
		return err == nil && n == int64(len(seeded))
	})
}

// TestRedisClientStorageNewcomerAfterLoss: a replica that starts after
// Redis lost its data, once a survivor noticed, has seen nobody alive; it
// must not answer before the other survivors had time to show up (the young
// marker), and then waits for them by name. Here A notices at once (a lookup
// meets the loss), B only at its next beat, one check interval later, after
// the newcomer started. (The replicas of a new registry answer at once:
// every other test starts one.)
func TestRedisClientStorageNewcomerAfterLoss(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	admin := redisAdmin(t, addr, prefix)
	ctx := context.Background()
	clock := newTestClock()
	const every = 300 * time.Millisecond
	a, obsA := lossReplica(t, addr, prefix, "nodeA", clock, every)
	b, obsB := lossReplica(t, addr, prefix, "nodeB", clock, every)
	waitComplete(t, a)
	waitComplete(t, b)
	want := expect(seed(t, a, clock.now()), seed(t, b, clock.now()))

	// Right after one of B's beats: its next one is an interval away.
	next := b.checks.Load() + 1
	waitChecks(t, b, 50, "B's beat", func() bool { return b.checks.Load() >= next })
	deleteRedisPrefix(t, admin, ctx, prefix) // Redis lost everything
	if _, err := a.GetAll(ctx, true); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("A's lookup after the loss = %v", err)
	}
	waitChecks(t, a, 50, "A noticed", func() bool { lost, _ := obsA.snapshot(); return len(lost) == 1 })
	if lost, _ := obsB.snapshot(); len(lost) != 0 {
		t.Skip("B noticed before the newcomer started (a stalled machine): nothing to test")
	}
	n, _ := lossReplica(t, addr, prefix, "newcomer", clock, every)
	h := startHammer([]*RedisClientStorage{n}, want)
	waitChecks(t, n, 100, "newcomer answers", func() bool { return answersFull(n, want) })
	h.finish(t)
}

// TestRedisClientStorageHeartbeatLost: when only this replica's heartbeat
// key is gone (it could not reach Redis for longer than its TTL), it
// re-registers its entries and is complete again at once: the others were
// not affected.
func TestRedisClientStorageHeartbeatLost(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	admin := redisAdmin(t, addr, prefix)
	ctx := context.Background()
	clock := newTestClock()
	a, obsA := lossReplica(t, addr, prefix, "nodeA", clock, testCheckInterval)
	b, obsB := lossReplica(t, addr, prefix, "nodeB", clock, testCheckInterval)
	waitComplete(t, a)
	waitComplete(t, b)
	want := expect(seed(t, a, clock.now()), seed(t, b, clock.now()))
	// A's heartbeat and one of its entries vanish.
	if err := admin.Do(ctx, admin.B().Del().Key(prefix+"node:nodeA", prefix+"client:nodeA:2").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	waitChecks(t, a, 50, "A re-registered", func() bool {
		_, recs := obsA.snapshot()
		return len(recs) == 1 && answersFull(a, want)
	})
	lost, recs := obsA.snapshot()
	if !slices.Equal(lost, []string{ClientLossHeartbeat}) || recs[0].Cause != ClientLossHeartbeat || recs[0].Entries != 3 {
		t.Errorf("A reported %v, %+v", lost, recs)
	}
	if lost, _ := obsB.snapshot(); len(lost) != 0 {
		t.Errorf("B reported losses %v", lost)
	}
	if !answersFull(b, want) {
		t.Error("B does not answer the whole registry")
	}
}

// TestRedisClientStorageUndoStale: a refresh that wrote entries removed or
// replaced while it was in flight puts them right, rather than keep a closed
// connection for a whole TTL.
func TestRedisClientStorageUndoStale(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	admin := redisAdmin(t, addr, prefix)
	ctx := context.Background()
	s := newTestRedisClients(t, addr, prefix, "n", time.Minute)
	for _, e := range []ClientEntry{
		{ConnID: "gone", Identity: handler.Identity{UserIdentifier: "gina"}},
		{ConnID: "moved", Identity: handler.Identity{UserIdentifier: "mia"}},
		{ConnID: "kept", Identity: handler.Identity{UserIdentifier: "kim"}},
	} {
		if err := s.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// What a refresh took before the changes below.
	s.mu.Lock()
	written := []localClient{s.local["gone"], s.local["moved"], s.local["kept"]}
	s.mu.Unlock()
	if err := s.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, ClientEntry{ConnID: "moved", Identity: handler.Identity{UserIdentifier: "max"}}); err != nil {
		t.Fatal(err)
	}
	// The refresh's pipeline reaches Redis after those writes.
	c, err := s.get(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	var cmds rueidis.Commands
	for _, lc := range written {
		cmds = s.writeCmds(c, cmds, lc, s.now().Add(time.Minute))
	}
	if err := firstError(s.do(ctx, c, cmds)); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.FindAllByUsername(ctx, "gina"); len(es) != 1 {
		t.Fatalf("the stale write did not bring gina back (%v): the test proves nothing", es)
	}
	if err := s.undoStale(ctx, c, written); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string][]string{"gina": nil, "mia": nil, "max": {"moved"}, "kim": {"kept"}} {
		es, err := s.FindAllByUsername(ctx, user)
		if err != nil || !slices.Equal(connIDs(es), want) && len(es)+len(want) > 0 {
			t.Errorf("FindAllByUsername(%s) = %v, %v; want %v", user, connIDs(es), err, want)
		}
	}
	if n, _ := admin.Do(ctx, admin.B().Zcard().Key(prefix+"user:mia").Build()).AsInt64(); n != 0 {
		t.Errorf("mia's index keeps %d members", n)
	}
}

// TestRedisClientStorageInvalidExtra: an entry whose Extra is not JSON is
// refused and not kept, so that it cannot fail every later refresh.
func TestRedisClientStorageInvalidExtra(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	redisAdmin(t, addr, prefix)
	ctx := context.Background()
	s := newTestRedisClients(t, addr, prefix, "n", time.Minute)
	if err := s.Add(ctx, ClientEntry{ConnID: "x", Extra: json.RawMessage(`{not json`)}); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("Add with a broken Extra = %v", err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatalf("Refresh after the refused Add = %v", err)
	}
}

func TestNewRedisClientStorageOptions(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    RedisClientStorageOptions
	}{
		{"negative check interval", RedisClientStorageOptions{CheckInterval: -time.Second}},
		{"check interval under 10ms", RedisClientStorageOptions{CheckInterval: time.Millisecond}},
		{"refresh not below TTL", RedisClientStorageOptions{TTL: time.Minute, RefreshInterval: time.Minute}},
		{"node id with a colon", RedisClientStorageOptions{NodeID: "a:b"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Redis.Addrs = []string{"127.0.0.1:1"}
			if s, err := NewRedisClientStorage(tt.o); err == nil {
				s.Close()
				t.Fatalf("NewRedisClientStorage(%+v) succeeded", tt.o)
			}
		})
	}
}
