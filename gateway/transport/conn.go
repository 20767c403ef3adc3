package transport

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Close codes the transport sends, and why. docs/limits.md and
// docs/architecture.md list them with the host's own.
const (
	CloseNormal      = ws.StatusNormalClosure           // 1000 answer to a client close, WAMP GOODBYE
	CloseGoingAway   = ws.StatusGoingAway               // 1001 drain or idle timeout
	CloseProtocol    = ws.StatusProtocolError           // 1002 broken websocket framing
	CloseUnsupported = ws.StatusUnsupportedData         // 1003 binary message
	CloseInvalid     = ws.StatusInvalidFramePayloadData // 1007 invalid UTF-8, undecodable compression
	ClosePolicy      = ws.StatusPolicyViolation         // 1008 a limit: outbound queue full, ...
	CloseTooBig      = ws.StatusMessageTooBig           // 1009 message over MaxMessageSize
)

// connIO is how one mode moves a connection's bytes.
type connIO interface {
	// kick arranges for c's queue to be written soon, by a goroutine that
	// may block on the socket. It is called with c.mu held, at most once
	// until that goroutine finds the queue empty (takeBatch).
	kick(c *Conn)
	// closeSocket closes the socket and then calls c.socketClosed. Conn.Kill
	// calls it once.
	closeSocket(c *Conn)
}

// Conn is one established websocket connection: its frame reader and its
// bounded outbound queue. One goroutine at a time reads it (the
// connection's own in goroutine mode, a read worker in epoll mode); whoever
// the mode kicks writes it. Its methods are safe for concurrent use.
type Conn struct {
	t  *Transport
	io connIO
	fr frameReader // used only by the goroutine reading the connection
	h  Handler     // set by open, under mu, before any read is scheduled

	// lastRead is when bytes last came (unix nanoseconds), for IdleTimeout.
	lastRead atomic.Int64

	mu sync.Mutex // guards the queue and the state below, not stopped
	// out holds queued frames: headers and payloads, never copied (a
	// fan-out shares one payload among all its receivers).
	out [][]byte
	// queued counts the bytes in out and in the batch a writer holds: all
	// of it is memory this client makes us keep, bounded by
	// OutboundQueueBytes.
	queued   int
	reason   string // why the connection ends, for Handler.Closed
	flushing bool   // the mode was kicked and its writer has not found the queue empty
	closing  bool   // a close frame is queued: nothing more is taken
	dead     bool   // the socket is closed (or closing)
	opened   bool   // the host's Open returned a Handler: Closed is owed
	early    bool   // the socket closed before Open returned
	ended    bool   // Handler.Closed was called

	// slot is the connection's place in Transport.conns plus one (0: not
	// listed); guarded by the Transport's mu. In the padding after the
	// flags, so the Conn stays in the 192-byte class.
	slot int32

	// stopped mirrors closing || dead for the reader, which checks it after
	// every message without taking mu: once the connection closes, nothing
	// more a client sent is handled. (Beside the flags, where it fits in
	// their padding: an idle connection's Conn stays in a 192-byte class.)
	stopped atomic.Bool
}

func newConn(t *Transport, io connIO, deflate bool) *Conn {
	c := &Conn{t: t, io: io}
	c.fr.maxMessage = t.cfg.MaxMessageSize
	c.fr.deflate = deflate
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// SetBinary makes the connection's messages binary frames, both ways:
// the host's Handler gets binary messages and text ones are refused with
// 1003 (as binary ones are otherwise), and the host sends with
// SendBinary. Call it from Handshake.Open only, before the first message
// is read (WAMP v2 msgpack and CBOR subprotocols).
func (c *Conn) SetBinary() { c.fr.binary = true }

// Send queues msg as one text frame and never blocks. msg is not copied
// and must not change afterwards. A client whose queue would exceed
// OutboundQueueBytes is closed with 1008 instead (reason slow_consumer):
// one slow reader must make the gateway neither buffer without bound nor
// slow anyone else. It returns false when msg was not queued.
func (c *Conn) Send(msg []byte) bool { return c.send(textHeader(len(msg)), msg) }

// SendBinary is Send for a binary frame (see SetBinary).
func (c *Conn) SendBinary(msg []byte) bool { return c.send(binaryHeader(len(msg)), msg) }

// send queues the frame header h and its payload msg (see Send).
func (c *Conn) send(h, msg []byte) bool {
	n := len(h) + len(msg)
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		c.t.obs.Dropped("closing")
		return false
	}
	if c.queued+n > c.t.cfg.OutboundQueueBytes {
		c.mu.Unlock()
		c.overflow()
		return false
	}
	c.out = append(c.queue(), h, msg)
	c.queued += n
	c.kickLocked()
	c.mu.Unlock()
	c.t.obs.MessageOut()
	return true
}

