package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

func TestPush(t *testing.T) {
	f, _ := newPeriodicFixture(t)
	ctx := context.Background()
	s1, p1 := f.open(t, "a")
	s2, p2 := f.openV2(t, ClientInfo{ConnID: "b", Identity: handler.Identity{UserIdentifier: "bob"}})
	_ = s1.Handle(ctx, []byte(`[5,"tick/lobby"]`))
	_ = s2.Handle(ctx, []byte(`[32,1,{},"tick/lobby"]`))
	p1.take()
	p2.take()
	if err := f.node.Push(ctx, "tick/lobby", json.RawMessage(`{"n":1}`), "http"); err != nil {
		t.Fatal(err)
	}
	var got1 []string
	for _, m := range p1.take() {
		if !strings.Contains(string(m), `"tick"]`) {
			got1 = append(got1, string(m))
		}
	}
	if len(got1) != 1 || got1[0] != `[8,"tick/lobby",{"pushed":{"n":1},"room":"lobby","via":"http"}]` {
		t.Errorf("v1 push event %q", got1)
	}
	found := false
	for _, m := range p2.take() {
		if strings.Contains(string(m), `[{"pushed":{"n":1},"room":"lobby","via":"http"}]]`) {
			found = true
		}
	}
	if !found {
		t.Error("v2 subscriber did not get the push")
	}
	if err := f.node.Push(ctx, "nowhere", json.RawMessage(`1`), "http"); !errors.Is(err, ErrNoRoute) {
		t.Errorf("push to unrouted uri: %v", err)
	}
	if err := f.node.Push(ctx, "chan/a", json.RawMessage(`1`), "http"); !errors.Is(err, ErrNotPushable) {
		t.Errorf("push to non-pushable topic: %v", err)
	}
	if err := f.node.Push(ctx, "tick/a", json.RawMessage(`{`), "http"); err == nil {
		t.Error("invalid payload accepted")
	}
	if err := f.node.Push(ctx, "tick/a", json.RawMessage(`1`), "fail"); err == nil || err.Error() != "push refused" {
		t.Errorf("handler error: %v", err)
	}
	if err := f.node.Push(ctx, "tick/a", json.RawMessage(`1`), "panic"); !errors.Is(err, errPanic) {
		t.Errorf("handler panic: %v", err)
	}
	s1.Close()
	s2.Close()
	f.node.timers.Wait()
}
