package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
	"github.com/wsgate/wsgate/wamp/handler"
)

// testClientStorageContract is what every ClientStorage must do.
func testClientStorageContract(t *testing.T, newStorage func(t *testing.T) ClientStorage) {
	ctx := context.Background()
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	alice1 := ClientEntry{ConnID: "c1", WAMPSessionID: "w1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER"}}, ConnectedAt: t0, Extra: json.RawMessage(`{"plan":"gold"}`)}
	alice2 := ClientEntry{ConnID: "c2", WAMPSessionID: "w2", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER", "ROLE_EDITOR"}}, ConnectedAt: t0.Add(time.Second)}
	bob := ClientEntry{ConnID: "c3", WAMPSessionID: "w3", Identity: handler.Identity{UserIdentifier: "bob", Firewall: "admin", Roles: []string{"ROLE_ADMIN"}}, ConnectedAt: t0.Add(2 * time.Second)}
	anon := ClientEntry{ConnID: "c4", WAMPSessionID: "w4", Identity: handler.Identity{UserIdentifier: "anon-4", Anonymous: true, Roles: []string{"ROLE_USER"}}, ConnectedAt: t0.Add(3 * time.Second)}

	s := newStorage(t)
	for _, e := range []ClientEntry{bob, alice2, anon, alice1} {
		if err := s.Add(ctx, e); err != nil {
			t.Fatalf("Add(%s): %v", e.ConnID, err)
		}
	}
	check := func(t *testing.T, what string, got []ClientEntry, err error, want ...string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ids := connIDs(got); !slices.Equal(ids, want) && !(len(ids) == 0 && len(want) == 0) {
			t.Errorf("%s = %v, want %v", what, ids, want)
		}
	}
	t.Run("lookups", func(t *testing.T) {
		got, err := s.FindAllByUsername(ctx, "alice")
		check(t, "FindAllByUsername(alice)", got, err, "c1", "c2")
		got, err = s.FindByUsername(ctx, "alice")
		check(t, "FindByUsername(alice)", got, err, "c1")
		if len(got) == 1 && (string(got[0].Extra) != `{"plan":"gold"}` || got[0].WAMPSessionID != "w1" || !got[0].ConnectedAt.Equal(t0)) {
			t.Errorf("FindByUsername(alice) lost fields: %+v", got[0])
		}
		got, err = s.FindAllByUsername(ctx, "anon-4")
		check(t, "FindAllByUsername(anon-4)", got, err)
		got, err = s.Get(ctx, "c4")
		check(t, "Get(c4)", got, err, "c4")
		if len(got) == 1 && (got[0].WAMPSessionID != "w4" || !got[0].Anonymous || !got[0].ConnectedAt.Equal(t0.Add(3*time.Second))) {
			t.Errorf("Get(c4) lost fields: %+v", got[0])
		}
		got, err = s.Get(ctx, "c2")
		check(t, "Get(c2)", got, err, "c2")
		got, err = s.Get(ctx, "c")
		check(t, "Get(c)", got, err)
		got, err = s.Get(ctx, "nobody")
		check(t, "Get(nobody)", got, err)
		got, err = s.FindAllByUsername(ctx, "nobody")
		check(t, "FindAllByUsername(nobody)", got, err)
		got, err = s.FindByRoles(ctx, []string{"ROLE_EDITOR", "ROLE_ADMIN"})
		check(t, "FindByRoles(EDITOR, ADMIN)", got, err, "c2", "c3")
		got, err = s.FindByRoles(ctx, []string{"ROLE_USER"})
		check(t, "FindByRoles(USER)", got, err, "c1", "c2")
		got, err = s.FindByRoles(ctx, nil)
		check(t, "FindByRoles(none)", got, err)
		got, err = s.GetAll(ctx, false)
		check(t, "GetAll(false)", got, err, "c1", "c2", "c3")
		got, err = s.GetAll(ctx, true)
		check(t, "GetAll(true)", got, err, "c1", "c2", "c3", "c4")
	})
	t.Run("entries round-trip", func(t *testing.T) {
		got, err := s.FindByUsername(ctx, "bob")
		if err != nil || len(got) != 1 {
			t.Fatalf("FindByUsername(bob) = %v, %v", got, err)
		}
		e := got[0]
		e.Node = ""
		if e.ConnID != bob.ConnID || e.WAMPSessionID != bob.WAMPSessionID || e.Firewall != bob.Firewall ||
			!slices.Equal(e.Roles, bob.Roles) || !e.ConnectedAt.Equal(bob.ConnectedAt) || e.Anonymous {
			t.Errorf("entry = %+v, want %+v", e, bob)
		}
		got[0].Roles[0] = "MUTATED"
		again, _ := s.FindByUsername(ctx, "bob")
		if again[0].Roles[0] != "ROLE_ADMIN" {
			t.Errorf("stored entry changed through a returned copy")
		}
	})
	t.Run("replace and remove", func(t *testing.T) {
		// c1 becomes bob's: alice keeps c2 only.
		if err := s.Add(ctx, ClientEntry{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "bob", Roles: []string{"ROLE_USER"}}, ConnectedAt: t0}); err != nil {
			t.Fatal(err)
		}
		got, err := s.FindAllByUsername(ctx, "alice")
		check(t, "alice after re-add", got, err, "c2")
		got, err = s.FindAllByUsername(ctx, "bob")
		check(t, "bob after re-add", got, err, "c1", "c3")
		for _, id := range []string{"c1", "c2", "nope", "c2"} {
			if err := s.Remove(ctx, id); err != nil {
				t.Fatalf("Remove(%s): %v", id, err)
			}
		}
		got, err = s.FindAllByUsername(ctx, "alice")
		check(t, "alice after remove", got, err)
		got, err = s.GetAll(ctx, true)
		check(t, "GetAll after remove", got, err, "c3", "c4")
	})
	t.Run("remove many", func(t *testing.T) {
		for _, e := range []ClientEntry{alice1, alice2} {
			if err := s.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		// Unknown and repeated ids are ignored; an anonymous entry goes too.
		if err := s.RemoveMany(ctx, []string{"c1", "nope", "c4", "c1"}); err != nil {
			t.Fatalf("RemoveMany: %v", err)
		}
		got, err := s.GetAll(ctx, true)
		check(t, "GetAll after RemoveMany", got, err, "c2", "c3")
		got, err = s.FindAllByUsername(ctx, "alice")
		check(t, "alice after RemoveMany", got, err, "c2")
		if err := s.RemoveMany(ctx, nil); err != nil {
			t.Errorf("RemoveMany(nil) = %v", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.RemoveMany(cctx, []string{"c2"}); !errors.Is(err, context.Canceled) {
			t.Errorf("RemoveMany with canceled context = %v", err)
		}
		if err := s.RemoveMany(ctx, []string{"c2"}); err != nil {
			t.Fatal(err)
		}
		got, err = s.GetAll(ctx, true)
		check(t, "GetAll after the second RemoveMany", got, err, "c3")
		if err := s.Add(ctx, anon); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if err := s.Add(ctx, ClientEntry{Identity: handler.Identity{UserIdentifier: "x"}}); !errors.Is(err, ErrInvalidClient) {
			t.Errorf("Add without ConnID = %v", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.GetAll(cctx, true); !errors.Is(err, context.Canceled) {
			t.Errorf("GetAll with canceled context = %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Add(ctx, alice1); !errors.Is(err, ErrClosed) {
			t.Errorf("Add after Close = %v", err)
		}
		if _, err := s.Get(ctx, "c1"); !errors.Is(err, ErrClosed) {
			t.Errorf("Get after Close: %v", err)
		}
		if _, err := s.FindAllByUsername(ctx, "bob"); !errors.Is(err, ErrClosed) {
			t.Errorf("FindAllByUsername after Close = %v", err)
		}
		if _, err := s.FindByRoles(ctx, []string{"ROLE_ADMIN"}); !errors.Is(err, ErrClosed) {
			t.Errorf("FindByRoles after Close = %v", err)
		}
		if _, err := s.GetAll(ctx, true); !errors.Is(err, ErrClosed) {
			t.Errorf("GetAll after Close = %v", err)
		}
		if err := s.Remove(ctx, "c3"); !errors.Is(err, ErrClosed) {
			t.Errorf("Remove after Close = %v", err)
		}
		if err := s.RemoveMany(ctx, []string{"c3"}); !errors.Is(err, ErrClosed) {
			t.Errorf("RemoveMany after Close = %v", err)
		}
	})
}

func TestClientStorageContract(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		testClientStorageContract(t, func(t *testing.T) ClientStorage { return NewMemoryClientStorage() })
	})
	t.Run("index", func(t *testing.T) {
		testClientStorageContract(t, func(t *testing.T) ClientStorage { return newIndexBacked() })
	})
	t.Run("redis", func(t *testing.T) {
		testClientStorageContract(t, func(t *testing.T) ClientStorage {
			addr := testenv.Redis(t)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			redisAdmin(t, addr, prefix)
			return newTestRedisClients(t, addr, prefix, "node1", time.Minute)
		})
	})
}

// testCheckInterval keeps the tests' young-epoch wait short (two
// intervals) while a loaded machine still beats well within the heartbeat
// TTL (three intervals).
const testCheckInterval = 200 * time.Millisecond

func newTestRedisClients(t *testing.T, addr, prefix, node string, ttl time.Duration) *RedisClientStorage {
	t.Helper()
	s, err := NewRedisClientStorage(RedisClientStorageOptions{Redis: RedisOptions{Addrs: []string{addr}}, Prefix: prefix, TTL: ttl, NodeID: node, CheckInterval: testCheckInterval})
	if err != nil {
		t.Fatalf("NewRedisClientStorage: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	waitComplete(t, s)
	return s
}

// waitComplete waits (bounded) for s's first registration.
func waitComplete(t *testing.T, s *RedisClientStorage) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitComplete(ctx); err != nil {
		t.Fatalf("WaitComplete: %v", err)
	}
}

// TestRedisClientStorageReplicas: two replicas with colliding ConnIDs share
// the registry without clobbering each other; a replica that dies (stops
// refreshing without cleaning up) lapses after the TTL, while a live one is
// kept by its refresher; a clean Close removes a replica's entries at once.
func TestRedisClientStorageReplicas(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	admin := redisAdmin(t, addr, prefix)
	ctx := context.Background()
	const ttl = 2 * time.Second
	a := newTestRedisClients(t, addr, prefix, "nodeA", ttl)
	b := newTestRedisClients(t, addr, prefix, "nodeB", ttl)
	c := newTestRedisClients(t, addr, prefix, "nodeC", ttl)
	now := time.Now()
	for i, s := range []*RedisClientStorage{a, b, c} {
		// The same ConnID on every replica.
		if err := s.Add(ctx, ClientEntry{ConnID: "1", Identity: handler.Identity{UserIdentifier: "erin", Roles: []string{"ROLE_USER"}}, ConnectedAt: now.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	nodes := func(s ClientStorage) []string {
		t.Helper()
		es, err := s.FindAllByUsername(ctx, "erin")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Node)
		}
		return out
	}
	if got := nodes(b); !slices.Equal(got, []string{"nodeA", "nodeB", "nodeC"}) {
		t.Fatalf("FindAllByUsername on B sees %v", got)
	}

	a.abandon()                       // replica A dies
	if err := c.Close(); err != nil { // replica C shuts down cleanly
		t.Fatal(err)
	}
	if got := nodes(b); !slices.Equal(got, []string{"nodeA", "nodeB"}) {
		t.Fatalf("after C's Close, B sees %v", got)
	}
	// Past A's TTL: only B, kept alive by its refresher (every TTL/3).
	time.Sleep(ttl + 500*time.Millisecond)
	if got := nodes(b); !slices.Equal(got, []string{"nodeB"}) {
		t.Fatalf("after A died, B sees %v", got)
	}
	// A's members were pruned from the indexes by that lookup.
	n, err := admin.Do(ctx, admin.B().Zcard().Key(prefix+"user:erin").Build()).AsInt64()
	if err != nil || n != 1 {
		t.Errorf("user index holds %d members, %v; want 1", n, err)
	}
	all, err := b.GetAll(ctx, true)
	if err != nil || len(all) != 1 {
		t.Errorf("GetAll = %v, %v", all, err)
	}
}

// TestRedisClientStorageHealsAfterRestart: entries added while Redis was
// down, or lost in a restart, are written by the refresher once it is back.
func TestRedisClientStorageHealsAfterRestart(t *testing.T) {
	srv := testenv.StartRedis(t)
	s, err := NewRedisClientStorage(RedisClientStorageOptions{Redis: RedisOptions{Addrs: []string{srv.Addr}, LookupTimeout: 2 * time.Second}, TTL: 1500 * time.Millisecond, CheckInterval: testCheckInterval})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Add(ctx, ClientEntry{ConnID: "1", Identity: handler.Identity{UserIdentifier: "frank"}}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if err := s.Add(ctx, ClientEntry{ConnID: "2", Identity: handler.Identity{UserIdentifier: "frank"}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Add while down = %v", err)
	}
	if _, err := s.FindAllByUsername(ctx, "frank"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("FindAllByUsername while down = %v", err)
	}
	srv.Start() // empty: no persistence
	took := waitFor(t, 5*time.Second, "healed", func() bool {
		es, err := s.FindAllByUsername(ctx, "frank")
		return err == nil && len(es) == 2
	})
	t.Logf("registry rebuilt %v after the restart", took)
}

// TestRedisClientStorageMany: the registry holds many entries and the
// refresher rewrites them in chunks.
func TestRedisClientStorageMany(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	redisAdmin(t, addr, prefix)
	s := newTestRedisClients(t, addr, prefix, "n", time.Minute)
	ctx := context.Background()
	for i := 0; i < 600; i++ {
		if err := s.Add(ctx, ClientEntry{ConnID: fmt.Sprint(i), Identity: handler.Identity{UserIdentifier: fmt.Sprintf("u%d", i%7), Anonymous: i%10 == 0}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := s.GetAll(ctx, true)
	if err != nil || len(all) != 600 {
		t.Fatalf("GetAll(true) = %d entries, %v", len(all), err)
	}
	auth, _ := s.GetAll(ctx, false)
	if len(auth) != 540 {
		t.Fatalf("GetAll(false) = %d entries", len(auth))
	}
	// Two pipelines' worth of removals in one call, plus unknown ids.
	var gone []string
	for i := 0; i < 500; i++ {
		gone = append(gone, fmt.Sprint(i))
	}
	gone = append(gone, "unknown", "0")
	if err := s.RemoveMany(ctx, gone); err != nil {
		t.Fatal(err)
	}
	all, err = s.GetAll(ctx, true)
	if err != nil || len(all) != 100 {
		t.Fatalf("GetAll(true) after RemoveMany = %d entries, %v", len(all), err)
	}
	for _, e := range all {
		if n, _ := strconv.Atoi(e.ConnID); n < 500 {
			t.Fatalf("removed entry %s still there", e.ConnID)
		}
	}
	// The user indexes lost the removed members too.
	u3, err := s.FindAllByUsername(ctx, "u3")
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := 500; i < 600; i++ {
		if i%7 == 3 && i%10 != 0 {
			want++
		}
	}
	if len(u3) != want {
		t.Fatalf("FindAllByUsername(u3) = %d entries, want %d", len(u3), want)
	}
}
