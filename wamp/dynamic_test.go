package wamp

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// dynRPC lists one method and answers every other name through Call.
type dynRPC struct{}

func (dynRPC) Name() string { return "test.dyn" }
func (dynRPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{"listed": func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) {
		return "listed", nil
	}}
}
func (dynRPC) Call(_ context.Context, _ handler.Client, req handler.Request, _ json.RawMessage) (any, error) {
	return "dynamic:" + req.Attributes["method"], nil
}

func TestDynamicRPC(t *testing.T) {
	reg := handler.NewRegistry()
	if err := reg.AddRPC(dynRPC{}); err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(NodeConfig{Handlers: reg, Routes: RoutesConfig{RPC: map[string]RouteConfig{
		"dyn":   {Pattern: "dyn/{method}", Handler: "test.dyn"},
		"whole": {Pattern: "whole/thing", Handler: "test.dyn"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{}
	s := n.Open(p, ClientInfo{ConnID: "c", Identity: handler.Identity{Anonymous: true}})
	p.take()
	for _, tc := range []struct{ call, want string }{
		{`[2,"1","dyn/listed"]`, `[3,"1",["listed"]]`},
		{`[2,"2","dyn/anything_else"]`, `[3,"2",["dynamic:anything_else"]]`},
		{`[2,"3","whole/thing"]`, `[3,"3",["dynamic:"]]`}, // no {method}: still served
	} {
		if err := s.Handle(context.Background(), []byte(tc.call)); err != nil {
			t.Fatal(err)
		}
		got := p.take()
		if len(got) != 1 || string(got[0]) != tc.want {
			t.Errorf("%s: got %q, want %s", tc.call, got, tc.want)
		}
	}
}
