package gateway

import (
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp/handler"
)

// nodeClients is the storage.ClientIndex of this process's connections
// that the memory client storage answers from (storage.IndexClientStorage):
// the WAMP node's own index of its sessions, which holds each connection
// from register (Node.OpenProtocol) to its close. A second copy of every
// entry in a storage map cost ≈ 400 B per connection (docs/benchmarks.md).
// local is set once the node exists, before the server accepts anyone.
type nodeClients struct {
	local handler.ClientManipulator
}

var _ storage.ClientIndex = (*nodeClients)(nil)

// connectedAtReader is what a *wamp.Session adds to handler.Client.
type connectedAtReader interface{ ConnectedAt() time.Time }

// entryOf is c's client storage entry, as Server.clientEntry makes it:
// its Roles and Extra are the session's, which the storage copies.
func entryOf(c handler.Client) storage.ClientEntry {
	e := storage.ClientEntry{ConnID: c.ConnID(), WAMPSessionID: c.SessionID(), Identity: c.Identity(), Extra: c.Extra()}
	if t, ok := c.(connectedAtReader); ok {
		e.ConnectedAt = t.ConnectedAt()
	}
	return e
}

func entriesOf(cs []handler.Client) []storage.ClientEntry {
	out := make([]storage.ClientEntry, len(cs))
	for i, c := range cs {
		out[i] = entryOf(c)
	}
	return out
}

// Client implements storage.ClientIndex.
func (n *nodeClients) Client(connID string) (storage.ClientEntry, bool) {
	if n.local == nil {
		return storage.ClientEntry{}, false
	}
	c, ok := n.local.GetClient(connID)
	if !ok {
		return storage.ClientEntry{}, false
	}
	return entryOf(c), true
}

// ClientsOf implements storage.ClientIndex.
func (n *nodeClients) ClientsOf(user string) []storage.ClientEntry {
	if n.local == nil {
		return nil
	}
	return entriesOf(n.local.FindAllByUsername(user))
}

// All implements storage.ClientIndex.
func (n *nodeClients) All() []storage.ClientEntry {
	if n.local == nil {
		return nil
	}
	return entriesOf(n.local.GetAll(true))
}
