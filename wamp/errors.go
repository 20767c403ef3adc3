package wamp

import (
	"errors"
	"fmt"
)

// ErrProtocol is wrapped by every error Session.Handle returns for input
// that is not valid in the session's protocol: malformed JSON, a non-array
// message, an unknown or server-only message type, wrong arity or element
// types, and exceeded client limits (a v2 client gets ABORT
// wamp.error.protocol_violation first). Ratchet closes such connections
// with status 1007 and so should the gateway.
var ErrProtocol = errors.New("wamp protocol error")

// protoErr makes an error wrapping ErrProtocol.
func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// ErrClosed is returned by Handle after Close, and wrapped by ErrGoodbye.
var ErrClosed = errors.New("wamp: session closed")

// ErrGoodbye is returned by Handle when a WAMP v2 session ended normally:
// the client said GOODBYE (and got GOODBYE back) or ABORT, or its HELLO
// was answered with ABORT. The gateway should close the websocket with
// 1000. It wraps ErrClosed.
var ErrGoodbye = fmt.Errorf("%w: WAMP session ended", ErrClosed)

// errConcurrentHandle reports gateway misuse: Handle must be called from
// one goroutine at a time per session.
var errConcurrentHandle = errors.New("wamp: concurrent Handle calls on one session")
