package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	gwconfig "github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/phpsession"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// redisTestPrefix connects to the test Redis (skipping without it, failing
// under CI) and returns a client and a key prefix of this test's own. Every
// key under the prefix is deleted when the test ends, and the test fails
// if one is left.
func redisTestPrefix(t *testing.T) (addr string, rdb rueidis.Client, prefix string) {
	t.Helper()
	addr = testenv.Redis(t)
	rdb, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("connecting to redis %s: %v", addr, err)
	}
	prefix = testenv.UniqueName(t, "wsgate-bench-test-") + ":"
	// Registered before any gateway a test starts, so it runs after them.
	t.Cleanup(func() {
		defer rdb.Close()
		ctx := context.Background()
		if keys := scanKeys(t, rdb, prefix); len(keys) > 0 {
			for _, r := range rdb.DoMulti(ctx, delCommands(rdb, keys)...) {
				if err := r.Error(); err != nil {
					t.Errorf("deleting %s*: %v", prefix, err)
				}
			}
		}
		if keys := scanKeys(t, rdb, prefix); len(keys) > 0 {
			t.Errorf("%d keys left in Redis under %s", len(keys), prefix)
		}
	})
	return addr, rdb, prefix
}

// scanKeys lists the keys starting with prefix (SCAN, not KEYS: the server
// may be shared).
func scanKeys(t *testing.T, rdb rueidis.Client, prefix string) []string {
	t.Helper()
	var keys []string
	var cursor uint64
	for {
		e, err := rdb.Do(context.Background(), rdb.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatalf("scanning %s*: %v", prefix, err)
		}
		keys = append(keys, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return keys
		}
	}
}

func delCommands(rdb rueidis.Client, keys []string) rueidis.Commands {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = rdb.B().Del().Key(k).Build()
	}
	return cmds
}

