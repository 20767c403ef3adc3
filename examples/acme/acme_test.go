package acme

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

type peer struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (p *peer) Send(m []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return true
}

func (p *peer) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.msgs
	p.msgs = nil
	return out
}

func newNode(t *testing.T) *wamp.Node {
	t.Helper()
	reg := handler.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	n, err := wamp.NewNode(wamp.NodeConfig{
		Handlers: reg,
		Routes: wamp.RoutesConfig{
			RPC: map[string]wamp.RouteConfig{"acme_rpc": {Pattern: "sample/{method}", Handler: "acme.rpc"}},
			Topics: map[string]wamp.RouteConfig{
				"acme_topic": {Pattern: "acme/channel/{room}", Handler: "acme.topic"},
				"acme_relay": {Pattern: "acme/relay/{room}", Handler: "acme.relay"},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func open(t *testing.T, n *wamp.Node, info wamp.ClientInfo) (*wamp.Session, *peer) {
	t.Helper()
	p := &peer{}
	s := n.Open(p, info)
	p.take() // WELCOME
	return s, p
}

func send(t *testing.T, s *wamp.Session, msg string) {
	t.Helper()
	if err := s.Handle(context.Background(), []byte(msg)); err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
}

func expect(t *testing.T, got [][]byte, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		var g, w any
		if err := json.Unmarshal(got[i], &g); err != nil {
			t.Fatalf("%s: %v", got[i], err)
		}
		if err := json.Unmarshal([]byte(want[i]), &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("message %d: got %s, want %s", i, got[i], want[i])
		}
	}
}

func TestSum(t *testing.T) {
	n := newNode(t)
	user, pu := open(t, n, wamp.ClientInfo{ConnID: "u1", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}}})
	anon, pa := open(t, n, wamp.ClientInfo{ConnID: "a1", Identity: handler.Identity{Anonymous: true}})
	cases := []struct {
		call string
		want string
	}{
		{`[2,"1","sample/sum",1,2,3]`, `[3,"1",{"result":6}]`},
		{`[2,"2","sample/sum",[1,2,3]]`, `[3,"2",{"result":6}]`},
		{`[2,"3","sample/sum",[1.5,2]]`, `[3,"3",{"result":3.5}]`},
		{`[2,"4","sample/sum"]`, `[3,"4",{"result":0}]`},
		{`[2,"5","sample/sum",{"a":2,"b":"3"}]`, `[3,"5",{"result":5}]`},
		{`[2,"6","sample/sum",["4"," 1 ","x",null,true,[9],{"z":1}]]`, `[3,"6",{"result":6}]`},
	}
	for _, tc := range cases {
		send(t, user, tc.call)
		expect(t, pu.take(), tc.want)
	}
	send(t, anon, `[2,"9","sample/sum",1,2]`)
	expect(t, pa.take(), `[3,"9",{"error":true,"msg":"You must be authenticated to use this function."}]`)
	send(t, user, `[2,"10","sample/nope"]`)
	expect(t, pu.take(), `[4,"10","sample/nope","Could not execute RPC callback, method not found",{"code":404,"rpc":{},"params":[],"request":{}}]`)
}

func TestArraySum(t *testing.T) {
	cases := map[string]string{
		`[]`:                         "0",
		`[1,2,3]`:                    "6",
		`[1,-1]`:                     "0",
		`[0.1,0.2]`:                  "0.30000000000000004",
		`[1,"2.5"]`:                  "3.5",
		`["1e3"]`:                    "1000",
		`["0x10","inf","nan","1_0"]`: "0",
		`[9223372036854775807,1]`:    "9.223372036854776e+18",
		`{"a":1,"b":[1],"c":"2"}`:    "3",
		`[1e308,1e308]`:              "0",
		`not json`:                   "0",
	}
	for in, want := range cases {
		if got := arraySum(json.RawMessage(in)); string(got) != want {
			t.Errorf("arraySum(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestTopic(t *testing.T) {
	n := newNode(t)
	a, pa := open(t, n, wamp.ClientInfo{ConnID: "conn-a", Identity: handler.Identity{UserIdentifier: "alice"}})
	b, pb := open(t, n, wamp.ClientInfo{ConnID: "conn-b", Identity: handler.Identity{UserIdentifier: "bob"}})
	const topic = "acme/channel/lobby"

	send(t, a, `[5,"`+topic+`"]`)
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"conn-a has joined acme/channel/lobby"}]`)
	send(t, b, `[5,"`+topic+`"]`)
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"conn-b has joined acme/channel/lobby"}]`)
	expect(t, pb.take(), `[8,"acme/channel/lobby",{"msg":"conn-b has joined acme/channel/lobby"}]`)

	send(t, a, `[7,"`+topic+`",{"text":"hi"}]`)
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":{"text":"hi"}}]`)
	expect(t, pb.take(), `[8,"acme/channel/lobby",{"msg":{"text":"hi"}}]`)

	send(t, a, `[7,"`+topic+`","only others",true]`)
	expect(t, pa.take())
	expect(t, pb.take(), `[8,"acme/channel/lobby",{"msg":"only others"}]`)

	send(t, a, `[7,"`+topic+`","only a",[],["`+a.ID()+`"]]`)
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"only a"}]`)
	expect(t, pb.take())

	send(t, a, `[7,"`+topic+`","not b",["`+b.ID()+`"]]`)
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"not b"}]`)
	expect(t, pb.take())

	send(t, b, `[6,"`+topic+`"]`)
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"conn-b has left acme/channel/lobby"}]`)
	expect(t, pb.take())

	// Disconnect announces the leave too.
	send(t, b, `[5,"`+topic+`"]`)
	pa.take()
	pb.take()
	b.Close()
	settle(t, n) // the leave runs off the caller of Close
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"conn-b has left acme/channel/lobby"}]`)

	// Rooms are separate topics.
	send(t, a, `[7,"acme/channel/other","x"]`)
	expect(t, pa.take())
}

