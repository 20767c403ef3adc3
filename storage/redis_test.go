package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/test/testenv"
)

// redisAdmin is a plain client (no cache) the tests write through, as PHP
// would; it deletes every key under the given prefixes when the test ends.
func redisAdmin(t testing.TB, addr string, prefixes ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		testenv.Missing(t, "Redis at "+addr, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, p := range prefixes {
			deleteRedisPrefix(t, c, ctx, p)
		}
		c.Close()
	})
	return c
}

// deleteRedisPrefix deletes every key starting with prefix.
func deleteRedisPrefix(t testing.TB, c rueidis.Client, ctx context.Context, prefix string) {
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Errorf("scan %s*: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			if err := c.Do(ctx, c.B().Del().Key(e.Elements...).Build()).Error(); err != nil {
				t.Errorf("delete %s*: %v", prefix, err)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// redisSet writes a session as both PHP handlers do: SETEX prefix+id.
func redisSet(t testing.TB, c rueidis.Client, key string, data []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Do(context.Background(), c.B().Set().Key(key).Value(rueidis.BinaryString(data)).Px(ttl).Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
}

// openTestRedis opens a RedisStore closed when the test ends.
func openTestRedis(t testing.TB, o RedisOptions) *RedisStore {
	t.Helper()
	s, err := OpenRedis(o)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newRedisFixture runs the contract on keys under a unique prefix ending in
// suffix (Symfony's or phpredis' default), with the client cache on or off.
func newRedisFixture(suffix string, cache bool) func(t *testing.T) sessionFixture {
	return func(t *testing.T) sessionFixture {
		t.Helper()
		addr := testenv.Redis(t)
		prefix := uniqueName(t, "wsgate_t_") + suffix
		admin := redisAdmin(t, addr, prefix)
		const maxLifetime = 1440 * time.Second
		// A generous timeout: the contract is about answers, and -race on
		// a loaded machine is slow.
		s := openTestRedis(t, RedisOptions{Addrs: []string{addr}, Prefix: prefix, ClientCache: cache, MaxSize: 1024, LookupTimeout: 10 * time.Second})
		return sessionFixture{
			store:       s,
			maxLifetime: maxLifetime,
			maxSize:     1024,
			ttlExpiry:   true,
			put: func(t *testing.T, id string, data []byte, age time.Duration) {
				t.Helper()
				if left := maxLifetime - age; left > 0 {
					redisSet(t, admin, prefix+id, data, left)
				}
			},
		}
	}
}

func TestRedisStoreContract(t *testing.T) {
	for _, suffix := range []string{DefaultRedisPrefix, PHPRedisPrefix} {
		for _, cache := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s cache=%v", suffix, cache), func(t *testing.T) {
				testSessionStoreContract(t, newRedisFixture(suffix, cache))
			})
		}
	}
}

// phpRedisSession runs storage/testdata/redis-session.php and returns the
// session id and key.
func phpRedisSession(t *testing.T, in map[string]any) (id, key string) {
	t.Helper()
	php := testenv.PHP(t)
	b, _ := json.Marshal(in)
	cmd := exec.Command(php, "testdata/redis-session.php", string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("redis-session.php: %v\n%s", err, stderr.String())
	}
	var res struct{ ID, Key string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("redis-session.php output %q: %v", out, err)
	}
	return res.ID, res.Key
}

// countingObserver counts what stores report.
type countingObserver struct {
	mu      sync.Mutex
	lookups map[string]int // "op result"
	hits    atomic.Int64
	misses  atomic.Int64
}

func (o *countingObserver) ObserveLookup(store, op, result string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lookups == nil {
		o.lookups = make(map[string]int)
	}
	o.lookups[op+" "+result]++
}

func (o *countingObserver) ObserveCache(store string, hits, misses int) {
	o.hits.Add(int64(hits))
	o.misses.Add(int64(misses))
}

func (o *countingObserver) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lookups[key]
}

