package storage

import (
	"context"
	"errors"
	"fmt"
	"github.com/wsgate/wsgate/wamp/handler"
	"slices"
	"sync"
	"testing"
	"time"
)

func connIDs(es []ClientEntry) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ConnID
	}
	return ids
}

func TestMemoryClientStorage(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	alice1 := ClientEntry{ConnID: "c1", WAMPSessionID: "w1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER"}}, ConnectedAt: t0}
	alice2 := ClientEntry{ConnID: "c2", WAMPSessionID: "w2", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER"}}, ConnectedAt: t0.Add(time.Second)}
	bob := ClientEntry{ConnID: "c3", WAMPSessionID: "w3", Identity: handler.Identity{UserIdentifier: "bob", Firewall: "main", Roles: []string{"ROLE_ADMIN"}}, ConnectedAt: t0.Add(2 * time.Second)}
	anon := ClientEntry{ConnID: "c4", WAMPSessionID: "w4", Identity: handler.Identity{Anonymous: true}, ConnectedAt: t0.Add(3 * time.Second)}
	// An anonymous client carrying a name (e.g. GosWebSocketBundle's
	// "anon-<id>") must not be found by it either.
	anonNamed := ClientEntry{ConnID: "c5", WAMPSessionID: "w5", Identity: handler.Identity{UserIdentifier: "anon-5", Anonymous: true}, ConnectedAt: t0.Add(4 * time.Second)}

	type op struct {
		add    *ClientEntry
		remove string
	}
	tests := []struct {
		name      string
		ops       []op
		findUser  string
		wantFind  []string
		wantAuth  []string // GetAll(false)
		wantAll   []string // GetAll(true)
		wantNames []string // usernames that remain indexed
	}{
		{
			name:     "empty",
			findUser: "alice", wantFind: []string{}, wantAuth: []string{}, wantAll: []string{},
		},
		{
			name:     "user with two connections",
			ops:      []op{{add: &alice2}, {add: &bob}, {add: &alice1}},
			findUser: "alice", wantFind: []string{"c1", "c2"}, wantAuth: []string{"c1", "c2", "c3"}, wantAll: []string{"c1", "c2", "c3"},
		},
		{
			name:     "anonymous only in GetAll(true)",
			ops:      []op{{add: &alice1}, {add: &anon}, {add: &anonNamed}},
			findUser: "alice", wantFind: []string{"c1"}, wantAuth: []string{"c1"}, wantAll: []string{"c1", "c4", "c5"},
		},
		{
			name:     "anonymous never found by name",
			ops:      []op{{add: &anon}, {add: &anonNamed}},
			findUser: "anon-5", wantFind: []string{}, wantAuth: []string{}, wantAll: []string{"c4", "c5"},
		},
		{
			name:     "empty username finds nothing",
			ops:      []op{{add: &anon}},
			findUser: "", wantFind: []string{}, wantAuth: []string{}, wantAll: []string{"c4"},
		},
		{
			name:     "remove one of two connections",
			ops:      []op{{add: &alice1}, {add: &alice2}, {remove: "c1"}},
			findUser: "alice", wantFind: []string{"c2"}, wantAuth: []string{"c2"}, wantAll: []string{"c2"},
		},
		{
			name:     "remove last connection drops the user",
			ops:      []op{{add: &alice1}, {add: &bob}, {remove: "c1"}},
			findUser: "alice", wantFind: []string{}, wantAuth: []string{"c3"}, wantAll: []string{"c3"},
		},
		{
			name:     "remove unknown is a no-op",
			ops:      []op{{add: &bob}, {remove: "nope"}, {remove: "c3"}, {remove: "c3"}},
			findUser: "bob", wantFind: []string{}, wantAuth: []string{}, wantAll: []string{},
		},
		{
			name:     "re-adding a ConnID replaces it and re-indexes",
			ops:      []op{{add: &alice1}, {add: &ClientEntry{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "bob"}, ConnectedAt: t0}}},
			findUser: "alice", wantFind: []string{}, wantAuth: []string{"c1"}, wantAll: []string{"c1"},
		},
		{
			name:     "replaced by anonymous leaves the index",
			ops:      []op{{add: &alice1}, {add: &ClientEntry{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Anonymous: true}}}},
			findUser: "alice", wantFind: []string{}, wantAuth: []string{}, wantAll: []string{"c1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemoryClientStorage()
			defer m.Close()
			for _, o := range tt.ops {
				if o.add != nil {
					if err := m.Add(ctx, *o.add); err != nil {
						t.Fatalf("Add(%s): %v", o.add.ConnID, err)
					}
				} else if err := m.Remove(ctx, o.remove); err != nil {
					t.Fatalf("Remove(%s): %v", o.remove, err)
				}
			}
			found, err := m.FindAllByUsername(ctx, tt.findUser)
			if err != nil {
				t.Fatal(err)
			}
			if got := connIDs(found); !slices.Equal(got, tt.wantFind) {
				t.Errorf("FindAllByUsername(%q) = %v, want %v", tt.findUser, got, tt.wantFind)
			}
			first, err := m.FindByUsername(ctx, tt.findUser)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := connIDs(first), tt.wantFind[:min(1, len(tt.wantFind))]; !slices.Equal(got, want) {
				t.Errorf("FindByUsername(%q) = %v, want the first, %v", tt.findUser, got, want)
			}
			for _, e := range found {
				if e.UserIdentifier != tt.findUser || e.Anonymous {
					t.Errorf("FindByUsername(%q) returned %+v", tt.findUser, e)
				}
			}
			auth, err := m.GetAll(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := connIDs(auth); !slices.Equal(got, tt.wantAuth) {
				t.Errorf("GetAll(false) = %v, want %v", got, tt.wantAuth)
			}
			all, err := m.GetAll(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := connIDs(all); !slices.Equal(got, tt.wantAll) {
				t.Errorf("GetAll(true) = %v, want %v", got, tt.wantAll)
			}
			// The index holds no empty sets for users who left.
			for user, set := range m.byUser {
				if len(set) == 0 {
					t.Errorf("index keeps empty set for %q", user)
				}
			}
		})
	}
}

