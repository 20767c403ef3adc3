package gateway

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/gateway/upstream"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Close codes of the gateway's own (private range 4000-4999), beside the
// transport's RFC 6455 ones: a client can tell them from a network or
// server problem.
const (
	// closeSessionEnded: the PHP session ended (logout, expiry, another
	// user) with session.on_invalid: close; send the user to log in again.
	closeSessionEnded ws.StatusCode = 4001
	// closeAppDisconnect: the application disconnected the user through
	// the push API (POST /api/disconnect).
	closeAppDisconnect ws.StatusCode = 4002
)

// client is one established connection as the gateway sees it: its
// transport connection, its WAMP session and who it is. It is the
// transport.Handler of the connection.
type client struct {
	srv  *Server
	conn *transport.Conn
	sess *wamp.Session

	id        string // the connection id, unique across replicas
	sessionID string // the PHP session id of its cookie, "" without one
	// userKey is the key it is counted under in Server.userConns, nil
	// when not (no per-user limit, or anonymous); swapped as a whole.
	// When it connected is its WAMP session's (connectedAt): the client
	// keeps no copy, so that it stays in the 64-byte size class.
	userKey atomic.Pointer[string]
}

// connectedAt is when the connection was accepted: the connect event's
// time, which its WAMP session keeps (so both events of a pair agree).
func (c *client) connectedAt() time.Time { return c.sess.ConnectedAt() }

var _ transport.Handler = (*client)(nil)

// identity returns who the client is now: its WAMP session's, which
// revalidation keeps current (the one copy a connection holds).
func (c *client) identity() handler.Identity { return c.sess.Identity() }

// binaryPeer is the wamp.Peer of a connection whose subprotocol is binary
// (wamp.2.msgpack, wamp.2.cbor): its messages go out as binary frames.
type binaryPeer struct{ conn *transport.Conn }

// Send implements wamp.Peer.
func (p binaryPeer) Send(msg []byte) bool { return p.conn.SendBinary(msg) }

// Message implements transport.Handler: a complete message for WAMP (text,
// or binary for a binary subprotocol).
// It runs on the transport goroutine reading the connection.
func (c *client) Message(payload []byte) bool {
	s := c.srv
	// A draining gateway lets calls in flight finish but takes no new
	// ones: the client is about to get 1001 and reconnect elsewhere.
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if s.drain.Load() {
		return true
	}
	// The server's base context: handler calls end at a forced shutdown.
	err := c.sess.Handle(s.baseCtx, payload)
	if err == nil {
		return true
	}
	var le *wamp.LimitError
	switch {
	case errors.As(err, &le) && le.Limit == wamp.LimitMessageSize:
		// A binary message whose JSON is over max_message_size: the same
		// close as a frame over it (the transport's 1009).
		s.metrics.LimitExceeded.WithLabelValues(le.Limit).Inc()
		s.log.Debug("closing client over a limit", "conn", c.id, "limit", le.Limit, "err", err)
		c.conn.Close(transport.CloseTooBig, "message too big", "limit_exceeded")
	case errors.As(err, &le):
		s.metrics.LimitExceeded.WithLabelValues(le.Limit).Inc()
		s.log.Debug("closing client over a limit", "conn", c.id, "limit", le.Limit, "err", err)
		c.conn.Close(transport.ClosePolicy, "limit exceeded: "+le.Limit, "limit_exceeded")
	case errors.Is(err, wamp.ErrProtocol):
		s.log.Debug("closing client after malformed WAMP message", "conn", c.id, "err", err)
		c.conn.Close(transport.CloseInvalid, "malformed WAMP message", transport.ReasonProtocolError)
	case errors.Is(err, wamp.ErrGoodbye):
		// v2 GOODBYE (or ABORT): the session is over, the socket follows.
		c.conn.Close(transport.CloseNormal, "", "goodbye")
	case errors.Is(err, wamp.ErrClosed):
	default:
		s.log.Warn("wamp handler failed", "conn", c.id, "err", err)
		return true
	}
	return false
}

// Closed implements transport.Handler: the connection is over. It ends the
// WAMP session, takes the client out of the client storage and the
// per-user count, and queues the app's disconnect event. Nothing here
// waits: it runs on a transport goroutine.
func (c *client) Closed(reason string) {
	s := c.srv
	c.sess.Close()
	s.unwatchClient(c)
	s.registry.remove(c.id)
	if key := c.userKey.Swap(nil); key != nil {
		s.releaseUser(*key)
	}
	s.metrics.Connections.Dec()
	s.metrics.Disconnects.WithLabelValues(reason).Inc()
	if s.events != nil && s.cfg.Events.Disconnect {
		// Queued, never blocking: the app hears about every connection
		// that ends while the gateway lives, drained ones included
		// (Shutdown flushes the queue).
		sess := c.sess
		s.events.Disconnected(upstream.ConnEvent{
			ConnID: c.id, SessionID: sess.ID(), Identity: sess.Identity(), Protocol: sess.Protocol().Subprotocol(),
			ConnectedAt: c.connectedAt(), Extra: sess.Extra(), Reason: reason,
		})
	}
	s.log.Debug("client disconnected", "conn", c.id, "reason", reason)
}

// clients returns the established connections' clients.
func (s *Server) snapshotClients() []*client {
	out := make([]*client, 0, s.tr.Len())
	s.tr.Range(func(c *transport.Conn) bool {
		if cl, ok := c.Handler().(*client); ok {
			out = append(out, cl)
		}
		return true
	})
	return out
}
