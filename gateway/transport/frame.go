package transport

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Frame errors, each mapped to the close code the client gets (closeCodeFor).
var (
	errFrameProtocol = errors.New("websocket protocol error")       // 1002
	errFrameBinary   = errors.New("binary messages unsupported")    // 1003
	errFrameText     = errors.New("text messages unsupported")      // 1003
	errFrameUTF8     = errors.New("invalid UTF-8 in text message")  // 1007
	errFrameBadData  = errors.New("undecodable compressed message") // 1007
	errFrameTooBig   = errors.New("message too big")                // 1009
)

// frameError is a protocol violation with its detail; it wraps one of the
// sentinels above.
type frameError struct {
	kind   error
	detail string
}

func (e *frameError) Error() string { return e.kind.Error() + ": " + e.detail }
func (e *frameError) Unwrap() error { return e.kind }

func protoErr(detail string) error { return &frameError{errFrameProtocol, detail} }

// frameSink receives what a frameReader decodes. payload is only valid
// during the call: it may point into the caller's read buffer.
type frameSink interface {
	onMessage(payload []byte) error
	onControl(op ws.OpCode, payload []byte) error
}

// frameReader decodes client-to-server websocket frames (RFC 6455 §5)
// incrementally: bytes arrive in any chunks, and whatever is incomplete is
// kept until more comes, so a client that sends half a frame never holds a
// goroutine or a worker, only its few pending bytes. Sizes are checked from
// the header before anything is buffered, so memory stays bounded by
// maxMessage per connection however the input is shaped.
//
// It is not safe for concurrent use; each connection has one, used by the
// single goroutine that reads the connection at a time.
type frameReader struct {
	maxMessage int
	pending    []byte    // an incomplete frame, nil when none
	msg        []byte    // fragments of an unfinished message, nil when none
	deflate    bool      // permessage-deflate was negotiated (RFC 7692)
	compressed bool      // the unfinished message has RSV1: inflate it when complete
	inMessage  bool      // a fragmented message is under way
	msgOp      ws.OpCode // opcode of the unfinished message
	// binary: the connection's messages are binary frames (WAMP v2 msgpack
	// and CBOR), and text frames are refused; otherwise the other way
	// round. Set by Conn.SetBinary.
	binary bool
}

// feed decodes every complete frame in pending+data, calling sink for each
// message and control frame, and keeps the rest. data may be modified
// (unmasked in place). It returns the first error: a protocol violation
// (*frameError) or the sink's error; after an error the reader must not be
// used again.
func (r *frameReader) feed(data []byte, sink frameSink) error {
	if len(r.pending) > 0 {
		// Complete the pending frame from data first, copying only as many
		// bytes as it needs.
		need, err := r.frameLen(r.pending)
		if err != nil {
			return err
		}
		for need < 0 { // header itself incomplete
			if len(data) == 0 {
				return nil
			}
			r.pending = append(r.pending, data[0])
			data = data[1:]
			if need, err = r.frameLen(r.pending); err != nil {
				return err
			}
		}
		take := min(need-len(r.pending), len(data))
		r.pending = append(r.pending, data[:take]...)
		data = data[take:]
		if len(r.pending) < need {
			return nil
		}
		frame := r.pending
		r.pending = nil
		if err := r.frame(frame, sink); err != nil {
			return err
		}
	}
	for len(data) > 0 {
		need, err := r.frameLen(data)
		if err != nil {
			return err
		}
		if need < 0 || need > len(data) {
			// Keep the partial frame. Its size is bounded (frameLen checked
			// it); the buffer grows with what arrives rather than with what
			// the header claims, so a stalled client costs what it sent.
			r.pending = append([]byte(nil), data...)
			return nil
		}
		if err := r.frame(data[:need], sink); err != nil {
			return err
		}
		data = data[need:]
	}
	return nil
}

// frameLen returns the total length of the frame starting at b, -1 when
// the header is not complete yet, or an error when the header is invalid or
// announces more than the limits allow.
func (r *frameReader) frameLen(b []byte) (int, error) {
	if len(b) < 2 {
		return -1, nil
	}
	lenEnd := 2 // the length is judged as soon as it is there, before the mask key
	n := int64(b[1] & 0x7f)
	switch n {
	case 126:
		lenEnd += 2
	case 127:
		lenEnd += 8
	}
	if len(b) < lenEnd {
		return -1, nil
	}
	switch n {
	case 126:
		n = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > 1<<62 {
			return 0, &frameError{errFrameTooBig, "frame length out of range"}
		}
		n = int64(u)
	}
	masked := b[1]&0x80 != 0
	if err := r.checkHeader(b[0], masked, n); err != nil {
		return 0, err
	}
	return lenEnd + 4 + int(n), nil // masked, or checkHeader refused it
}