func TestMemoryClientStorageReturnsCopies(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryClientStorage()
	in := ClientEntry{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}}}
	if err := m.Add(ctx, in); err != nil {
		t.Fatal(err)
	}
	in.Roles[0] = "ROLE_CALLER_MUTATED"
	found, _ := m.FindByUsername(ctx, "alice")
	found[0].Roles[0] = "ROLE_FIND_MUTATED"
	all, _ := m.GetAll(ctx, true)
	all[0].Roles[0] = "ROLE_GETALL_MUTATED"
	again, _ := m.FindByUsername(ctx, "alice")
	if got := again[0].Roles[0]; got != "ROLE_USER" {
		t.Fatalf("stored roles changed through a copy: %q", got)
	}
}

func TestMemoryClientStorageErrors(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryClientStorage()
	if err := m.Add(ctx, ClientEntry{Identity: handler.Identity{UserIdentifier: "alice"}}); !errors.Is(err, ErrInvalidClient) {
		t.Errorf("Add without ConnID = %v; want ErrInvalidClient", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Add(canceled, ClientEntry{ConnID: "c1"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Add with canceled context = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(ctx, ClientEntry{ConnID: "c1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v; want ErrClosed", err)
	}
	if err := m.Remove(ctx, "c1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Remove after Close = %v; want ErrClosed", err)
	}
	if _, err := m.FindByUsername(ctx, "alice"); !errors.Is(err, ErrClosed) {
		t.Errorf("FindByUsername after Close = %v; want ErrClosed", err)
	}
	if _, err := m.GetAll(ctx, true); !errors.Is(err, ErrClosed) {
		t.Errorf("GetAll after Close = %v; want ErrClosed", err)
	}
}

// TestMemoryClientStorageConcurrent hammers every method from many
// goroutines (meaningful under -race) and checks the registry is consistent
// afterwards.
func TestMemoryClientStorageConcurrent(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryClientStorage()
	const workers, perWorker = 16, 200
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d", w%4)
			for i := 0; i < perWorker; i++ {
				id := fmt.Sprintf("w%d-c%d", w, i)
				e := ClientEntry{ConnID: id, Identity: handler.Identity{UserIdentifier: user, Roles: []string{"ROLE_USER"}, Anonymous: i%5 == 0}, ConnectedAt: time.Now()}
				if err := m.Add(ctx, e); err != nil {
					t.Error(err)
					return
				}
				if _, err := m.FindByUsername(ctx, user); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					if _, err := m.GetAll(ctx, i%20 == 0); err != nil {
						t.Error(err)
						return
					}
				}
				// Keep every other connection.
				if i%2 == 1 {
					if err := m.Remove(ctx, id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()

	all, err := m.GetAll(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers * perWorker / 2; len(all) != want {
		t.Fatalf("GetAll(true) has %d entries, want %d", len(all), want)
	}
	auth, _ := m.GetAll(ctx, false)
	var byUser int
	for u := 0; u < 4; u++ {
		found, _ := m.FindAllByUsername(ctx, fmt.Sprintf("user%d", u))
		byUser += len(found)
	}
	// Kept: even i; anonymous: i%5 == 0 among them (i%10 == 0).
	if wantAuth := workers * (perWorker/2 - perWorker/10); len(auth) != wantAuth || byUser != wantAuth {
		t.Fatalf("authenticated: GetAll(false) %d, by username %d, want %d", len(auth), byUser, wantAuth)
	}
}
