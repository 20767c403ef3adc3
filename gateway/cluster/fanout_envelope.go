package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The fan-out envelope is the bytes one replica PUBLISHes for a
// FanoutMessage. It is binary rather than JSON so that the payload (already
// JSON, and by far the largest part) is carried as is, without a second
// escaping pass on the hot path, and so that the decoder has few cases.
//
// Version 1, every integer an unsigned varint (LEB128, minimal length)
// except t, a signed (zig-zag) varint:
//
//	0x01                     version
//	t                        SentAt in Unix nanoseconds; 0 = unknown
//	len origin               the publishing replica's NodeID (1..255 bytes)
//	n  (len id)*n            Exclude: n <= fanoutMaxIDs, ids <= 255 bytes
//	n  (len id)*n            Eligible: likewise
//	len payload              the event: a JSON value, <= fanoutMaxEnvelope
//
// The topic is not in the envelope: it is the channel's name past the
// prefix. Nothing may follow the payload, and varints must be minimal, so
// every accepted envelope has exactly one encoding (decode then encode gives
// the same bytes back; the fuzz target checks it). A later version changes
// the first byte; a replica that does not know it drops the message as a
// decode_error, so roll out readers before writers.
const (
	fanoutVersion = 1
	// fanoutMaxEnvelope bounds a whole envelope: larger ones are refused by
	// Publish (encode_error) and by the decoder, so that one oversized event
	// cannot make every replica buffer it.
	fanoutMaxEnvelope = 4 << 20
	// fanoutMaxIDLen bounds the origin and every session id.
	fanoutMaxIDLen = 255
	// fanoutMaxIDs bounds each of Exclude and Eligible.
	fanoutMaxIDs = 1 << 16
)

// errFanoutEnvelope is wrapped by every decoding error.
var errFanoutEnvelope = errors.New("bad fan-out envelope")

// encodeFanout appends m's envelope (everything but Topic) to dst. It
// checks the limits the decoder enforces, so that nothing a replica sends is
// refused by the others; it does not check that Payload is JSON (that costs
// a pass over the payload on the hot path, and the caller is trusted).
func encodeFanout(dst []byte, m *FanoutMessage) ([]byte, error) {
	if len(m.Origin) == 0 || len(m.Origin) > fanoutMaxIDLen {
		return dst, fmt.Errorf("origin of %d bytes: want 1 to %d", len(m.Origin), fanoutMaxIDLen)
	}
	if len(m.Payload) == 0 {
		return dst, errors.New("empty payload")
	}
	if len(m.Exclude) > fanoutMaxIDs || len(m.Eligible) > fanoutMaxIDs {
		return dst, fmt.Errorf("%d excluded and %d eligible ids: at most %d each", len(m.Exclude), len(m.Eligible), fanoutMaxIDs)
	}
	size := 1 + binary.MaxVarintLen64 + 1 + len(m.Origin) + 2*binary.MaxVarintLen32 + binary.MaxVarintLen32 + len(m.Payload)
	for _, l := range [][]string{m.Exclude, m.Eligible} {
		for _, id := range l {
			if len(id) > fanoutMaxIDLen {
				return dst, fmt.Errorf("session id of %d bytes: at most %d", len(id), fanoutMaxIDLen)
			}
			size += 2 + len(id)
		}
	}
	if size > fanoutMaxEnvelope {
		return dst, fmt.Errorf("envelope of about %d bytes: at most %d", size, fanoutMaxEnvelope)
	}
	start := len(dst)
	dst = append(dst, fanoutVersion)
	var nanos int64
	if !m.SentAt.IsZero() {
		nanos = m.SentAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, nanos)
	dst = appendFanoutString(dst, m.Origin)
	for _, l := range [][]string{m.Exclude, m.Eligible} {
		dst = binary.AppendUvarint(dst, uint64(len(l)))
		for _, id := range l {
			dst = appendFanoutString(dst, id)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Payload)))
	dst = append(dst, m.Payload...)
	if len(dst)-start > fanoutMaxEnvelope {
		// The estimate above is an upper bound, so this cannot happen; kept
		// so that the encoder can never emit what the decoder refuses.
		return dst[:start], fmt.Errorf("envelope of %d bytes: at most %d", len(dst)-start, fanoutMaxEnvelope)
	}
	return dst, nil
}

func appendFanoutString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// fanoutReader walks an envelope; the first error sticks, so that decode
// reads straight through and checks once per field.
type fanoutReader struct {
	b   []byte
	off int
}

