package storage

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// mapIndex is a ClientIndex over entries the test puts, standing in for
// the gateway's WAMP node.
type mapIndex struct {
	mu sync.Mutex // guards m
	m  map[string]ClientEntry
}

func (x *mapIndex) put(e ClientEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.m[e.ConnID] = e.clone()
}

func (x *mapIndex) drop(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.m, id)
}

func (x *mapIndex) Client(connID string) (ClientEntry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.m[connID]
	return e, ok
}

func (x *mapIndex) ClientsOf(user string) []ClientEntry {
	return keep(x.All(), func(e ClientEntry) bool { return e.UserIdentifier == user })
}

func (x *mapIndex) All() []ClientEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Collect(maps.Values(x.m))
}

// indexBacked is an IndexClientStorage whose index hears of the
// connections the contract adds and removes, as the gateway's node does
// of its sessions: what the contract checks is what the storage answers.
type indexBacked struct {
	*IndexClientStorage
	ix *mapIndex
}

func newIndexBacked() indexBacked {
	ix := &mapIndex{m: map[string]ClientEntry{}}
	return indexBacked{NewIndexClientStorage(ix), ix}
}

func (s indexBacked) Add(ctx context.Context, e ClientEntry) error {
	if err := s.IndexClientStorage.Add(ctx, e); err != nil {
		return err
	}
	s.ix.put(e)
	return nil
}

func (s indexBacked) Remove(ctx context.Context, id string) error {
	if err := s.IndexClientStorage.Remove(ctx, id); err != nil {
		return err
	}
	s.ix.drop(id)
	return nil
}

func (s indexBacked) RemoveMany(ctx context.Context, ids []string) error {
	if err := s.IndexClientStorage.RemoveMany(ctx, ids); err != nil {
		return err
	}
	for _, id := range ids {
		s.ix.drop(id)
	}
	return nil
}

// TestIndexClientStorageSharesNothing: the storage's writes change
// nothing (the index is the truth), and what it returns shares no memory
// with the index's entries.
func TestIndexClientStorageSharesNothing(t *testing.T) {
	ctx := context.Background()
	ix := &mapIndex{m: map[string]ClientEntry{}}
	s := NewIndexClientStorage(ix)
	e := ClientEntry{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}}, Extra: []byte(`{"a":1}`), Node: "n1"}
	if err := s.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAll(ctx, true); len(got) != 0 {
		t.Fatalf("Add stored %v", got)
	}
	if err := s.Add(ctx, ClientEntry{}); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("Add without ConnID = %v", err)
	}
	ix.m["c1"] = e // shared with the test's e, as the node shares its own
	got, err := s.Get(ctx, "c1")
	if err != nil || len(got) != 1 || got[0].Node != "" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	got[0].Roles[0] = "changed"
	got[0].Extra[0] = 'X'
	if e.Roles[0] != "ROLE_USER" || e.Extra[0] != '{' {
		t.Fatal("a result shares memory with the index")
	}
	if err := s.Remove(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "c1"); len(got) != 1 {
		t.Fatal("Remove changed what the index holds")
	}
}
