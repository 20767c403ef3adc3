package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp/handler"
)

// clusterClients is the ClientManipulator handlers get when the client
// storage is shared by replicas (client_storage.driver redis): lookups by
// user, role or "all" answer from the storage, so a handler on any replica
// finds the clients of every replica. A connection of this replica comes
// back as its live session (whose identity follows revalidation); one held
// by another replica as remoteClient, a snapshot of its storage entry —
// pass its SessionID to TopicRef.Broadcast as eligible to reach it, the
// fan-out carries the event there.
//
// The handler SDK's lookups take no context, so each one is bounded by
// timeout; when the storage cannot answer in time the lookup falls back to
// this replica's clients and logs why, rather than failing the handler.
type clusterClients struct {
	local   handler.ClientManipulator
	store   storage.ClientStorage
	timeout time.Duration
	log     *slog.Logger
}

var _ handler.ClientManipulator = (*clusterClients)(nil)

// GetClient finds connections of this replica only: connection ids are
// what handlers hold of clients that talked to them, which are local.
func (c *clusterClients) GetClient(connID string) (handler.Client, bool) {
	return c.local.GetClient(connID)
}

func (c *clusterClients) FindByUsername(user string) (handler.Client, bool) {
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

func (c *clusterClients) FindAllByUsername(user string) []handler.Client {
	es, err := c.lookup("find_all_by_username", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.FindAllByUsername(ctx, user)
	})
	if err != nil {
		return c.local.FindAllByUsername(user)
	}
	return c.clients(es)
}

func (c *clusterClients) FindByRoles(roles []string) []handler.Client {
	es, err := c.lookup("find_by_roles", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.FindByRoles(ctx, roles)
	})
	if err != nil {
		return c.local.FindByRoles(roles)
	}
	return c.clients(es)
}

func (c *clusterClients) GetAll(anonymous bool) []handler.Client {
	es, err := c.lookup("get_all", func(ctx context.Context) ([]storage.ClientEntry, error) {
		return c.store.GetAll(ctx, anonymous)
	})
	if err != nil {
		return c.local.GetAll(anonymous)
	}
	return c.clients(es)
}

func (c *clusterClients) lookup(op string, f func(context.Context) ([]storage.ClientEntry, error)) ([]storage.ClientEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	es, err := f(ctx)
	if err != nil {
		c.log.Warn("client storage lookup failed; answering with this replica's clients", "op", op, "err", err)
	}
	return es, err
}

func (c *clusterClients) clients(es []storage.ClientEntry) []handler.Client {
	out := make([]handler.Client, 0, len(es))
	for _, e := range es {
		out = append(out, c.client(e))
	}
	return out
}

// client prefers the live local session: its identity is current, and a
// handler may keep it.
func (c *clusterClients) client(e storage.ClientEntry) handler.Client {
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
