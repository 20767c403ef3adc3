package phpsession

import (
	"encoding/binary"
	"math"
)

// igbinary type bytes (igbinary 2.x/3.x, format version 2).
const (
	igNull        = 0x00
	igRef8        = 0x01 // PHP reference (&) to an earlier slot
	igRef16       = 0x02
	igRef32       = 0x03
	igFalse       = 0x04
	igTrue        = 0x05
	igLong8p      = 0x06
	igLong8n      = 0x07
	igLong16p     = 0x08
	igLong16n     = 0x09
	igLong32p     = 0x0a
	igLong32n     = 0x0b
	igDouble      = 0x0c
	igStringEmpty = 0x0d
	igStringID8   = 0x0e // an earlier string by its number
	igStringID16  = 0x0f
	igStringID32  = 0x10
	igString8     = 0x11
	igString16    = 0x12
	igString32    = 0x13
	igArray8      = 0x14
	igArray16     = 0x15
	igArray32     = 0x16
	igObject8     = 0x17 // class name follows as length + bytes
	igObject16    = 0x18
	igObject32    = 0x19
	igObjectID8   = 0x1a // class name is an earlier string
	igObjectID16  = 0x1b
	igObjectID32  = 0x1c
	igObjSer8     = 0x1d // Serializable payload (serialize() text)
	igObjSer16    = 0x1e
	igObjSer32    = 0x1f
	igLong64p     = 0x20
	igLong64n     = 0x21
	igObjRef8     = 0x22 // another handle to an earlier object
	igObjRef16    = 0x23
	igObjRef32    = 0x24
	igRef         = 0x25 // the next value is a PHP reference
	igEnum        = 0x27 // after a class name: the enum case name follows
)

// igbinaryHeader is the 4-byte format version igbinary 2 and later write
// in front of every value and session record.
const igbinaryHeader = "\x00\x00\x00\x02"

// flagRefd marks a scalar that igbinary wrote behind igRef: it takes a
// back-reference slot of its own (arrays and objects always take one).
const flagRefd = 1

// UnserializeIgbinary decodes one value written by igbinary_serialize()
// (format version 2, the only one igbinary 2.0 and later write), within
// lim, with the same guarantees as [Unserialize]: bounded, no panics, no
// allocation sized from claimed lengths, linear time, errors with offsets.
//
// igbinary numbers back-reference targets differently from serialize():
// only arrays, objects and values written as PHP references take a slot
// (from 1 here; igbinary counts from 0 on the wire). [Value.Slot] reports
// that numbering. A Serializable object's payload is serialize() text and
// is decoded on its own (PHP's nested unserialize() then starts a fresh
// table), see [Value.Inner].
func UnserializeIgbinary(data []byte, lim Limits) (*Value, error) {
	l, err := lim.normalized()
	if err != nil {
		return nil, err
	}
	if len(data) > l.MaxInput {
		return nil, limitErr(l.MaxInput, "input of %d bytes exceeds MaxInput %d", len(data), l.MaxInput)
	}
	var d decoder
	d.reset(string(data), l)
	if err := d.igHeader(); err != nil {
		return nil, err
	}
	v := new(Value)
	if err := d.igValue(v); err != nil {
		return nil, err
	}
	if d.pos != len(d.s) {
		return nil, malformed(d.pos, "%d unexpected bytes after the value", len(d.s)-d.pos)
	}
	if err := d.igResolve(v); err != nil {
		return nil, err
	}
	return v, nil
}

func (d *decoder) igHeader() error {
	if len(d.s) < 4 {
		return malformed(0, "igbinary data shorter than its 4-byte header")
	}
	if d.s[:4] != igbinaryHeader {
		return malformed(0, "not igbinary format version 2 (header %q)", d.s[:4])
	}
	d.pos = 4
	d.strs = d.strs[:0]
	return nil
}

// sessionIgbinary decodes the igbinary session handler's record: the header
// and one array of the session variables. An empty record is an empty
// session.
func (d *decoder) sessionIgbinary() ([]Entry, error) {
	if d.eof() {
		return nil, nil
	}
	if err := d.igHeader(); err != nil {
		return nil, err
	}
	if d.pos < len(d.s) {
		if t := d.s[d.pos]; t < igArray8 || t > igArray32 {
			return nil, malformed(d.pos, "igbinary session must be an array, found type 0x%02x", t)
		}
	}
	var v Value
	if err := d.igValue(&v); err != nil {
		return nil, err
	}
	if d.pos != len(d.s) {
		return nil, malformed(d.pos, "%d unexpected bytes after the session array", len(d.s)-d.pos)
	}
	if err := d.igResolve(&v); err != nil {
		return nil, err
	}
	return v.items, nil
}

