package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// progressRPC's methods send progressive results and report how their
// calls end, for the progress and cancel tests. Offloaded, like the
// upstream handler: the realistic case for a call that can be canceled.
type progressRPC struct {
	// started gets one value per call of "hold" once it runs; ended gets
	// the ctx error "hold" ended with (nil when it was released).
	started chan struct{}
	ended   chan error
	// release ends "hold" calls with a result.
	release chan struct{}
	// progressErr gets what Progress returned after "hold" ended.
	progressErr chan error
	offload     bool
}

func newProgressRPC(offload bool) *progressRPC {
	return &progressRPC{
		started: make(chan struct{}, 16), ended: make(chan error, 16), release: make(chan struct{}),
		progressErr: make(chan error, 16), offload: offload,
	}
}

func (*progressRPC) Name() string { return "test.progress" }

func (r *progressRPC) Offload() bool { return r.offload }

func (r *progressRPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{
		// count sends 1..n as progress, then returns "done"; it tells
		// whether the caller wanted progress.
		"count": func(ctx context.Context, _ handler.Client, _ handler.Request, p json.RawMessage) (any, error) {
			var args []int
			if err := json.Unmarshal(p, &args); err != nil || len(args) != 1 {
				return nil, &handler.Error{Desc: "want [n]", Code: 400}
			}
			for i := 1; i <= args[0]; i++ {
				if err := handler.Progress(ctx, i); err != nil {
					return nil, err
				}
			}
			return map[string]any{"done": true, "wanted": handler.WantsProgress(ctx)}, nil
		},
		// tick sends n progress, one every 30 ms, then returns "ticked".
		"tick": func(ctx context.Context, _ handler.Client, _ handler.Request, p json.RawMessage) (any, error) {
			var args []int
			if err := json.Unmarshal(p, &args); err != nil || len(args) != 1 {
				return nil, &handler.Error{Desc: "want [n]", Code: 400}
			}
			for i := 1; i <= args[0]; i++ {
				select {
				case <-time.After(30 * time.Millisecond):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if err := handler.Progress(ctx, i); err != nil {
					return nil, err
				}
			}
			return "ticked", nil
		},
		// hold sends one progress, then waits for release or its ctx.
		"hold": func(ctx context.Context, _ handler.Client, _ handler.Request, _ json.RawMessage) (any, error) {
			if err := handler.Progress(ctx, "started"); err != nil {
				return nil, err
			}
			r.started <- struct{}{}
			var err error
			select {
			case <-r.release:
			case <-ctx.Done():
				err = ctx.Err()
			}
			r.ended <- err
			r.progressErr <- handler.Progress(ctx, "late")
			if err != nil {
				return nil, err
			}
			return "released", nil
		},
	}
}

// progressFixture is a node with test.progress routed at "p/{method}".
func progressFixture(t *testing.T, r *progressRPC, mod func(*NodeConfig)) *fixture {
	return newFixture(t, func(c *NodeConfig) {
		c.Routes.RPC["p"] = RouteConfig{Pattern: "p/{method}", Handler: "test.progress"}
		if err := c.Handlers.AddRPC(r); err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			mod(c)
		}
	})
}

// waitMsgs polls p until it holds n messages (or 5 s pass) and returns
// them.
func waitMsgs(t *testing.T, p *fakePeer, n int) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		for _, m := range p.take() {
			got = append(got, string(m))
		}
		if len(got) < n {
			time.Sleep(2 * time.Millisecond)
		}
	}
	if len(got) != n {
		t.Fatalf("got %d messages %q, want %d", len(got), got, n)
	}
	return got
}

