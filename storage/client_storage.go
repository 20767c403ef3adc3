package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
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
	// Get returns the connection connID, anonymous or not, wherever it is
	// connected, as a slice of zero or one entry: what a handler holds of
	// a client that talked to it on another replica is its connection id.
	Get(ctx context.Context, connID string) ([]ClientEntry, error)
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
