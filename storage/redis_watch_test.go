package storage

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestRedisWatch: with Watch, a deleted (logout), rewritten or expired
// watched session is reported without any read of it, with the client
// cache off (tracking is on regardless); other sessions under the prefix
// are not.
func TestRedisWatch(t *testing.T) {
	for _, cache := range []bool{false, true} {
		t.Run(map[bool]string{false: "nocache", true: "cache"}[cache], func(t *testing.T) {
			addr := testenv.Redis(t)
			prefix := uniqueName(t, "wsgate_t_") + "sf_s"
			admin := redisAdmin(t, addr, prefix)
			var (
				mu   sync.Mutex
				errs []error
			)
			s := openTestRedis(t, RedisOptions{Addrs: []string{addr}, Prefix: prefix, ClientCache: cache, Watch: true,
				LookupTimeout: 10 * time.Second, OnWatchError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
			// The first tracking connection reports "all": nothing was
			// tracked before it.
			if _, all := nextChange(t, s); !all {
				t.Fatal("first tracking connection did not report all")
			}
			redisSet(t, admin, prefix+"watchA", []byte("a|i:1;"), time.Hour)
			redisSet(t, admin, prefix+"watchB", []byte("a|i:1;"), time.Hour)
			redisSet(t, admin, prefix+"watchC", []byte("a|i:1;"), 300*time.Millisecond)
			s.Watch("watchA", s.Mark())
			s.Watch("watchA", s.Mark()) // nests
			s.Watch("watchC", s.Mark())
			ctx := context.Background()
			if err := admin.Do(ctx, admin.B().Del().Key(prefix+"watchB").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			if err := admin.Do(ctx, admin.B().Del().Key(prefix+"watchA").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			if all := waitChangeOf(t, s, "watchA"); all {
				t.Fatal("reported all, want watchA")
			}
			// Expiry: Redis pushes the key when it expires it.
			if all := waitChangeOf(t, s, "watchC"); all {
				t.Fatal("reported all, want watchC")
			}
			s.Unwatch("watchA")
			redisSet(t, admin, prefix+"watchA", []byte("a|i:2;"), time.Hour) // still watched once
			waitChangeOf(t, s, "watchA")
			s.Unwatch("watchA")
			s.Unwatch("watchC")
			redisSet(t, admin, prefix+"watchA", []byte("a|i:3;"), time.Hour)
			redisSet(t, admin, prefix+"watchD", []byte("a|i:3;"), time.Hour)
			s.Watch("watchD", s.Mark())
			redisSet(t, admin, prefix+"watchD", []byte("a|i:4;"), time.Hour)
			ids, _ := nextChange(t, s)
			if slices.Contains(ids, "watchA") || slices.Contains(ids, "watchB") {
				t.Fatalf("unwatched ids reported: %v", ids)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(errs) > 0 {
				t.Fatalf("watch errors: %v", errs)
			}
		})
	}
}

// TestRedisWatchRecoversAfterKill: the tracking connection killed by the
// server (as a Redis restart would) is set up again, and "all" is reported
// since changes in between are unknown.
func TestRedisWatchRecoversAfterKill(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + "sf_s"
	admin := redisAdmin(t, addr, prefix)
	s := openTestRedis(t, RedisOptions{Addrs: []string{addr}, Prefix: prefix, Watch: true, LookupTimeout: 10 * time.Second})
	nextChange(t, s) // the first "all"
	s.Watch("killA", s.Mark())
	ctx := context.Background()
	// Kill every connection named wsgate that tracks: the store's.
	if err := admin.Do(ctx, admin.B().Arbitrary("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, all := nextChange(t, s); !all {
		t.Fatal("no all after the tracking connection was killed")
	}
	redisSet(t, admin, prefix+"killA", []byte("x"), time.Hour)
	waitChangeOf(t, s, "killA")
}
