package phpsession

import (
	"math"
	"strconv"
)

// Unserialize decodes exactly one value in PHP's serialize() format, as
// PHP 8's unserialize() would, within lim (zero fields mean defaults).
//
// Back-references follow PHP's numbering: every value takes a slot, from 1,
// in input order (depth first, a container before its contents), including
// r: itself; R: and array keys/property names take none. r: must name an
// earlier object (Object, Custom, Enum or another r:), R: any earlier value
// including a container that encloses it (so trees can be cyclic through
// [Value.Target]).
//
// It is stricter than PHP where PHP is lenient in ways its serializer never
// produces: bytes after the value are an error (PHP ignores them), integers
// outside int64 are an error (PHP clamps them), and duplicate keys in input
// that also has back-references are an error (PHP's result then depends on
// its hash-bucket memory model). E: enum values are accepted without
// knowing whether the class exists. A differential test against PHP 8.2's
// unserialize() (test/php/unserialize-dump.php) checks everything else
// matches.
//
// The input is copied once into a string that all decoded strings alias.
func Unserialize(data []byte, lim Limits) (*Value, error) {
	l, err := lim.normalized()
	if err != nil {
		return nil, err
	}
	if len(data) > l.MaxInput {
		return nil, limitErr(l.MaxInput, "input of %d bytes exceeds MaxInput %d", len(data), l.MaxInput)
	}
	return unserializeString(string(data), l)
}

// UnserializeString is [Unserialize] for input already held in a string; it
// does not copy the input, and decoded strings alias s.
func UnserializeString(s string, lim Limits) (*Value, error) {
	l, err := lim.normalized()
	if err != nil {
		return nil, err
	}
	if len(s) > l.MaxInput {
		return nil, limitErr(l.MaxInput, "input of %d bytes exceeds MaxInput %d", len(s), l.MaxInput)
	}
	return unserializeString(s, l)
}

func unserializeString(s string, l Limits) (*Value, error) {
	d := decoder{}
	d.reset(s, l)
	v := new(Value)
	if err := d.one(v); err != nil {
		return nil, err
	}
	return v, nil
}

// decoder holds the state of one unserialize() call: PHP numbers values in
// "slots" across the whole call, which for the php session handlers spans
// every session variable.
//
// Entries of arrays under construction go to a shared stack; when an array
// ends, exactly its entries are copied into an arena chunk. So memory grows
// only with values actually decoded, never with counts the input claims,
// and a typical session costs a handful of allocations.
type decoder struct {
	s     string
	pos   int
	lim   Limits
	depth int
	elems int
	// slotKinds[i] is the kind of the value in slot i+1. r: needs it to check
	// that its target is an object; its length is the slot counter.
	slotKinds []Kind
	refs      int // r:/R: seen; the resolve pass runs only if non-zero
	stack     []Entry
	arena     []Entry
	table     []*Value    // resolve pass scratch
	top       Value       // Reader's token root, kept here so it does not escape per Read
	nameAt    []int       // offsets of session variable names, for errors
	strs      []string    // igbinary string table
	skipping  bool        // validate and number values without building them
	found     []Value     // Reader.scan: the firewall attributes
	roleBuf   []string    // Reader: role names of the tokens being extracted
	roots     []*Value    // values decoded so far in one shared numbering
	tokSpare  *tokenBlock // Reader: storage for the first detached Token
}

// reset prepares d for a new unserialize() call on s, keeping its buffers.
func (d *decoder) reset(s string, l Limits) {
	d.s, d.pos, d.lim = s, 0, l
	d.depth, d.elems, d.refs = 0, 0, 0
	d.slotKinds = d.slotKinds[:0]
	d.stack = d.stack[:0]
}

// one decodes a single complete value that must span all of d.s.
func (d *decoder) one(v *Value) error {
	if err := d.value(v); err != nil {
		return err
	}
	if d.pos != len(d.s) {
		return malformed(d.pos, "%d unexpected bytes after the value", len(d.s)-d.pos)
	}
	return d.resolve(v)
}

