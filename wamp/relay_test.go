package wamp

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
)

// memRelay joins nodes in one process the way the Redis relay joins
// replicas: a publish reaches every other node that watches the topic.
type memRelay struct {
	hub  *memHub
	node *Node
	mu   sync.Mutex
	// watched counts Watch minus Unwatch per topic; the broker must keep
	// it at 0 or 1.
	watched map[string]int
	log     []string
	// audiences are those of the broadcasts published, in order.
	audiences []Audience
}

type memHub struct {
	mu     sync.Mutex
	relays []*memRelay
}

func (h *memHub) join() *memRelay {
	r := &memRelay{hub: h, watched: map[string]int{}}
	h.mu.Lock()
	h.relays = append(h.relays, r)
	h.mu.Unlock()
	return r
}

func (r *memRelay) Publish(topic string, payload []byte, a Audience) {
	r.mu.Lock()
	r.log = append(r.log, "publish "+topic+" "+string(payload))
	r.audiences = append(r.audiences, a)
	r.mu.Unlock()
	r.hub.mu.Lock()
	peers := slices.Clone(r.hub.relays)
	r.hub.mu.Unlock()
	for _, p := range peers {
		if p == r || !p.watches(topic) {
			continue
		}
		if _, err := p.node.DeliverRelayed(topic, payload, a); err != nil {
			panic(err)
		}
	}
}

func (r *memRelay) watches(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watched[topic] > 0
}

func (r *memRelay) Watch(topic string) {
	r.mu.Lock()
	r.watched[topic]++
	r.log = append(r.log, "watch "+topic)
	r.mu.Unlock()
}

func (r *memRelay) Unwatch(topic string) {
	r.mu.Lock()
	r.watched[topic]--
	r.log = append(r.log, "unwatch "+topic)
	r.mu.Unlock()
}

func (r *memRelay) takeLog() []string { return takeLocked(&r.mu, &r.log) }

// takeAudiences returns and clears the audiences published.
func (r *memRelay) takeAudiences() []Audience { return takeLocked(&r.mu, &r.audiences) }

// takeLocked returns *list and clears it, under mu.
func takeLocked[T any](mu *sync.Mutex, list *[]T) []T {
	mu.Lock()
	defer mu.Unlock()
	out := *list
	*list = nil
	return out
}

func TestRelayCarriesBroadcastsBetweenNodes(t *testing.T) {
	ctx := context.Background()
	hub := &memHub{}
	ra, rb, rc := hub.join(), hub.join(), hub.join()
	a := newFixture(t, func(c *NodeConfig) { c.Relay = ra })
	b := newFixture(t, func(c *NodeConfig) { c.Relay = rb })
	c := newFixture(t, func(c *NodeConfig) { c.Relay = rc })
	ra.node, rb.node, rc.node = a.node, b.node, c.node

	sa, pa := a.open(t, "a1")
	sb, pb := b.open(t, "b1")
	_, pc := c.open(t, "c1")
	sb2, pb2 := b.open(t, "b2")

	// First subscriber on a node watches the topic, later ones do not.
	if err := sb.Handle(ctx, []byte(`[5,"chan/x"]`)); err != nil {
		t.Fatal(err)
	}
	if err := sb2.Handle(ctx, []byte(`[5,"chan/x"]`)); err != nil {
		t.Fatal(err)
	}
	if got := rb.takeLog(); !slices.Contains(got, "watch chan/x") || countPrefix(got, "watch ") != 1 {
		t.Errorf("node b relay log %q: want exactly one watch of chan/x", got)
	}
	pb.take()
	pb2.take()
	if err := sa.Handle(ctx, []byte(`[5,"chan/x"]`)); err != nil {
		t.Fatal(err)
	}
	pa.take()
	// a's join broadcast went to b's subscribers through the relay.
	want := `[8,"chan/x",{"msg":"a1 has joined chan/x"}]`
	for name, p := range map[string]*fakePeer{"b1": pb, "b2": pb2} {
		expectMsgs(t, p.take(), []string{want}, "")
		_ = name
	}

	// A client publish on b reaches a (watching) and not c (not watching),
	// and honours exclude across nodes: b2 excludes b1 by session id.
	if err := sb2.Handle(ctx, []byte(`[7,"chan/x","hi",["`+sb.ID()+`"]]`)); err != nil {
		t.Fatal(err)
	}
	hi := `[8,"chan/x",{"msg":"hi"}]`
	expectMsgs(t, pa.take(), []string{hi}, "")
	expectMsgs(t, pb2.take(), []string{hi}, "")
	expectMsgs(t, pb.take(), nil, "")
	expectMsgs(t, pc.take(), nil, "")

	// Eligible names a session on another node: only it gets the event.
	if err := b.node.Topic("chan/x").Broadcast("only-a", nil, []string{sa.ID()}); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, pa.take(), []string{`[8,"chan/x","only-a"]`}, "")
	expectMsgs(t, pb.take(), nil, "")
	expectMsgs(t, pb2.take(), nil, "")

	// A LocalTopic broadcast (the Redis push channel) is not relayed.
	ra.takeLog()
	if err := a.node.LocalTopic("chan/x").Broadcast("local", nil, nil); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, pa.take(), []string{`[8,"chan/x","local"]`}, "")
	expectMsgs(t, pb.take(), nil, "")
	if got := ra.takeLog(); countPrefix(got, "publish ") != 0 {
		t.Errorf("LocalTopic broadcast was relayed: %q", got)
	}

	// The last subscriber leaving a node unwatches once.
	rb.takeLog()
	if err := sb.Handle(ctx, []byte(`[6,"chan/x"]`)); err != nil {
		t.Fatal(err)
	}
	sb2.Close()
	if got := rb.takeLog(); countPrefix(got, "unwatch ") != 1 {
		t.Errorf("node b relay log %q: want exactly one unwatch", got)
	}
	if rb.watches("chan/x") {
		t.Error("node b still watches chan/x with no subscriber")
	}
}

