package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/wsgate/wsgate/test/testenv"
)

// memcachedAdmin is a plain client the tests write through, as PHP would;
// it deletes every key it set when the test ends (memcached cannot list
// keys by prefix).
type memcachedAdmin struct {
	*memcache.Client
	mu   sync.Mutex
	keys map[string]bool
}

func newMemcachedAdmin(t testing.TB, addr string) *memcachedAdmin {
	t.Helper()
	a := &memcachedAdmin{Client: memcache.New(addr), keys: map[string]bool{}}
	a.Timeout = 5 * time.Second
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		for k := range a.keys {
			if err := a.Delete(k); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
				t.Errorf("delete %s: %v", k, err)
			}
		}
		a.Close()
	})
	return a
}

// set stores an item as PHP does: key, value, flags, expiration in seconds.
func (a *memcachedAdmin) set(t testing.TB, key string, value []byte, flags uint32, ttl time.Duration) {
	t.Helper()
	a.track(key)
	if err := a.Set(&memcache.Item{Key: key, Value: value, Flags: flags, Expiration: int32(ttl / time.Second)}); err != nil {
		t.Fatalf("set %s: %v", key, err)
	}
}

// track has key deleted when the test ends.
func (a *memcachedAdmin) track(key string) {
	a.mu.Lock()
	a.keys[key] = true
	a.mu.Unlock()
}

// openTestMemcached opens a MemcachedStore closed when the test ends.
func openTestMemcached(t testing.TB, o MemcachedOptions) *MemcachedStore {
	t.Helper()
	s, err := OpenMemcached(o)
	if err != nil {
		t.Fatalf("OpenMemcached: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newMemcachedFixture runs the contract on keys under a unique prefix ending
// in suffix (Symfony's or php-memcached's default).
func newMemcachedFixture(suffix string) func(t *testing.T) sessionFixture {
	return func(t *testing.T) sessionFixture {
		t.Helper()
		addr := testenv.Memcached(t)
		prefix := uniqueName(t, "wsgate_t_") + suffix
		admin := newMemcachedAdmin(t, addr)
		const maxLifetime = 1440 * time.Second
		// A generous timeout: the contract is about answers, and -race on
		// a loaded machine is slow.
		s := openTestMemcached(t, MemcachedOptions{Addrs: []string{addr}, Prefix: prefix, MaxSize: 1024, LookupTimeout: 10 * time.Second})
		return sessionFixture{
			store:       s,
			maxLifetime: maxLifetime,
			maxSize:     1024,
			ttlExpiry:   true,
			put: func(t *testing.T, id string, data []byte, age time.Duration) {
				t.Helper()
				if left := maxLifetime - age; left > 0 {
					admin.set(t, prefix+id, data, 0, left)
				}
			},
		}
	}
}

func TestMemcachedStoreContract(t *testing.T) {
	for _, suffix := range []string{DefaultMemcachedPrefix, PHPMemcachedPrefix} {
		t.Run(suffix, func(t *testing.T) {
			testSessionStoreContract(t, newMemcachedFixture(suffix))
		})
	}
}

// phpMemcachedSession runs test/php/write-session.php with a memcached store
// and returns the session id and key; without php8.2-memcached t is skipped
// (failed under CI).
func phpMemcachedSession(t testing.TB, in map[string]any) (id, key string) {
	t.Helper()
	php := testenv.PHP(t)
	if err := exec.Command(php, "-r", `exit(extension_loaded("memcached") ? 0 : 1);`).Run(); err != nil {
		testenv.Missing(t, "php8.2-memcached", err)
	}
	return writeSessionPHPKey(t, in)
}

// phpMemcachedCases are the sessions TestMemcachedStorePHPWritten has real
// PHP write, and the flags php-memcached gave them: small ones raw, large
// ones (many attributes: over memcached.compression_threshold, 2000 bytes)
// compressed with each algorithm Debian's php-memcached has. A session over
// 64 KiB is FastLZ's level 2. The native handler never compresses.
var phpMemcachedCases = []struct {
	name      string
	in        map[string]any
	wantFlags uint32
}{
	{"symfony-small", map[string]any{"store": "memcached"}, 0},
	{"symfony-fastlz", map[string]any{"store": "memcached", "compression_type": "fastlz", "attributes_after": bigAttributes(60)}, memcCompressed | memcFastLZ},
	{"symfony-fastlz-level2", map[string]any{"store": "memcached", "compression_type": "fastlz", "attributes_after": bigAttributes(1500)}, memcCompressed | memcFastLZ},
	{"symfony-zlib", map[string]any{"store": "memcached", "compression_type": "zlib", "attributes_after": bigAttributes(60)}, memcCompressed | memcZlib},
	{"symfony-uncompressed", map[string]any{"store": "memcached", "compression": false, "attributes_after": bigAttributes(60)}, 0},
	{"native-small", map[string]any{"store": "memcached_native"}, 0},
	{"native-large", map[string]any{"store": "memcached_native", "attributes_after": bigAttributes(60)}, 0},
}

// bigAttributes are n attributes of a shopping cart, ~45 bytes each
// serialized: compressible, as real sessions are.
func bigAttributes(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("cart_item_%04d", i)] = fmt.Sprintf("sku-%06d qty=%d", i*7919%1000000, i%9+1)
	}
	return m
}

// TestMemcachedStorePHPWritten reads sessions written by real PHP through
// Symfony's MemcachedSessionHandler (raw, and compressed with FastLZ levels
// 1 and 2 and zlib by php-memcached) and through php-memcached's native
// session handler, under their default key prefixes, and checks the flags
// PHP gave the items.
func TestMemcachedStorePHPWritten(t *testing.T) {
	addr := testenv.Memcached(t)
	host, port, _ := net.SplitHostPort(addr)
	admin := newMemcachedAdmin(t, addr)
	for _, tc := range phpMemcachedCases {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]any{"host": host, "port": port, "user": "dave", "roles": []string{"ROLE_USER"}, "ttl": 600}
			for k, v := range tc.in {
				in[k] = v
			}
			prefix := DefaultMemcachedPrefix
			if in["store"] == "memcached_native" {
				prefix = PHPMemcachedPrefix
			}
			id, key := phpMemcachedSession(t, in)
			admin.track(key)
			admin.track("lock." + key) // the native handler's lock, should it linger
			if key != prefix+id {
				t.Fatalf("PHP wrote key %q, want prefix %q", key, prefix)
			}
			it, err := admin.Get(key)
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			t.Logf("%s: flags %#x, %d bytes stored", tc.name, it.Flags, len(it.Value))
			if it.Flags != tc.wantFlags {
				t.Errorf("flags %#x, want %#x", it.Flags, tc.wantFlags)
			}
			s := openTestMemcached(t, MemcachedOptions{Addrs: []string{addr}, Prefix: prefix, LookupTimeout: 10 * time.Second})
			data, err := s.Read(context.Background(), id)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.HasPrefix(data, []byte("_sf2_attributes|")) || !bytes.Contains(data, []byte(`_security_main`)) || !bytes.Contains(data, []byte(`"dave"`)) {
				t.Fatalf("Read = %.200q...; want dave's Symfony session", data)
			}
			if tc.wantFlags&memcCompressed != 0 && (len(data) <= len(it.Value) || !bytes.Contains(data, []byte("cart_item_0059"))) {
				t.Errorf("decompressed %d bytes from %d: want the whole, longer session", len(data), len(it.Value))
			}
			res, err := s.ReadMany(context.Background(), []string{id})
			if err != nil || !bytes.Equal(res[id].Data, data) {
				t.Errorf("ReadMany = %v, %v; want what Read returned", res[id].Err, err)
			}
		})
	}
}

