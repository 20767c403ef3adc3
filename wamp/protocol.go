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
)

// Subprotocol names.
const (
	SubprotocolV1     = "wamp"
	SubprotocolV2JSON = "wamp.2.json"
)

// ProtocolFor maps an offered websocket subprotocol to the protocol it
// selects, or false when the node does not speak it (e.g.
// "wamp.2.msgpack"). The gateway should accept the first offered
// subprotocol for which it returns true, serve ProtocolV1 when none was
// offered, and refuse the handshake when only unsupported ones were.
func ProtocolFor(subprotocol string) (Protocol, bool) {
	switch subprotocol {
	case SubprotocolV1:
		return ProtocolV1, true
	case SubprotocolV2JSON:
		return ProtocolV2JSON, true
	}
	return 0, false
}

// String returns a short label: "wamp1" or "wamp2json". It is meant for
// metric labels and logs.
func (p Protocol) String() string {
	switch p {
	case ProtocolV1:
		return "wamp1"
	case ProtocolV2JSON:
		return "wamp2json"
	}
	return fmt.Sprintf("wamp-protocol-%d", uint8(p))
}

// Subprotocol returns the websocket subprotocol name of p.
func (p Protocol) Subprotocol() string {
	if p == ProtocolV2JSON {
		return SubprotocolV2JSON
	}
	return SubprotocolV1
}
