package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The fan-out envelope is the bytes one replica PUBLISHes (or XADDs) for
// a FanoutMessage. It is binary rather than JSON so that the payload
// (already JSON, and by far the largest part) is carried as is, without a
// second escaping pass on the hot path, and so that the decoder has few
// cases.
//
// Version 1 (the previous release's), every integer an unsigned varint
// (LEB128, minimal length) except t, a signed (zig-zag) varint:
//
//	0x01                     version
//	t                        SentAt in Unix nanoseconds; 0 = unknown
//	len origin               the publishing replica's NodeID (1..255 bytes)
//	n  (len id)*n            ExcludeSessions: n <= fanoutMaxIDs, ids <= 255 bytes
//	n  (len id)*n            EligibleSessions: likewise
//	len payload              the event: a JSON value, <= fanoutMaxEnvelope
//
// Version 2 adds the stream position and the user and role lists:
//
//	0x02                     version
//	epoch                    8 bytes, big-endian: Epoch
//	seq                      8 bytes, big-endian: Seq, >= 1
//	t, origin                as in version 1
//	6 × (n (len id)*n)       ExcludeSessions, EligibleSessions,
//	                         ExcludeUsers, EligibleUsers,
//	                         ExcludeRoles, EligibleRoles: each as the
//	                         session lists of version 1
//	len payload              as in version 1
//
// Publisher disclosure (Details, the v2 EVENT details naming the
// publisher) rides in version 2 as trailing entries of ExcludeSessions,
// so that the previous release, which knows no such field and refuses
// trailing bytes, still reads the envelope: for it they are session ids
// no session has (every one starts with a NUL byte; WAMP session ids are
// hex or decimal), which exclude nobody, and it delivers the event
// undisclosed as it always did. Each entry is fanoutDetailsMark followed
// by up to fanoutDetailsChunk bytes of the details, in order; every entry
// but the last is full; together they are a JSON object of at most
// fanoutMaxDetails bytes. Entries starting with NUL anywhere else are
// refused by the decoder, and the encoder leaves out such entries of the
// ExcludeSessions it is given (they could only be a client's forgery in a
// PUBLISH exclude list, and they exclude nobody), so that a client can
// never pass for a disclosed publisher.
//
// Epoch and Seq have a fixed width so that Publish can encode the message
// outside its lock and write the sequence number in place under it (see
// fanoutSeqs). In every list an entry may be empty, as version 1 allowed:
// [""] in an Eligible list names nobody, and refusing it would turn a
// valid broadcast into an encode_error.
//
// The topic is not in the envelope: it is the channel's name past the
// prefix (pub/sub), or a field of its own beside it (streams). Nothing may
// follow the payload, varints must be minimal and a version 2 envelope has
// Seq >= 1 (a message with Seq 0 is encoded as version 1, which cannot
// carry user or role lists), so every accepted envelope has exactly one
// encoding (decode then encode gives the same bytes back; the fuzz target
// checks it). A replica that does not know the version drops the message
// as a decode_error, so roll out readers before writers.
const (
	fanoutVersion1 = 1
	fanoutVersion2 = 2
	// fanoutMaxEnvelope bounds a whole envelope: larger ones are refused by
	// Publish (encode_error) and by the decoder, so that one oversized event
	// cannot make every replica buffer it.
	fanoutMaxEnvelope = 4 << 20
	// fanoutMaxIDLen bounds the origin and every id in the lists.
	fanoutMaxIDLen = 255
	// fanoutMaxIDs bounds each list.
	fanoutMaxIDs = 1 << 16
	// fanoutSeqOffset is where Seq starts in a version 2 envelope, after
	// the version byte and the epoch.
	fanoutSeqOffset = 1 + 8
	// fanoutHeaderV2 is the fixed part of a version 2 envelope.
	fanoutHeaderV2 = fanoutSeqOffset + 8
	// fanoutDetailsMark starts each ExcludeSessions entry that carries a
	// piece of the publisher's details (see above).
	fanoutDetailsMark = "\x00D"
	// fanoutDetailsChunk is how many bytes of details one entry carries.
	fanoutDetailsChunk = fanoutMaxIDLen - len(fanoutDetailsMark)
	// fanoutMaxDetails bounds the details: a disclosure is a session id,
	// a user identifier and a role.
	fanoutMaxDetails = 4 << 10
)

// errFanoutEnvelope is wrapped by every decoding error.
var errFanoutEnvelope = errors.New("bad fan-out envelope")

// lists returns the six lists of a in envelope order.
func (a *Audience) lists() [6]*[]string {
	return [6]*[]string{&a.ExcludeSessions, &a.EligibleSessions, &a.ExcludeUsers, &a.EligibleUsers, &a.ExcludeRoles, &a.EligibleRoles}
}

