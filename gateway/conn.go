package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

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

// conn is one established websocket connection. Its reader goroutine (the
// one that ran the handshake) owns reading and the WAMP session; writes go
// through a bounded queue drained by a writer goroutine that exists only
// while there is something to write, so an idle connection holds one
// goroutine and no write buffer.
type conn struct {
	srv  *Server
	nc   net.Conn
	id   string
	sess *wamp.Session

	mu       sync.Mutex
	out      net.Buffers // queued frames: header and payload slices, never copied
	spare    net.Buffers // the writer's last batch, reused to avoid allocation
	queued   int         // bytes in out
	writing  bool        // a writer goroutine is running
	closing  bool        // a close frame is queued: accept nothing more
	reason   string      // disconnect reason for metrics
	closedNC bool
}

// Send implements wamp.Peer: it queues msg as one text frame. It never
// blocks. When the client's queue would exceed limits.outbound_queue_bytes
// the client is closed with 1008 instead: one slow reader must not make the
// gateway buffer without bound or slow everyone else's fan-out.
func (c *conn) Send(msg []byte) bool {
	var hb [ws.MaxHeaderSize]byte
	h := appendHeader(hb[:0], ws.OpText, len(msg))
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if c.queued+len(h)+len(msg) > c.srv.cfg.Limits.OutboundQueueBytes {
		c.mu.Unlock()
		c.closeWith(closePolicy, "slow consumer", "slow_consumer")
		return false
	}
	hdr := make([]byte, len(h))
	copy(hdr, h)
	c.out = append(c.out, hdr, msg)
	c.queued += len(hdr) + len(msg)
	c.startWriterLocked()
	c.mu.Unlock()
	c.srv.metrics.MessagesSent.Inc()
	return true
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

// sendControl queues a control frame (pong); it bypasses the byte limit
// because control frames are tiny and the protocol requires them.
func (c *conn) sendControl(op ws.OpCode, payload []byte) {
	frame := appendHeader(make([]byte, 0, 2+len(payload)), op, len(payload))
	frame = append(frame, payload...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.out = append(c.out, frame)
	c.queued += len(frame)
	c.startWriterLocked()
}

// closeWith queues a close frame and stops accepting messages. The writer
// closes the socket once the frame is out: per RFC 6455 §7.1.1 the server
// closes the TCP connection first. reason labels the disconnect metric.
func (c *conn) closeWith(code ws.StatusCode, text, reason string) {
	frame := appendHeader(make([]byte, 0, 4+len(text)), ws.OpClose, 2+len(text))
	frame = append(frame, byte(code>>8), byte(code))
	frame = append(frame, text...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing = true
	c.reason = reason
	c.out = append(c.out, frame)
	c.startWriterLocked()
}

func (c *conn) startWriterLocked() {
	if c.writing || c.closedNC {
		return
	}
	c.writing = true
	c.srv.wg.Add(1)
	go c.writeLoop()
}

// writeLoop drains the queue with one writev per batch and exits when the
// queue is empty. No lock is held across the socket write.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	for {
		c.mu.Lock()
		if len(c.out) == 0 || c.closedNC {
			c.writing = false
			done := c.closing && !c.closedNC
			c.mu.Unlock()
			if done {
				c.closeSocket()
			}
			return
		}
		batch := c.out
		c.out, c.spare = c.spare[:0], nil
		c.queued = 0
		c.mu.Unlock()

		c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.Limits.WriteTimeout))
		toWrite := batch
		_, err := toWrite.WriteTo(c.nc)
		clear(batch) // drop references to payloads shared with other clients
		c.mu.Lock()
		c.spare = batch[:0]
		c.mu.Unlock()
		if err != nil {
			c.mu.Lock()
			if c.reason == "" {
				c.reason = "write_error"
			}
			c.writing = false
			c.mu.Unlock()
			c.closeSocket()
			return
		}
	}
}

func (c *conn) closeSocket() {
	c.mu.Lock()
	already := c.closedNC
	c.closedNC = true
	c.out = nil
	c.mu.Unlock()
	if !already {
		c.nc.Close()
	}
}

