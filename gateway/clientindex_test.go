package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

type discardPeer struct{}

func (discardPeer) Send([]byte) bool { return true }

// TestMemoryClientStorageReadsTheNode: the memory client storage answers
// from the node's sessions (nodeClients), with what the gateway's own
// entries carried: connection and session ids, identity (after a
// Reidentify too), when the connection was accepted, the connect event's
// extra; a closed session is gone at once.
func TestMemoryClientStorageReadsTheNode(t *testing.T) {
	ctx := context.Background()
	node, err := wamp.NewNode(wamp.NodeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	local := &nodeClients{}
	cs := storage.NewIndexClientStorage(local)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := node.Open(discardPeer{}, wamp.ClientInfo{ConnID: "n-1", ConnectedAt: t0, Extra: []byte(`{"plan":"gold"}`),
		Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER"}}})
	anon := node.Open(discardPeer{}, wamp.ClientInfo{ConnID: "n-2", ConnectedAt: t0.Add(time.Second)})
	if got, _ := cs.GetAll(ctx, true); len(got) != 0 {
		t.Fatalf("before the node is set: %v", got)
	}
	local.local = node.Clients()

	got, err := cs.FindAllByUsername(ctx, "alice")
	if err != nil || len(got) != 1 {
		t.Fatalf("FindAllByUsername(alice) = %+v, %v", got, err)
	}
	e := got[0]
	if e.ConnID != "n-1" || e.WAMPSessionID != s.ID() || e.Firewall != "main" || e.Roles[0] != "ROLE_USER" ||
		!e.ConnectedAt.Equal(t0) || string(e.Extra) != `{"plan":"gold"}` || e.Node != "" {
		t.Fatalf("entry %+v", e)
	}
	if got, _ := cs.GetAll(ctx, false); len(got) != 1 {
		t.Fatalf("GetAll(false) = %+v", got)
	}
	if got, _ := cs.GetAll(ctx, true); len(got) != 2 || got[1].ConnID != "n-2" || !got[1].Anonymous {
		t.Fatalf("GetAll(true) = %+v", got)
	}
	if got, _ := cs.FindAllByUsername(ctx, anon.UserIdentifier()); len(got) != 0 {
		t.Fatalf("an anonymous client found by name: %+v", got)
	}

	s.Reidentify(wamp.ClientInfo{Identity: handler.Identity{UserIdentifier: "bob", Roles: []string{"ROLE_ADMIN"}}})
	if got, _ := cs.FindByRoles(ctx, []string{"ROLE_ADMIN"}); len(got) != 1 || got[0].UserIdentifier != "bob" {
		t.Fatalf("after Reidentify: %+v", got)
	}
	s.Close()
	if got, _ := cs.Get(ctx, "n-1"); len(got) != 0 {
		t.Fatalf("closed session still listed: %+v", got)
	}
	anon.Close()
}