// waitFor polls cond every 5ms until it holds or within passes, and returns
// how long it took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestRedisStorePHPWritten reads sessions written by real PHP through
// Symfony's RedisSessionHandler and through phpredis' native handler, under
// their default key prefixes, and sees PHP's logout (Session::invalidate)
// within a second through the client-side cache.
func TestRedisStorePHPWritten(t *testing.T) {
	addr := testenv.Redis(t)
	host, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		handler, prefix string
	}{
		{"symfony", DefaultRedisPrefix},
		{"native", PHPRedisPrefix},
	} {
		t.Run(tc.handler, func(t *testing.T) {
			admin := redisAdmin(t, addr)
			obs := &countingObserver{}
			s := openTestRedis(t, RedisOptions{Addrs: []string{addr}, Prefix: tc.prefix, ClientCache: true, Observer: obs, LookupTimeout: 10 * time.Second})
			in := map[string]any{"handler": tc.handler, "host": host, "port": port, "user": "carol", "roles": []string{"ROLE_USER"}, "ttl": 600}
			id, key := phpRedisSession(t, in)
			t.Cleanup(func() { admin.Do(context.Background(), admin.B().Del().Key(key).Build()) })
			if key != tc.prefix+id {
				t.Fatalf("PHP wrote key %q, want prefix %q", key, tc.prefix)
			}
			ctx := context.Background()
			for i := 0; i < 3; i++ {
				data, err := s.Read(ctx, id)
				if err != nil {
					t.Fatalf("Read #%d: %v", i, err)
				}
				if !bytes.Contains(data, []byte(`_security_main`)) || !bytes.Contains(data, []byte(`"carol"`)) {
					t.Fatalf("Read = %q; want carol's Symfony token", data)
				}
			}
			if obs.hits.Load() < 2 || obs.misses.Load() != 1 {
				t.Errorf("cache: %d hits, %d misses; want >= 2 and 1", obs.hits.Load(), obs.misses.Load())
			}
			ttl, err := admin.Do(ctx, admin.B().Ttl().Key(key).Build()).AsInt64()
			if err != nil || ttl <= 0 || ttl > 600 {
				t.Errorf("key TTL = %d, %v; want PHP's 600s lifetime", ttl, err)
			}

			in["id"], in["action"] = id, "logout"
			phpRedisSession(t, in)
			took := waitFor(t, time.Second, "logout noticed", func() bool {
				_, err := s.Read(ctx, id)
				return errors.Is(err, ErrNotFound)
			})
			t.Logf("%s: PHP logout noticed by the cached store after %v", tc.handler, took)
		})
	}
}

// TestRedisStoreCacheInvalidation: with ClientCache a changed, deleted or
// newly created key is seen by the next reads within a second (Redis pushes
// the invalidation), while unchanged keys are served from memory.
func TestRedisStoreCacheInvalidation(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + "sf_s"
	admin := redisAdmin(t, addr, prefix)
	obs := &countingObserver{}
	s := openTestRedis(t, RedisOptions{Addrs: []string{addr}, Prefix: prefix, ClientCache: true, Observer: obs, LookupTimeout: 10 * time.Second})
	ctx := context.Background()
	read := func(id string) string {
		b, err := s.Read(ctx, id)
		if err != nil {
			return Result(err)
		}
		return string(b)
	}

	redisSet(t, admin, prefix+"cacheA", []byte("v1"), time.Hour)
	if got := read("cacheA"); got != "v1" {
		t.Fatalf("Read = %q", got)
	}
	hits := obs.hits.Load()
	for i := 0; i < 100; i++ {
		read("cacheA")
	}
	if got := obs.hits.Load() - hits; got != 100 {
		t.Fatalf("100 repeated reads: %d cache hits", got)
	}

	redisSet(t, admin, prefix+"cacheA", []byte("v2"), time.Hour)
	t.Logf("change seen after %v", waitFor(t, time.Second, "change", func() bool { return read("cacheA") == "v2" }))

	admin.Do(ctx, admin.B().Del().Key(prefix+"cacheA").Build())
	t.Logf("deletion seen after %v", waitFor(t, time.Second, "deletion", func() bool { return read("cacheA") == ResultNotFound }))

	// A miss is cached too (Redis tracks the key read): a session
	// created afterwards must still be seen.
	if got := read("cacheB"); got != ResultNotFound {
		t.Fatalf("Read missing = %q", got)
	}
	read("cacheB")
	redisSet(t, admin, prefix+"cacheB", []byte("new"), time.Hour)
	t.Logf("creation seen after %v", waitFor(t, time.Second, "creation", func() bool { return read("cacheB") == "new" }))

	// ReadMany goes through the same cache.
	hits = obs.hits.Load()
	res, err := s.ReadMany(ctx, []string{"cacheA", "cacheB"})
	if err != nil || !errors.Is(res["cacheA"].Err, ErrNotFound) || string(res["cacheB"].Data) != "new" {
		t.Fatalf("ReadMany = %v, %v", res, err)
	}
	if obs.hits.Load()-hits != 2 {
		t.Errorf("ReadMany of two cached keys: %d hits", obs.hits.Load()-hits)
	}

	// Expiry: the cached copy never outlives the key's TTL.
	redisSet(t, admin, prefix+"cacheC", []byte("short"), 300*time.Millisecond)
	if got := read("cacheC"); got != "short" {
		t.Fatalf("Read = %q", got)
	}
	waitFor(t, 2*time.Second, "expiry", func() bool { return read("cacheC") == ResultNotFound })
}

