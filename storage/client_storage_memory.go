package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// MemoryClientStorage is a ClientStorage in process memory, for a single
// gateway instance. Entries are indexed by ConnID and by username, so
// FindByUsername costs the size of its answer, not of the registry. Results
// are ordered by ConnectedAt, then ConnID.
type MemoryClientStorage struct {
	mu     sync.RWMutex
	byConn map[string]ClientEntry
	// byUser indexes authenticated entries: username -> their ConnIDs. A
	// slice, not a set: most users have one or two connections, and a map
	// per user would cost a few hundred bytes each.
	byUser map[string][]string
	closed bool
}

var _ ClientStorage = (*MemoryClientStorage)(nil)

// NewMemoryClientStorage returns an empty in-memory client registry.
func NewMemoryClientStorage() *MemoryClientStorage {
	return &MemoryClientStorage{
		byConn: make(map[string]ClientEntry),
		byUser: make(map[string][]string),
	}
}

// indexed reports whether e belongs in the username index.
func indexed(e ClientEntry) bool { return !e.Anonymous && e.UserIdentifier != "" }

// Add registers e (a copy of it), replacing an entry with the same ConnID.
func (m *MemoryClientStorage) Add(ctx context.Context, e ClientEntry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add client: %w", err)
	}
	if e.ConnID == "" {
		return fmt.Errorf("add client: empty ConnID: %w", ErrInvalidClient)
	}
	e = e.clone()
	e.Node = ""
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("add client: %w", ErrClosed)
	}
	m.removeLocked(e.ConnID)
	m.byConn[e.ConnID] = e
	if indexed(e) {
		m.byUser[e.UserIdentifier] = append(m.byUser[e.UserIdentifier], e.ConnID)
	}
	return nil
}

// Remove unregisters connID; unknown ids are ignored.
func (m *MemoryClientStorage) Remove(ctx context.Context, connID string) error {
	return m.update(ctx, "remove client", func() { m.removeLocked(connID) })
}

// RemoveMany unregisters every id of connIDs; unknown ids are ignored.
func (m *MemoryClientStorage) RemoveMany(ctx context.Context, connIDs []string) error {
	return m.update(ctx, "remove clients", func() {
		for _, id := range connIDs {
			m.removeLocked(id)
		}
	})
}

// update runs change under the write lock, unless ctx is done or the
// storage closed; what names the call in errors.
func (m *MemoryClientStorage) update(ctx context.Context, what string, change func()) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	change()
	return nil
}

// removeLocked drops connID from both maps; m.mu must be held.
func (m *MemoryClientStorage) removeLocked(connID string) {
	old, ok := m.byConn[connID]
	if !ok {
		return
	}
	delete(m.byConn, connID)
	if indexed(old) {
		ids := m.byUser[old.UserIdentifier]
		if i := slices.Index(ids, connID); i >= 0 {
			ids[i] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
		}
		if len(ids) == 0 {
			delete(m.byUser, old.UserIdentifier)
		} else {
			m.byUser[old.UserIdentifier] = ids
		}
	}
}

// Get returns a copy of the connection's entry, or an empty result.
func (m *MemoryClientStorage) Get(ctx context.Context, connID string) ([]ClientEntry, error) {
	return m.lookup(ctx, "get client", func() []ClientEntry {
		if e, ok := m.byConn[connID]; ok {
			return []ClientEntry{e.clone()}
		}
		return []ClientEntry{}
	})
}

// FindByUsername returns a copy of user's oldest authenticated connection,
// or an empty result when there is none.
func (m *MemoryClientStorage) FindByUsername(ctx context.Context, user string) ([]ClientEntry, error) {
	all, err := m.FindAllByUsername(ctx, user)
	return firstOnly(all), err
}

// firstOnly keeps the first entry of a sorted result.
func firstOnly(es []ClientEntry) []ClientEntry {
	if len(es) > 1 {
		es = es[:1:1]
	}
	return es
}

// FindByRoles returns copies of the authenticated connections holding at
// least one of roles.
func (m *MemoryClientStorage) FindByRoles(ctx context.Context, roles []string) ([]ClientEntry, error) {
	return m.lookup(ctx, "find clients", func() []ClientEntry {
		out := []ClientEntry{}
		for _, e := range m.byConn {
			if hasAnyRole(e, roles) {
				out = append(out, e.clone())
			}
		}
		return out
	})
}

// lookup runs find under the read lock, unless ctx is done or the storage
// closed, and sorts what it returns (copies).
func (m *MemoryClientStorage) lookup(ctx context.Context, what string, find func() []ClientEntry) ([]ClientEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	out := find()
	sortClients(out)
	return out, nil
}

// hasAnyRole reports whether e is authenticated and holds one of roles.
func hasAnyRole(e ClientEntry, roles []string) bool {
	if !indexed(e) {
		return false
	}
	for _, r := range e.Roles {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

// FindAllByUsername returns copies of user's authenticated connections, or
// an empty result when there are none.
func (m *MemoryClientStorage) FindAllByUsername(ctx context.Context, user string) ([]ClientEntry, error) {
	return m.lookup(ctx, "find clients", func() []ClientEntry {
		ids := m.byUser[user]
		out := make([]ClientEntry, 0, len(ids))
		for _, connID := range ids {
			out = append(out, m.byConn[connID].clone())
		}
		return out
	})
}

// GetAll returns copies of the authenticated connections, plus the anonymous
// ones when anonymous is true.
func (m *MemoryClientStorage) GetAll(ctx context.Context, anonymous bool) ([]ClientEntry, error) {
	return m.lookup(ctx, "get clients", func() []ClientEntry {
		out := make([]ClientEntry, 0, len(m.byConn))
		for _, e := range m.byConn {
			if e.Anonymous && !anonymous {
				continue
			}
			out = append(out, e.clone())
		}
		return out
	})
}

// Close drops all entries; later calls fail with ErrClosed.
func (m *MemoryClientStorage) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.byConn, m.byUser = nil, nil
	return nil
}

// sortClients orders entries deterministically: oldest connection first.
func sortClients(es []ClientEntry) {
	slices.SortFunc(es, func(a, b ClientEntry) int {
		if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ConnID, b.ConnID)
	})
}