func TestProgressiveResults(t *testing.T) {
	ctx := context.Background()
	for _, offload := range []bool{false, true} {
		for _, tc := range []struct {
			name string
			call string
			want []string
		}{
			{"receive_progress", `[48,1,{"receive_progress":true},"p/count",[3]]`, []string{
				`[50,1,{"progress":true},[1]]`, `[50,1,{"progress":true},[2]]`, `[50,1,{"progress":true},[3]]`,
				`[50,1,{},[{"done":true,"wanted":true}]]`,
			}},
			{"no receive_progress", `[48,1,{},"p/count",[3]]`, []string{`[50,1,{},[{"done":true,"wanted":false}]]`}},
			{"receive_progress false", `[48,1,{"receive_progress":false},"p/count",[2]]`, []string{`[50,1,{},[{"done":true,"wanted":false}]]`}},
			{"unreadable options are none", `[48,1,{"receive_progress":"yes"},"p/count",[2]]`, []string{`[50,1,{},[{"done":true,"wanted":false}]]`}},
			{"zero progress", `[48,1,{"receive_progress":true},"p/count",[0]]`, []string{`[50,1,{},[{"done":true,"wanted":true}]]`}},
		} {
			t.Run(fmt.Sprintf("%s offload=%v", tc.name, offload), func(t *testing.T) {
				f := progressFixture(t, newProgressRPC(offload), nil)
				s, p := f.openV2(t, ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}})
				if err := s.Handle(ctx, []byte(tc.call)); err != nil {
					t.Fatal(err)
				}
				got := waitMsgs(t, p, len(tc.want))
				for i := range tc.want {
					if !jsonEqual(t, []byte(got[i]), tc.want[i]) {
						t.Fatalf("message %d: got %s, want %s (all: %q)", i, got[i], tc.want[i], got)
					}
				}
				f.settle(t)
				if n := s.runningCalls(); n != 0 {
					t.Errorf("%d calls still listed", n)
				}
			})
		}
	}
}

// A WAMP v1 client has no progressive results: Progress is a no-op.
func TestProgressV1IsNoOp(t *testing.T) {
	f := progressFixture(t, newProgressRPC(false), nil)
	s, p := f.open(t, "a")
	if err := s.Handle(context.Background(), []byte(`[2,"c1","p/count",[2]]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, p.take(), []string{`[3,"c1",{"done":true,"wanted":false}]`}, "")
}

func TestCallCanceling(t *testing.T) {
	ctx := context.Background()
	const (
		progress = `[50,7,{"progress":true},["started"]]`
		canceled = `[8,48,7,{},"wamp.error.canceled",["call canceled"]]`
	)
	for _, tc := range []struct {
		name string
		// cancel is the CANCEL sent once the call runs.
		cancel string
		// interrupted: the handler's ctx ends at the CANCEL.
		interrupted bool
		// atCancel is what the client gets at the CANCEL; atEnd what it
		// gets when the handler returns (interrupted, or released).
		atCancel, atEnd []string
	}{
		{"skip", `[49,7,{"mode":"skip"}]`, false, []string{canceled}, nil},
		{"killnowait", `[49,7,{"mode":"killnowait"}]`, true, []string{canceled}, nil},
		{"kill", `[49,7,{"mode":"kill"}]`, true, nil, []string{canceled}},
		{"no mode", `[49,7,{}]`, true, nil, nil},
		{"unknown mode is ignored", `[49,7,{"mode":"later"}]`, false, nil, []string{`[50,7,{},["released"]]`}},
		{"unknown id is ignored", `[49,8,{"mode":"kill"}]`, false, nil, []string{`[50,7,{},["released"]]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newProgressRPC(true)
			f := progressFixture(t, r, func(c *NodeConfig) { c.Limits.MaxOffloadedCallsPerSession = 1 })
			s, p := f.openV2(t, ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}})
			if err := s.Handle(ctx, []byte(`[48,7,{"receive_progress":true},"p/hold",[]]`)); err != nil {
				t.Fatal(err)
			}
			<-r.started
			expectMsgs(t, waitMsgsRaw(t, p, 1), []string{progress}, "")
			if err := s.Handle(ctx, []byte(tc.cancel)); err != nil {
				t.Fatal(err)
			}
			if tc.interrupted {
				select {
				case err := <-r.ended:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("handler ended with %v, want context.Canceled", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the CANCEL did not end the handler's ctx")
				}
			} else {
				select {
				case err := <-r.ended:
					t.Fatalf("handler ended (%v) at a CANCEL that must not interrupt it", err)
				case <-time.After(50 * time.Millisecond):
				}
				close(r.release)
				if err := <-r.ended; err != nil {
					t.Fatalf("released handler ended with %v", err)
				}
			}
			if err := <-r.progressErr; tc.atCancel != nil || tc.name == "no mode" || tc.name == "kill" {
				if !errors.Is(err, handler.ErrCallEnded) {
					t.Errorf("Progress after the CANCEL returned %v, want ErrCallEnded", err)
				}
			}
			f.settle(t)
			want := append(append([]string{}, tc.atCancel...), tc.atEnd...)
			got := p.take()
			if tc.name == "unknown mode is ignored" || tc.name == "unknown id is ignored" {
				// The call ran on: its "late" progress went out before the
				// result.
				want = append([]string{`[50,7,{"progress":true},["late"]]`}, want...)
			}
			expectMsgs(t, got, want, "")
			// The pending-call slot is free again (the bound is 1) and
			// the call is no longer listed: a repeated CANCEL does nothing.
			if n := f.node.OffloadedCalls(); n != 0 {
				t.Errorf("OffloadedCalls = %d after the call ended", n)
			}
			if n := s.runningCalls(); n != 0 {
				t.Errorf("%d calls still listed", n)
			}
			if err := s.Handle(ctx, []byte(`[49,7,{"mode":"killnowait"}]`)); err != nil {
				t.Fatal(err)
			}
			if err := s.Handle(ctx, []byte(`[48,9,{},"p/count",[1]]`)); err != nil {
				t.Fatal(err)
			}
			expectMsgs(t, waitMsgsRaw(t, p, 1), []string{`[50,9,{},[{"done":true,"wanted":false}]]`}, "")
		})
	}
}

