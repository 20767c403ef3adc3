package wamp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsgate/wsgate/wamp/handler"
)

var binaryProtos = []Protocol{ProtocolV2MsgPack, ProtocolV2CBOR}

// sameJSON compares JSON texts semantically, numbers by their text, so
// that a 64-bit integer that changed would show.
func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	return da.Decode(&x) == nil && db.Decode(&y) == nil && reflect.DeepEqual(x, y)
}

// TestTranscodeRoundTrip: what the node sends comes back unchanged from
// either binary serializer: integers exact to 64 bits, strings, binary.
func TestTranscodeRoundTrip(t *testing.T) {
	for _, msg := range []string{
		`[36,9007199254740992,1,{},["x"],{"a":1}]`,
		`[1,"realm1",{"roles":{"subscriber":{},"publisher":{}}}]`,
		`[48,1,{},"sample/echo",[0,-1,18446744073709551615,-9223372036854775808,1.5,-2.25e-7,true,false,null]]`,
		`[16,2,{},"chan/a",["h\u00e9llo \"q\" \\ \n\t\u0001 \u2028 ✓ 😀",""]]`,
		`[16,3,{},"chan/a",["\u0000AAEC/w==","\u0000","\u0000not base64!","\u0000AB==","\u0000\r\n"]]`,
		`[16,4,{},"chan/a",[[[[{"k":[{}]}]]],[]],{"":{"nested":[1,{"x":null}]}}]`,
	} {
		for _, p := range binaryProtos {
			bin, err := jsonToBinary(p, []byte(msg))
			if err != nil {
				t.Fatalf("%s: jsonToBinary(%s): %v", p, msg, err)
			}
			back, err := binaryToJSON(p, bin, DefaultMaxJSONDepth)
			if err != nil {
				t.Fatalf("%s: binaryToJSON(%s): %v", p, msg, err)
			}
			if !sameJSON(back, []byte(msg)) {
				t.Errorf("%s: %s came back as %s", p, msg, back)
			}
		}
	}
}

// TestTranscodeNative: binary travels as msgpack bin and CBOR byte
// strings, integers as integers, in both directions.
func TestTranscodeNative(t *testing.T) {
	value := []any{int64(36), uint64(1 << 53), "s", []byte{0, 1, 2, 255}, map[string]any{"f": 0.5}}
	const asJSON = `[36,9007199254740992,"s","\u0000AAEC/w==",{"f":0.5}]`
	mp, err := msgpack.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := cbor.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	for p, native := range map[Protocol][]byte{ProtocolV2MsgPack: mp, ProtocolV2CBOR: cb} {
		got, err := binaryToJSON(p, native, DefaultMaxJSONDepth)
		if err != nil || !sameJSON(got, []byte(asJSON)) {
			t.Errorf("%s: binaryToJSON = %s, %v; want %s", p, got, err, asJSON)
		}
		enc, err := jsonToBinary(p, []byte(asJSON))
		if err != nil {
			t.Fatal(err)
		}
		var back []any
		if p == ProtocolV2MsgPack {
			err = msgpack.Unmarshal(enc, &back)
		} else {
			err = cbor.Unmarshal(enc, &back)
		}
		if err != nil || len(back) != 5 {
			t.Fatalf("%s: decoding %x: %v", p, enc, err)
		}
		if b, ok := back[3].([]byte); !ok || !bytes.Equal(b, []byte{0, 1, 2, 255}) {
			t.Errorf("%s: binary went out as %#v, want bytes", p, back[3])
		}
		if n, ok := back[1].(uint64); !ok || n != 1<<53 {
			if n, ok := back[1].(int64); !ok || n != 1<<53 {
				t.Errorf("%s: 2^53 went out as %#v", p, back[1])
			}
		}
	}
}