// checkHeader applies RFC 6455 §5.2, §5.4 and §5.5 rules and the size limit
// before any payload is buffered.
func (r *frameReader) checkHeader(b0 byte, masked bool, n int64) error {
	op := ws.OpCode(b0 & 0x0f)
	if b0&0x30 != 0 || b0&0x40 != 0 && !(r.deflate && (op == ws.OpText || op == ws.OpBinary)) {
		// RSV1 marks a compressed message, only on its first frame and
		// only when permessage-deflate was negotiated (RFC 7692 §6).
		return protoErr("reserved bits set without a negotiated extension")
	}
	if !masked {
		return protoErr("client frames must be masked")
	}
	fin := b0&0x80 != 0
	if op.IsControl() {
		if !op.IsReserved() && n > 125 {
			return protoErr("control frame payload over 125 bytes")
		}
		if !fin {
			return protoErr("fragmented control frame")
		}
	}
	if op.IsReserved() {
		return protoErr("reserved opcode")
	}
	if (op == ws.OpText || op == ws.OpBinary) && r.inMessage {
		return protoErr("new message before the previous one finished")
	}
	if op == ws.OpContinuation && !r.inMessage {
		return protoErr("continuation frame without a message")
	}
	// For a compressed message this bounds the compressed bytes; the
	// inflated size is bounded again when it is inflated.
	if !op.IsControl() && int64(len(r.msg))+n > int64(r.maxMessage) {
		return &frameError{errFrameTooBig, "message over the size limit"}
	}
	return nil
}

// frame handles one complete frame. frame is unmasked in place.
func (r *frameReader) frame(frame []byte, sink frameSink) error {
	b0, b1 := frame[0], frame[1]
	hl := 2
	switch b1 & 0x7f {
	case 126:
		hl += 2
	case 127:
		hl += 8
	}
	var mask [4]byte
	copy(mask[:], frame[hl:hl+4])
	payload := frame[hl+4:]
	ws.Cipher(payload, mask, 0)
	op := ws.OpCode(b0 & 0x0f)
	fin := b0&0x80 != 0
	if op.IsControl() {
		return sink.onControl(op, payload)
	}
	if op == ws.OpBinary && !r.binary {
		return &frameError{errFrameBinary, "the subprotocol speaks JSON text"}
	}
	if op == ws.OpText && r.binary {
		return &frameError{errFrameText, "the subprotocol speaks binary"}
	}
	start := op == ws.OpText || op == ws.OpBinary
	if start {
		r.compressed = b0&0x40 != 0
	}
	if start && fin {
		return r.deliver(payload, sink)
	}
	if start {
		r.inMessage, r.msgOp = true, op
	}
	r.msg = append(r.msg, payload...)
	if !fin {
		return nil
	}
	msg := r.msg
	r.msg, r.inMessage = nil, false
	return r.deliver(msg, sink)
}

func (r *frameReader) deliver(payload []byte, sink frameSink) error {
	if r.compressed {
		r.compressed = false
		var err error
		if payload, err = inflate(payload, r.maxMessage); err != nil {
			return err
		}
	}
	if !r.binary && !utf8.Valid(payload) {
		return &frameError{errFrameUTF8, "text message is not UTF-8"}
	}
	return sink.onMessage(payload)
}

// closeCodeFor maps a read error to the close code the client gets.
func closeCodeFor(err error) (ws.StatusCode, string) {
	switch {
	case errors.Is(err, errFrameTooBig):
		return CloseTooBig, "message too big"
	case errors.Is(err, errFrameBinary):
		return CloseUnsupported, "binary messages are not supported"
	case errors.Is(err, errFrameText):
		return CloseUnsupported, "text messages are not supported"
	case errors.Is(err, errFrameUTF8):
		return CloseInvalid, "invalid UTF-8"
	case errors.Is(err, errFrameBadData):
		return CloseInvalid, "undecodable compressed message"
	case errors.Is(err, errFrameProtocol):
		return CloseProtocol, err.Error()
	}
	return 0, ""
}

// inflaters are pooled: a flate reader holds tens of KiB of state, which an
// idle connection must not keep.
var inflaters = sync.Pool{New: func() any { return flate.NewReader(nil) }}

// deflateTail ends every compressed message (RFC 7692 §7.2.2): the sender
// strips it, the receiver appends it.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// inflate decompresses one message with no context takeover (the gateway
// negotiates client_no_context_takeover), refusing output over limit: a
// small compressed message can claim gigabytes.
func inflate(payload []byte, limit int) ([]byte, error) {
	fr := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(fr)
	if err := fr.(flate.Resetter).Reset(io.MultiReader(bytes.NewReader(payload), bytes.NewReader(deflateTail)), nil); err != nil {
		return nil, protoErr("bad compressed message")
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(fr, int64(limit)+1))
	if n > int64(limit) {
		return nil, &frameError{errFrameTooBig, "inflated message over the size limit"}
	}
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, &frameError{errFrameBadData, err.Error()}
	}
	return out.Bytes(), nil
}