// continued decodes s as one value that continues the numbering of the
// values in d.roots (PHP's nested unserialize() inside a Serializable
// class's unserialize(), e.g. Symfony <= 4.1 tokens that keep their parent
// data as a serialize() string): its first value takes the slot after the
// last one decoded so far, and r:/R: may point back into d.roots. The value
// is appended to d.roots; errors are relative to s.
func (d *decoder) continued(s string) (*Value, error) {
	d.s, d.pos, d.depth = s, 0, 0
	refs := d.refs
	v := &d.alloc(1)[0].Value
	if err := d.value(v); err != nil {
		return nil, err
	}
	if d.pos != len(d.s) {
		return nil, malformed(d.pos, "%d unexpected bytes after the value", len(d.s)-d.pos)
	}
	d.roots = append(d.roots, v)
	if d.refs == refs {
		return v, nil
	}
	return v, d.renumbered(func() error {
		for _, r := range d.roots {
			if err := d.walk(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// renumbered runs walkAll, which walks values in order to rebuild their
// slot numbering, on an empty slot table, and empties the table again after,
// so that it keeps no pointers into the values. Both formats resolve their
// back-references through it.
func (d *decoder) renumbered(walkAll func() error) error {
	d.table = d.table[:0]
	err := walkAll()
	clear(d.table)
	d.table = d.table[:0]
	return err
}

// resolve points every r:/R: in v (decoded by one call) at its slot's
// value; see resolveEntries.
func (d *decoder) resolve(v *Value) error {
	if d.refs == 0 {
		return nil
	}
	return d.renumbered(func() error { return d.walk(v) })
}

// resolveEntries points every r:/R: among the values of es (decoded in one
// call, in order) at its slot's value. Decoding already checked every slot
// number, so this only rebuilds PHP's numbering: pre-order over values,
// skipping R: (keys are not values). It runs after decoding because entries
// move when their array is finished, and only when the input had any r:/R:.
func (d *decoder) resolveEntries(es []Entry, at []int) error {
	if d.refs == 0 {
		return nil
	}
	if i, j := duplicateKey(es, false); i >= 0 {
		return errDuplicateWithRefs(at[j], es[j].Key)
	}
	return d.renumbered(func() error {
		for i := range es {
			if err := d.walk(&es[i].Value); err != nil {
				return err
			}
		}
		return nil
	})
}

// walk recurses at most MaxDepth levels (decoding enforced it).
//
// It also rejects duplicate keys in any array or object, because only in
// combination with back-references do they change the result: PHP numbers
// the slot of an overwritten value by the hash bucket, so later r:/R: see
// the replacing value (or fail), while earlier ones keep the old one. PHP's
// serializer never writes duplicate keys, so instead of emulating PHP's
// memory model such input is refused.
func (d *decoder) walk(v *Value) error {
	if v.kind != Reference {
		d.table = append(d.table, v)
	}
	switch v.kind {
	case ObjectRef, Reference:
		if i := v.num - 1; i < uint64(len(d.table)) {
			v.ref = d.table[i]
		}
	case Custom: // the decoded payload follows its C: value
		for i := range v.items {
			if err := d.walk(&v.items[i].Value); err != nil {
				return err
			}
		}
	case Array, Object:
		if _, j := duplicateKey(v.items, v.kind == Object); j >= 0 {
			return errDuplicateWithRefs(int(v.num), v.items[j].Key)
		}
		for i := range v.items {
			if err := d.walk(&v.items[i].Value); err != nil {
				return err
			}
		}
	}
	return nil
}

func errDuplicateWithRefs(off int, k Key) error {
	return malformed(off, "duplicate key %q in a value that also uses back-references", clip(k.String()))
}

// duplicateKey returns the indexes of the first and a later entry with the
// same key, or -1, -1. Object property names compare as strings (PHP turns
// integer property names into strings). Quadratic for small containers,
// hashed for large ones, so it stays linear overall.
func duplicateKey(es []Entry, asString bool) (int, int) {
	same := func(a, b Key) bool {
		if asString {
			return a.String() == b.String()
		}
		return a == b
	}
	if len(es) <= 16 {
		for j := 1; j < len(es); j++ {
			for i := 0; i < j; i++ {
				if same(es[i].Key, es[j].Key) {
					return i, j
				}
			}
		}
		return -1, -1
	}
	seen := make(map[Key]int, len(es))
	for j := range es {
		k := es[j].Key
		if asString {
			k = Key{str: k.String()}
		}
		if i, ok := seen[k]; ok {
			return i, j
		}
		seen[k] = j
	}
	return -1, -1
}

func (d *decoder) eof() bool { return d.pos >= len(d.s) }

// expect consumes byte c or fails saying what it was looking for.
func (d *decoder) expect(c byte, what string) error {
	if d.pos < len(d.s) && d.s[d.pos] == c {
		d.pos++
		return nil
	}
	return d.expectErr(c, what, "", "")
}

// expectIn is expect with a description assembled only on failure, so the
// hot path never concatenates strings.
func (d *decoder) expectIn(c byte, pre, what, post string) error {
	if d.pos < len(d.s) && d.s[d.pos] == c {
		d.pos++
		return nil
	}
	return d.expectErr(c, pre, what, post)
}

func (d *decoder) expectErr(c byte, pre, what, post string) error {
	if d.pos >= len(d.s) {
		return malformed(d.pos, "unexpected end of input, expected %q %s%s%s", c, pre, what, post)
	}
	return malformed(d.pos, "expected %q %s%s%s, found %q", c, pre, what, post, d.s[d.pos])
}

// uint parses PHP's uiv ([0-9]+) used for lengths, counts and slots. Values
// beyond any possible input size saturate; callers compare them against the
// remaining input before using them.
func (d *decoder) uint(pre, what string) (int, error) {
	start := d.pos
	n := 0
	for d.pos < len(d.s) {
		c := d.s[d.pos]
		if c < '0' || c > '9' {
			break
		}
		n = satMulAdd(n, c)
		d.pos++
	}
	if d.pos == start {
		if d.eof() {
			return 0, malformed(start, "unexpected end of input, expected digits of %s%s", pre, what)
		}
		return 0, malformed(start, "expected digits of %s%s, found %q", pre, what, d.s[start])
	}
	return n, nil
}

// satMulAdd appends decimal digit c to n, saturating at math.MaxInt (on
// any platform) instead of overflowing: a saturated length or count is far
// beyond the input and rejected by the caller.
func satMulAdd(n int, c byte) int {
	if n > (math.MaxInt-9)/10 {
		return math.MaxInt
	}
	return n*10 + int(c-'0')
}

// int parses PHP's iv ([+-]?[0-9]+) as an int64.
func (d *decoder) int() (int64, error) {
	start := d.pos
	neg := false
	if d.pos < len(d.s) && (d.s[d.pos] == '+' || d.s[d.pos] == '-') {
		neg = d.s[d.pos] == '-'
		d.pos++
	}
	digits := d.pos
	var u uint64
	over := false
	for d.pos < len(d.s) {
		c := d.s[d.pos]
		if c < '0' || c > '9' {
			break
		}
		if u > (math.MaxUint64-9)/10 {
			over = true
		} else {
			u = u*10 + uint64(c-'0')
		}
		d.pos++
	}
	if d.pos == digits {
		if d.eof() {
			return 0, malformed(d.pos, "unexpected end of input in integer")
		}
		return 0, malformed(d.pos, "expected digits of integer, found %q", d.s[d.pos])
	}
	if neg {
		if over || u > 1<<63 {
			return 0, malformed(start, "integer %s below int64 range", clip(d.s[start:d.pos]))
		}
		return int64(-u), nil //nolint:gosec // -(1<<63) wraps to MinInt64 as intended
	}
	if over || u > math.MaxInt64 {
		return 0, malformed(start, "integer %s above int64 range", clip(d.s[start:d.pos]))
	}
	return int64(u), nil
}

// pushSlot gives the value being decoded its PHP slot.
func (d *decoder) pushSlot(k Kind) { d.slotKinds = append(d.slotKinds, k) }

// value decodes one value at d.pos into v.
func (d *decoder) value(v *Value) error {
	start := d.pos
	if d.pos >= len(d.s) {
		return malformed(start, "unexpected end of input, expected a value")
	}
	d.elems++
	if d.elems > d.lim.MaxElements {
		return limitErr(start, "more than MaxElements %d values", d.lim.MaxElements)
	}
	tag := d.s[d.pos]
	if tag == 'N' {
		d.pos++
		if err := d.expect(';', "after N"); err != nil {
			return err
		}
		d.pushSlot(Null)
		*v = Value{}
		return nil
	}
	switch tag {
	case 'b', 'i', 'd', 's', 'S', 'a', 'O', 'C', 'E', 'r', 'R':
	default:
		return malformed(start, "unknown type tag %q", tag)
	}
	d.pos++
	if err := d.expect(':', "after type tag"); err != nil {
		return err
	}
	switch tag {
	case 'b':
		d.pushSlot(Bool)
		if d.pos >= len(d.s) || (d.s[d.pos] != '0' && d.s[d.pos] != '1') {
			return malformed(d.pos, "boolean must be 0 or 1")
		}
		*v = Value{kind: Bool, num: uint64(d.s[d.pos] - '0')}
		d.pos++
		return d.expect(';', "after boolean")
	case 'i':
		d.pushSlot(Int)
		n, err := d.int()
		if err != nil {
			return err
		}
		*v = Value{kind: Int, num: uint64(n)}
		return d.expect(';', "after integer")
	case 'd':
		d.pushSlot(Float)
		f, err := d.float()
		if err != nil {
			return err
		}
		*v = Value{kind: Float, num: math.Float64bits(f)}
		return d.expect(';', "after float")
	case 's':
		d.pushSlot(String)
		off, s, err := d.quoted("string")
		if err != nil {
			return err
		}
		*v = Value{kind: String, str: s, num: uint64(off)}
		return d.expect(';', "after string")
	case 'S':
		d.pushSlot(String)
		s, err := d.escaped()
		if err != nil {
			return err
		}
		*v = Value{kind: String, str: s, num: noOffset}
		return d.expect(';', "after string")
	case 'a':
		d.pushSlot(Array)
		return d.array(v, start)
	case 'O':
		d.pushSlot(Object)
		return d.object(v, start)
	case 'C':
		d.pushSlot(Custom)
		return d.custom(v, start)
	case 'E':
		d.pushSlot(Enum)
		return d.enum(v)
	case 'r':
		// r: takes a slot of its own before it is resolved, so r:<own slot>
		// is the self-reference PHP rejects.
		d.pushSlot(ObjectRef)
		return d.ref(v, ObjectRef, start)
	default: // 'R': the only value that takes no slot
		return d.ref(v, Reference, start)
	}
}

// quoted parses `<len>:"<len bytes>"` and returns the payload offset and the
// payload, which aliases the input.
func (d *decoder) quoted(what string) (int, string, error) {
	n, err := d.uint("length of ", what)
	if err != nil {
		return 0, "", err
	}
	if err := d.expectIn(':', "after length of ", what, ""); err != nil {
		return 0, "", err
	}
	if err := d.expectIn('"', "opening ", what, ""); err != nil {
		return 0, "", err
	}
	// Check the claim against what is really there before slicing; the +1
	// is the closing quote.
	if rem := len(d.s) - d.pos; n >= rem {
		return 0, "", malformed(d.pos, "%s length %d exceeds the %d bytes left", what, n, max(rem-1, 0))
	}
	if n > d.lim.MaxString {
		return 0, "", limitErr(d.pos, "%s length %d exceeds MaxString %d", what, n, d.lim.MaxString)
	}
	off := d.pos
	s := d.s[off : off+n]
	d.pos += n
	if err := d.expectIn('"', "closing ", what, " (length mismatch?)"); err != nil {
		return 0, "", err
	}
	return off, s, nil
}

// escaped parses the body of S:<len>:"..." where a byte may be written as
// \xx (two hex digits) and <len> counts decoded bytes.
func (d *decoder) escaped() (string, error) {
	n, err := d.uint("length of escaped string", "")
	if err != nil {
		return "", err
	}
	if err := d.expect(':', "after length of escaped string"); err != nil {
		return "", err
	}
	if err := d.expect('"', "opening escaped string"); err != nil {
		return "", err
	}
	// Every decoded byte needs at least one input byte.
	if rem := len(d.s) - d.pos; n >= rem {
		return "", malformed(d.pos, "escaped string length %d exceeds the %d bytes left", n, max(rem-1, 0))
	}
	if n > d.lim.MaxString {
		return "", limitErr(d.pos, "escaped string length %d exceeds MaxString %d", n, d.lim.MaxString)
	}
	buf := make([]byte, n)
	for i := range buf {
		if d.pos >= len(d.s) {
			return "", malformed(d.pos, "unexpected end of input in escaped string")
		}
		c := d.s[d.pos]
		if c != '\\' {
			buf[i] = c
			d.pos++
			continue
		}
		if d.pos+2 >= len(d.s) {
			return "", malformed(d.pos, "unexpected end of input in escape sequence")
		}
		hi, ok1 := unhex(d.s[d.pos+1])
		lo, ok2 := unhex(d.s[d.pos+2])
		if !ok1 || !ok2 {
			return "", malformed(d.pos, "invalid escape sequence in escaped string")
		}
		buf[i] = hi<<4 | lo
		d.pos += 3
	}
	if err := d.expect('"', "closing escaped string (length mismatch?)"); err != nil {
		return "", err
	}
	return string(buf), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// float parses d:'s grammar exactly as PHP's re2c rules do:
//
//	iv    = [+-]? [0-9]+
//	nv    = [+-]? ([0-9]* "." [0-9]+ | [0-9]+ "." [0-9]*)
//	nvexp = (iv | nv) [eE] iv
//	"NAN" | "-"? "INF"
//
// and only then lets strconv convert, because ParseFloat accepts more
// ("Inf", "0x1p3", "infinity") than PHP does.
func (d *decoder) float() (float64, error) {
	start := d.pos
	rest := d.s[d.pos:]
	switch {
	case hasPrefix(rest, "NAN;"):
		d.pos += 3
		return math.NaN(), nil
	case hasPrefix(rest, "INF;"):
		d.pos += 3
		return math.Inf(1), nil
	case hasPrefix(rest, "-INF;"):
		d.pos += 4
		return math.Inf(-1), nil
	}
	p := d.pos
	if p < len(d.s) && (d.s[p] == '+' || d.s[p] == '-') {
		p++
	}
	intDigits := 0
	for p < len(d.s) && isDigit(d.s[p]) {
		p++
		intDigits++
	}
	fracDigits := 0
	if p < len(d.s) && d.s[p] == '.' {
		p++
		for p < len(d.s) && isDigit(d.s[p]) {
			p++
			fracDigits++
		}
	}
	if intDigits+fracDigits == 0 {
		return 0, malformed(start, "invalid float")
	}
	if p < len(d.s) && (d.s[p] == 'e' || d.s[p] == 'E') {
		p++
		if p < len(d.s) && (d.s[p] == '+' || d.s[p] == '-') {
			p++
		}
		expDigits := 0
		for p < len(d.s) && isDigit(d.s[p]) {
			p++
			expDigits++
		}
		if expDigits == 0 {
			return 0, malformed(start, "invalid float exponent")
		}
	}
	f, err := strconv.ParseFloat(d.s[start:p], 64)
	if err != nil {
		// Only ErrRange is possible after the grammar check: PHP's strtod
		// saturates to ±INF (or 0) the same way, so keep ParseFloat's value.
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return 0, malformed(start, "invalid float")
		}
	}
	d.pos = p
	return f, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// ref parses the slot of r:/R: and checks it the way PHP does: slots start
// at 1, must already exist, r: may not name its own slot and must name an
// object (objects are the only values PHP's serializer writes r: for).
func (d *decoder) ref(v *Value, k Kind, start int) error {
	at := d.pos
	n, err := d.uint("back-reference", "")
	if err != nil {
		return err
	}
	if err := d.expect(';', "after back-reference"); err != nil {
		return err
	}
	avail := len(d.slotKinds) // R: has no slot of its own
	if k == ObjectRef {
		avail-- // exclude r:'s own slot
	}
	if n < 1 || n > avail {
		return malformed(at, "back-reference %c:%d to a slot that does not exist (%d so far)", d.s[start], n, avail)
	}
	if k == ObjectRef {
		switch d.slotKinds[n-1] {
		case Object, Custom, Enum, ObjectRef:
		default:
			return malformed(at, "r:%d points at a %v, not an object", n, d.slotKinds[n-1])
		}
	}
	d.refs++
	*v = Value{kind: k, num: uint64(n)}
	return nil
}

// enter/leave bound nesting before recursing.
func (d *decoder) enter(start int) error {
	d.depth++
	if d.depth > d.lim.MaxDepth {
		return limitErr(start, "nesting deeper than MaxDepth %d", d.lim.MaxDepth)
	}
	return nil
}

// count parses the entry count of a:/O: and rejects counts the remaining
// input cannot possibly hold (each entry needs at least "i:0;N;", 6 bytes,
// and the closing brace 1); PHP applies a similar plausibility check.
func (d *decoder) count(what string, signed bool) (int, error) {
	at := d.pos
	var n int
	var err error
	if signed {
		n, err = d.signedCount("count of ", what)
	} else {
		n, err = d.uint("count of ", what)
	}
	if err != nil {
		return 0, err
	}
	if err := d.expectIn(':', "after count of ", what, ""); err != nil {
		return 0, err
	}
	if err := d.expectIn('{', "opening ", what, ""); err != nil {
		return 0, err
	}
	if rem := len(d.s) - d.pos; n > (rem-1)/6 {
		return 0, malformed(at, "%s claims %d entries but only %d bytes are left", what, n, rem)
	}
	return n, nil
}

// signedCount parses the property count of O: and the payload length of
// C: the way PHP does (parse_iv2): an optional sign and zero or more digits,
// so "", "+0" and "-0" all mean 0; a negative value is an error.
func (d *decoder) signedCount(pre, what string) (int, error) {
	at := d.pos
	neg := false
	if d.pos < len(d.s) && (d.s[d.pos] == '+' || d.s[d.pos] == '-') {
		neg = d.s[d.pos] == '-'
		d.pos++
	}
	n := 0
	for d.pos < len(d.s) && isDigit(d.s[d.pos]) {
		n = satMulAdd(n, d.s[d.pos])
		d.pos++
	}
	if neg && n != 0 {
		return 0, malformed(at, "negative %s%s", pre, what)
	}
	return n, nil
}

// entries decodes n key/value pairs onto the stack and then moves them into
// an exactly-sized arena slice.
func (d *decoder) entries(n int, isArray bool, what string) ([]Entry, error) {
	if n <= arenaChunk/2 && !d.skipping {
		return d.entriesInPlace(n, isArray, what)
	}
	base := len(d.stack)
	for range n {
		k, err := d.key(isArray, what)
		if err != nil {
			return nil, err
		}
		var ev Value
		if err := d.value(&ev); err != nil {
			return nil, err
		}
		if d.skipping {
			continue
		}
		// Append only now: d.value may have grown (moved) the stack.
		d.stack = append(d.stack, Entry{Key: k, Value: ev})
	}
	if err := d.expectIn('}', "closing ", what, " (more entries than its count?)"); err != nil {
		return nil, err
	}
	if d.skipping {
		return nil, nil
	}
	items := d.alloc(len(d.stack) - base)
	copy(items, d.stack[base:])
	clear(d.stack[base:])
	d.stack = d.stack[:base]
	return items, nil
}

// entriesInPlace is entries for small containers: their count, already
// checked against the bytes left, is at most arenaChunk/2, so the entries
// are decoded straight into their final arena slice instead of going
// through the stack (one write per entry instead of three).
func (d *decoder) entriesInPlace(n int, isArray bool, what string) ([]Entry, error) {
	items := d.alloc(n)
	for i := range items {
		e := &items[i]
		k, err := d.key(isArray, what)
		if err != nil {
			return nil, err
		}
		e.Key = k
		if err := d.value(&e.Value); err != nil {
			return nil, err
		}
	}
	if err := d.expectIn('}', "closing ", what, " (more entries than its count?)"); err != nil {
		return nil, err
	}
	return items, nil
}

// arenaChunk is the size of shared entry slabs; a typical Symfony session
// fits in one or two.
const arenaChunk = 64

// alloc returns an exactly-sized slice for n entries, carved from a shared
// slab so small arrays do not each cost an allocation. The three-index
// slice keeps later appends from touching neighbours.
func (d *decoder) alloc(n int) []Entry {
	if n == 0 {
		return nil
	}
	if n > arenaChunk/2 {
		return make([]Entry, n)
	}
	if cap(d.arena)-len(d.arena) < n {
		// No input can hold more than len/6 entries, so small inputs get
		// small slabs (n <= len/6 by the count check in count).
		d.arena = make([]Entry, 0, max(n, min(arenaChunk, len(d.s)/6+1)))
	}
	l := len(d.arena)
	d.arena = d.arena[:l+n]
	return d.arena[l : l+n : l+n]
}

// key decodes an array key or property name: i:, s: or S:. PHP turns
// decimal string array keys into integers ("5" and 5 are the same key), so
// do that here once instead of at every lookup.
func (d *decoder) key(isArray bool, what string) (Key, error) {
	start := d.pos
	if d.pos+1 >= len(d.s) {
		return Key{}, malformed(start, "unexpected end of input, expected a key in %s", what)
	}
	tag := d.s[d.pos]
	if tag != 'i' && tag != 's' && tag != 'S' {
		return Key{}, malformed(start, "%s key must be an integer or a string, found %q", what, tag)
	}
	d.pos++
	if err := d.expect(':', "after key type tag"); err != nil {
		return Key{}, err
	}
	var s string
	switch tag {
	case 'i':
		n, err := d.int()
		if err != nil {
			return Key{}, err
		}
		if err := d.expect(';', "after integer key"); err != nil {
			return Key{}, err
		}
		return Key{num: n, isInt: true}, nil
	case 's':
		_, q, err := d.quoted("string key")
		if err != nil {
			return Key{}, err
		}
		s = q
	default:
		q, err := d.escaped()
		if err != nil {
			return Key{}, err
		}
		s = q
	}
	if err := d.expect(';', "after string key"); err != nil {
		return Key{}, err
	}
	if isArray {
		if n, ok := numericKey(s); ok {
			return Key{num: n, isInt: true}, nil
		}
	}
	return Key{str: s}, nil
}

func (d *decoder) array(v *Value, start int) error {
	n, err := d.count("array", false)
	if err != nil {
		return err
	}
	if err := d.enter(start); err != nil {
		return err
	}
	items, err := d.entries(n, true, "array")
	if err != nil {
		return err
	}
	d.depth--
	*v = Value{kind: Array, items: items, num: uint64(start)}
	return nil
}

// className parses `<len>:"Name"` and checks PHP's class-name alphabet.
func (d *decoder) className() (string, error) {
	_, name, err := d.quoted("class name")
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", malformed(d.pos-1, "empty class name")
	}
	if i := invalidClassByte(name); i >= 0 {
		return "", malformed(d.pos-1-len(name)+i, "invalid byte %q in class name", name[i])
	}
	if name[0] == '\\' {
		return "", malformed(d.pos-1-len(name), "class name starts with a backslash")
	}
	return name, nil
}

// invalidClassByte returns the index of the first byte PHP does not allow in
// a class name ([A-Za-z0-9_\\\x80-\xff]), or -1.
func invalidClassByte(s string) int {
	for i := 0; i < len(s); i++ {
		if !classByte[s[i]] {
			return i
		}
	}
	return -1
}

var classByte = func() (t [256]bool) {
	for c := range t {
		b := byte(c)
		t[c] = b >= 0x80 || b == '_' || b == '\\' || isDigit(b) || (b|0x20 >= 'a' && b|0x20 <= 'z')
	}
	return t
}()

func (d *decoder) object(v *Value, start int) error {
	class, err := d.className()
	if err != nil {
		return err
	}
	if err := d.expect(':', "after class name"); err != nil {
		return err
	}
	n, err := d.count("object", true)
	if err != nil {
		return err
	}
	if err := d.enter(start); err != nil {
		return err
	}
	items, err := d.entries(n, false, "object")
	if err != nil {
		return err
	}
	d.depth--
	*v = Value{kind: Object, class: class, items: items, num: uint64(start)}
	return nil
}

// custom parses C:<len>:"Class":<len>:{payload}: the payload is whatever
// the class's Serializable::serialize() returned.
//
// Almost every such class (Symfony's tokens up to 4.2, ArrayObject's
// inner values, Doctrine entities) builds the payload with a nested
// serialize() call, and restores it with a nested unserialize() call. PHP
// shares the back-reference table with nested calls in both directions, so
// the payload's values take the slots right after the C: value itself, and
// everything after the C: value is numbered after them. The decoder does
// the same: when the whole payload is exactly one serialized value it is
// decoded in place (see [Value.Inner]) with the shared numbering, and r:/R:
// inside it may point at values outside it. A payload that is not one
// serialized value (a class writing its own text) stays opaque and takes no
// slots, which is what PHP does for a class whose unserialize() does not
// call unserialize().
//
// A failed attempt is undone; it costs one extra scan of the payload per
// enclosing C: level, which MaxDepth bounds (a C: payload counts as a
// nesting level).
func (d *decoder) custom(v *Value, start int) error {
	class, err := d.className()
	if err != nil {
		return err
	}
	if err := d.expect(':', "after class name"); err != nil {
		return err
	}
	n, err := d.signedCount("length of custom payload", "")
	if err != nil {
		return err
	}
	if err := d.expect(':', "after length of custom payload"); err != nil {
		return err
	}
	if err := d.expect('{', "opening custom payload"); err != nil {
		return err
	}
	if rem := len(d.s) - d.pos; n >= rem {
		return malformed(d.pos, "custom payload length %d exceeds the %d bytes left", n, max(rem-1, 0))
	}
	if n > d.lim.MaxString {
		return limitErr(d.pos, "custom payload length %d exceeds MaxString %d", n, d.lim.MaxString)
	}
	p := d.pos
	payload := d.s[p : p+n]
	var items []Entry
	if n > 0 {
		if err := d.enter(start); err != nil {
			return err
		}
		inner, ok, err := d.nested(p + n)
		if err != nil {
			return err
		}
		d.depth--
		if ok && !d.skipping {
			items = d.alloc(1)
			items[0].Value = inner
		}
	}
	d.pos = p + n
	if err := d.expect('}', "closing custom payload (length mismatch?)"); err != nil {
		return err
	}
	*v = Value{kind: Custom, class: class, str: payload, items: items, num: uint64(start)}
	return nil
}

// nested tries to decode d.s[d.pos:end] as exactly one value sharing the
// slot numbering. On success it returns the value; when the bytes are not
// one serialized value it undoes every effect on the numbering and reports
// ok=false. Limit errors are returned: they are about the input's size, not
// its shape, and must not be hidden by a fallback.
func (d *decoder) nested(end int) (v Value, ok bool, err error) {
	full, slots, refs, base, depth := d.s, len(d.slotKinds), d.refs, len(d.stack), d.depth
	d.s = full[:end] // offsets stay absolute; the payload cannot run past its end
	err = d.value(&v)
	complete := err == nil && d.pos == end
	d.s = full
	if complete {
		return v, true, nil
	}
	if err != nil && !isMalformed(err) {
		return Value{}, false, err
	}
	d.slotKinds, d.refs, d.depth = d.slotKinds[:slots], refs, depth
	clear(d.stack[base:])
	d.stack = d.stack[:base]
	return Value{}, false, nil
}

// enum parses E:<len>:"Class:Case"; (PHP 8.1 enums).
func (d *decoder) enum(v *Value) error {
	off, s, err := d.quoted("enum")
	if err != nil {
		return err
	}
	colon := -1
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			colon = i
			break
		}
	}
	if colon <= 0 || colon == len(s)-1 {
		return malformed(off, "enum must be \"Class:Case\"")
	}
	if i := invalidClassByte(s[:colon]); i >= 0 {
		return malformed(off+i, "invalid byte %q in enum class name", s[i])
	}
	if s[0] == '\\' {
		return malformed(off, "enum class name starts with a backslash")
	}
	if err := d.expect(';', "after enum"); err != nil {
		return err
	}
	*v = Value{kind: Enum, class: s[:colon], str: s[colon+1:]}
	return nil
}
