package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Clients is the ClientManipulator handlers get when the client storage is
// shared by replicas (client_storage.driver redis): lookups by user, role
// or "all" answer from the storage, so a handler on any replica finds the
// clients of every replica. A connection of this replica comes back as its
// live session (whose identity follows revalidation); one held by another
// replica as a snapshot of its storage entry — pass its SessionID to
// TopicRef.Broadcast as eligible to reach it, the fan-out carries the event
// there.
//
// The handler SDK's lookups take no context, so each one is bounded by
// timeout; when the storage cannot answer in time the lookup falls back to
// this replica's clients and logs why, rather than failing the handler.
type Clients struct {
	// local is this replica's own index; set once by SetLocal before the
	// first lookup and read-only after.
	local   handler.ClientManipulator
	store   storage.ClientStorage
	timeout time.Duration
	log     *slog.Logger
}

var _ handler.ClientManipulator = (*Clients)(nil)

// NewClients returns the lookups of every replica's clients through store,
// each bounded by timeout (a lookup timeout: it runs on the handler's
// goroutine). SetLocal must be called before the first lookup.
func NewClients(store storage.ClientStorage, timeout time.Duration, log *slog.Logger) *Clients {
	if log == nil {
		log = slog.Default()
	}
	return &Clients{store: store, timeout: timeout, log: log}
}

// SetLocal gives this replica's own index (wamp.Node.Clients), which finds
// live sessions and answers when the storage cannot. The node that serves
// these lookups to handlers is built with them, so its index comes after:
// call this once, before the node serves any connection.
func (c *Clients) SetLocal(local handler.ClientManipulator) { c.local = local }

// GetClient finds the connection on any replica: this replica's live
// session when it is here, else a snapshot of its entry in the shared
// storage (one round trip).
func (c *Clients) GetClient(connID string) (handler.Client, bool) {
	if l, ok := c.local.GetClient(connID); ok {
		return l, true
	}
	es, err := c.lookup("get_client", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.Get(ctx, connID)
	})
	if err != nil || len(es) == 0 {
		return nil, false
	}
	return c.client(es[0]), true
}

// FindByUsername returns the user's oldest connection on any replica.
func (c *Clients) FindByUsername(user string) (handler.Client, bool) {
	es, err := c.lookup("find_by_username", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.FindByUsername(ctx, user)
	})
	if err != nil {
		return c.local.FindByUsername(user)
	}
	if len(es) == 0 {
		return nil, false
	}
	return c.client(es[0]), true
}

// FindAllByUsername returns the user's connections on every replica.
func (c *Clients) FindAllByUsername(user string) []handler.Client {
	es, err := c.lookup("find_all_by_username", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.FindAllByUsername(ctx, user)
	})
	if err != nil {
		return c.local.FindAllByUsername(user)
	}
	return c.clients(es)
}

// FindByRoles returns the connections, on every replica, of users holding
// one of roles.
func (c *Clients) FindByRoles(roles []string) []handler.Client {
	es, err := c.lookup("find_by_roles", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.FindByRoles(ctx, roles)
	})
	if err != nil {
		return c.local.FindByRoles(roles)
	}
	return c.clients(es)
}

// GetAll returns the authenticated connections of every replica, and the
// anonymous ones too when anonymous is true.
func (c *Clients) GetAll(anonymous bool) []handler.Client {
	es, err := c.lookup("get_all", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.GetAll(ctx, anonymous)
	})
	if err != nil {
		return c.local.GetAll(anonymous)
	}
	return c.clients(es)
}

// lookup runs f within the timeout; on failure it logs why, and the caller
// answers with this replica's clients.
func (c *Clients) lookup(op string, f func(context.Context) ([]storage.ClientEntry, error)) ([]storage.ClientEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	es, err := f(ctx)
	if err != nil {
		c.log.Warn("client storage lookup failed; answering with this replica's clients", "op", op, "err", err)
	}
	return es, err
}

// clients turns entries into clients, as client does.
func (c *Clients) clients(es []storage.ClientEntry) []handler.Client {
	out := make([]handler.Client, 0, len(es))
	for _, e := range es {
		out = append(out, c.client(e))
	}
	return out
}

// client prefers the live local session: its identity is current, and a
// handler may keep it.
func (c *Clients) client(e storage.ClientEntry) handler.Client {
	if l, ok := c.local.GetClient(e.ConnID); ok {
		return l
	}
	return remoteClient{e: e}
}

// remoteClient is a client connected to another replica, as its storage
// entry last described it (identities change there on revalidation, and
// the entry with them).
type remoteClient struct{ e storage.ClientEntry }

var _ handler.Client = remoteClient{}

func (r remoteClient) ConnID() string { return r.e.ConnID }

// Identity implements handler.Client; its roles are a copy, as Roles'.
func (r remoteClient) Identity() handler.Identity {
	id := r.e.Identity
	id.Roles = slices.Clone(id.Roles)
	return id
}
func (r remoteClient) SessionID() string      { return r.e.WAMPSessionID }
func (r remoteClient) UserIdentifier() string { return r.e.UserIdentifier }
func (r remoteClient) Anonymous() bool        { return r.e.Anonymous }
func (r remoteClient) Roles() []string        { return slices.Clone(r.e.Roles) }
func (r remoteClient) Firewall() string       { return r.e.Firewall }
func (r remoteClient) Extra() json.RawMessage { return r.e.Extra }
