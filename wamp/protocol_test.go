package wamp

import (
	"testing"
)

func TestProtocolFor(t *testing.T) {
	for sub, want := range map[string]Protocol{"wamp": ProtocolV1, "wamp.2.json": ProtocolV2JSON} {
		if p, ok := ProtocolFor(sub); !ok || p != want || p.Subprotocol() != sub {
			t.Errorf("ProtocolFor(%q) = %v %v", sub, p, ok)
		}
	}
	for _, sub := range []string{"wamp.2.msgpack", "", "WAMP"} {
		if _, ok := ProtocolFor(sub); ok {
			t.Errorf("ProtocolFor(%q) accepted", sub)
		}
	}
	if ProtocolV1.String() != "wamp1" || ProtocolV2JSON.String() != "wamp2json" {
		t.Error("String")
	}
}
