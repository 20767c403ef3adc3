package wamp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// slowRPC is an offloaded handler whose "wait" method blocks until
// released, like an upstream that does not answer.
type slowRPC struct {
	release chan struct{}
	started chan struct{}
}

func (slowRPC) Name() string { return "test.slow" }

func (slowRPC) Offload() bool { return true }

func (r slowRPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{
		"wait": func(ctx context.Context, _ handler.Client, _ handler.Request, p json.RawMessage) (any, error) {
			r.started <- struct{}{}
			select {
			case <-r.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return p, nil
		},
	}
}

func TestOffloadedCallsDoNotHoldTheReader(t *testing.T) {
	ctx := context.Background()
	slow := slowRPC{release: make(chan struct{}), started: make(chan struct{}, 16)}
	f := newFixture(t, func(c *NodeConfig) {
		c.Routes.RPC["slow"] = RouteConfig{Pattern: "slow/{method}", Handler: "test.slow"}
		c.Limits.MaxOffloadedCallsPerSession = 2
		if err := c.Handlers.AddRPC(slow); err != nil {
			t.Fatal(err)
		}
	})
	s, p := f.open(t, "a")
	// Two slow calls start and block; Handle returns at once for both.
	for _, id := range []string{"w1", "w2"} {
		done := make(chan error, 1)
		go func() { done <- s.Handle(ctx, []byte(`[2,"`+id+`","slow/wait",1]`)) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Handle blocked on an offloaded call")
		}
		<-slow.started
	}
	if got := f.node.OffloadedCalls(); got != 2 {
		t.Fatalf("OffloadedCalls = %d, want 2", got)
	}
	// A third is over the session's bound: refused at once with 503.
	if err := s.Handle(ctx, []byte(`[2,"w3","slow/wait",1]`)); err != nil {
		t.Fatal(err)
	}
	// Other calls are answered while the slow ones wait.
	if err := s.Handle(ctx, []byte(`[2,"e1","sample/echo",{"x":1}]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, p.take(), []string{
		`[4,"w3","slow/wait","Too many calls in progress, try again later",{"code":503,"rpc":{},"params":[1],"request":{}}]`,
		`[3,"e1",{"x":1}]`,
	}, "")
	close(slow.release)
	deadline := time.Now().Add(5 * time.Second)
	var got []string
	for len(got) < 2 && time.Now().Before(deadline) {
		for _, m := range p.take() {
			got = append(got, string(m))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], `[3,"w`) || !strings.HasPrefix(got[1], `[3,"w`) {
		t.Fatalf("results of the released calls: %q", got)
	}
	if n := f.node.OffloadedCalls(); n != 0 {
		t.Errorf("OffloadedCalls = %d after the calls returned", n)
	}
}

func TestOffloadedCallsV2BusyError(t *testing.T) {
	ctx := context.Background()
	slow := slowRPC{release: make(chan struct{}), started: make(chan struct{}, 16)}
	defer close(slow.release)
	f := newFixture(t, func(c *NodeConfig) {
		c.Routes.RPC["slow"] = RouteConfig{Pattern: "slow/{method}", Handler: "test.slow"}
		c.Limits.MaxOffloadedCalls = 1
		if err := c.Handlers.AddRPC(slow); err != nil {
			t.Fatal(err)
		}
	})
	s, p := f.openV2(t, ClientInfo{ConnID: "b", Identity: handler.Identity{UserIdentifier: "bob"}})
	if err := s.Handle(ctx, []byte(`[48,1,{},"slow/wait",[1]]`)); err != nil {
		t.Fatal(err)
	}
	<-slow.started
	// The node's bound (1) is reached: the next one is refused.
	if err := s.Handle(ctx, []byte(`[48,2,{},"slow/wait",[2]]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, p.take(), []string{`[8,48,2,{},"wsgate.error.busy",["Too many calls in progress, try again later"],{"code":503}]`}, "")
}
