package wamp

import (
	"fmt"
)

// Protocol is the WAMP version and serialization a session speaks,
// chosen by the gateway from the websocket subprotocol.
type Protocol uint8

const (
	// ProtocolV1 is WAMP v1 as Ratchet 0.4 speaks it: subprotocol "wamp",
	// or no subprotocol at all.
	ProtocolV1 Protocol = iota
	// ProtocolV2JSON is the WAMP v2 basic profile (caller, publisher,
	// subscriber) with JSON serialization: subprotocol "wamp.2.json".
	ProtocolV2JSON
	// ProtocolV2MsgPack is ProtocolV2JSON with MessagePack serialization
	// in binary frames: subprotocol "wamp.2.msgpack".
	ProtocolV2MsgPack
	// ProtocolV2CBOR is ProtocolV2JSON with CBOR serialization in binary
	// frames: subprotocol "wamp.2.cbor".
	ProtocolV2CBOR
)

// Subprotocol names.
const (
	SubprotocolV1        = "wamp"
	SubprotocolV2JSON    = "wamp.2.json"
	SubprotocolV2MsgPack = "wamp.2.msgpack"
	SubprotocolV2CBOR    = "wamp.2.cbor"
)

// ProtocolFor maps an offered websocket subprotocol to the protocol it
// selects, or false when the node does not speak it (e.g.
// "wamp.2.ubjson"). The gateway should accept the first offered
// subprotocol for which it returns true, serve ProtocolV1 when none was
// offered, and refuse the handshake when only unsupported ones were.
func ProtocolFor(subprotocol string) (Protocol, bool) {
	switch subprotocol {
	case SubprotocolV1:
		return ProtocolV1, true
	case SubprotocolV2JSON:
		return ProtocolV2JSON, true
	case SubprotocolV2MsgPack:
		return ProtocolV2MsgPack, true
	case SubprotocolV2CBOR:
		return ProtocolV2CBOR, true
	}
	return 0, false
}

// String returns a short label: "wamp1", "wamp2json", "wamp2msgpack" or
// "wamp2cbor". It is meant for
// metric labels and logs.
func (p Protocol) String() string {
	switch p {
	case ProtocolV1:
		return "wamp1"
	case ProtocolV2JSON:
		return "wamp2json"
	case ProtocolV2MsgPack:
		return "wamp2msgpack"
	case ProtocolV2CBOR:
		return "wamp2cbor"
	}
	return fmt.Sprintf("wamp-protocol-%d", uint8(p))
}

// Subprotocol returns the websocket subprotocol name of p.
func (p Protocol) Subprotocol() string {
	switch p {
	case ProtocolV2JSON:
		return SubprotocolV2JSON
	case ProtocolV2MsgPack:
		return SubprotocolV2MsgPack
	case ProtocolV2CBOR:
		return SubprotocolV2CBOR
	}
	return SubprotocolV1
}

// V2 reports whether p is WAMP v2, whatever its serializer.
func (p Protocol) V2() bool { return p >= ProtocolV2JSON && p <= ProtocolV2CBOR }

// Binary reports whether p's messages travel in binary websocket frames
// (msgpack, CBOR); v1 and wamp.2.json use text frames. A session's
// messages never come in the other kind: the gateway closes the
// connection with 1003 when they do.
func (p Protocol) Binary() bool { return p == ProtocolV2MsgPack || p == ProtocolV2CBOR }
