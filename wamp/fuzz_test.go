package wamp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/wsgate/wsgate/wamp/handler"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// seedMessages are well-formed and malformed messages for the fuzz
// corpora.
var seedMessages = []string{
	`[1,"calc","http://example.com/calc"]`,
	`[2,"c","calc:sum",1]`,
	`[2,"c","sample/echo",[1,2]]`,
	`[2,7,"sample/echo",{"a":1},"x"]`,
	`[2,"c","sample/get_user"]`,
	`[2,"c","sample/panic"]`,
	`[2,"c","sample/custom"]`,
	`[2,"c","sample/slow"]`,
	`[2,"c","nope/x"]`,
	`[5,"chan/a"]`,
	`[5,"deny/a"]`,
	`[6,"chan/a"]`,
	`[7,"chan/a",{"x":1}]`,
	`[7,"chan/a","x",true]`,
	`[7,"chan/a","x",["a"],["b"]]`,
	`[7,"chan/a","fail"]`,
	`[0,"x",1,"y"]`,
	`[9]`,
	`{}`,
	`[2,"\u2028",` + "\"sample/echo\"]",
	"[5,\"\xff\"]",
	`[1e0,"p","u"]`,
	" [ 2 , \"c\" ,\t\"sample/echo\" , [ 1 , \"a]\\\"[\" ] , { \"k\" : [ ] } , -1.5e3 , true ] ",
	`[[],{},"",0]`,
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range seedMessages {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Differential check of the hand-written splitter against
		// encoding/json on valid input.
		if json.Valid(data) {
			var want []json.RawMessage
			werr := json.Unmarshal(data, &want)
			got, ok := splitArray(data)
			if ok != (werr == nil) {
				t.Fatalf("splitArray ok=%v, json.Unmarshal err=%v", ok, werr)
			}
			if ok {
				if len(got) != len(want) {
					t.Fatalf("splitArray %d elements, json %d", len(got), len(want))
				}
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("element %d: %q vs %q", i, got[i], want[i])
					}
				}
			}
		}
		m, err := parseMessage(data, DefaultMaxJSONDepth)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		switch m.typ {
		case msgPrefix, msgCall, msgSubscribe, msgUnsubscribe, msgPublish:
		default:
			t.Fatalf("accepted message type %d", m.typ)
		}
		if m.typ == msgCall {
			// Everything echoed back verbatim must stay valid JSON.
			out := encodeCallResult(m.callID, callParams(m.args))
			if !json.Valid(out) || !utf8.Valid(out) {
				t.Fatalf("CALLRESULT %q is not valid JSON", out)
			}
			out = encodeCallError(m.callID, m.uri, m.uri, rpcDetails(500, callParams(m.args)))
			if !json.Valid(out) {
				t.Fatalf("CALLERROR %q is not valid JSON", out)
			}
		}
		if m.typ == msgPublish {
			out, err := encodeEvent(m.uri, m.event)
			if err != nil || !json.Valid(out) {
				t.Fatalf("EVENT %q: %v", out, err)
			}
		}
	})
}

