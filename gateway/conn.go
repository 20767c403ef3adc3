package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/gateway/upstream"
	"github.com/wsgate/wsgate/wamp"
)

// Close codes the gateway sends, and why. Clients and operators see them;
// docs/architecture.md lists them too.
const (
	closeNormal      = ws.StatusNormalClosure           // 1000 client asked to close
	closeGoingAway   = ws.StatusGoingAway               // 1001 drain or idle timeout
	closeProtocol    = ws.StatusProtocolError           // 1002 broken websocket framing
	closeUnsupported = ws.StatusUnsupportedData         // 1003 binary frame: WAMP v1 is JSON text
	closeInvalid     = ws.StatusInvalidFramePayloadData // 1007 malformed WAMP or bad UTF-8, as the bundle does
	closePolicy      = ws.StatusPolicyViolation         // 1008 slow consumer: outbound queue full
	closeTooBig      = ws.StatusMessageTooBig           // 1009 message over limits.max_message_size
)

// transport is how a connection's bytes move: a goroutine per connection
// (goroutineTransport, portable) or the epoll event loop (Linux). Everything
// above it — the frame reader, the write queue, the WAMP session — is the
// same in both modes, so both pass the same tests.
type transport interface {
	// kick arranges for the queued data of c to be written soon, by a
	// goroutine that may block on the socket. It is called with c.mu held,
	// at most once until that goroutine calls c.flushDone.
	kick(c *conn)
	// closeSocket closes c's socket; it must be safe to call more than once
	// and from any goroutine.
	closeSocket(c *conn)
}

// conn is one established websocket connection: the WAMP session, the
// incremental frame reader, and a bounded outbound queue. Reads are done by
// one goroutine at a time (the connection's own in goroutine mode, an event
// loop worker in epoll mode); writes by whichever goroutine the transport
// kicks.
type conn struct {
	srv  *Server
	id   string
	sess *wamp.Session
	tr   transport
	fr   frameReader
	ctx  context.Context

	lastRead atomic.Int64 // unix nanoseconds of the last bytes read (idle timeout)

	mu       sync.Mutex
	out      [][]byte // queued frames: header and payload slices, never copied
	queued   int      // bytes in out
	flushing bool     // the transport was kicked and has not reported back
	closing  bool     // a close frame is queued: accept nothing more
	dead     bool     // the socket is closed
	reason   string   // disconnect reason for metrics

	sessionID   string    // the PHP session id of its cookie, "" without one
	connectedAt time.Time // set by register

	userKey string   // counted in Server.userConns under this key; "" when not; guarded by mu
	ident   identity // who the connection is now; guarded by mu

	registered     bool // Server.register finished: teardown may run
	teardownWanted bool // the socket closed before that
	torndown       bool
}

// Send implements wamp.Peer: it queues msg as one text frame. It never
// blocks. When the client's queue would exceed limits.outbound_queue_bytes
// the client is closed with 1008 instead: one slow reader must not make the
// gateway buffer without bound or slow everyone else's fan-out.
func (c *conn) Send(msg []byte) bool {
	var hb [ws.MaxHeaderSize]byte
	h := appendHeader(hb[:0], ws.OpText, len(msg))
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		c.srv.metrics.Dropped.WithLabelValues("closing").Inc()
		return false
	}
	if c.queued+len(h)+len(msg) > c.srv.cfg.Limits.OutboundQueueBytes {
		c.mu.Unlock()
		c.srv.metrics.Dropped.WithLabelValues("slow_consumer").Inc()
		c.closeWith(closePolicy, "slow consumer", "slow_consumer")
		return false
	}
	c.out = append(c.out, append([]byte(nil), h...), msg)
	c.queued += len(h) + len(msg)
	c.kickLocked()
	c.mu.Unlock()
	c.srv.metrics.MessagesSent.Inc()
	return true
}

// sendRaw queues bytes as they are (the 101 response, control frames),
// bypassing the byte limit: they are small and the protocol requires them.
func (c *conn) sendRaw(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead {
		return
	}
	c.out = append(c.out, b)
	c.queued += len(b)
	c.kickLocked()
}

func (c *conn) kickLocked() {
	if !c.flushing && !c.dead {
		c.flushing = true
		c.tr.kick(c)
	}
}

// appendHeader appends an unmasked server frame header.
func appendHeader(dst []byte, op ws.OpCode, n int) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case n <= 125:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return append(dst, 126, byte(n>>8), byte(n))
	default:
		return append(dst, 127, byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func controlFrame(op ws.OpCode, payload []byte) []byte {
	f := appendHeader(make([]byte, 0, 2+len(payload)), op, len(payload))
	return append(f, payload...)
}

// closeWith queues a close frame and stops accepting messages. Once the
// frame is written the socket is closed: per RFC 6455 §7.1.1 the server
// closes the TCP connection first. reason labels the disconnect metric.
func (c *conn) closeWith(code ws.StatusCode, text, reason string) {
	body := make([]byte, 2, 2+len(text))
	body[0], body[1] = byte(code>>8), byte(code)
	frame := controlFrame(ws.OpClose, append(body, text...))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead {
		return
	}
	c.closing = true
	c.reason = reason
	c.out = append(c.out, frame)
	c.kickLocked()
}

// takeBatch hands the writer everything queued. ok is false when there is
// nothing to write; then the writer is done (flushing is cleared) and, if a
// close frame went out, the socket must be closed (closeAfter).
func (c *conn) takeBatch() (batch [][]byte, closeAfter bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out) == 0 || c.dead {
		c.flushing = false
		return nil, c.closing && !c.dead
	}
	batch, c.out = c.out, nil
	c.queued = 0
	return batch, false
}