// TestMemcachedStoreOutage: the first lookup after memcached restarted
// succeeds, though every pooled connection died with the old process; with
// memcached down the store answers ErrUnavailable at once (connection
// refused, no wait for the timeout), and recovers when it is back.
func TestMemcachedStoreOutage(t *testing.T) {
	srv := testenv.StartMemcached(t)
	obs := &countingObserver{}
	s := openTestMemcached(t, MemcachedOptions{Addrs: []string{srv.Addr}, LookupTimeout: 2 * time.Second, Observer: obs})
	ctx := context.Background()
	put := func() {
		t.Helper()
		// A client of its own each time: a pooled connection would be
		// stale after a restart.
		admin := memcache.New(srv.Addr)
		defer admin.Close()
		if err := admin.Set(&memcache.Item{Key: DefaultMemcachedPrefix + "outage01", Value: []byte("a|i:1;")}); err != nil {
			t.Fatal(err)
		}
	}
	put()
	// Several connections in the pool, all to be killed with the server.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Read(ctx, "outage01"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	// A restart between two lookups: the pooled connections are dead, and
	// the next lookup must not fail for it.
	srv.Kill()
	srv.Start()
	put()
	if got, err := s.Read(ctx, "outage01"); err != nil || string(got) != "a|i:1;" {
		t.Fatalf("first Read after a restart = %q, %v; want the session", got, err)
	}

	srv.Kill()
	for _, op := range []string{"read", "read_many", "ping"} {
		start := time.Now()
		var err error
		switch op {
		case "read":
			_, err = s.Read(ctx, "outage01")
		case "read_many":
			_, err = s.ReadMany(ctx, []string{"outage01"})
		case "ping":
			err = s.Ping(ctx)
		}
		took := time.Since(start)
		if !errors.Is(err, ErrUnavailable) || Result(err) != ResultUnavailable {
			t.Fatalf("%s while down = %v (%s); want ErrUnavailable", op, err, Result(err))
		}
		if took > 500*time.Millisecond {
			t.Errorf("%s while down took %v: want a fast failure, not the timeout", op, took)
		}
		if strings.Contains(err.Error(), "outage01") {
			t.Errorf("error %q leaks the session id", err)
		}
	}
	if obs.count("read unavailable") == 0 || obs.count("ping unavailable") == 0 {
		t.Errorf("observer saw %v; want unavailable lookups", obs.lookups)
	}

	srv.Start()
	put()
	back := time.Now()
	if got, err := s.Read(ctx, "outage01"); err != nil || string(got) != "a|i:1;" {
		t.Fatalf("first Read after restart = %q, %v; want the session", got, err)
	}
	t.Logf("recovered %v after memcached came back", time.Since(back))
	if res, err := s.ReadMany(ctx, []string{"outage01"}); err != nil || string(res["outage01"].Data) != "a|i:1;" {
		t.Fatalf("ReadMany after restart = %v, %v", res, err)
	}
}

