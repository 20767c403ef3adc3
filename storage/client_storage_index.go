package storage

import (
	"context"
	"fmt"
	"sync"
)

// ClientIndex is a read-only view of the connections one gateway process
// holds, kept by someone else (the gateway gives its WAMP node's index of
// sessions). It is safe for concurrent use. Entries it returns may share
// memory (Roles, Extra) with the index: IndexClientStorage copies them
// before handing them out.
type ClientIndex interface {
	// Client returns the entry of connection connID, anonymous or not.
	Client(connID string) (ClientEntry, bool)
	// ClientsOf returns the entries of the connections whose identity's
	// UserIdentifier is user (anonymous ones included: the storage keeps
	// them out of lookups by name).
	ClientsOf(user string) []ClientEntry
	// All returns every connection's entry.
	All() []ClientEntry
}

// IndexClientStorage is the single-instance ClientStorage (driver memory)
// that keeps nothing of its own: it answers from a ClientIndex, which
// already has every connection from its open to its close. Add, Remove and
// RemoveMany check their arguments and the storage's state and change
// nothing. A MemoryClientStorage beside the gateway's own index held a
// second copy of every connection's entry (≈ 400 B each at 15,000 idle
// connections, docs/benchmarks.md). Results are copies, ordered by
// ConnectedAt, then ConnID, like MemoryClientStorage's.
type IndexClientStorage struct {
	ix ClientIndex
	// mu guards closed.
	mu     sync.RWMutex
	closed bool
}

var _ ClientStorage = (*IndexClientStorage)(nil)

// NewIndexClientStorage returns the client storage answering from ix.
func NewIndexClientStorage(ix ClientIndex) *IndexClientStorage {
	return &IndexClientStorage{ix: ix}
}

// check returns the error a call named what fails with: ctx done or the
// storage closed.
func (m *IndexClientStorage) check(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	return nil
}

// Add refuses an entry without ConnID and otherwise does nothing: the
// index has the connection already.
func (m *IndexClientStorage) Add(ctx context.Context, e ClientEntry) error {
	if err := m.check(ctx, "add client"); err != nil {
		return err
	}
	if e.ConnID == "" {
		return fmt.Errorf("add client: empty ConnID: %w", ErrInvalidClient)
	}
	return nil
}

// Remove does nothing: the index forgets a connection when it closes.
func (m *IndexClientStorage) Remove(ctx context.Context, _ string) error {
	return m.check(ctx, "remove client")
}

// RemoveMany does nothing, as Remove.
func (m *IndexClientStorage) RemoveMany(ctx context.Context, _ []string) error {
	return m.check(ctx, "remove clients")
}

// lookup runs find unless ctx is done or the storage closed, and returns
// copies of what it found, sorted.
func (m *IndexClientStorage) lookup(ctx context.Context, what string, find func() []ClientEntry) ([]ClientEntry, error) {
	if err := m.check(ctx, what); err != nil {
		return nil, err
	}
	found := find()
	out := make([]ClientEntry, 0, len(found))
	for _, e := range found {
		e.Node = ""
		out = append(out, e.clone())
	}
	sortClients(out)
	return out, nil
}

// Get returns a copy of the connection's entry, or an empty result.
func (m *IndexClientStorage) Get(ctx context.Context, connID string) ([]ClientEntry, error) {
	return m.lookup(ctx, "get client", func() []ClientEntry {
		if e, ok := m.ix.Client(connID); ok {
			return []ClientEntry{e}
		}
		return nil
	})
}

// FindByUsername returns a copy of user's oldest authenticated
// connection, or an empty result when there is none.
func (m *IndexClientStorage) FindByUsername(ctx context.Context, user string) ([]ClientEntry, error) {
	all, err := m.FindAllByUsername(ctx, user)
	return firstOnly(all), err
}

// FindAllByUsername returns copies of user's authenticated connections.
func (m *IndexClientStorage) FindAllByUsername(ctx context.Context, user string) ([]ClientEntry, error) {
	return m.lookup(ctx, "find clients", func() []ClientEntry {
		return keep(m.ix.ClientsOf(user), func(e ClientEntry) bool { return indexed(e) && e.UserIdentifier == user })
	})
}

// FindByRoles returns copies of the authenticated connections holding at
// least one of roles.
func (m *IndexClientStorage) FindByRoles(ctx context.Context, roles []string) ([]ClientEntry, error) {
	return m.lookup(ctx, "find clients", func() []ClientEntry {
		return keep(m.ix.All(), func(e ClientEntry) bool { return hasAnyRole(e, roles) })
	})
}

// GetAll returns copies of the authenticated connections, plus the
// anonymous ones when anonymous is true.
func (m *IndexClientStorage) GetAll(ctx context.Context, anonymous bool) ([]ClientEntry, error) {
	return m.lookup(ctx, "get clients", func() []ClientEntry {
		return keep(m.ix.All(), func(e ClientEntry) bool { return anonymous || !e.Anonymous })
	})
}

// Close makes later calls fail with ErrClosed.
func (m *IndexClientStorage) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// keep returns the entries of es that pass.
func keep(es []ClientEntry, pass func(ClientEntry) bool) []ClientEntry {
	var out []ClientEntry
	for _, e := range es {
		if pass(e) {
			out = append(out, e)
		}
	}
	return out
}