func (r *fanoutReader) fail(what string, format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d: %s", errFanoutEnvelope, what, r.off, fmt.Sprintf(format, args...))
}

// uvarint reads a minimal unsigned varint.
func (r *fanoutReader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		return 0, r.fail(what, "truncated")
	case n < 0:
		return 0, r.fail(what, "varint overflows 64 bits")
	case n != uvarintLen(v):
		// Overlong forms would give one message several encodings.
		return 0, r.fail(what, "non-minimal varint")
	}
	r.off += n
	return v, nil
}

// varint reads a minimal signed (zig-zag) varint.
func (r *fanoutReader) varint(what string) (int64, error) {
	u, err := r.uvarint(what)
	if err != nil {
		return 0, err
	}
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// bytes reads a length-prefixed byte string of at most max bytes; the
// result aliases the input.
func (r *fanoutReader) bytes(what string, max int) ([]byte, error) {
	n, err := r.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, r.fail(what, "length %d over the limit %d", n, max)
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, r.fail(what, "length %d but %d bytes left", n, len(r.b)-r.off)
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v, nil
}

// ids reads a counted list of session ids.
func (r *fanoutReader) ids(what string) ([]string, error) {
	n, err := r.uvarint(what + " count")
	if err != nil {
		return nil, err
	}
	if n > fanoutMaxIDs {
		return nil, r.fail(what, "%d ids over the limit %d", n, fanoutMaxIDs)
	}
	// Every id takes at least its length byte: a count the remaining bytes
	// cannot hold is refused before anything is allocated for it.
	if n > uint64(len(r.b)-r.off) {
		return nil, r.fail(what, "%d ids but %d bytes left", n, len(r.b)-r.off)
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]string, n)
	for i := range out {
		b, err := r.bytes(what+" id", fanoutMaxIDLen)
		if err != nil {
			return nil, err
		}
		out[i] = string(b)
	}
	return out, nil
}

// decodeFanout parses an envelope received from Redis. The bytes come from
// anyone who can PUBLISH on the channel, so every length is checked against
// what is left and against a limit before use, and the payload must be a
// JSON value (it is spliced as is into the WAMP EVENT frames of local
// clients: a broken one would break their streams). The returned Payload
// aliases b; Topic is left empty for the caller to fill from the channel.
func decodeFanout(b []byte) (FanoutMessage, error) {
	m, _, err := decodeFanoutExcept(b, "")
	return m, err
}

// decodeFanoutExcept is decodeFanout that stops as soon as it has read an
// Origin equal to self (non-empty), returning own: every replica hears its
// own publishes back from Redis, and checking their payload again would
// double the decoding work of a busy replica.
func decodeFanoutExcept(b []byte, self string) (m FanoutMessage, own bool, err error) {
	if len(b) > fanoutMaxEnvelope {
		return m, false, fmt.Errorf("%w: %d bytes over the limit %d", errFanoutEnvelope, len(b), fanoutMaxEnvelope)
	}
	if len(b) == 0 {
		return m, false, fmt.Errorf("%w: empty", errFanoutEnvelope)
	}
	if b[0] != fanoutVersion {
		return m, false, fmt.Errorf("%w: unknown version %d", errFanoutEnvelope, b[0])
	}
	r := &fanoutReader{b: b, off: 1}
	nanos, err := r.varint("sent at")
	if err != nil {
		return m, false, err
	}
	if nanos != 0 {
		m.SentAt = time.Unix(0, nanos)
	}
	origin, err := r.bytes("origin", fanoutMaxIDLen)
	if err != nil {
		return m, false, err
	}
	if len(origin) == 0 {
		return m, false, r.fail("origin", "empty")
	}
	if self != "" && string(origin) == self {
		return m, true, nil
	}
	m.Origin = string(origin)
	if m.Exclude, err = r.ids("exclude"); err != nil {
		return m, false, err
	}
	if m.Eligible, err = r.ids("eligible"); err != nil {
		return m, false, err
	}
	if m.Payload, err = r.bytes("payload", fanoutMaxEnvelope); err != nil {
		return m, false, err
	}
	if r.off != len(b) {
		return m, false, r.fail("end", "%d trailing bytes", len(b)-r.off)
	}
	if !json.Valid(m.Payload) {
		return m, false, r.fail("payload", "not a JSON value")
	}
	return m, false, nil
}