// igN reads an n-byte big-endian unsigned number.
func (d *decoder) igN(n int, what string) (uint64, error) {
	if len(d.s)-d.pos < n {
		return 0, malformed(d.pos, "unexpected end of input in %s", what)
	}
	b := d.s[d.pos : d.pos+n]
	d.pos += n
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(b[0])<<8 | uint64(b[1]), nil
	case 4:
		return uint64(binary.BigEndian.Uint32([]byte(b))), nil
	default:
		return binary.BigEndian.Uint64([]byte(b)), nil
	}
}

// igWidth maps the 8/16/32-bit variants of a type family to byte counts.
func igWidth(t, base byte) int { return 1 << (t - base) }

// igString reads the bytes of a string8/16/32 (type byte consumed) and
// records it in the string table.
func (d *decoder) igString(t byte, base byte) (int, string, error) {
	n64, err := d.igN(igWidth(t, base), "string length")
	if err != nil {
		return 0, "", err
	}
	if rem := uint64(len(d.s) - d.pos); n64 > rem {
		return 0, "", malformed(d.pos, "string length %d exceeds the %d bytes left", n64, rem)
	}
	n := int(n64)
	if n > d.lim.MaxString {
		return 0, "", limitErr(d.pos, "string length %d exceeds MaxString %d", n, d.lim.MaxString)
	}
	off := d.pos
	s := d.s[off : off+n]
	d.pos += n
	d.strs = append(d.strs, s)
	return off, s, nil
}

// igStringID reads a string table index (type byte consumed).
func (d *decoder) igStringID(t, base byte) (string, error) {
	at := d.pos
	id, err := d.igN(igWidth(t, base), "string id")
	if err != nil {
		return "", err
	}
	if id >= uint64(len(d.strs)) {
		return "", malformed(at, "string id %d but only %d strings so far", id, len(d.strs))
	}
	return d.strs[id], nil
}

// igAnyString reads a string value or key of any encoding, type byte
// included; ok=false (nothing consumed) when the type is not a string.
func (d *decoder) igAnyString() (string, bool, error) {
	t := d.s[d.pos]
	switch {
	case t == igStringEmpty:
		d.pos++
		return "", true, nil
	case t >= igStringID8 && t <= igString32:
		d.pos++
		_, s, err := d.igStringOrID(t, igString8, igStringID8)
		return s, true, err
	}
	return "", false, nil
}

// igStringOrID reads a string written out (types plain to plain+2) or given
// as an earlier string's number (types id to id+2), type byte consumed. off
// is where a written-out string starts in the input, noOffset for a number.
func (d *decoder) igStringOrID(t, plain, id byte) (off uint64, s string, err error) {
	if t >= id && t <= id+2 {
		s, err = d.igStringID(t, id)
		return noOffset, s, err
	}
	o, s, err := d.igString(t, plain)
	return uint64(o), s, err
}

// igLong reads an integer of any width (type byte consumed); ok=false when
// t is not an integer type.
func (d *decoder) igLong(t byte) (int64, bool, error) {
	var n int
	neg := false
	switch t {
	case igLong8p, igLong8n:
		n, neg = 1, t == igLong8n
	case igLong16p, igLong16n:
		n, neg = 2, t == igLong16n
	case igLong32p, igLong32n:
		n, neg = 4, t == igLong32n
	case igLong64p, igLong64n:
		n, neg = 8, t == igLong64n
	default:
		return 0, false, nil
	}
	at := d.pos - 1
	u, err := d.igN(n, "integer")
	if err != nil {
		return 0, true, err
	}
	if neg {
		if u > 1<<63 {
			return 0, true, malformed(at, "integer -%d below int64 range", u)
		}
		return int64(-u), true, nil //nolint:gosec // -(1<<63) wraps to MinInt64 as intended
	}
	if u > math.MaxInt64 {
		return 0, true, malformed(at, "integer %d above int64 range", u)
	}
	return int64(u), true, nil
}

