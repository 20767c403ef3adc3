package wamp

import (
	"testing"
)

func TestProtocolFor(t *testing.T) {
	for sub, want := range map[string]Protocol{"wamp": ProtocolV1, "wamp.2.json": ProtocolV2JSON, "wamp.2.msgpack": ProtocolV2MsgPack, "wamp.2.cbor": ProtocolV2CBOR} {
		if p, ok := ProtocolFor(sub); !ok || p != want || p.Subprotocol() != sub {
			t.Errorf("ProtocolFor(%q) = %v %v", sub, p, ok)
		}
	}
	for _, sub := range []string{"wamp.2.ubjson", "", "WAMP"} {
		if _, ok := ProtocolFor(sub); ok {
			t.Errorf("ProtocolFor(%q) accepted", sub)
		}
	}
	if ProtocolV1.String() != "wamp1" || ProtocolV2JSON.String() != "wamp2json" ||
		ProtocolV2MsgPack.String() != "wamp2msgpack" || ProtocolV2CBOR.String() != "wamp2cbor" {
		t.Error("String")
	}
	for p, want := range map[Protocol][2]bool{ProtocolV1: {}, ProtocolV2JSON: {true, false}, ProtocolV2MsgPack: {true, true}, ProtocolV2CBOR: {true, true}, 9: {}} {
		if p.V2() != want[0] || p.Binary() != want[1] {
			t.Errorf("%s: V2 %v Binary %v, want %v", p, p.V2(), p.Binary(), want)
		}
	}
}
