package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

func TestRegistry(t *testing.T) {
	r := handler.NewRegistry()
	if c := r.Clients(); c != nil {
		if _, ok := c.GetClient("x"); ok || c.GetAll(true) != nil || c.FindAllByUsername("u") != nil {
			t.Error("unbound manipulator found clients")
		}
	}
	if err := r.AddRPC(testRPC{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRPC(testRPC{}); err == nil {
		t.Error("duplicate RPC accepted")
	}
	if err := r.AddTopic(&testTopic{}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddTopic(&testTopic{}); err == nil {
		t.Error("duplicate topic accepted")
	}
	if err := r.AddRPC(nil); err == nil {
		t.Error("nil RPC accepted")
	}
	// CheckRoutes must not bind: a node can still be built afterwards.
	if err := CheckRoutes(RoutesConfig{RPC: map[string]RouteConfig{"r": {Pattern: "a/{method}", Handler: "test.rpc"}}}, r); err != nil {
		t.Fatal(err)
	}
	if _, err := NewNode(NodeConfig{Handlers: r}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRPC(namedRPC("late")); !errors.Is(err, handler.ErrFrozen) {
		t.Errorf("AddRPC after bind: %v", err)
	}
	if _, err := NewNode(NodeConfig{Handlers: r}); err == nil {
		t.Error("registry shared by two nodes")
	}
}

type namedRPC string

func (n namedRPC) Name() string { return string(n) }

func (n namedRPC) Methods() map[string]handler.RPCMethod { return nil }

type caseClashRPC struct{}

func (caseClashRPC) Name() string { return "clash" }

func (caseClashRPC) Methods() map[string]handler.RPCMethod {
	m := func(context.Context, handler.Client, handler.Request, json.RawMessage) (any, error) { return 1, nil }
	return map[string]handler.RPCMethod{"doIt": m, "doit": m}
}

func TestNewNodeErrors(t *testing.T) {
	cases := []struct {
		name   string
		routes RoutesConfig
		want   []string // substrings of the error
	}{
		{"unknown rpc handler", RoutesConfig{RPC: map[string]RouteConfig{"r1": {Pattern: "a/{method}", Handler: "nope"}}}, []string{`"r1"`, `"nope"`}},
		{"topic handler used as rpc", RoutesConfig{RPC: map[string]RouteConfig{"r1": {Pattern: "a", Handler: "test.topic"}}}, []string{`"r1"`, `"test.topic"`}},
		{"unknown topic handler", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a", Handler: "test.rpc"}}}, []string{`"t1"`, `"test.rpc"`}},
		{"no handler", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a"}}}, []string{`"t1"`, "no handler"}},
		{"empty pattern", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Handler: "test.topic"}}}, []string{`"t1"`, "empty pattern"}},
		{"mixed segment", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/user-{id}", Handler: "test.topic"}}}, []string{`"t1"`, `"user-{id}"`}},
		{"unbalanced brace", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id", Handler: "test.topic"}}}, []string{`"t1"`, `"{id"`}},
		{"bad placeholder name", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{1x}", Handler: "test.topic"}}}, []string{`"t1"`, `{1x}`}},
		{"long placeholder name", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{" + strings.Repeat("x", 33) + "}", Handler: "test.topic"}}}, []string{`"t1"`, "longer"}},
		{"duplicate placeholder", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "{a}/{a}", Handler: "test.topic"}}}, []string{`"t1"`, "{a}"}},
		{"bad regexp", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id}", Handler: "test.topic", Requirements: map[string]string{"id": `(\d+`}}}}, []string{`"t1"`, `{id}`, `(\d+`}},
		{"PCRE-only regexp", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id}", Handler: "test.topic", Requirements: map[string]string{"id": `(?=x)x`}}}}, []string{`"t1"`, `{id}`}},
		{"requirement without placeholder", RoutesConfig{Topics: map[string]RouteConfig{"t1": {Pattern: "a/{id}", Handler: "test.topic", Requirements: map[string]string{"room": `\d+`}}}}, []string{`"t1"`, `"room"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := handler.NewRegistry()
			_ = reg.AddRPC(testRPC{})
			_ = reg.AddTopic(&testTopic{})
			checkErr := CheckRoutes(tc.routes, reg)
			_, err := NewNode(NodeConfig{Routes: tc.routes, Handlers: reg})
			if err == nil {
				t.Fatal("no error")
			}
			if checkErr == nil || checkErr.Error() != err.Error() {
				t.Errorf("CheckRoutes = %v, NewNode = %v", checkErr, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
	reg := handler.NewRegistry()
	_ = reg.AddRPC(caseClashRPC{})
	if _, err := NewNode(NodeConfig{Handlers: reg}); err == nil || !strings.Contains(err.Error(), "differ only in case") {
		t.Errorf("case clash: %v", err)
	}
}

func TestCheckRoutesAccess(t *testing.T) {
	reg := handler.NewRegistry()
	if err := reg.AddRPC(testRPC{}); err != nil {
		t.Fatal(err)
	}
	err := CheckRoutes(RoutesConfig{RPC: map[string]RouteConfig{"x": {Pattern: "x/{method}", Handler: "test.rpc", Roles: []string{" "}}}}, reg)
	if err == nil || !strings.Contains(err.Error(), "empty role") {
		t.Errorf("empty role accepted: %v", err)
	}
}

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