// waitMsgsRaw is waitMsgs returning the raw messages.
func waitMsgsRaw(t *testing.T, p *fakePeer, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range waitMsgs(t, p, n) {
		out = append(out, []byte(m))
	}
	return out
}

// A CANCEL after the result, or a second CANCEL, changes nothing; a kill
// of a call that still produces its result gets that result.
func TestCancelAfterResult(t *testing.T) {
	ctx := context.Background()
	r := newProgressRPC(true)
	f := progressFixture(t, r, nil)
	s, p := f.openV2(t, ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}})
	if err := s.Handle(ctx, []byte(`[48,3,{},"p/count",[1]]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, waitMsgsRaw(t, p, 1), []string{`[50,3,{},[{"done":true,"wanted":false}]]`}, "")
	f.settle(t)
	for _, c := range []string{`[49,3,{"mode":"kill"}]`, `[49,3,{"mode":"skip"}]`, `[49,3,{}]`} {
		if err := s.Handle(ctx, []byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.take(); len(got) != 0 {
		t.Fatalf("a CANCEL after the result was answered: %q", got)
	}
	// A repeated CANCEL of a killed call: one answer only.
	if err := s.Handle(ctx, []byte(`[48,4,{},"p/hold",[]]`)); err != nil {
		t.Fatal(err)
	}
	<-r.started
	for range 2 {
		if err := s.Handle(ctx, []byte(`[49,4,{"mode":"kill"}]`)); err != nil {
			t.Fatal(err)
		}
	}
	<-r.ended
	<-r.progressErr
	f.settle(t)
	expectMsgs(t, p.take(), []string{`[8,48,4,{},"wamp.error.canceled",["call canceled"]]`}, "")
}

// Closing the session ends a running call's ctx (the caller left) and
// unlists it.
func TestCallEndsWithSession(t *testing.T) {
	r := newProgressRPC(true)
	f := progressFixture(t, r, nil)
	s, _ := f.openV2(t, ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}})
	if err := s.Handle(context.Background(), []byte(`[48,5,{"receive_progress":true},"p/hold",[]]`)); err != nil {
		t.Fatal(err)
	}
	<-r.started
	s.Close()
	select {
	case err := <-r.ended:
		if err == nil {
			t.Fatal("handler released, not cancelled")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the call's ctx")
	}
	f.settle(t)
	if n := s.runningCalls(); n != 0 {
		t.Errorf("%d calls still listed", n)
	}
	if n := f.node.OffloadedCalls(); n != 0 {
		t.Errorf("OffloadedCalls = %d", n)
	}
}

func TestWelcomeDealerFeatures(t *testing.T) {
	f := newFixture(t, nil)
	p := &fakePeer{}
	s := f.node.OpenProtocol(p, ClientInfo{ConnID: "c1"}, ProtocolV2JSON)
	if err := s.Handle(context.Background(), []byte(`[1,"r",{}]`)); err != nil {
		t.Fatal(err)
	}
	msgs := p.take()
	if len(msgs) != 1 {
		t.Fatalf("WELCOME %q", msgs)
	}
	for _, feat := range []string{`"progressive_call_results":true`, `"call_canceling":true`, `"call_timeout":true`} {
		if !strings.Contains(string(msgs[0]), feat) {
			t.Errorf("dealer feature %s not announced: %s", feat, msgs[0])
		}
	}
}

// runningCalls is how many calls s lists, for the tests.
func (s *Session) runningCalls() int {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	return len(s.calls)
}

// The caller's timeout (CALL option timeout, ms) ends a call that gives no
// result in time with ERROR wamp.error.timeout and cancels its ctx; it
// runs between results, so progress keeps a call alive.
func TestCallerTimeout(t *testing.T) {
	ctx := context.Background()
	t.Run("expires", func(t *testing.T) {
		r := newProgressRPC(true)
		f := progressFixture(t, r, nil)
		s, p := f.openV2(t, ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}})
		if err := s.Handle(ctx, []byte(`[48,1,{"timeout":50},"p/hold",[]]`)); err != nil {
			t.Fatal(err)
		}
		<-r.started
		select {
		case err := <-r.ended:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("handler ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the caller's timeout did not end the handler's ctx")
		}
		<-r.progressErr
		f.settle(t)
		expectMsgs(t, p.take(), []string{`[8,48,1,{},"wamp.error.timeout",["call timed out"]]`}, "")
	})
	for _, tc := range []struct {
		name, call, want string
	}{
		// 12 progress 30 ms apart: 360 ms in all, never 300 ms without one.
		{"progress resets it", `[48,2,{"timeout":300,"receive_progress":true},"p/tick",[12]]`, `[50,2,{},["ticked"]]`},
		{"zero is none", `[48,2,{"timeout":0},"p/tick",[2]]`, `[50,2,{},["ticked"]]`},
		{"not an integer is none", `[48,2,{"timeout":1.5},"p/tick",[2]]`, `[50,2,{},["ticked"]]`},
		{"negative is none", `[48,2,{"timeout":-5},"p/tick",[2]]`, `[50,2,{},["ticked"]]`},
		{"without progress it expires", `[48,2,{"timeout":40},"p/tick",[12]]`, `[8,48,2,{},"wamp.error.timeout",["call timed out"]]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := progressFixture(t, newProgressRPC(true), nil)
			s, p := f.openV2(t, ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}})
			if err := s.Handle(ctx, []byte(tc.call)); err != nil {
				t.Fatal(err)
			}
			f.settle(t)
			got := p.take()
			var final [][]byte
			for _, m := range got {
				if !strings.Contains(string(m), `"progress":true`) {
					final = append(final, m)
				}
			}
			expectMsgs(t, final, []string{tc.want}, "")
		})
	}
}

func TestCallerTimeoutBound(t *testing.T) {
	for _, tc := range []struct {
		node time.Duration
		ms   int64
		want time.Duration
	}{
		{10 * time.Second, 0, 0},
		{10 * time.Second, 500, 500 * time.Millisecond},
		{10 * time.Second, 10000, 0}, // the node's own comes first
		{-1, 1 << 62, 0},             // no node timeout: past the cap, no timer (and no overflow)
		{-1, 1000, time.Second},
	} {
		f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = tc.node })
		s, _ := f.openV2(t, ClientInfo{ConnID: "c"})
		if got := s.callerTimeout(tc.ms); got != tc.want {
			t.Errorf("node %v, option %d ms: timer %v, want %v", tc.node, tc.ms, got, tc.want)
		}
	}
}