// TestRedisStoreKilledAndRestarted kills a private redis-server under a
// store: lookups fail fast with ErrUnavailable while it is down, and the
// store recovers by itself within seconds of the restart.
func TestRedisStoreKilledAndRestarted(t *testing.T) {
	srv := testenv.StartRedis(t)
	obs := &countingObserver{}
	s := openTestRedis(t, RedisOptions{Addrs: []string{srv.Addr}, ClientCache: true, LookupTimeout: 500 * time.Millisecond, Observer: obs})
	ctx := context.Background()
	write := func() {
		admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		redisSet(t, admin, "sf_skilled01", []byte("alive"), time.Hour)
	}
	write()
	for i := 0; i < 2; i++ {
		if got, err := s.Read(ctx, "killed01"); err != nil || string(got) != "alive" {
			t.Fatalf("Read = %q, %v", got, err)
		}
	}

	srv.Kill()
	// The client-side cache is dropped with the connection, which the
	// client notices a moment after the kill.
	took := waitFor(t, time.Second, "cache dropped", func() bool {
		_, err := s.Read(ctx, "killed01")
		return err != nil
	})
	t.Logf("first failed read %v after the kill", took)
	for i := 0; i < 5; i++ {
		start := time.Now()
		_, err := s.Read(ctx, "killed01")
		took := time.Since(start)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Read while down = %v; want ErrUnavailable", err)
		}
		if took > time.Second {
			t.Fatalf("Read while down took %v", took)
		}
		if i == 0 {
			t.Logf("down: %v after %v", err, took)
		}
	}
	if _, err := s.ReadMany(ctx, []string{"killed01"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadMany while down = %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping while down = %v", err)
	}

	srv.Start()
	restarted := time.Now()
	write() // no persistence: PHP writes the session again
	waitFor(t, 5*time.Second, "recovery", func() bool {
		got, err := s.Read(ctx, "killed01")
		return err == nil && string(got) == "alive"
	})
	t.Logf("recovered %v after the restart", time.Since(restarted))
	if n := obs.count("read unavailable"); n < 5 {
		t.Errorf("observer saw %d unavailable reads", n)
	}
}

// TestRedisStoreOpenedWhileDown: the store can be opened before Redis is
// up and starts answering once it is.
func TestRedisStoreOpenedWhileDown(t *testing.T) {
	srv := testenv.StartRedis(t)
	srv.Kill()
	s := openTestRedis(t, RedisOptions{Addrs: []string{srv.Addr}, LookupTimeout: 300 * time.Millisecond})
	start := time.Now()
	if _, err := s.Read(context.Background(), "early01"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read before Redis is up = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Read took %v", took)
	}
	srv.Start()
	took := waitFor(t, 3*time.Second, "first answer", func() bool {
		_, err := s.Read(context.Background(), "early01")
		return errors.Is(err, ErrNotFound)
	})
	t.Logf("answering %v after Redis came up", took)
}

