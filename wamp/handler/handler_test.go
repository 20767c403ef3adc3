package handler

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
)

type rpc string

func (r rpc) Name() string                  { return string(r) }
func (r rpc) Methods() map[string]RPCMethod { return nil }

type topic string

func (t topic) Name() string { return string(t) }
func (topic) OnSubscribe(context.Context, Client, TopicRef, Request) error {
	return nil
}
func (topic) OnUnsubscribe(context.Context, Client, TopicRef, Request) error {
	return nil
}
func (topic) OnPublish(context.Context, Client, TopicRef, Request, json.RawMessage, []string, []string) error {
	return nil
}

type fakeClient struct{ id string }

func (c fakeClient) ConnID() string         { return c.id }
func (c fakeClient) SessionID() string      { return "s-" + c.id }
func (c fakeClient) Identity() Identity     { return Identity{UserIdentifier: "u"} }
func (c fakeClient) UserIdentifier() string { return "u" }
func (c fakeClient) Anonymous() bool        { return false }
func (c fakeClient) Roles() []string        { return nil }
func (c fakeClient) Firewall() string       { return "main" }
func (c fakeClient) Extra() json.RawMessage { return nil }

type fakeManipulator struct{}

func (fakeManipulator) GetClient(id string) (Client, bool)   { return fakeClient{id}, true }
func (fakeManipulator) FindByUsername(string) (Client, bool) { return fakeClient{"x"}, true }
func (fakeManipulator) FindAllByUsername(string) []Client    { return []Client{fakeClient{"x"}} }
func (fakeManipulator) FindByRoles([]string) []Client        { return []Client{fakeClient{"r"}} }
func (fakeManipulator) GetAll(bool) []Client                 { return []Client{fakeClient{"y"}} }

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	cases := []struct {
		name    string
		add     func() error
		wantErr bool
	}{
		{"rpc", func() error { return r.AddRPC(rpc("a.rpc")) }, false},
		{"rpc duplicate", func() error { return r.AddRPC(rpc("a.rpc")) }, true},
		{"rpc empty name", func() error { return r.AddRPC(rpc(" ")) }, true},
		{"rpc nil", func() error { return r.AddRPC(nil) }, true},
		{"topic with an rpc's name", func() error { return r.AddTopic(topic("a.rpc")) }, false},
		{"topic duplicate", func() error { return r.AddTopic(topic("a.rpc")) }, true},
		{"topic empty name", func() error { return r.AddTopic(topic("")) }, true},
		{"topic nil", func() error { return r.AddTopic(nil) }, true},
		{"second rpc", func() error { return r.AddRPC(rpc("0.rpc")) }, false},
	}
	for _, tc := range cases {
		if err := tc.add(); (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
	if got := r.RPCNames(); len(got) != 2 || got[0] != "0.rpc" || got[1] != "a.rpc" {
		t.Errorf("RPCNames %q", got)
	}
	if got := r.TopicNames(); len(got) != 1 || got[0] != "a.rpc" {
		t.Errorf("TopicNames %q", got)
	}
	if _, ok := r.RPC("a.rpc"); !ok {
		t.Error("RPC lookup")
	}
	if _, ok := r.Topic("nope"); ok {
		t.Error("Topic lookup of unknown name")
	}

	// Captured before binding, answers after binding.
	m := r.Clients()
	if _, ok := m.GetClient("c"); ok || m.FindAllByUsername("u") != nil || m.GetAll(true) != nil || m.FindByRoles([]string{"R"}) != nil {
		t.Error("unbound manipulator returned clients")
	}
	if err := r.BindClients(nil); err == nil {
		t.Error("BindClients(nil) accepted")
	}
	if err := r.BindClients(fakeManipulator{}); err != nil {
		t.Fatal(err)
	}
	if c, ok := m.GetClient("c"); !ok || c.ConnID() != "c" {
		t.Error("bound manipulator not used")
	}
	if c, ok := m.FindByUsername("u"); !ok || c.ConnID() != "x" || len(m.FindAllByUsername("u")) != 1 || len(m.FindByRoles(nil)) != 1 || len(m.GetAll(false)) != 1 {
		t.Error("bound manipulator not used")
	}
	if err := r.BindClients(fakeManipulator{}); err == nil {
		t.Error("second bind accepted")
	}
	if err := r.AddRPC(rpc("late")); !errors.Is(err, ErrFrozen) {
		t.Errorf("AddRPC after bind: %v", err)
	}
	if err := r.AddTopic(topic("late")); !errors.Is(err, ErrFrozen) {
		t.Errorf("AddTopic after bind: %v", err)
	}
}

func TestErrorText(t *testing.T) {
	if got := (&Error{Desc: "d"}).Error(); got != "wamp call error: d" {
		t.Error(got)
	}
	if got := (&Error{URI: "u", Desc: "d"}).Error(); got != "wamp call error u: d" {
		t.Error(got)
	}
}
