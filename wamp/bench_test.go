package wamp

import (
	"context"
	"strconv"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// BenchmarkHandleCall measures parse + route + dispatch + encode of one
// CALL, the per-message cost of RPC traffic.
func BenchmarkHandleCall(b *testing.B) {
	f := newFixture(b, nil)
	s := f.node.Open(nopPeer{}, ClientInfo{ConnID: "bench"})
	msg := []byte(`[2,"call-1","sample/echo",1,2,3]`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Handle(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCall isolates message parsing.
func BenchmarkParseCall(b *testing.B) {
	msg := []byte(`[2,"call-1","sample/echo",1,2,3]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseMessageV1(msg, DefaultMaxJSONDepth); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanout10k measures one EVENT to 10,000 subscribers: one encode
// and 10k Send calls, no per-subscriber allocation once the subscriber
// snapshot is cached.
func BenchmarkFanout10k(b *testing.B) {
	f := newFixture(b, nil)
	for i := 0; i < 10000; i++ {
		s := f.node.Open(nopPeer{}, ClientInfo{ConnID: "c" + strconv.Itoa(i)})
		f.node.broker.add(f.node, "chan/big", s, f.topic, handler.Request{})
	}
	ref := f.node.Topic("chan/big")
	event := map[string]string{"msg": "hello everyone"}
	b.ReportAllocs()
	for b.Loop() {
		if err := ref.Broadcast(event, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublish10k is a client PUBLISH through the topic handler to
// 10,000 subscribers, excluding the publisher.
func BenchmarkPublish10k(b *testing.B) {
	f := newFixture(b, nil)
	var pub *Session
	for i := 0; i < 10000; i++ {
		s := f.node.Open(nopPeer{}, ClientInfo{ConnID: "c" + strconv.Itoa(i)})
		f.node.broker.add(f.node, "chan/big", s, f.topic, handler.Request{})
		if pub == nil {
			pub = s
		}
	}
	msg := []byte(`[7,"chan/big",{"text":"hi"},true]`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Handle(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleCallV2 is BenchmarkHandleCall for a WAMP v2 CALL with
// positional arguments: parse + route + dispatch + RESULT.
func BenchmarkHandleCallV2(b *testing.B) {
	f := newFixture(b, nil)
	s := f.node.OpenProtocol(nopPeer{}, ClientInfo{ConnID: "bench"}, ProtocolV2JSON)
	ctx := context.Background()
	if err := s.Handle(ctx, []byte(`[1,"realm1",{}]`)); err != nil {
		b.Fatal(err)
	}
	msg := []byte(`[48,1,{},"sample/echo",[1,2,3]]`)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Handle(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanoutMixed10k is one broadcast to 10,000 subscribers, half
// WAMP v1 and half v2: the payload is encoded once and wrapped once per
// protocol, whatever the number of subscribers.
func BenchmarkFanoutMixed10k(b *testing.B) {
	f := newFixture(b, nil)
	for i := 0; i < 10000; i++ {
		proto := ProtocolV1
		if i%2 == 1 {
			proto = ProtocolV2JSON
		}
		s := f.node.OpenProtocol(nopPeer{}, ClientInfo{ConnID: "c" + strconv.Itoa(i)}, proto)
		f.node.broker.add(f.node, "chan/big", s, f.topic, handler.Request{})
	}
	ref := f.node.Topic("chan/big")
	event := map[string]string{"msg": "hello everyone"}
	b.ReportAllocs()
	for b.Loop() {
		if err := ref.Broadcast(event, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