func TestPushLocalIsNotRelayed(t *testing.T) {
	ctx := context.Background()
	hub := &memHub{}
	relays := []*memRelay{hub.join(), hub.join()}
	var nodes []*fixture
	var peers []*fakePeer
	for i, r := range relays {
		f := newFixture(t, func(c *NodeConfig) {
			c.Relay = r
			c.Routes.Topics["tick"] = RouteConfig{Pattern: "tick/{room}", Handler: "test.periodic"}
			if err := c.Handlers.AddTopic(&periodicTopic{}); err != nil {
				t.Fatal(err)
			}
		})
		r.node = f.node
		s, p := f.open(t, "c"+string(rune('a'+i)))
		if err := s.Handle(ctx, []byte(`[5,"tick/lobby"]`)); err != nil {
			t.Fatal(err)
		}
		nodes, peers = append(nodes, f), append(peers, p)
	}
	pushes := func(p *fakePeer) []string {
		var out []string
		for _, m := range p.take() {
			if strings.Contains(string(m), `"pushed"`) {
				out = append(out, string(m))
			}
		}
		return out
	}
	for _, p := range peers {
		p.take()
	}
	// Push (HTTP API) on node 0 reaches node 1 through the relay.
	if err := nodes[0].node.Push(ctx, "tick/lobby", json.RawMessage(`{"n":1}`), "http"); err != nil {
		t.Fatal(err)
	}
	for i, p := range peers {
		if got := pushes(p); len(got) != 1 {
			t.Errorf("Push: node %d subscriber got %q, want one event", i, got)
		}
	}
	// PushLocal (Redis channel, which every replica receives) stays local.
	if err := nodes[0].node.PushLocal(ctx, "tick/lobby", json.RawMessage(`{"n":2}`), "redis"); err != nil {
		t.Fatal(err)
	}
	if got := pushes(peers[0]); len(got) != 1 {
		t.Errorf("PushLocal: local subscriber got %q, want one event", got)
	}
	if got := pushes(peers[1]); len(got) != 0 {
		t.Errorf("PushLocal was relayed to node 1: %q", got)
	}
	if _, err := nodes[1].node.DeliverRelayed("tick/lobby", []byte(`{bad`), Audience{}); err == nil {
		t.Error("DeliverRelayed accepted invalid JSON")
	}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}