// sendControl queues a control frame (a pong, a keepalive ping) under the
// same byte bound as messages: a client that makes us answer pings and
// never reads is a slow consumer like any other. It returns false when the
// frame was not queued.
func (c *Conn) sendControl(frame []byte) bool {
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		return false
	}
	if c.queued+len(frame) > c.t.cfg.OutboundQueueBytes {
		c.mu.Unlock()
		c.overflow()
		return false
	}
	c.out = append(c.queue(), frame)
	c.queued += len(frame)
	c.kickLocked()
	c.mu.Unlock()
	return true
}

// queueRaw queues the 101 answer ahead of everything the host sends.
func (c *Conn) queueRaw(b []byte) {
	c.mu.Lock()
	c.out = append(c.queue(), b)
	c.queued += len(b)
	c.kickLocked()
	c.mu.Unlock()
}

// overflow closes a client whose queue is full.
func (c *Conn) overflow() {
	c.t.obs.Dropped(ReasonSlowConsumer)
	c.t.limit(LimitOutboundQueue)
	c.Close(ClosePolicy, "slow consumer", ReasonSlowConsumer)
}

func (c *Conn) kickLocked() {
	if !c.flushing && !c.dead {
		c.flushing = true
		c.io.kick(c)
	}
}

// Close queues a close frame with code and text and takes nothing more;
// once the frame is written the socket is closed (the server closes the
// TCP connection first, RFC 6455 §7.1.1). reason is what Handler.Closed
// will get. Later calls do nothing.
func (c *Conn) Close(code ws.StatusCode, text, reason string) {
	body := make([]byte, 2, 2+len(text))
	body[0], body[1] = byte(code>>8), byte(code)
	frame := controlFrame(ws.OpClose, append(body, text...))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead {
		return
	}
	c.closing = true
	c.stopped.Store(true)
	c.reason = reason
	c.out = append(c.queue(), frame)
	c.kickLocked()
}

// Kill closes the socket now, without a close frame. reason is what
// Handler.Closed gets unless Close gave one before.
func (c *Conn) Kill(reason string) {
	if c.markDead(reason) {
		c.io.closeSocket(c)
	}
}

// Closing reports whether the connection takes no more messages.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing || c.dead
}

// Handler returns what the host's Open returned, nil before that.
func (c *Conn) Handler() Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.h
}

// A queue's backing array comes from outPool and goes back to it once a
// writer wrote the whole batch: at one event per second an idle
// subscriber's queue is empty before each delivery, and appending to the
// nil queue allocated a fresh array per subscriber per event (issue 19: no
// allocation per subscriber on the fan-out path). An idle connection holds
// no array. A queue that outgrows outArrayLen entries moves to an array
// append makes, which recycleBatch takes only if it has exactly that
// length.
const outArrayLen = 8

type outArray [outArrayLen][]byte

var outPool = sync.Pool{New: func() any { return new(outArray) }}

// queue is c.out, or an empty queue on a pooled array when there is none;
// c.mu must be held.
func (c *Conn) queue() [][]byte {
	if c.out == nil {
		return outPool.Get().(*outArray)[:0]
	}
	return c.out
}

// recycleBatch gives the array of a batch a writer has written completely
// (batch as takeBatch returned it: its start) back to outPool. The writer
// must hold no other reference to it, and nothing of it was requeued.
func recycleBatch(batch [][]byte) {
	if cap(batch) != outArrayLen {
		return // grown past the pooled size, or not the array's start
	}
	a := (*outArray)(batch[:outArrayLen])
	clear(a[:]) // drop the payloads
	outPool.Put(a)
}

// takeBatch gives the writer everything queued, after counting off the
// written bytes of its previous batch. The batch stays counted in queued
// until it is written: it is memory this client holds. ok is false when
// there is nothing to write: the writer is done (flushing is cleared) and,
// if a close frame went out, must close the socket (closeAfter).
func (c *Conn) takeBatch(written int) (batch [][]byte, closeAfter bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued -= written
	if len(c.out) == 0 || c.dead {
		c.flushing = false
		return nil, c.closing && !c.dead
	}
	batch, c.out = c.out, nil
	return batch, false
}

// nextBatch is takeBatch for a writer loop: nil when the writer is done,
// after closing the socket when a close frame went out.
func (c *Conn) nextBatch(written int) [][]byte {
	batch, closeAfter := c.takeBatch(written)
	if batch == nil && closeAfter {
		c.Kill("")
	}
	return batch
}

// requeue puts back, in front, what a non-blocking write left of its batch,
// and counts off what it wrote.
func (c *Conn) requeue(rest [][]byte, written int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queued -= written
	if c.dead {
		return
	}
	c.out = append(rest, c.out...)
}

// markDead records that the socket goes; false if it already did, so the
// caller closes it once.
func (c *Conn) markDead(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return false
	}
	c.dead = true
	c.stopped.Store(true)
	c.out = nil
	c.queued = 0
	if c.reason == "" {
		c.reason = reason
	}
	return true
}

// socketClosed runs once the socket is closed: the connection is no longer
// tracked and the host hears of it — now, or when its Open returns.
func (c *Conn) socketClosed() {
	c.t.untrack(c)
	c.mu.Lock()
	if !c.opened {
		c.early = true
		c.mu.Unlock()
		return
	}
	c.closedLocked()
}