// TestRedisStoreHung: a server that accepts and never answers makes lookups
// fail with ErrUnavailable at the lookup timeout.
func TestRedisStoreHung(t *testing.T) {
	ln := blackhole(t)
	s := openTestRedis(t, RedisOptions{Addrs: []string{ln}, LookupTimeout: 200 * time.Millisecond})
	for i := 0; i < 2; i++ {
		start := time.Now()
		_, err := s.Read(context.Background(), "hung01")
		if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > time.Second {
			t.Fatalf("Read = %v after %v; want ErrUnavailable within 1s", err, took)
		}
	}
}

// blackhole is a Redis that accepts connections and never answers.
func blackhole(t *testing.T) string { return testenv.Blackhole(t) }

// TestRedisStoreSentinel reads through a Sentinel that monitors a private
// master.
func TestRedisStoreSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	conf := fmt.Sprintf("sentinel monitor wsgatemaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds wsgatemaster 1000\n", master.Port)
	sentinel := testenv.StartRedisConfig(t, conf, "--sentinel")
	admin := redisAdmin(t, master.Addr)
	redisSet(t, admin, "sf_ssentinel01", []byte("via sentinel"), time.Hour)
	s := openTestRedis(t, RedisOptions{Addrs: []string{sentinel.Addr}, Mode: RedisSentinel, MasterName: "wsgatemaster", ClientCache: true, LookupTimeout: 10 * time.Second})
	var got []byte
	var err error
	waitFor(t, 5*time.Second, "read through sentinel", func() bool {
		got, err = s.Read(context.Background(), "sentinel01")
		return err == nil
	})
	if string(got) != "via sentinel" {
		t.Fatalf("Read = %q, %v", got, err)
	}
}

// TestRedisStoreCluster reads, one at a time and in a batch spanning every
// slot owner, from a private three-master cluster.
func TestRedisStoreCluster(t *testing.T) {
	nodes := testenv.StartRedisCluster(t, 3)
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: nodes[:1], DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprintf("cluster%02d", i)
		waitFor(t, 10*time.Second, "SET accepted", func() bool {
			return admin.Do(context.Background(), admin.B().Set().Key("sf_s"+ids[i]).Value("data "+ids[i]).Ex(time.Hour).Build()).Error() == nil
		})
	}
	for _, cache := range []bool{false, true} {
		s := openTestRedis(t, RedisOptions{Addrs: nodes[:1], Mode: RedisCluster, ClientCache: cache, LookupTimeout: 10 * time.Second})
		if got, err := s.Read(context.Background(), ids[7]); err != nil || string(got) != "data "+ids[7] {
			t.Fatalf("Read = %q, %v", got, err)
		}
		res, err := s.ReadMany(context.Background(), append(ids, "clusterMissing"))
		if err != nil {
			t.Fatalf("ReadMany: %v", err)
		}
		for _, id := range ids {
			if string(res[id].Data) != "data "+id {
				t.Fatalf("ReadMany[%s] = %q, %v", id, res[id].Data, res[id].Err)
			}
		}
		if !errors.Is(res["clusterMissing"].Err, ErrNotFound) {
			t.Fatalf("ReadMany missing = %v", res["clusterMissing"].Err)
		}
	}
}

// TestRedisStoreWrongType: a key of another type under the prefix is no
// session (phpredis' GET fails the same way), not a store failure.
func TestRedisStoreWrongType(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_")
	admin := redisAdmin(t, addr, prefix)
	admin.Do(context.Background(), admin.B().Lpush().Key(prefix+"wrongType01").Element("x").Build())
	s := openTestRedis(t, RedisOptions{Addrs: []string{addr}, Prefix: prefix, LookupTimeout: 10 * time.Second})
	if _, err := s.Read(context.Background(), "wrongType01"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read = %v; want ErrNotFound", err)
	}
	res, err := s.ReadMany(context.Background(), []string{"wrongType01"})
	if err != nil || !errors.Is(res["wrongType01"].Err, ErrNotFound) {
		t.Fatalf("ReadMany = %v, %v", res, err)
	}
}

