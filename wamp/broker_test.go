package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

func TestPublishFanoutAcrossSessions(t *testing.T) {
	f := newFixture(t, nil)
	a, pa := f.open(t, "a")
	b, pb := f.open(t, "b")
	c, pc := f.open(t, "c")
	ctx := context.Background()
	for _, s := range []*Session{a, b, c} {
		if err := s.Handle(ctx, []byte(`[5,"chan/r"]`)); err != nil {
			t.Fatal(err)
		}
	}
	pa.take()
	pb.take()
	pc.take()

	type expect struct{ a, b, c int }
	cases := []struct {
		msg  string
		want expect
	}{
		{`[7,"chan/r","x"]`, expect{1, 1, 1}},
		{`[7,"chan/r","x",true]`, expect{0, 1, 1}},
		{`[7,"chan/r","x",false]`, expect{1, 1, 1}},
		{`[7,"chan/r","x",["` + b.ID() + `"]]`, expect{1, 0, 1}},
		{`[7,"chan/r","x",[],["` + b.ID() + `"]]`, expect{0, 1, 0}},
		{`[7,"chan/r","x",["` + b.ID() + `"],["` + b.ID() + `","` + c.ID() + `"]]`, expect{0, 0, 1}},
		{`[7,"chan/r","x",true,["` + a.ID() + `","` + c.ID() + `"]]`, expect{0, 0, 1}},
	}
	for _, tc := range cases {
		if err := a.Handle(ctx, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		got := expect{len(pa.take()), len(pb.take()), len(pc.take())}
		if got != tc.want {
			t.Errorf("%s: deliveries %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}

func TestFanoutSharesOneEncoding(t *testing.T) {
	f := newFixture(t, nil)
	var peers []*fakePeer
	for i := 0; i < 5; i++ {
		s, p := f.open(t, "c"+string(rune('0'+i)))
		if err := s.Handle(context.Background(), []byte(`[5,"chan/x"]`)); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	for _, p := range peers {
		p.take()
	}
	if err := f.node.Topic("chan/x").Broadcast(map[string]int{"n": 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	var first []byte
	for i, p := range peers {
		got := p.take()
		if len(got) != 1 {
			t.Fatalf("peer %d got %q", i, got)
		}
		if !jsonEqual(t, got[0], `[8,"chan/x",{"n":1}]`) {
			t.Errorf("peer %d got %s", i, got[0])
		}
		if i == 0 {
			first = got[0]
		} else if &got[0][0] != &first[0] {
			t.Errorf("peer %d got a different backing array: the event was encoded more than once", i)
		}
	}
	if err := f.node.Topic("chan/x").Broadcast(make(chan int), nil, nil); err == nil {
		t.Error("unencodable event: want error")
	}
	if n := f.node.Topic("chan/x").Count(); n != 5 {
		t.Errorf("Count = %d", n)
	}
	if n := f.node.Topic("chan/none").Count(); n != 0 {
		t.Errorf("Count of unknown topic = %d", n)
	}
}

// TestMixedTopic: a v1 publisher reaches v2 subscribers of the same topic
// and the other way round, and each protocol's EVENT is encoded once.
func TestMixedTopic(t *testing.T) {
	f := newFixture(t, nil)
	v1a, p1a := f.open(t, "v1a")
	v1b, p1b := f.open(t, "v1b")
	v2a, p2a := f.openV2(t, ClientInfo{ConnID: "v2a", Identity: handler.Identity{UserIdentifier: "carol"}})
	v2b, p2b := f.openV2(t, ClientInfo{ConnID: "v2b", Identity: handler.Identity{UserIdentifier: "dave"}})
	ctx := context.Background()
	for _, s := range []*Session{v1a, v1b} {
		if err := s.Handle(ctx, []byte(`[5,"chan/mix"]`)); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range []*Session{v2a, v2b} {
		if err := s.Handle(ctx, []byte(`[32,`+strconv.Itoa(i+1)+`,{},"chan/mix"]`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*fakePeer{p1a, p1b, p2a, p2b} {
		p.take()
	}

	// v1 publish, excludeMe: both v2 and the other v1 get it.
	if err := v1a.Handle(ctx, []byte(`[7,"chan/mix",{"t":1},true]`)); err != nil {
		t.Fatal(err)
	}
	if got := p1a.take(); len(got) != 0 {
		t.Errorf("excluded v1 publisher got %q", got)
	}
	e1 := p1b.take()
	expectMsgs(t, e1, []string{`[8,"chan/mix",{"msg":{"t":1}}]`}, "")
	e2a, e2b := p2a.take(), p2b.take()
	if len(e2a) != 1 || len(e2b) != 1 {
		t.Fatalf("v2 subscribers got %q and %q", e2a, e2b)
	}
	expectMsgs(t, [][]byte{normalizePub(e2a[0])}, []string{`[36,1,"$PUB",{},[{"msg":{"t":1}}]]`}, "")
	if &e2a[0][0] != &e2b[0][0] {
		t.Error("v2 EVENT encoded once per subscriber, want once per protocol")
	}

	// v2 publish excluding one v1 session by id, eligible by authid
	// mixing: v2 exclude_me default.
	if err := v2a.Handle(ctx, []byte(`[16,9,{"exclude":[],"acknowledge":true},"chan/mix",["from v2"]]`)); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, [][]byte{normalizePub(p2a.take()[0])}, []string{`[17,9,"$PUB"]`}, "")
	m1a, m1b, m2b := p1a.take(), p1b.take(), p2b.take()
	expectMsgs(t, m1a, []string{`[8,"chan/mix",{"msg":"from v2"}]`}, "")
	expectMsgs(t, m1b, []string{`[8,"chan/mix",{"msg":"from v2"}]`}, "")
	if &m1a[0][0] != &m1b[0][0] {
		t.Error("v1 EVENT encoded once per subscriber, want once per protocol")
	}
	if len(m2b) != 1 {
		t.Fatalf("v2 subscriber got %q", m2b)
	}

	// A v1 client can name a v2 session in its eligible list.
	if err := v1a.Handle(ctx, []byte(`[7,"chan/mix","only dave",[],["`+v2b.ID()+`"]]`)); err != nil {
		t.Fatal(err)
	}
	if len(p1a.take())+len(p1b.take())+len(p2a.take()) != 0 {
		t.Error("non-eligible sessions got the event")
	}
	if got := p2b.take(); len(got) != 1 || !strings.Contains(string(got[0]), "only dave") {
		t.Errorf("eligible v2 session got %q", got)
	}
	for _, s := range []*Session{v1a, v1b, v2a, v2b} {
		s.Close()
	}
	if st := f.node.Stats(); st.Topics != 0 || st.Subscriptions != 0 || st.Sessions[ProtocolV1] != 0 || st.Sessions[ProtocolV2JSON] != 0 {
		t.Errorf("stats after close %+v", st)
	}
}

// periodicTopic ticks and counts; pushes broadcast the payload.
type periodicTopic struct {
	testTopic
	ticks atomic.Int64
	after atomic.Int64 // ticks seen after the topic emptied
}

func (*periodicTopic) Name() string { return "test.periodic" }

func (*periodicTopic) Period() time.Duration { return time.Millisecond }

func (p *periodicTopic) OnTick(ctx context.Context, t handler.TopicRef) {
	p.ticks.Add(1)
	if t.Count() == 0 && ctx.Err() == nil {
		// Possible only in the instant between the last unsubscribe and
		// the cancel; counted, never fatal.
		p.after.Add(1)
	}
	_ = t.Broadcast("tick", nil, nil)
}

func (p *periodicTopic) OnPush(_ context.Context, t handler.TopicRef, req handler.Request, payload json.RawMessage, provider string) error {
	if provider == "fail" {
		return errors.New("push refused")
	}
	if provider == "panic" {
		panic("push panic")
	}
	return t.Broadcast(map[string]any{"pushed": payload, "room": req.Attributes["room"], "via": provider}, nil, nil)
}

func newPeriodicFixture(t *testing.T) (*fixture, *periodicTopic) {
	t.Helper()
	pt := &periodicTopic{}
	f := newFixture(t, func(c *NodeConfig) {
		c.Routes.Topics["tick"] = RouteConfig{Pattern: "tick/{room}", Handler: "test.periodic"}
		if err := c.Handlers.AddTopic(pt); err != nil {
			t.Fatal(err)
		}
	})
	return f, pt
}

func TestPeriodicTopic(t *testing.T) {
	f, pt := newPeriodicFixture(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	// Many sessions subscribe and leave concurrently; one timer per topic.
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := f.node.Open(&fakePeer{}, ClientInfo{ConnID: "c" + strconv.Itoa(i)})
			defer s.Close()
			for j := 0; j < 20; j++ {
				topic := `"tick/r` + strconv.Itoa(j%3) + `"`
				_ = s.Handle(ctx, []byte(`[5,`+topic+`]`))
				time.Sleep(100 * time.Microsecond)
				_ = s.Handle(ctx, []byte(`[6,`+topic+`]`))
			}
		}(i)
	}
	wg.Wait()
	// All topics are empty: every timer goroutine must end.
	done := make(chan struct{})
	go func() { f.node.timers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("timer goroutines still running after every topic emptied")
	}
	before := pt.ticks.Load()
	time.Sleep(10 * time.Millisecond)
	if pt.ticks.Load() != before {
		t.Error("OnTick called after the topic emptied")
	}

	// A subscriber gets ticks while subscribed.
	p := &fakePeer{}
	s := f.node.Open(p, ClientInfo{ConnID: "x"})
	if err := s.Handle(ctx, []byte(`[5,"tick/solo"]`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0
		for _, m := range p.take() {
			if string(m) == `[8,"tick/solo","tick"]` {
				n++
			}
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no tick EVENT within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	f.node.timers.Wait()
}