// fanoutListNames name the lists of Audience in envelope order, in errors.
var fanoutListNames = [6]string{"exclude sessions", "eligible sessions", "exclude users", "eligible users", "exclude roles", "eligible roles"}

// encodeFanout appends m's envelope (everything but Topic) to dst: version
// 2 when m.Seq is set, else version 1. It checks the limits the decoder
// enforces, so that nothing a replica sends is refused by the others; it
// does not check that Payload is JSON (that costs a pass over the payload
// on the hot path, and the caller is trusted).
func encodeFanout(dst []byte, m *FanoutMessage) ([]byte, error) {
	if len(m.Origin) == 0 || len(m.Origin) > fanoutMaxIDLen {
		return dst, fmt.Errorf("origin of %d bytes: want 1 to %d", len(m.Origin), fanoutMaxIDLen)
	}
	if len(m.Payload) == 0 {
		return dst, errors.New("empty payload")
	}
	v2 := m.Seq != 0
	a := m.Audience
	if v2 {
		var err error
		if a.ExcludeSessions, err = withDetails(a.ExcludeSessions, m.Details); err != nil {
			return dst, err
		}
	} else if len(m.Details) > 0 {
		return dst, errors.New("details without a sequence number: version 1 cannot carry them")
	}
	lists := a.lists()
	if !v2 && (len(m.ExcludeUsers)+len(m.EligibleUsers)+len(m.ExcludeRoles)+len(m.EligibleRoles) > 0) {
		// Only the Fanout encodes messages, always with a Seq; version 1
		// is for the control bridge to the previous release, which sends
		// no such lists.
		return dst, errors.New("user or role lists without a sequence number: version 1 cannot carry them")
	}
	size := 1 + fanoutHeaderV2 + binary.MaxVarintLen64 + 1 + len(m.Origin) + binary.MaxVarintLen32 + len(m.Payload)
	for i, l := range lists {
		if !v2 && i >= 2 {
			break
		}
		if len(*l) > fanoutMaxIDs {
			return dst, fmt.Errorf("%s: %d ids, at most %d", fanoutListNames[i], len(*l), fanoutMaxIDs)
		}
		size += binary.MaxVarintLen32
		for _, id := range *l {
			if len(id) > fanoutMaxIDLen {
				return dst, fmt.Errorf("%s: id of %d bytes, at most %d", fanoutListNames[i], len(id), fanoutMaxIDLen)
			}
			size += 2 + len(id)
		}
	}
	if size > fanoutMaxEnvelope {
		return dst, fmt.Errorf("envelope of about %d bytes: at most %d", size, fanoutMaxEnvelope)
	}
	start := len(dst)
	nl := 2
	if v2 {
		dst = append(dst, fanoutVersion2)
		dst = binary.BigEndian.AppendUint64(dst, m.Epoch)
		dst = binary.BigEndian.AppendUint64(dst, m.Seq)
		nl = len(lists)
	} else {
		dst = append(dst, fanoutVersion1)
	}
	var nanos int64
	if !m.SentAt.IsZero() {
		nanos = m.SentAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, nanos)
	dst = appendFanoutString(dst, m.Origin)
	for _, l := range lists[:nl] {
		dst = binary.AppendUvarint(dst, uint64(len(*l)))
		for _, id := range *l {
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

// withDetails returns the ExcludeSessions list a version 2 envelope
// carries: ids without the entries starting with NUL (which exclude no
// session and would pass for details), then details in entries of
// fanoutDetailsMark and up to fanoutDetailsChunk bytes. ids is not
// modified.
func withDetails(ids []string, details []byte) ([]string, error) {
	if len(details) > 0 && (len(details) > fanoutMaxDetails || details[0] != '{' || !json.Valid(details)) {
		return nil, fmt.Errorf("details of %d bytes: want a JSON object of at most %d", len(details), fanoutMaxDetails)
	}
	forged := 0
	for _, id := range ids {
		if strings.HasPrefix(id, "\x00") {
			forged++
		}
	}
	if forged == 0 && len(details) == 0 {
		return ids, nil
	}
	out := make([]string, 0, len(ids)-forged+(len(details)+fanoutDetailsChunk-1)/fanoutDetailsChunk)
	for _, id := range ids {
		if !strings.HasPrefix(id, "\x00") {
			out = append(out, id)
		}
	}
	for rest := details; len(rest) > 0; {
		n := min(len(rest), fanoutDetailsChunk)
		out = append(out, fanoutDetailsMark+string(rest[:n]))
		rest = rest[n:]
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// takeDetails splits the ExcludeSessions of a version 2 envelope into the
// session ids and the details (nil when none), refusing entries starting
// with NUL that are not the trailing, canonical run of details.
func takeDetails(r *fanoutReader, ids []string) ([]string, []byte, error) {
	i := slices.IndexFunc(ids, func(id string) bool { return strings.HasPrefix(id, "\x00") })
	if i < 0 {
		return ids, nil, nil
	}
	var details []byte
	for j, id := range ids[i:] {
		chunk, ok := strings.CutPrefix(id, fanoutDetailsMark)
		last := i+j == len(ids)-1
		if !ok || chunk == "" || (!last && len(chunk) != fanoutDetailsChunk) {
			return nil, nil, r.fail("exclude sessions", "entry %d starts with NUL but is no canonical piece of details", i+j)
		}
		if len(details)+len(chunk) > fanoutMaxDetails {
			return nil, nil, r.fail("details", "over %d bytes", fanoutMaxDetails)
		}
		details = append(details, chunk...)
	}
	if details[0] != '{' || !json.Valid(details) {
		return nil, nil, r.fail("details", "not a JSON object")
	}
	if i == 0 {
		return nil, details, nil
	}
	return ids[:i:i], details, nil
}

// setFanoutSeq writes epoch and seq into a version 2 envelope in place.
func setFanoutSeq(env []byte, epoch, seq uint64) {
	binary.BigEndian.PutUint64(env[1:fanoutSeqOffset], epoch)
	binary.BigEndian.PutUint64(env[fanoutSeqOffset:fanoutHeaderV2], seq)
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
	r, err := decodeFanoutHead(b, &m)
	if err != nil {
		return m, false, err
	}
	if self != "" && m.Origin == self {
		return FanoutMessage{}, true, nil
	}
	return m, false, decodeFanoutRest(r, &m)
}

// decodeFanoutRest reads what follows the head (decodeFanoutHead) into m:
// the lists and the payload.
func decodeFanoutRest(r *fanoutReader, m *FanoutMessage) (err error) {
	b := r.b
	lists := m.Audience.lists()
	nl := 2
	if b[0] == fanoutVersion2 {
		nl = len(lists)
	}
	for i, l := range lists[:nl] {
		if *l, err = r.ids(fanoutListNames[i]); err != nil {
			return err
		}
	}
	if b[0] == fanoutVersion2 {
		if m.ExcludeSessions, m.Details, err = takeDetails(r, m.ExcludeSessions); err != nil {
			return err
		}
	}
	if m.Payload, err = r.bytes("payload", fanoutMaxEnvelope); err != nil {
		return err
	}
	if r.off != len(b) {
		return r.fail("end", "%d trailing bytes", len(b)-r.off)
	}
	if !json.Valid(m.Payload) {
		return r.fail("payload", "not a JSON value")
	}
	return nil
}

// decodeFanoutHead reads the version, Epoch, Seq, SentAt and Origin of an
// envelope into m and returns the reader positioned after them: enough to
// skip our own messages, and to count a stream's sequence numbers without
// reading the lists and checking the payload of a topic nobody here
// watches.
func decodeFanoutHead(b []byte, m *FanoutMessage) (*fanoutReader, error) {
	if len(b) > fanoutMaxEnvelope {
		return nil, fmt.Errorf("%w: %d bytes over the limit %d", errFanoutEnvelope, len(b), fanoutMaxEnvelope)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errFanoutEnvelope)
	}
	r := &fanoutReader{b: b, off: 1}
	switch b[0] {
	case fanoutVersion1:
	case fanoutVersion2:
		if len(b) < fanoutHeaderV2 {
			return nil, r.fail("sequence", "truncated")
		}
		m.Epoch = binary.BigEndian.Uint64(b[1:fanoutSeqOffset])
		m.Seq = binary.BigEndian.Uint64(b[fanoutSeqOffset:fanoutHeaderV2])
		if m.Seq == 0 {
			// Seq 0 is version 1's form: refusing it here keeps one
			// encoding per message.
			return nil, r.fail("sequence", "0 in a version 2 envelope")
		}
		r.off = fanoutHeaderV2
	default:
		return nil, fmt.Errorf("%w: unknown version %d", errFanoutEnvelope, b[0])
	}
	nanos, err := r.varint("sent at")
	if err != nil {
		return nil, err
	}
	if nanos != 0 {
		m.SentAt = time.Unix(0, nanos)
	}
	origin, err := r.bytes("origin", fanoutMaxIDLen)
	if err != nil {
		return nil, err
	}
	if len(origin) == 0 {
		return nil, r.fail("origin", "empty")
	}
	m.Origin = string(origin)
	return r, nil
}