// TestTranscodeRejects: what JSON cannot carry, or is no single valid
// value, is a protocol violation; nesting over the bound is the JSON depth
// limit.
func TestTranscodeRejects(t *testing.T) {
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cb := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	deepMP := append(bytes.Repeat([]byte{0x91}, 10), 0xc0) // [[[...null...]]]
	deepCB := append(bytes.Repeat([]byte{0x81}, 10), 0xf6) // the same in CBOR
	for _, tc := range []struct {
		name  string
		p     Protocol
		in    []byte
		limit bool
	}{
		{"msgpack empty", ProtocolV2MsgPack, nil, false},
		{"msgpack truncated", ProtocolV2MsgPack, mp([]any{1, "abc"})[:4], false},
		{"msgpack trailing data", ProtocolV2MsgPack, append(mp([]any{1}), 0xc0), false},
		{"msgpack NaN", ProtocolV2MsgPack, mp([]any{math.NaN()}), false},
		{"msgpack infinity", ProtocolV2MsgPack, mp([]any{math.Inf(1)}), false},
		{"msgpack int map key", ProtocolV2MsgPack, mp(map[int]int{1: 2}), false},
		{"msgpack extension", ProtocolV2MsgPack, []byte{0x91, 0xd4, 0x01, 0x00}, false},
		{"msgpack invalid UTF-8", ProtocolV2MsgPack, []byte{0x91, 0xa1, 0xff}, false},
		{"msgpack claimed length", ProtocolV2MsgPack, []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, false},
		{"msgpack claimed bin length", ProtocolV2MsgPack, []byte{0x91, 0xc6, 0x57, 0x0c, 0xc6, 0x57}, false},
		{"msgpack claimed str length", ProtocolV2MsgPack, []byte{0x91, 0xdb, 0x57, 0x0c, 0xc6, 0x57}, false},
		{"msgpack too deep", ProtocolV2MsgPack, deepMP, true},
		{"cbor empty", ProtocolV2CBOR, nil, false},
		{"cbor trailing data", ProtocolV2CBOR, append(cb([]any{1}), 0xf6), false},
		{"cbor NaN", ProtocolV2CBOR, cb([]any{math.NaN()}), false},
		{"cbor int map key", ProtocolV2CBOR, cb(map[int]int{1: 2}), false},
		{"cbor integer below -2^63", ProtocolV2CBOR, []byte{0x81, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false},
		{"cbor tag", ProtocolV2CBOR, []byte{0x81, 0xc1, 0x00}, false},
		{"cbor simple value", ProtocolV2CBOR, []byte{0x81, 0xe0}, false},
		{"cbor invalid UTF-8", ProtocolV2CBOR, []byte{0x81, 0x61, 0xff}, false},
		{"cbor duplicate key", ProtocolV2CBOR, []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}, false},
		{"cbor claimed length", ProtocolV2CBOR, []byte{0x9a, 0xff, 0xff, 0xff, 0xff}, false},
		{"cbor too deep", ProtocolV2CBOR, deepCB, true},
	} {
		out, err := binaryToJSON(tc.p, tc.in, 8)
		var le *LimitError
		switch {
		case !errors.Is(err, ErrProtocol):
			t.Errorf("%s: got %s, %v; want a protocol error", tc.name, out, err)
		case tc.limit && (!errors.As(err, &le) || le.Limit != LimitJSONDepth):
			t.Errorf("%s: error %v, want the JSON depth limit", tc.name, err)
		}
	}
	// Exactly at the bound passes.
	for p, in := range map[Protocol][]byte{ProtocolV2MsgPack: deepMP, ProtocolV2CBOR: deepCB} {
		if _, err := binaryToJSON(p, in, 10); err != nil {
			t.Errorf("%s: 10 levels with a bound of 10: %v", p, err)
		}
	}
}

// openBinary opens a session speaking p and completes HELLO/WELCOME in
// its serializer.
func openBinary(t *testing.T, f *fixture, p Protocol, connID string) (*Session, *fakePeer) {
	t.Helper()
	peer := &fakePeer{}
	s := f.node.OpenProtocol(peer, ClientInfo{ConnID: connID, Identity: handler.Identity{UserIdentifier: "u-" + connID}}, p)
	if got := handleBinary(t, s, peer, `[1,"realm1",{"roles":{"subscriber":{}}}]`); len(got) != 1 || !strings.HasPrefix(got[0], "[2,") {
		t.Fatalf("%s: want WELCOME, got %q", p, got)
	}
	return s, peer
}