// settle waits until the node has no offloaded work left, such as the
// unsubscribes a Close leaves.
func settle(t *testing.T, n *wamp.Node) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.OffloadedCalls() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("offloaded work still running after 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRegisterTwiceFails(t *testing.T) {
	reg := handler.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestTopicUsername(t *testing.T) {
	n := newNode(t)
	a, pa := open(t, n, wamp.ClientInfo{ConnID: "conn-a", Identity: handler.Identity{UserIdentifier: "alice"}})
	b1, pb1 := open(t, n, wamp.ClientInfo{ConnID: "conn-b1", Identity: handler.Identity{UserIdentifier: "bob"}})
	b2, pb2 := open(t, n, wamp.ClientInfo{ConnID: "conn-b2", Identity: handler.Identity{UserIdentifier: "bob"}})
	// carol speaks WAMP v2 and is bob's audience too when she is bob.
	pc := &peer{}
	c := n.OpenProtocol(pc, wamp.ClientInfo{ConnID: "conn-c", Identity: handler.Identity{UserIdentifier: "bob"}}, wamp.ProtocolV2JSON)
	send(t, c, `[1,"realm1",{}]`)
	const topic = "acme/channel/lobby"
	for _, s := range []*wamp.Session{a, b1, b2} {
		send(t, s, `[5,"`+topic+`"]`)
	}
	send(t, c, `[32,1,{},"`+topic+`"]`)
	for _, p := range []*peer{pa, pb1, pb2, pc} {
		p.take()
	}

	send(t, a, `[7,"`+topic+`",{"username":"bob","text":"psst"}]`)
	expect(t, pa.take())
	want := `[8,"acme/channel/lobby",{"msg":{"username":"bob","text":"psst"}}]`
	expect(t, pb1.take(), want)
	expect(t, pb2.take(), want)
	if got := pc.take(); len(got) != 1 || !strings.Contains(string(got[0]), `[{"msg":{"username":"bob","text":"psst"}}]]`) {
		t.Errorf("v2 connection of bob got %q", got)
	}

	// Unknown user: the publisher gets the error, nobody gets the event.
	send(t, a, `[7,"`+topic+`",{"username":"zed","text":"psst"}]`)
	expect(t, pa.take(), `[4,"acme/channel/lobby","acme/channel/lobby","user \"zed\" is not connected",{"code":404,"topic":{},"request":{},"event":"onPublish"}]`)
	expect(t, pb1.take())
	send(t, c, `[16,2,{"acknowledge":true},"`+topic+`",[{"username":"zed"}]]`)
	expect(t, pc.take(), `[8,16,2,{},"wamp.error.runtime_error",["user \"zed\" is not connected"],{"code":404}]`)

	// Pushes reach everyone.
	if err := n.Push(context.Background(), topic, json.RawMessage(`"server says hi"`), "test"); err != nil {
		t.Fatal(err)
	}
	expect(t, pa.take(), `[8,"acme/channel/lobby",{"msg":"server says hi"}]`)
	expect(t, pb1.take(), `[8,"acme/channel/lobby",{"msg":"server says hi"}]`)
}

func TestSumV2(t *testing.T) {
	n := newNode(t)
	p := &peer{}
	s := n.OpenProtocol(p, wamp.ClientInfo{ConnID: "c", Identity: handler.Identity{UserIdentifier: "alice"}}, wamp.ProtocolV2JSON)
	send(t, s, `[1,"realm1",{}]`)
	p.take()
	send(t, s, `[48,1,{},"sample/sum",[1,2,3]]`)
	expect(t, p.take(), `[50,1,{},[{"result":6}]]`)
	send(t, s, `[48,2,{},"sample/sum",[[4,5]]]`)
	expect(t, p.take(), `[50,2,{},[{"result":9}]]`)
	anon := n.OpenProtocol(p, wamp.ClientInfo{ConnID: "n", Identity: handler.Identity{Anonymous: true}}, wamp.ProtocolV2JSON)
	send(t, anon, `[1,"realm1",{}]`)
	p.take()
	send(t, anon, `[48,1,{},"sample/sum",[1]]`)
	expect(t, p.take(), `[50,1,{},[{"error":true,"msg":"You must be authenticated to use this function."}]]`)
}

func TestRelayAnnouncesNothing(t *testing.T) {
	n := newNode(t)
	a, pa := open(t, n, wamp.ClientInfo{ConnID: "conn-a", Identity: handler.Identity{UserIdentifier: "alice"}})
	b, pb := open(t, n, wamp.ClientInfo{ConnID: "conn-b", Identity: handler.Identity{UserIdentifier: "bob"}})
	const topic = "acme/relay/r"
	send(t, a, `[5,"`+topic+`"]`)
	send(t, b, `[5,"`+topic+`"]`)
	expect(t, pa.take())
	expect(t, pb.take())
	send(t, a, `[7,"`+topic+`","x"]`)
	expect(t, pa.take(), `[8,"acme/relay/r",{"msg":"x"}]`)
	expect(t, pb.take(), `[8,"acme/relay/r",{"msg":"x"}]`)
	send(t, b, `[6,"`+topic+`"]`)
	expect(t, pa.take())
}