// requeue puts back what a non-blocking write could not write, in front.
func (c *conn) requeue(rest [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range rest {
		n += len(b)
	}
	c.out = append(rest, c.out...)
	c.queued += n
}

// markDead records that the socket is gone; it returns false if it already
// was, so the caller closes it exactly once.
func (c *conn) markDead(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return false
	}
	c.dead = true
	c.out = nil
	if c.reason == "" {
		c.reason = reason
	}
	return true
}

// kill closes the socket now, without a close frame.
func (c *conn) kill(reason string) {
	if c.markDead(reason) {
		c.tr.closeSocket(c)
	}
}

// onMessage implements frameSink: a complete text message for WAMP.
func (c *conn) onMessage(payload []byte) error {
	s := c.srv
	s.metrics.MessagesReceived.Inc()
	// A draining gateway lets calls in flight finish but takes no new
	// ones: the client is about to get 1001 and reconnect elsewhere.
	s.inflight.Add(1)
	if s.drain.Load() {
		s.inflight.Add(-1)
		return nil
	}
	err := c.sess.Handle(c.ctx, payload)
	s.inflight.Add(-1)
	if err == nil {
		return nil
	}
	if errors.Is(err, wamp.ErrProtocol) {
		c.srv.log.Debug("closing client after malformed WAMP message", "conn", c.id, "err", err)
		c.closeWith(closeInvalid, "malformed WAMP message", "protocol_error")
		return errStopReading
	}
	if errors.Is(err, wamp.ErrGoodbye) {
		// v2 GOODBYE (or ABORT): the session is over, the socket follows.
		c.closeWith(closeNormal, "", "goodbye")
		return errStopReading
	}
	if errors.Is(err, wamp.ErrClosed) {
		return errStopReading
	}
	c.srv.log.Warn("wamp handler failed", "conn", c.id, "err", err)
	return nil
}

// onControl implements frameSink: answer ping, ignore pong, complete the
// close handshake. Replies go through the queue so that they never
// interleave with a data frame being written.
func (c *conn) onControl(op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpPing:
		c.sendRaw(controlFrame(ws.OpPong, payload))
	case ws.OpClose:
		if len(payload) == 0 { // no status code: answer with a plain normal close
			c.closeWith(closeNormal, "", "client_close")
			return errStopReading
		}
		code, text := ws.ParseCloseFrameData(payload)
		if err := ws.CheckCloseFrameData(code, text); err != nil {
			c.closeWith(closeProtocol, err.Error(), "protocol_error")
			return errStopReading
		}
		c.closeWith(code, "", "client_close")
		return errStopReading
	}
	return nil
}

// errStopReading ends the read side: the connection is closing.
var errStopReading = errors.New("stop reading")

// feed passes bytes read from the socket to the frame reader. It returns
// false when reading must stop; the connection is then closing.
func (c *conn) feed(data []byte) bool {
	c.lastRead.Store(time.Now().UnixNano())
	c.srv.metrics.ReceivedBytes.Add(float64(len(data)))
	err := c.fr.feed(data, c)
	if err == nil {
		return true
	}
	if code, text := closeCodeFor(err); code != 0 {
		c.closeWith(code, text, "protocol_error")
	}
	return false
}

// readEnded handles the end of the read side through an I/O error: EOF,
// reset, or our own close.
func (c *conn) readEnded() {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if !closing {
		c.kill("connection_lost")
	}
}

// teardown runs once when the connection is finished: it ends the WAMP
// session, removes the client from storage, and updates the metrics.
func (c *conn) teardown() {
	c.mu.Lock()
	if c.torndown {
		c.mu.Unlock()
		return
	}
	if !c.registered {
		c.teardownWanted = true
		c.mu.Unlock()
		return
	}
	c.torndown = true
	reason := c.reason
	c.mu.Unlock()
	if reason == "" {
		reason = "connection_lost"
	}
	s := c.srv
	c.sess.Close()
	if err := s.clients.Remove(context.WithoutCancel(c.ctx), c.id); err != nil {
		s.log.Warn("client storage remove failed", "conn", c.id, "err", err)
	}
	s.untrack(c)
	c.mu.Lock()
	userKey := c.userKey
	c.mu.Unlock()
	s.releaseUser(userKey)
	s.metrics.Connections.Dec()
	s.metrics.Disconnects.WithLabelValues(reason).Inc()
	if s.events != nil && s.cfg.Events.Disconnect {
		// Queued, never blocking: the app hears about every connection
		// that ends while the gateway lives, drained ones included
		// (Shutdown flushes the queue).
		sess := c.sess
		s.events.Disconnected(upstream.ConnEvent{
			ConnID: c.id, SessionID: sess.ID(), Firewall: sess.Firewall(), UserIdentifier: sess.UserIdentifier(),
			Anonymous: sess.Anonymous(), Roles: sess.Roles(), Protocol: sess.Protocol().Subprotocol(),
			ConnectedAt: c.connectedAt, Extra: sess.Extra(), Reason: reason,
		})
	}
	s.log.Debug("client disconnected", "conn", c.id, "reason", reason)
}