// FuzzSessionHandle feeds a sequence of newline-separated messages to one
// session and checks that nothing panics, every error is a protocol error,
// everything sent is valid JSON in valid UTF-8, and Close leaves no state
// behind.
func FuzzSessionHandle(f *testing.F) {
	for _, s := range seedMessages {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[1,"p","chan"]` + "\n" + `[5,"p:a"]` + "\n" + `[5,"chan/b"]` + "\n" + `[7,"chan/b","hi",true]`))
	f.Add([]byte(`[5,"chan/a"]` + "\n" + `[5,"chan/a"]` + "\n" + `[6,"chan/a"]` + "\n" + `[6,"chan/a"]`))

	var (
		once sync.Once
		fx   *fixture
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		once.Do(func() {
			fx = newFixture(t, func(c *NodeConfig) {
				c.CallTimeout = time.Millisecond
				c.Limits = Limits{MaxURILength: 64, MaxPrefixes: 4, MaxSubscriptions: 4}
			})
		})
		p := &fakePeer{}
		s := fx.node.Open(p, ClientInfo{ConnID: "fuzz"})
		other := &fakePeer{}
		o := fx.node.Open(other, ClientInfo{ConnID: "other"})
		_ = o.Handle(context.Background(), []byte(`[5,"chan/a"]`))
		for i, msg := range bytes.Split(data, []byte("\n")) {
			if i >= 32 {
				break
			}
			err := s.Handle(context.Background(), msg)
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("message %q: error %v is not a protocol error", msg, err)
				}
				break // the gateway closes the connection here
			}
		}
		s.Close()
		o.Close()
		for _, out := range append(p.take(), other.take()...) {
			if !utf8.Valid(out) || !json.Valid(out) {
				t.Fatalf("sent invalid JSON %q", out)
			}
			var arr []json.RawMessage
			if json.Unmarshal(out, &arr) != nil || len(arr) < 3 {
				t.Fatalf("sent non-WAMP message %q", out)
			}
		}
		if n := fx.node.broker.topicCount(); n != 0 {
			t.Fatalf("%d topics left after Close", n)
		}
		if n := len(fx.node.Clients().GetAll(true)); n != 0 {
			t.Fatalf("%d clients left after Close", n)
		}
	})
}

// seedMessagesV2 are well-formed and malformed WAMP v2 messages.
var seedMessagesV2 = []string{
	`[1,"realm1",{"roles":{"caller":{},"publisher":{},"subscriber":{}}}]`,
	`[1,"other",{}]`,
	`[6,{},"wamp.close.close_realm"]`,
	`[3,{"message":"x"},"wamp.error.x"]`,
	`[48,1,{},"sample/echo",[1,2],{"a":1}]`,
	`[48,2,{},"sample/echo",[[1]]]`,
	`[48,3,{},"sample/echo",[],{}]`,
	`[48,4,{},"sample/fail"]`,
	`[48,5,{},"sample/panic"]`,
	`[48,6,{},"sample/custom"]`,
	`[48,0,{},"sample/echo"]`,
	`[48,9007199254740993,{},"x"]`,
	`[32,7,{},"chan/a"]`,
	`[32,8,{"match":"prefix"},"chan"]`,
	`[32,9,{},"deny/x"]`,
	`[34,10,1]`,
	`[34,11,99]`,
	`[16,12,{"acknowledge":true},"chan/a",["hi"]]`,
	`[16,13,{"exclude_me":false,"eligible":[1,2],"exclude_authid":["u"]},"chan/a",[],{"k":1}]`,
	`[16,14,{"eligible_authid":"x"},"chan/a"]`,
	`[16,15,{},"chan/a","notalist"]`,
	`[49,1,{}]`,
	`[64,16,{},"p"]`,
	`[8,68,1,{},"x"]`,
	`[70,1,{}]`,
	`[2,"c","sample/echo"]`,
	`[1.0,"r",{}]`,
	`[]`,
}

func FuzzParseMessageV2(f *testing.F) {
	for _, s := range seedMessagesV2 {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMessageV2(data, DefaultMaxJSONDepth)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		switch m.typ {
		case v2Hello, v2Abort, v2Goodbye, v2Publish, v2Subscribe, v2Unsubscribe, v2Call, v2Cancel, v2Register, v2Unregister:
		default:
			t.Fatalf("accepted message type %d", m.typ)
		}
		if m.reqID > maxV2ID || m.subID > maxV2ID {
			t.Fatalf("id out of range: %d %d", m.reqID, m.subID)
		}
		if m.args != nil && !isJSONArray(m.args) {
			t.Fatalf("args %q not a list", m.args)
		}
		if m.kwargs != nil && (len(m.kwargs) == 0 || m.kwargs[0] != '{') {
			t.Fatalf("kwargs %q not a dict", m.kwargs)
		}
		// What is echoed back must stay valid JSON.
		for _, out := range [][]byte{
			encodeResultV2(m.reqID, paramsFromArgs(m.args, m.kwargs)),
			encodeEventV2(1, 2, eventFromArgs(m.args, m.kwargs)),
			encodeErrorV2(m.typ, m.reqID, m.uri, m.uri, nil),
			encodeCloseV2(v2Abort, m.uri, m.uri),
		} {
			if !json.Valid(out) || !utf8.Valid(out) {
				t.Fatalf("output %q is not valid JSON", out)
			}
		}
	})
}

// FuzzSessionHandleV2 is FuzzSessionHandle for a WAMP v2 session that has
// joined, beside a v1 and a v2 subscriber of the same topic.
func FuzzSessionHandleV2(f *testing.F) {
	for _, s := range seedMessagesV2 {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[32,1,{},"chan/a"]` + "\n" + `[16,2,{"acknowledge":true,"exclude_me":false},"chan/a",[1]]` + "\n" + `[34,3,1]` + "\n" + `[6,{},"x"]`))
	f.Add([]byte(`[32,1,{},"chan/a"]` + "\n" + `[32,2,{},"chan/a"]` + "\n" + `[34,3,1]` + "\n" + `[34,4,1]`))

	var (
		once sync.Once
		fx   *fixture
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		once.Do(func() {
			fx = newFixture(t, func(c *NodeConfig) {
				accessRoutes(c)
				c.CallTimeout = time.Millisecond
				c.Limits = Limits{MaxURILength: 64, MaxPrefixes: 4, MaxSubscriptions: 4}
			})
		})
		p := &fakePeer{}
		s := fx.node.OpenProtocol(p, ClientInfo{ConnID: "fuzz", Identity: handler.Identity{UserIdentifier: "u"}}, ProtocolV2JSON)
		if err := s.Handle(context.Background(), []byte(`[1,"realm1",{}]`)); err != nil {
			t.Fatal(err)
		}
		o1p, o2p := &fakePeer{}, &fakePeer{}
		o1 := fx.node.Open(o1p, ClientInfo{ConnID: "other1"})
		o2 := fx.node.OpenProtocol(o2p, ClientInfo{ConnID: "other2"}, ProtocolV2JSON)
		_ = o2.Handle(context.Background(), []byte(`[1,"realm1",{}]`))
		_ = o1.Handle(context.Background(), []byte(`[5,"chan/a"]`))
		_ = o2.Handle(context.Background(), []byte(`[32,1,{},"chan/a"]`))
		for i, msg := range bytes.Split(data, []byte("\n")) {
			if i >= 32 {
				break
			}
			err := s.Handle(context.Background(), msg)
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrClosed) {
					t.Fatalf("message %q: error %v is neither a protocol error nor the end of the session", msg, err)
				}
				break // the gateway closes the connection here
			}
		}
		s.Close()
		o1.Close()
		o2.Close()
		for _, out := range append(append(p.take(), o1p.take()...), o2p.take()...) {
			if !utf8.Valid(out) || !json.Valid(out) {
				t.Fatalf("sent invalid JSON %q", out)
			}
			var arr []json.RawMessage
			if json.Unmarshal(out, &arr) != nil || len(arr) < 2 {
				t.Fatalf("sent non-WAMP message %q", out)
			}
		}
		if n := fx.node.broker.topicCount(); n != 0 {
			t.Fatalf("%d topics left after Close", n)
		}
		if n := len(fx.node.Clients().GetAll(true)); n != 0 {
			t.Fatalf("%d clients left after Close", n)
		}
	})
}