// handleBinary hands s the JSON message in, transcoded to s's serializer,
// and returns what came back, transcoded to JSON.
func handleBinary(t *testing.T, s *Session, peer *fakePeer, in string) []string {
	t.Helper()
	bin, err := jsonToBinary(s.Protocol(), []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(context.Background(), bin); err != nil {
		t.Fatalf("%s: %s: %v", s.Protocol(), in, err)
	}
	return takeJSON(t, s.Protocol(), peer)
}

// takeJSON returns what peer got from a session speaking p, as JSON.
func takeJSON(t *testing.T, p Protocol, peer *fakePeer) []string {
	t.Helper()
	var out []string
	for _, m := range peer.take() {
		j, err := binaryToJSON(p, m, DefaultMaxJSONDepth)
		if err != nil {
			t.Fatalf("%s: node sent %x: %v", p, m, err)
		}
		out = append(out, string(j))
	}
	return out
}

// TestBinarySession: msgpack and CBOR sessions join, subscribe and get
// the events v1 and wamp.2.json subscribers of the same topic get, with
// the publication id the JSON subscribers see.
func TestBinarySession(t *testing.T) {
	f := newFixture(t, accessRoutes)
	v1, v1p := f.open(t, "v1")
	if err := v1.Handle(context.Background(), []byte(`[5,"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	js, jsp := f.openV2(t, ClientInfo{ConnID: "js"})
	if err := js.Handle(context.Background(), []byte(`[32,1,{},"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	peers := map[Protocol]*fakePeer{}
	for _, p := range binaryProtos {
		s, peer := openBinary(t, f, p, p.String())
		got := handleBinary(t, s, peer, `[32,7,{},"chan/a"]`)
		if len(got) == 0 || !strings.HasPrefix(got[0], "[33,7,") {
			t.Fatalf("%s: SUBSCRIBE got %q", p, got)
		}
		peers[p] = peer
		defer s.Close()
	}
	f.settle(t)
	v1p.take()
	jsp.take()
	for _, p := range binaryProtos {
		peers[p].take()
	}
	if err := f.node.Topic("chan/a").Broadcast(map[string]any{"b": "\x00AAE=", "n": 1 << 53}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := v1p.take(); len(got) != 1 || !jsonEqual(t, got[0], `[8,"chan/a",{"b":"\u0000AAE=","n":9007199254740992}]`) {
		t.Errorf("v1 EVENT %q", got)
	}
	jsonEvent := jsp.take()
	if len(jsonEvent) != 1 {
		t.Fatalf("wamp.2.json EVENT %q", jsonEvent)
	}
	for _, p := range binaryProtos {
		got := takeJSON(t, p, peers[p])
		if len(got) != 1 || !sameJSON([]byte(got[0]), jsonEvent[0]) {
			t.Errorf("%s EVENT %q, want %s", p, got, jsonEvent[0])
		}
	}
}

// TestBinarySessionViolation: a message that does not decode gets ABORT
// in the session's serializer and a protocol error.
func TestBinarySessionViolation(t *testing.T) {
	f := newFixture(t, accessRoutes)
	for _, p := range binaryProtos {
		peer := &fakePeer{}
		s := f.node.OpenProtocol(peer, ClientInfo{ConnID: "c" + p.String()}, p)
		if err := s.Handle(context.Background(), []byte(`[1,"realm1",{}]`)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: JSON text got %v, want a protocol error", p, err)
		}
		if got := takeJSON(t, p, peer); len(got) != 1 || !strings.Contains(got[0], errURIProtocolViolation) {
			t.Errorf("%s: want ABORT, got %q", p, got)
		}
		s.Close()
	}
}

// fuzzTranscode checks binaryToJSON on arbitrary input: a protocol error,
// or valid JSON that goes through the serializer and back unchanged.
func fuzzTranscode(t *testing.T, p Protocol, data []byte) {
	out, err := binaryToJSON(p, data, 32)
	if err != nil {
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v does not wrap ErrProtocol", err)
		}
		return
	}
	if !json.Valid(out) {
		t.Fatalf("%x gave invalid JSON %q", data, out)
	}
	bin, err := jsonToBinary(p, out)
	if err != nil {
		t.Fatalf("re-encoding %s: %v", out, err)
	}
	back, err := binaryToJSON(p, bin, 32)
	if err != nil || !sameJSON(back, out) {
		t.Fatalf("%s came back as %s, %v", out, back, err)
	}
}

// addSeeds seeds a transcoder fuzz target with WAMP messages in p.
func addSeeds(f *testing.F, p Protocol) {
	for _, seed := range []string{
		`[1,"realm1",{"roles":{"subscriber":{}}}]`,
		`[16,1,{"acknowledge":true},"chan/a",["\u0000AAEC/w==",1.5,-3,18446744073709551615],{"k":null}]`,
		`[32,2,{},"chan/a"]`,
	} {
		b, err := jsonToBinary(p, []byte(seed))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzMsgpackToJSON(f *testing.F) {
	addSeeds(f, ProtocolV2MsgPack)
	f.Add([]byte{0x91, 0xd4, 0x01, 0x00})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTranscode(t, ProtocolV2MsgPack, data) })
}

func FuzzCBORToJSON(f *testing.F) {
	addSeeds(f, ProtocolV2CBOR)
	f.Add([]byte{0x9f, 0x01, 0x5f, 0x41, 0x00, 0xff, 0xff}) // indefinite lengths
	f.Add([]byte{0x81, 0xc1, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTranscode(t, ProtocolV2CBOR, data) })
}
