package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp/handler"
)

// liveClient stands for a live session of this replica: a type of its own,
// so that a test can tell it from a snapshot of another replica's entry.
type liveClient struct{ remoteClient }

// localIndex is this replica's own index (what wamp.Node.Clients gives in
// the gateway), over a slice of live clients in connection order.
type localIndex []liveClient

func (l localIndex) GetClient(connID string) (handler.Client, bool) {
	for _, c := range l {
		if c.ConnID() == connID {
			return c, true
		}
	}
	return nil, false
}

func (l localIndex) FindByUsername(user string) (handler.Client, bool) {
	all := l.FindAllByUsername(user)
	if len(all) == 0 {
		return nil, false
	}
	return all[0], true
}

func (l localIndex) FindAllByUsername(user string) []handler.Client {
	return l.filter(func(c liveClient) bool { return !c.Anonymous() && c.UserIdentifier() == user })
}

func (l localIndex) FindByRoles(roles []string) []handler.Client {
	return l.filter(func(c liveClient) bool {
		return !c.Anonymous() && slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(c.Roles(), r) })
	})
}

func (l localIndex) GetAll(anonymous bool) []handler.Client {
	return l.filter(func(c liveClient) bool { return anonymous || !c.Anonymous() })
}

func (l localIndex) filter(keep func(liveClient) bool) []handler.Client {
	var out []handler.Client
	for _, c := range l {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// describe names each client by ConnID and tells where it came from.
func describe(cs []handler.Client) []string {
	var out []string
	for _, c := range cs {
		switch c.(type) {
		case liveClient:
			out = append(out, "live:"+c.ConnID())
		case remoteClient:
			out = append(out, "remote:"+c.ConnID())
		default:
			out = append(out, "?:"+c.ConnID())
		}
	}
	return out
}

// TestClients: lookups answer from the shared storage, with this replica's
// connections as their live sessions and the others' as snapshots of their
// entries; when the storage cannot answer, with this replica's clients.
func TestClients(t *testing.T) {
	t0 := time.Now()
	entry := func(conn, session, user string, roles ...string) storage.ClientEntry {
		id := handler.Identity{UserIdentifier: user, Roles: roles, Firewall: "main"}
		if user == "" {
			id = handler.Identity{UserIdentifier: "anon-" + session, Anonymous: true}
		}
		t0 = t0.Add(time.Second)
		return storage.ClientEntry{ConnID: conn, WAMPSessionID: session, Identity: id, ConnectedAt: t0, Extra: json.RawMessage(`{"plan":"gold"}`)}
	}
	here := []storage.ClientEntry{entry("a-1", "11", "alice", "ROLE_USER"), entry("a-2", "12", "")}
	there := []storage.ClientEntry{entry("b-1", "21", "alice", "ROLE_ADMIN"), entry("b-2", "22", "bob", "ROLE_USER"), entry("b-3", "23", "")}
	shared := storage.NewMemoryClientStorage()
	for _, e := range slices.Concat(here, there) {
		if err := shared.Add(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	var local localIndex
	for _, e := range here {
		local = append(local, liveClient{remoteClient{e}})
	}
	one := func(c handler.Client, ok bool) []handler.Client {
		if !ok {
			return nil
		}
		return []handler.Client{c}
	}
	cases := []struct {
		name           string
		lookup         func(c *Clients) []handler.Client
		want, whenDown []string
	}{
		{"find by username", func(c *Clients) []handler.Client { return one(c.FindByUsername("alice")) }, []string{"live:a-1"}, []string{"live:a-1"}},
		{"find by username, elsewhere", func(c *Clients) []handler.Client { return one(c.FindByUsername("bob")) }, []string{"remote:b-2"}, nil},
		{"find all by username", func(c *Clients) []handler.Client { return c.FindAllByUsername("alice") }, []string{"live:a-1", "remote:b-1"}, []string{"live:a-1"}},
		{"find by roles", func(c *Clients) []handler.Client { return c.FindByRoles([]string{"ROLE_ADMIN", "ROLE_USER"}) }, []string{"live:a-1", "remote:b-1", "remote:b-2"}, []string{"live:a-1"}},
		{"get all", func(c *Clients) []handler.Client { return c.GetAll(false) }, []string{"live:a-1", "remote:b-1", "remote:b-2"}, []string{"live:a-1"}},
		{"get all with anonymous", func(c *Clients) []handler.Client { return c.GetAll(true) }, []string{"live:a-1", "live:a-2", "remote:b-1", "remote:b-2", "remote:b-3"}, []string{"live:a-1", "live:a-2"}},
		{"get client here", func(c *Clients) []handler.Client { return one(c.GetClient("a-2")) }, []string{"live:a-2"}, []string{"live:a-2"}},
		{"get client elsewhere", func(c *Clients) []handler.Client { return one(c.GetClient("b-3")) }, []string{"remote:b-3"}, nil},
		{"get client nowhere", func(c *Clients) []handler.Client { return one(c.GetClient("c-9")) }, nil, nil},
	}
	up := NewClients(shared, time.Second, testLogger(t))
	up.SetLocal(local)
	closed := storage.NewMemoryClientStorage()
	closed.Close()
	down := NewClients(closed, time.Second, testLogger(t))
	down.SetLocal(local)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(tc.lookup(up)); !slices.Equal(got, tc.want) {
				t.Errorf("storage up: %q; want %q", got, tc.want)
			}
			if got := describe(tc.lookup(down)); !slices.Equal(got, tc.whenDown) {
				t.Errorf("storage down: %q; want %q", got, tc.whenDown)
			}
		})
	}
}

// TestRemoteClient: another replica's client reads as its entry says, and
// what it returns is a copy.
func TestRemoteClient(t *testing.T) {
	e := storage.ClientEntry{
		ConnID: "b-1", WAMPSessionID: "21", Extra: json.RawMessage(`{"plan":"gold"}`),
		Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}, Firewall: "main", TokenClass: "T", Impersonator: "root"},
	}
	var c handler.Client = remoteClient{e}
	if c.ConnID() != "b-1" || c.SessionID() != "21" || c.UserIdentifier() != "alice" || c.Anonymous() ||
		c.Firewall() != "main" || string(c.Extra()) != `{"plan":"gold"}` || !slices.Equal(c.Roles(), []string{"ROLE_USER"}) {
		t.Fatalf("remote client reads %q %q %q %v %q %s %q", c.ConnID(), c.SessionID(), c.UserIdentifier(), c.Anonymous(), c.Firewall(), c.Extra(), c.Roles())
	}
	id := c.Identity()
	if id.TokenClass != "T" || id.Impersonator != "root" {
		t.Fatalf("identity %+v", id)
	}
	id.Roles[0] = "ROLE_ADMIN"
	c.Roles()[0] = "ROLE_ADMIN"
	if e.Roles[0] != "ROLE_USER" || c.Roles()[0] != "ROLE_USER" {
		t.Fatal("roles returned by a remote client alias its entry")
	}
}