// readLoop reads messages until the connection ends and hands each one to
// the WAMP session. It runs on the connection's own goroutine.
func (c *conn) readLoop(ctx context.Context, br *bufio.Reader) {
	limits := c.srv.cfg.Limits
	rd := &wsutil.Reader{
		Source:         br,
		State:          ws.StateServerSide,
		CheckUTF8:      true,
		MaxFrameSize:   int64(limits.MaxMessageSize),
		MaxMessageSize: int64(limits.MaxMessageSize),
		OnIntermediate: c.onControl,
	}
	buf := make([]byte, 0, 512)
	for {
		c.nc.SetReadDeadline(time.Now().Add(limits.IdleTimeout))
		hdr, err := rd.NextFrame()
		if err != nil {
			c.readFailed(err)
			return
		}
		if hdr.OpCode.IsControl() {
			if err := c.onControl(hdr, rd); err != nil {
				c.readFailed(err)
				return
			}
			continue
		}
		if hdr.OpCode == ws.OpBinary {
			c.closeWith(closeUnsupported, "binary messages are not supported", "protocol_error")
			return
		}
		buf, err = readMessage(buf[:0], rd)
		if err != nil {
			c.readFailed(err)
			return
		}
		c.srv.metrics.MessagesReceived.Inc()
		if err := c.sess.Handle(ctx, buf); err != nil {
			if errors.Is(err, wamp.ErrProtocol) {
				c.srv.log.Debug("closing client after malformed WAMP message", "conn", c.id, "err", err)
				c.closeWith(closeInvalid, "malformed WAMP message", "protocol_error")
				return
			}
			c.srv.log.Warn("wamp handler failed", "conn", c.id, "err", err)
		}
		if cap(buf) > 64<<10 {
			buf = make([]byte, 0, 512) // don't pin one big message's buffer forever
		}
	}
}

// readMessage appends the rest of the current message to dst. The reader
// enforces the size limit and UTF-8 validity.
func readMessage(dst []byte, rd io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := rd.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// onControl answers ping, ignores pong and completes the close handshake.
// Control frames may arrive between fragments, so wsutil calls it for those
// too; replies go through the queue so that they never interleave with a
// data frame being written.
func (c *conn) onControl(h ws.Header, r io.Reader) error {
	var p [125]byte
	if h.Length > int64(len(p)) {
		return ws.ErrProtocolControlPayloadOverflow
	}
	payload := p[:h.Length]
	if _, err := io.ReadFull(r, payload); err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		c.sendControl(ws.OpPong, payload)
		return nil
	case ws.OpPong:
		return nil
	case ws.OpClose:
		if len(payload) == 0 { // no status code: answer with a plain normal close
			c.closeWith(closeNormal, "", "client_close")
			return errClosed
		}
		code, text := ws.ParseCloseFrameData(payload)
		if err := ws.CheckCloseFrameData(code, text); err != nil {
			c.closeWith(closeProtocol, err.Error(), "protocol_error")
			return errClosed
		}
		c.closeWith(code, "", "client_close")
		return errClosed
	}
	return ws.ErrProtocolOpCodeReserved
}

var errClosed = errors.New("connection closed by client")

// readFailed maps a read error to the close the client gets.
func (c *conn) readFailed(err error) {
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, errClosed):
	case errors.Is(err, wsutil.ErrFrameTooLarge), errors.Is(err, wsutil.ErrMessageTooLarge):
		c.closeWith(closeTooBig, "message too big", "protocol_error")
	case errors.Is(err, wsutil.ErrInvalidUTF8):
		c.closeWith(closeInvalid, "invalid UTF-8", "protocol_error")
	case errors.As(err, &timeout) && timeout.Timeout():
		c.closeWith(closeGoingAway, "idle timeout", "idle_timeout")
	case isProtocolError(err):
		c.closeWith(closeProtocol, err.Error(), "protocol_error")
	default:
		// EOF, reset, or our own close: the socket is gone or going.
		c.mu.Lock()
		if c.reason == "" {
			c.reason = "connection_lost"
		}
		c.mu.Unlock()
		c.closeSocket()
	}
}

func isProtocolError(err error) bool {
	var pe ws.ProtocolError
	return errors.As(err, &pe)
}