// TestMemcachedStoreOpenedWhileDown: a store needs no server to open, and
// works once one answers.
func TestMemcachedStoreOpenedWhileDown(t *testing.T) {
	srv := testenv.StartMemcached(t)
	srv.Kill()
	s := openTestMemcached(t, MemcachedOptions{Addrs: []string{srv.Addr}, LookupTimeout: 2 * time.Second})
	if _, err := s.Read(context.Background(), "down01"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read while down = %v; want ErrUnavailable", err)
	}
	srv.Start()
	if _, err := s.Read(context.Background(), "down01"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read after start = %v; want ErrNotFound", err)
	}
}

// TestMemcachedStoreHung: a server that accepts and never answers costs a
// lookup its timeout (or the caller's shorter deadline), reported as
// "timeout".
func TestMemcachedStoreHung(t *testing.T) {
	addr := testenv.Blackhole(t)
	s := openTestMemcached(t, MemcachedOptions{Addrs: []string{addr}, LookupTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := s.Read(context.Background(), "hung01")
	if !errors.Is(err, ErrUnavailable) || Result(err) != ResultTimeout {
		t.Fatalf("Read = %v (%s); want ErrUnavailable, timeout", err, Result(err))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Read took %v with a 200ms lookup timeout", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := s.ReadMany(ctx, []string{"hung01"}); Result(err) != ResultTimeout {
		t.Fatalf("ReadMany = %v; want timeout", err)
	}
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Errorf("ReadMany took %v with a 50ms deadline", took)
	}
}

// TestMemcachedStoreValues: what the store makes of items PHP would not
// read back as a session string.
func TestMemcachedStoreValues(t *testing.T) {
	addr := testenv.Memcached(t)
	prefix := uniqueName(t, "wsgate_t_")
	admin := newMemcachedAdmin(t, addr)
	s := openTestMemcached(t, MemcachedOptions{Addrs: []string{addr}, Prefix: prefix, MaxSize: 64, LookupTimeout: 10 * time.Second})
	for _, tc := range []struct {
		name    string
		flags   uint32
		value   []byte
		wantErr error
	}{
		{"php-memcached integer", 1, []byte("42"), ErrNotFound},
		{"php-memcached serialized array", 4, []byte("a:0:{}"), ErrNotFound},
		{"application flags are ignored", 0xabcd0000, []byte("a|i:1;"), nil},
		{"compressed, no length", memcCompressed | memcZlib, []byte{1}, ErrNotFound},
		{"compressed, garbage", memcCompressed | memcZlib, []byte{5, 0, 0, 0, 1, 2, 3}, ErrNotFound},
		{"compressed, declares more than MaxSize", memcCompressed | memcZlib, []byte{65, 0, 0, 0, 1, 2, 3}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), ",", "")
			admin.set(t, prefix+id, tc.value, tc.flags, time.Minute)
			got, err := s.Read(context.Background(), id)
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, tc.value) {
					t.Fatalf("Read = %q, %v; want %q", got, err, tc.value)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || got != nil {
				t.Fatalf("Read = %q, %v; want %v", got, err, tc.wantErr)
			}
		})
	}
	t.Run("prefix and id longer than a memcached key", func(t *testing.T) {
		id := strings.Repeat("k", memcachedMaxKey)
		if _, err := s.Read(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Read = %v; want ErrNotFound without asking", err)
		}
		res, err := s.ReadMany(context.Background(), []string{id})
		if err != nil || !errors.Is(res[id].Err, ErrNotFound) {
			t.Fatalf("ReadMany = %v, %v; want ErrNotFound", res, err)
		}
	})
}

func TestOpenMemcachedRejectsBadConfig(t *testing.T) {
	for _, o := range []MemcachedOptions{
		{},
		{Addrs: []string{"a:1", "b:1"}},
		{Addrs: []string{"nohost"}},
		{Addrs: []string{"a:1"}, Prefix: "has space"},
		{Addrs: []string{"a:1"}, Prefix: strings.Repeat("p", memcachedMaxKey)},
		{Addrs: []string{"a:1"}, MaxSize: -1},
		{Addrs: []string{"a:1"}, LookupTimeout: -1},
	} {
		if _, err := OpenMemcached(o); err == nil {
			t.Errorf("OpenMemcached(%+v) accepted", o)
		}
	}
}