// igValue decodes one igbinary value into v.
func (d *decoder) igValue(v *Value) error {
	start := d.pos
	if d.eof() {
		return malformed(start, "unexpected end of input, expected a value")
	}
	d.elems++
	if d.elems > d.lim.MaxElements {
		return limitErr(start, "more than MaxElements %d values", d.lim.MaxElements)
	}
	t := d.s[d.pos]
	if t == igRef {
		d.pos++
		if d.eof() {
			return malformed(d.pos, "unexpected end of input after reference marker")
		}
		switch nt := d.s[d.pos]; {
		case nt == igRef:
			return malformed(d.pos, "reference marker after reference marker")
		case nt >= igArray8 && nt <= igObjectID32, nt >= igObjRef8 && nt <= igObjRef32, nt >= igRef8 && nt <= igRef32:
			// Containers and objects take their slot anyway; references
			// to existing slots take none.
			d.elems--
			return d.igValue(v)
		}
		d.pushSlot(String) // any non-object kind: objref cannot target it
		d.elems--
		if err := d.igValue(v); err != nil {
			return err
		}
		v.flag |= flagRefd
		return nil
	}
	d.pos++
	if n, ok, err := d.igLong(t); ok {
		if err != nil {
			return err
		}
		*v = Value{kind: Int, num: uint64(n)}
		return nil
	}
	switch {
	case t == igNull:
		*v = Value{}
	case t == igFalse, t == igTrue:
		*v = Value{kind: Bool, num: uint64(t - igFalse)}
	case t == igDouble:
		u, err := d.igN(8, "double")
		if err != nil {
			return err
		}
		*v = Value{kind: Float, num: u}
	case t == igStringEmpty:
		*v = Value{kind: String, num: uint64(d.pos)}
	case t >= igStringID8 && t <= igString32:
		off, s, err := d.igStringOrID(t, igString8, igStringID8)
		if err != nil {
			return err
		}
		*v = Value{kind: String, str: s, num: off}
	case t >= igArray8 && t <= igArray32:
		return d.igItems(v, t, Array, "", start)
	case t >= igObject8 && t <= igObjectID32:
		_, class, err := d.igStringOrID(t, igObject8, igObjectID8)
		if err != nil {
			return err
		}
		return d.igObject(v, class, start)
	case t >= igRef8 && t <= igRef32, t >= igObjRef8 && t <= igObjRef32:
		k, base := Reference, byte(igRef8)
		if t >= igObjRef8 {
			k, base = ObjectRef, igObjRef8
		}
		at := d.pos
		id, err := d.igN(igWidth(t, base), "back-reference")
		if err != nil {
			return err
		}
		if id >= uint64(len(d.slotKinds)) {
			return malformed(at, "back-reference %d to a slot that does not exist (%d so far)", id, len(d.slotKinds))
		}
		if k == ObjectRef {
			switch d.slotKinds[id] {
			case Object, Custom, Enum:
			default:
				return malformed(at, "object reference %d points at a %v, not an object", id, d.slotKinds[id])
			}
		}
		d.refs++
		*v = Value{kind: k, num: id + 1}
	default:
		return malformed(start, "unknown igbinary type 0x%02x", t)
	}
	return nil
}

// igItems decodes the entries of an array (type t, consumed) into v: an
// Array, or the properties of an Object of class; start is where the value
// began.
func (d *decoder) igItems(v *Value, t byte, kind Kind, class string, start int) error {
	d.pushSlot(kind)
	items, err := d.igEntries(t, igArray8, kind == Array, start)
	if err != nil {
		return err
	}
	*v = Value{kind: kind, class: class, items: items, num: uint64(start)}
	return nil
}

