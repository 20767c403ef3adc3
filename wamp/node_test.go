package wamp

import (
	"sort"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

func TestClientManipulator(t *testing.T) {
	f := newFixture(t, nil)
	// Plugins capture the registry's manipulator before the node exists;
	// it must see the node's clients.
	m := f.reg.Clients()
	a, _ := f.open(t, "a", ClientInfo{ConnID: "a", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}, Firewall: "main"}})
	a2, _ := f.open(t, "a2", ClientInfo{ConnID: "a2", Identity: handler.Identity{UserIdentifier: "alice"}})
	anon, _ := f.open(t, "n", ClientInfo{ConnID: "n", Identity: handler.Identity{Anonymous: true}})
	empty, _ := f.open(t, "e", ClientInfo{ConnID: "e"})

	if anon.UserIdentifier() != "anon-"+anon.ID() || !anon.Anonymous() {
		t.Errorf("anonymous naming: %q", anon.UserIdentifier())
	}
	if empty.UserIdentifier() != "anon-"+empty.ID() || !empty.Anonymous() {
		t.Errorf("empty user must be anonymous: %q", empty.UserIdentifier())
	}
	c, ok := m.GetClient("a")
	if !ok || c.SessionID() != a.ID() || c.UserIdentifier() != "alice" || c.Firewall() != "main" || c.Roles()[0] != "ROLE_USER" {
		t.Errorf("GetClient: %v %v", c, ok)
	}
	c.Roles()[0] = "mutated"
	if a.Roles()[0] != "ROLE_USER" {
		t.Error("Roles exposes internal slice")
	}
	if _, ok := m.GetClient("zz"); ok {
		t.Error("GetClient of unknown conn")
	}
	ids := func(cs []handler.Client) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ConnID())
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	if got := ids(m.FindAllByUsername("alice")); got != "a,a2" {
		t.Errorf("FindAllByUsername = %s", got)
	}
	if c, ok := m.FindByUsername("alice"); !ok || c.ConnID() != "a" {
		t.Errorf("FindByUsername must return the oldest connection, got %v %v", c, ok)
	}
	if _, ok := m.FindByUsername("nobody"); ok {
		t.Error("FindByUsername(nobody) found a client")
	}
	if got := ids(m.FindAllByUsername("anon-" + anon.ID())); got != "n" {
		t.Errorf("FindAllByUsername(anon) = %s", got)
	}
	if got := ids(m.FindByRoles([]string{"ROLE_NOPE", "ROLE_USER"})); got != "a" {
		t.Errorf("FindByRoles = %s", got)
	}
	if got := ids(m.FindByRoles(nil)); got != "" {
		t.Errorf("FindByRoles(nil) = %s", got)
	}
	if got := ids(m.GetAll(false)); got != "a,a2" {
		t.Errorf("GetAll(false) = %s", got)
	}
	if got := ids(m.GetAll(true)); got != "a,a2,e,n" {
		t.Errorf("GetAll(true) = %s", got)
	}
	a2.Close()
	if got := ids(f.node.Clients().FindAllByUsername("alice")); got != "a" {
		t.Errorf("after close FindByUsername = %s", got)
	}
}