// closedLocked calls Handler.Closed once; it releases c.mu.
func (c *Conn) closedLocked() {
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	reason := c.reason
	h := c.h
	c.mu.Unlock()
	if reason == "" {
		reason = ReasonConnectionLost
	}
	h.Closed(reason)
}

// open hands an upgraded connection (its 101 queued) to the host. It
// returns false when the connection did not become live; then it is closed.
func (t *Transport) open(c *Conn, hs Handshake) bool {
	if !t.track(c) {
		hs.Abandon()
		c.Kill(ReasonDrain)
		return false
	}
	h := hs.Open(c)
	if h == nil {
		c.Kill(ReasonDrain)
		return false
	}
	c.mu.Lock()
	c.h = h
	c.opened = true
	if c.early {
		// The socket died while the host opened it (the first write
		// failed): it hears of it now.
		c.closedLocked()
		return false
	}
	c.mu.Unlock()
	return true
}

// onMessage implements frameSink: a complete text message for the host.
func (c *Conn) onMessage(payload []byte) error {
	c.t.obs.MessageIn()
	if !c.h.Message(payload) || c.stopped.Load() {
		// Closed meanwhile (a reply overflowed the queue, or the host
		// closed it): the rest of what the client sent is not handled.
		return errStopReading
	}
	return nil
}

// onControl implements frameSink: answer ping, ignore pong, complete the
// close handshake. Replies go through the queue so that they never
// interleave with a data frame being written, and count against its bound.
func (c *Conn) onControl(op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpPing:
		if !c.sendControl(controlFrame(ws.OpPong, payload)) && c.Closing() {
			return errStopReading
		}
	case ws.OpClose:
		if len(payload) == 0 { // no status code: answer with a plain normal close
			c.Close(CloseNormal, "", ReasonClientClose)
			return errStopReading
		}
		code, text := ws.ParseCloseFrameData(payload)
		if err := ws.CheckCloseFrameData(code, text); err != nil {
			c.Close(CloseProtocol, err.Error(), ReasonProtocolError)
			return errStopReading
		}
		c.Close(code, "", ReasonClientClose)
		return errStopReading
	}
	return nil
}

// errStopReading ends the read side: the connection is closing.
var errStopReading = errors.New("stop reading")

// feed passes bytes read from the socket to the frame reader. It returns
// false when reading must stop; the connection is then closing.
func (c *Conn) feed(data []byte) bool {
	c.lastRead.Store(time.Now().UnixNano())
	c.t.obs.Read(len(data))
	err := c.fr.feed(data, c)
	if err == nil {
		return true
	}
	if code, text := closeCodeFor(err); code != 0 {
		if code == CloseTooBig {
			c.t.limit(LimitMessageSize)
		}
		c.Close(code, text, ReasonProtocolError)
	}
	return false
}

// readEnded handles the end of the read side through an I/O error: EOF,
// reset, or our own close.
func (c *Conn) readEnded() {
	// A queued close frame is written first; its writer closes the socket.
	if !c.Closing() {
		c.Kill(ReasonConnectionLost)
	}
}

// textHeaders holds the header of an unmasked, final text frame for every
// payload length up to 0xFFFF, back to back (2 bytes each below 126, 4
// above), built on first use. Send hands out slices of it, read-only, so a
// fan-out to N subscribers queues N references to the same bytes instead
// of allocating N headers; 256 KiB once per process.
// binaryHeaders is the same for binary frames, built only when a binary
// subprotocol is first used.
var (
	textHeaders   = sync.OnceValue(func() []byte { return headerTable(ws.OpText) })
	binaryHeaders = sync.OnceValue(func() []byte { return headerTable(ws.OpBinary) })
)

// headerTable builds the table of textHeaders for frames of opcode op.
func headerTable(op ws.OpCode) []byte {
	b := make([]byte, 0, 126*2+(0x10000-126)*4)
	for n := 0; n <= 0xFFFF; n++ {
		b = appendHeader(b, op, n)
	}
	return b
}

// textHeader returns the header of a text frame of n payload bytes: a
// shared slice that must not be written to, or a fresh one for payloads
// over 64 KiB.
func textHeader(n int) []byte { return tableHeader(textHeaders, ws.OpText, n) }

// binaryHeader is textHeader for a binary frame.
func binaryHeader(n int) []byte { return tableHeader(binaryHeaders, ws.OpBinary, n) }

// tableHeader returns the header of an op frame of n payload bytes from
// table (textHeaders, binaryHeaders).
func tableHeader(table func() []byte, op ws.OpCode, n int) []byte {
	switch {
	case n <= 125:
		return table()[2*n : 2*n+2 : 2*n+2]
	case n <= 0xFFFF:
		off := 126*2 + 4*(n-126)
		return table()[off : off+4 : off+4]
	}
	return appendHeader(make([]byte, 0, ws.MaxHeaderSize), op, n)
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
