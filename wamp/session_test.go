package wamp

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCloseUnsubscribesAndForgets(t *testing.T) {
	f := newFixture(t, nil)
	a, _ := f.open(t, "a")
	b, pb := f.open(t, "b")
	ctx := context.Background()
	for _, m := range []string{`[5,"chan/1"]`, `[5,"chan/2"]`} {
		if err := a.Handle(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Handle(ctx, []byte(`[5,"chan/1"]`)); err != nil {
		t.Fatal(err)
	}
	pb.take()
	f.topic.takeCalls()

	if _, ok := f.node.Clients().GetClient("a"); !ok {
		t.Fatal("a not indexed")
	}
	a.Close()
	a.Close() // idempotent
	f.settle(t)
	expectMsgs(t, pb.take(), []string{`[8,"chan/1",{"msg":"a has left chan/1"}]`}, b.ID())
	calls := f.topic.takeCalls()
	if want := []string{"unsub a chan/1", "unsub a chan/2"}; strings.Join(calls, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", calls, want)
	}
	if _, ok := f.node.Clients().GetClient("a"); ok {
		t.Error("a still indexed after Close")
	}
	if err := a.Handle(ctx, []byte(`[5,"chan/3"]`)); !errors.Is(err, ErrClosed) {
		t.Errorf("Handle after Close: %v", err)
	}
	if n := f.node.broker.topicCount(); n != 1 {
		t.Errorf("%d topics left, want 1 (chan/2 must be deleted when empty)", n)
	}
	b.Close()
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("%d topics left after everyone closed", n)
	}
}

func TestUnsubscribeRemovesEmptyTopic(t *testing.T) {
	f := newFixture(t, nil)
	s, _ := f.open(t, "a")
	ctx := context.Background()
	_ = s.Handle(ctx, []byte(`[5,"chan/1"]`))
	_ = s.Handle(ctx, []byte(`[5,"deny/1"]`))
	if n := f.node.broker.topicCount(); n != 1 {
		t.Fatalf("topics %d", n)
	}
	_ = s.Handle(ctx, []byte(`[6,"chan/1"]`))
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("topics %d after unsubscribe", n)
	}
}

func TestCloseDuringHandle(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = -1 })
	f.topic.slowSubscribe = true
	s, _ := f.open(t, "a")
	done := make(chan error, 1)
	go func() { done <- s.Handle(context.Background(), []byte(`[5,"chan/1"]`)) }()
	// Wait until the handler is running.
	deadline := time.Now().Add(5 * time.Second)
	for f.node.broker.count("chan/1") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscribe never started")
		}
		time.Sleep(time.Millisecond)
	}
	s.Close() // must not wait for the handler, and must cancel its ctx
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Handle: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context was not cancelled by Close")
	}
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("cleanup after in-flight Handle left %d topics", n)
	}
	if _, ok := f.node.Clients().GetClient("a"); ok {
		t.Error("session still indexed")
	}
}

func TestCallTimeout(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = 20 * time.Millisecond })
	s, p := f.open(t, "a")
	if err := s.Handle(context.Background(), []byte(`[2,"c","sample/slow"]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, p.take(), []string{`[4,"c","sample/slow","context deadline exceeded",{"code":500,"rpc":{},"params":[],"request":{}}]`}, s.ID())
}

func TestConcurrentHandleRejected(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) { c.CallTimeout = -1 })
	s, _ := f.open(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for {
			// The probe below may hold the session at the instant this
			// starts; that is the misuse being tested, seen from this side.
			err := s.Handle(ctx, []byte(`[2,"c","sample/slow"]`))
			if !errors.Is(err, errConcurrentHandle) {
				done <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.Handle(context.Background(), []byte(`[2,"c","sample/echo"]`))
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				t.Fatalf("misuse reported as protocol error: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("concurrent Handle never detected")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPeerRefusalIsHarmless(t *testing.T) {
	f := newFixture(t, nil)
	s, p := f.open(t, "a")
	p.refuse = true
	for _, m := range []string{`[5,"chan/1"]`, `[2,"c","sample/echo"]`, `[7,"chan/1","x"]`} {
		if err := s.Handle(context.Background(), []byte(m)); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

// TestConcurrentSessions is for -race: many sessions subscribing,
// publishing, broadcasting and closing at once.
func TestConcurrentSessions(t *testing.T) {
	f := newFixture(t, nil)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := &fakePeer{}
			s := f.node.Open(p, ClientInfo{ConnID: "c" + string(rune('a'+i))})
			ctx := context.Background()
			for j := 0; j < 50; j++ {
				room := []string{`"chan/1"`, `"chan/2"`, `"chan/3"`}[j%3]
				for _, m := range []string{`[5,` + room + `]`, `[7,` + room + `,{"j":1}]`, `[2,"c","sample/echo",1]`, `[6,` + room + `]`} {
					if err := s.Handle(ctx, []byte(m)); err != nil {
						t.Error(err)
						return
					}
				}
				_ = f.node.Topic("chan/1").Broadcast("x", nil, nil)
				f.node.Clients().GetAll(true)
				p.take()
			}
			_ = s.Handle(ctx, []byte(`[5,"chan/1"]`))
			s.Close()
		}(i)
	}
	wg.Wait()
	if n := f.node.broker.topicCount(); n != 0 {
		t.Errorf("%d topics left", n)
	}
	if n := len(f.node.Clients().GetAll(true)); n != 0 {
		t.Errorf("%d clients left", n)
	}
}