// igObject decodes what follows an object's class name: its properties, a
// Serializable payload or an enum case.
func (d *decoder) igObject(v *Value, class string, start int) error {
	if class == "" {
		return malformed(d.pos, "empty class name")
	}
	if d.eof() {
		return malformed(d.pos, "unexpected end of input after class name")
	}
	t := d.s[d.pos]
	d.pos++
	switch {
	case t >= igArray8 && t <= igArray32:
		return d.igItems(v, t, Object, class, start)
	case t >= igObjSer8 && t <= igObjSer32:
		d.pushSlot(Custom)
		n64, err := d.igN(igWidth(t, igObjSer8), "payload length")
		if err != nil {
			return err
		}
		if rem := uint64(len(d.s) - d.pos); n64 > rem {
			return malformed(d.pos, "custom payload length %d exceeds the %d bytes left", n64, rem)
		}
		n := int(n64)
		if n > d.lim.MaxString {
			return limitErr(d.pos, "custom payload length %d exceeds MaxString %d", n, d.lim.MaxString)
		}
		payload := d.s[d.pos : d.pos+n]
		d.pos += n
		*v = Value{kind: Custom, class: class, str: payload, num: uint64(start)}
		// The class's unserialize() runs a fresh unserialize() on it.
		if iv, err := unserializeString(payload, d.lim); err == nil {
			items := d.alloc(1)
			items[0].Value = *iv
			v.items = items
		} else if !isMalformed(err) {
			return err
		}
	case t == igEnum:
		d.pushSlot(Enum)
		if d.eof() {
			return malformed(d.pos, "unexpected end of input, expected enum case name")
		}
		name, ok, err := d.igAnyString()
		if err != nil {
			return err
		}
		if !ok || name == "" {
			return malformed(d.pos, "enum case name must be a non-empty string")
		}
		*v = Value{kind: Enum, class: class, str: name}
	default:
		return malformed(d.pos-1, "unexpected type 0x%02x after class name", t)
	}
	return nil
}

// igEntries decodes the count and key/value pairs of an array or of an
// object's properties (type byte consumed).
func (d *decoder) igEntries(t, base byte, isArray bool, start int) ([]Entry, error) {
	at := d.pos
	n64, err := d.igN(igWidth(t, base), "count")
	if err != nil {
		return nil, err
	}
	// Every entry needs at least a key byte and a value byte.
	if rem := uint64(len(d.s) - d.pos); n64 > rem/2 {
		return nil, malformed(at, "count %d but only %d bytes are left", n64, rem)
	}
	if err := d.enter(start); err != nil {
		return nil, err
	}
	base0 := len(d.stack)
	for range int(n64) {
		if d.eof() {
			return nil, malformed(d.pos, "unexpected end of input, expected a key")
		}
		kt := d.s[d.pos]
		var k Key
		d.pos++
		if n, ok, err := d.igLong(kt); ok {
			if err != nil {
				return nil, err
			}
			k = Key{num: n, isInt: true}
		} else {
			d.pos--
			s, ok, err := d.igAnyString()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, malformed(d.pos, "key must be an integer or a string, found type 0x%02x", kt)
			}
			k = Key{str: s}
			if isArray {
				if n, ok := numericKey(s); ok {
					k = Key{num: n, isInt: true}
				}
			}
		}
		var ev Value
		if err := d.igValue(&ev); err != nil {
			return nil, err
		}
		d.stack = append(d.stack, Entry{Key: k, Value: ev})
	}
	d.depth--
	items := d.alloc(len(d.stack) - base0)
	copy(items, d.stack[base0:])
	clear(d.stack[base0:])
	d.stack = d.stack[:base0]
	return items, nil
}

// igResolve points every back-reference at its slot, numbering as igbinary
// does: arrays, objects and reference-marked scalars, in pre-order.
func (d *decoder) igResolve(v *Value) error {
	if d.refs == 0 {
		return nil
	}
	return d.renumbered(func() error { return d.igWalk(v) })
}

func (d *decoder) igWalk(v *Value) error {
	switch v.kind {
	case Array, Object, Custom, Enum:
		d.table = append(d.table, v)
	case ObjectRef, Reference:
		if i := v.num - 1; i < uint64(len(d.table)) {
			v.ref = d.table[i]
		}
		return nil
	default:
		if v.flag&flagRefd != 0 {
			d.table = append(d.table, v)
		}
		return nil
	}
	if v.kind == Custom {
		return nil // the payload has its own numbering, resolved already
	}
	if _, j := duplicateKey(v.items, v.kind == Object); j >= 0 {
		return errDuplicateWithRefs(int(v.num), v.items[j].Key)
	}
	for i := range v.items {
		if err := d.igWalk(&v.items[i].Value); err != nil {
			return err
		}
	}
	return nil
}