func TestOpenRedisRejectsBadConfig(t *testing.T) {
	a := []string{"127.0.0.1:6379"}
	for _, tt := range []struct {
		name string
		o    RedisOptions
	}{
		{"no address", RedisOptions{}},
		{"address without port", RedisOptions{Addrs: []string{"localhost"}}},
		{"unknown mode", RedisOptions{Addrs: a, Mode: "ring"}},
		{"sentinel without master", RedisOptions{Addrs: a, Mode: RedisSentinel}},
		{"standalone with two addresses", RedisOptions{Addrs: []string{"a:1", "b:2"}}},
		{"cluster with a DB", RedisOptions{Addrs: a, Mode: RedisCluster, DB: 1}},
		{"negative timeout", RedisOptions{Addrs: a, LookupTimeout: -1}},
		{"negative max size", RedisOptions{Addrs: a, MaxSize: -1}},
		{"multiplex too big", RedisOptions{Addrs: a, PipelineMultiplex: 9}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := OpenRedis(tt.o); err == nil {
				s.Close()
				t.Fatalf("OpenRedis(%+v) succeeded", tt.o)
			}
		})
	}
}

// TestStoreBusy: lookups past MaxConcurrent wait BusyWait, then fail with
// ErrBusy (and ErrUnavailable), and the observer hears "busy".
func TestStoreBusy(t *testing.T) {
	l := newLimiter("test", 2, 30*time.Millisecond, nil)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := l.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := l.acquire(ctx)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrUnavailable) || Result(err) != ResultBusy {
		t.Fatalf("third acquire = %v", err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("busy after %v; want no sooner than the 30ms wait", took)
	}
	go func() { time.Sleep(10 * time.Millisecond); l.release() }()
	if err := l.acquire(ctx); err != nil {
		t.Fatalf("acquire after a release = %v", err)
	}

	// Through a real store: MaxConcurrent 1 with one lookup parked in a
	// blackhole.
	obs := &countingObserver{}
	// The parked lookup would hold its slot for the whole LookupTimeout;
	// it is cancelled once the second lookup has been refused, so the
	// check does not depend on how fast this machine is.
	s := openTestRedis(t, RedisOptions{Addrs: []string{blackhole(t)}, LookupTimeout: time.Minute, MaxConcurrent: 1, BusyWait: 20 * time.Millisecond, Observer: obs})
	parkCtx, unpark := context.WithCancel(ctx)
	defer unpark()
	parked := make(chan struct{})
	go func() { defer close(parked); s.Read(parkCtx, "parked01") }()
	for waited := time.Duration(0); len(s.lim.sem) < 1; waited += time.Millisecond {
		select {
		case <-parked:
			t.Fatal("the parked lookup ended before it took its slot")
		case <-time.After(time.Millisecond):
		}
		if waited > 10*time.Second {
			t.Fatal("the parked lookup never took its slot")
		}
	}
	if _, err := s.Read(ctx, "busy01"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Read past the limit = %v; want ErrBusy", err)
	}
	unpark()
	<-parked
	if obs.count("read busy") != 1 {
		t.Errorf("observer: %v", obs.lookups)
	}
}

// TestRedisUnixSocket: a standalone Redis reached through its Unix socket
// (Symfony's redis:///run/redis/redis.sock) serves sessions as over TCP.
func TestRedisUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	srv := testenv.StartRedis(t, "--unixsocket", sock, "--unixsocketperm", "700")
	admin := redisAdmin(t, srv.Addr)
	ctx := context.Background()
	if err := admin.Do(ctx, admin.B().Set().Key("sf_ssock01").Value("a|i:1;").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	s := openTestRedis(t, RedisOptions{Addrs: []string{sock}})
	got, err := s.Read(ctx, "sock01")
	if err != nil || string(got) != "a|i:1;" {
		t.Fatalf("Read through the socket = %q, %v", got, err)
	}
	if _, err := (RedisOptions{Addrs: []string{sock}, Mode: RedisCluster}).WithDefaults(); err == nil {
		t.Error("a socket in cluster mode was accepted")
	}
}