// TestSeedRedisSessions seeds sessions into the real Redis under a prefix
// of its own and checks that each key holds exactly the bytes the files
// seeding writes for the same client, with the asked TTL, that nothing else
// was written, that wsgate's own redis store reads them under that prefix,
// and that each is an authenticated session of user bench<i>.
func TestSeedRedisSessions(t *testing.T) {
	addr, rdb, prefix := redisTestPrefix(t)
	ctx := context.Background()
	// Crosses the batch size twice, with a partial last batch.
	const n = 2*redisSeedBatch + 17
	const ttl = 10 * time.Minute

	// The key of another client, not to be touched, and one seeded key
	// already there with other content, to be overwritten.
	other := prefix + "other"
	for _, kv := range [][2]string{{other, "x"}, {prefix + sessionID(5), "stale"}} {
		if err := rdb.Do(ctx, rdb.B().Set().Key(kv[0]).Value(kv[1]).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := seedRedisSessions(ctx, addr, prefix, n, ttl); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d sessions in %s", n, time.Since(start))

	dir := t.TempDir()
	if err := seedSessions(dir, n); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = sessionID(i)
		keys[i] = prefix + ids[i]
	}
	vals, err := rdb.Do(ctx, rdb.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil || len(vals) != n {
		t.Fatalf("MGET: %d values, %v", len(vals), err)
	}
	ttlCmds := make(rueidis.Commands, n)
	for i, k := range keys {
		ttlCmds[i] = rdb.B().Ttl().Key(k).Build()
	}
	ttls := rdb.DoMulti(ctx, ttlCmds...)
	for i := range n {
		file, err := os.ReadFile(filepath.Join(dir, "sess_"+ids[i]))
		if err != nil {
			t.Fatal(err)
		}
		got, err := vals[i].ToString()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if got != string(file) {
			t.Fatalf("session %d: Redis holds %d bytes, the file %d, first difference at byte %d", i, len(got), len(file), firstDiff(got, string(file)))
		}
		if s, err := ttls[i].AsInt64(); err != nil || s <= 0 || s > int64(ttl/time.Second) {
			t.Fatalf("session %d: TTL %d s (%v), want 1..%d", i, s, err, int64(ttl/time.Second))
		}
	}
	if v, err := rdb.Do(ctx, rdb.B().Get().Key(other).Build()).ToString(); err != nil || v != "x" {
		t.Errorf("another key under the prefix: %q, %v", v, err)
	}
	if got := len(scanKeys(t, rdb, prefix)); got != n+1 {
		t.Errorf("%d keys under the prefix, want the %d sessions and the other key", got, n)
	}

	// What the gateway reads: its redis store under the same prefix, and
	// the user each session authenticates.
	store, err := storage.OpenRedis(storage.RedisOptions{Addrs: []string{addr}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	read, err := store.ReadMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := phpsession.NewReader(phpsession.Options{Firewalls: []string{"main"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		r := read[id]
		if r.Err != nil {
			t.Fatalf("store read of session %d: %v", i, r.Err)
		}
		res, err := reader.Read(r.Data)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if fw := res.Firewalls[0]; !fw.Authenticated || fw.Token == nil || fw.Token.UserIdentifier != userName(i) {
			t.Fatalf("session %d: firewall main %+v, want authenticated as %s", i, fw, userName(i))
		}
	}
}

// firstDiff is the index of the first byte where a and b differ.
func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// TestSeedRedisUnreachable: a Redis that does not answer is an error
// within the dial timeout, not a hang.
func TestSeedRedisUnreachable(t *testing.T) {
	addr := freePort(t) // closed again: nothing listens there
	start := time.Now()
	if err := seedRedisSessions(context.Background(), addr, "p:", 3, time.Minute); err == nil {
		t.Fatal("seeding into nothing succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestRedisPrefixDefault(t *testing.T) {
	if defaultRedisPrefix != storage.DefaultRedisPrefix {
		t.Errorf("--session-redis-prefix defaults to %q, the redis store to %q", defaultRedisPrefix, storage.DefaultRedisPrefix)
	}
	if d := gwconfig.Default().Session.Redis.Prefix; d != defaultRedisPrefix {
		t.Errorf("session.redis.prefix defaults to %q, the tool to %q", d, defaultRedisPrefix)
	}
}

func TestSessionRedisFlags(t *testing.T) {
	base := []string{"--scenario", "connect"}
	for _, tc := range []struct {
		args    []string
		errLike string // "" = accepted
		prefix  string
		ttl     time.Duration
	}{
		{args: nil, prefix: ""},
		{args: []string{"--session-redis", "127.0.0.1:6379"}, prefix: "sf_s", ttl: defaultRedisTTL},
		{args: []string{"--session-redis", "localhost:6380", "--session-redis-prefix", "run1:", "--session-redis-ttl", "90s"}, prefix: "run1:", ttl: 90 * time.Second},
		{args: []string{"--session-redis", "10.0.0.1:6379"}, errLike: "loopback"},
		{args: []string{"--session-redis", "redis.example:6379"}, errLike: "loopback"},
		{args: []string{"--session-redis", "127.0.0.1"}, errLike: "host:port"},
		{args: []string{"--session-redis", "127.0.0.1:0"}, errLike: "port"},
		{args: []string{"--session-redis", "127.0.0.1:6379", "--session-dir", "/tmp/x"}, errLike: "not both"},
		{args: []string{"--session-redis", "127.0.0.1:6379", "--session-redis-prefix", ""}, errLike: "prefix"},
		{args: []string{"--session-redis", "127.0.0.1:6379", "--session-redis-prefix", "a*"}, errLike: "glob"},
		{args: []string{"--session-redis", "127.0.0.1:6379", "--session-redis-ttl", "1500ms"}, errLike: "whole seconds"},
		{args: []string{"--session-redis", "127.0.0.1:6379", "--session-redis-ttl", "0s"}, errLike: "whole seconds"},
	} {
		c, err := parseFlags(append(append([]string{}, base...), tc.args...), &bytes.Buffer{})
		switch {
		case tc.errLike != "":
			if err == nil || !strings.Contains(err.Error(), tc.errLike) {
				t.Errorf("%q: error %v, want one with %q", tc.args, err, tc.errLike)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case c.RedisPrefix != tc.prefix || (c.SessionRedis != "" && c.RedisTTL != tc.ttl):
			t.Errorf("%q: prefix %q ttl %s, want %q %s", tc.args, c.RedisPrefix, c.RedisTTL, tc.prefix, tc.ttl)
		}
	}
}

// TestBenchRedisConfig loads testdata/bench-redis.yaml as the gateway does:
// the Redis store with the client cache, its address and prefix from the
// environment as floor-ratios.sh sets them, and otherwise what bench.yaml
// has (routes, plugins, limits), so the two stores are compared on the
// same gateway.
func TestBenchRedisConfig(t *testing.T) {
	files, err := gwconfig.Load("testdata/bench.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"WSGATE_SESSION_REDIS_ADDRS=127.0.0.1:6390", "WSGATE_SESSION_REDIS_PREFIX=run1:"}
	redis, err := gwconfig.Load("testdata/bench-redis.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	r := redis.Session.Redis
	if redis.Session.Store != gwconfig.StoreRedis || !r.ClientCache || !reflect.DeepEqual(r.Addrs, []string{"127.0.0.1:6390"}) || r.Prefix != "run1:" {
		t.Errorf("session %+v", redis.Session)
	}
	if plain, err := gwconfig.Load("testdata/bench-redis.yaml", nil); err != nil || plain.Session.Redis.Prefix != defaultRedisPrefix {
		t.Errorf("prefix without the environment: %q, %v", plain.Session.Redis.Prefix, err)
	}
	// Everything but the session store is bench.yaml's.
	redis.Session.Store, redis.Session.Redis = files.Session.Store, files.Session.Redis
	redis.Session.Files = files.Session.Files
	a, errA := json.Marshal(files)
	b, errB := json.Marshal(redis)
	if errA != nil || errB != nil || len(a) < 100 {
		t.Fatalf("marshalling the configurations: %v, %v, %d bytes", errA, errB, len(a))
	}
	if !bytes.Equal(a, b) {
		t.Errorf("bench-redis.yaml differs from bench.yaml beyond the session store:\n%s\n%s", a, b)
	}
}

// TestConnectOnRedisStore runs a small connect scenario against a gateway
// reading the sessions the tool seeded into Redis: every handshake must be
// authenticated (one call each), through the same configuration as
// testdata/bench-redis.yaml.
func TestConnectOnRedisStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway")
	}
	addr, _, prefix := redisTestPrefix(t)
	dir := t.TempDir()
	bin, plugin := buildGateway(t, dir)
	wsAddr, metricsAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`listen: %q
allow_anonymous: false
session:
  store: redis
  redis: {addrs: [%q], prefix: %q, client_cache: true}
metrics: {listen: %q}
log: {level: warn}
plugins: [%q]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
`, wsAddr, addr, prefix, metricsAddr, plugin)
	gw := startGateway(t, bin, filepath.Join(dir, "wsgate.yaml"), cfg, metricsAddr)

	const conns, ids = 40, 10 // each session read 4 times: the cache is used
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, []string{"--target", "ws://" + wsAddr + "/", "--metrics", "http://" + metricsAddr + "/metrics",
		"--gateway-pid", fmt.Sprint(gw.Process.Pid), "--session-redis", addr, "--session-redis-prefix", prefix,
		"--sources", "127.0.0.1,127.0.0.2", "--json", "--scenario", "connect", "--conns", fmt.Sprint(conns),
		"--session-ids", fmt.Sprint(ids), "--concurrency", "4", "--duration", "5s", "--verify-auth"}, &out, &errOut)
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, output %q, stderr %s: %v", code, out.String(), errOut.String(), err)
	}
	if code != 0 || rep.ErrorsTotal != 0 {
		t.Fatalf("exit %d, errors %v, stderr %s", code, rep.Errors, errOut.String())
	}
	if r := rep.Results; r.Handshake.Count != conns || r.CPUPerHandshakeUs == nil {
		t.Errorf("handshake figures: %+v", r)
	}
	if rep.Params.SessionRedis != addr || rep.Params.RedisPrefix != prefix {
		t.Errorf("report params: session_redis %q prefix %q", rep.Params.SessionRedis, rep.Params.RedisPrefix)
	}
	// 40 handshakes on 10 sessions: most lookups are client-cache hits,
	// which is what the "cached Redis store" figure measures.
	hits, misses := metricValue(t, metricsAddr, `wsgate_session_store_cache_hits_total{store="redis"}`),
		metricValue(t, metricsAddr, `wsgate_session_store_cache_misses_total{store="redis"}`)
	t.Logf("session cache: %v hits, %v misses", hits, misses)
	if hits < conns/2 || hits+misses < conns {
		t.Errorf("session cache: %v hits, %v misses for %d handshakes on %d sessions", hits, misses, conns, ids)
	}
}

// metricValue is the value of the sample named name (with its labels, as
// the text format writes them) on the gateway's /metrics; 0 if absent.
func metricValue(t *testing.T, metricsAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
