package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wsgate/wsgate/wamp/handler"
	"slices"
	"sync"
	"time"
)

// ClientEntry describes one websocket connection in the client registry.
type ClientEntry struct {
	// ConnID identifies the websocket connection; it is the registry key.
	ConnID string
	// WAMPSessionID is the WAMP session id announced to the client.
	WAMPSessionID string
	// Identity is who the client is, as its WAMP session has it (an
	// anonymous client is named "anon-<WAMPSessionID>"); embedded, so
	// e.UserIdentifier, e.Roles, ... read it.
	handler.Identity
	// ConnectedAt is when the connection was accepted.
	ConnectedAt time.Time
	// Node is the gateway replica holding the connection, set by storages
	// shared between replicas (RedisClientStorage sets its NodeID; Add
	// ignores what the caller put here). Empty in MemoryClientStorage.
	Node string
	// Extra is what the application attached to the connection on its
	// connect event (a JSON object), or nil.
	Extra json.RawMessage
}

// clone returns a copy of e that shares no memory with it.
func (e ClientEntry) clone() ClientEntry {
	e.Roles = slices.Clone(e.Roles)
	e.Extra = bytes.Clone(e.Extra)
	return e
}

// ClientStorage is the registry of connected websocket clients, the
// equivalent of GosWebSocketBundle's ClientStorage/ClientManipulator. It is
// safe for concurrent use; returned entries are copies.
type ClientStorage interface {
	// Add registers a connection, replacing any entry with the same
	// ConnID.
	Add(ctx context.Context, e ClientEntry) error
	// Remove unregisters a connection; removing an unknown ConnID is not
	// an error, since disconnect paths may race.
	Remove(ctx context.Context, connID string) error
	// RemoveMany unregisters several connections at once (one round trip
	// for a shared storage); unknown ids are ignored. A batch of the
	// connections that closed lately costs one call instead of one per
	// connection, which is what a disconnect storm needs.
	RemoveMany(ctx context.Context, connIDs []string) error
	// FindByUsername returns the first (oldest) authenticated connection
	// of user, as a slice of zero or one entry, like GosWebSocketBundle's
	// ClientManipulator::findByUsername, which returns the first match
	// (or false). Anonymous clients are never found by name.
	FindByUsername(ctx context.Context, user string) ([]ClientEntry, error)
	// FindAllByUsername returns every authenticated connection of user (a
	// user may have several, in several tabs or on several replicas), like
	// the bundle's findAllByUsername.
	FindAllByUsername(ctx context.Context, user string) ([]ClientEntry, error)
	// FindByRoles returns the authenticated connections whose Roles hold
	// at least one of roles, like the bundle's findByRoles.
	FindByRoles(ctx context.Context, roles []string) ([]ClientEntry, error)
	// GetAll returns the authenticated connections, and the anonymous ones
	// too when anonymous is true, like GosWebSocketBundle's
	// ClientManipulator::getAll($anonymous).
	GetAll(ctx context.Context, anonymous bool) ([]ClientEntry, error)
	// Close releases the storage; later calls fail with ErrClosed.
	Close() error
}

// ErrInvalidClient is returned by ClientStorage.Add for an entry it cannot
// register (no ConnID).
var ErrInvalidClient = errors.New("invalid client entry")

// ErrIncomplete is returned (wrapped) by the lookups of a shared client
// storage (RedisClientStorage) while the registry is known to miss entries:
// Redis lost its data (it restarted empty, was flushed, or failed over
// without them) and this replica, or replicas it saw alive just before, have
// not written theirs again yet. An empty or short answer then would tell the
// application that online users are offline.
//
// Errors wrapping ErrIncomplete also match ErrUnavailable, on purpose: as
// with a store that is down, the storage cannot say who is connected, and
// every caller that already answers 503 (or falls back to this replica's own
// clients) on ErrUnavailable does the right thing unchanged. Callers that
// want to say why check ErrIncomplete (Result reports "incomplete"). The
// window is short: about one check interval after Redis comes back, at most
// a heartbeat TTL for a replica that died together with Redis.
var ErrIncomplete = errors.New("client registry incomplete")

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
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove client: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("remove client: %w", ErrClosed)
	}
	m.removeLocked(connID)
	return nil
}

// RemoveMany unregisters every id of connIDs; unknown ids are ignored.
func (m *MemoryClientStorage) RemoveMany(ctx context.Context, connIDs []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove clients: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("remove clients: %w", ErrClosed)
	}
	for _, id := range connIDs {
		m.removeLocked(id)
	}
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
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("find clients: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("find clients: %w", ErrClosed)
	}
	out := []ClientEntry{}
	for _, e := range m.byConn {
		if hasAnyRole(e, roles) {
			out = append(out, e.clone())
		}
	}
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
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("find clients: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("find clients: %w", ErrClosed)
	}
	ids := m.byUser[user]
	out := make([]ClientEntry, 0, len(ids))
	for _, connID := range ids {
		out = append(out, m.byConn[connID].clone())
	}
	sortClients(out)
	return out, nil
}

// GetAll returns copies of the authenticated connections, plus the anonymous
// ones when anonymous is true.
func (m *MemoryClientStorage) GetAll(ctx context.Context, anonymous bool) ([]ClientEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get clients: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, fmt.Errorf("get clients: %w", ErrClosed)
	}
	out := make([]ClientEntry, 0, len(m.byConn))
	for _, e := range m.byConn {
		if e.Anonymous && !anonymous {
			continue
		}
		out = append(out, e.clone())
	}
	sortClients(out)
	return out, nil
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
