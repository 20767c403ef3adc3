package phpsession

import (
	"math"
	"strconv"
	"strings"
)

// Kind tells which PHP type a [Value] holds.
type Kind uint8

// The kinds of PHP values. The zero Kind is Null, so a zero Value is PHP null.
const (
	Null      Kind = iota // N;
	Bool                  // b:0; b:1;
	Int                   // i:<int64>;
	Float                 // d:<float>; including INF, -INF, NAN
	String                // s:<len>:"...";  S:<len>:"<escaped>";
	Array                 // a:<n>:{key value ...} ordered, int and string keys
	Object                // O:<len>:"Class":<n>:{name value ...}
	Custom                // C:<len>:"Class":<len>:{payload} (Serializable::serialize, opaque)
	Enum                  // E:<len>:"Class:Case";
	ObjectRef             // r:<slot>; another handle to an object decoded earlier
	Reference             // R:<slot>; a PHP reference (&) to a value decoded earlier
)

var kindNames = [...]string{"null", "bool", "int", "float", "string", "array", "object", "custom", "enum", "r", "R"}

// String returns a short lower-case name of the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one decoded PHP value. Its fields are unexported so that the
// representation can stay compact (a session decode creates one per value)
// and grow new kinds later without breaking callers; use the accessors.
//
// Strings returned by accessors alias the decoded input (see package doc).
// Values must not be copied while a decode that produced them may still
// resolve references to them; after Unserialize returns they are immutable
// and safe for concurrent reads.
type Value struct {
	kind Kind
	flag uint8 // flagRefd (igbinary numbering)
	// num holds: Bool 0/1; Int the int64 bits; Float the float64 bits;
	// String the byte offset of its payload in the input (noOffset when it
	// was unescaped from S:); Array/Object/Custom the offset of its type tag;
	// ObjectRef/Reference the slot number.
	num   uint64
	str   string  // String payload; Custom payload; Enum case name
	class string  // Object, Custom, Enum class name
	items []Entry // Array entries; Object properties; Custom: decoded payload
	ref   *Value  // ObjectRef/Reference: the value at the slot
}

const noOffset = math.MaxUint64

// Entry is one array element or object property, in input order.
type Entry struct {
	Key   Key   // array key or (mangled) property name
	Value Value // the element; may be an ObjectRef/Reference, see Deref
}

// Key is an array key (int or string) or an object property name (string
// in PHP's mangled form, or int for objects restored through __unserialize).
type Key struct {
	str   string
	num   int64
	isInt bool
}

// IntKey returns an integer key.
func IntKey(i int64) Key { return Key{num: i, isInt: true} }

// StringKey returns a string key exactly as given (no numeric
// canonicalisation; see [Value.Get]).
func StringKey(s string) Key { return Key{str: s} }

// IsInt reports whether the key is an integer key.
func (k Key) IsInt() bool { return k.isInt }

// Int returns the integer key (0 for string keys).
func (k Key) Int() int64 { return k.num }

// String returns the key as PHP would print it: the string itself, or the
// decimal form of an integer key.
func (k Key) String() string {
	if k.isInt {
		return strconv.FormatInt(k.num, 10)
	}
	return k.str
}

// Visibility is the declared visibility of an object property, encoded by
// PHP in the serialized property name.
type Visibility uint8

// Property visibilities.
const (
	Public    Visibility = iota // name
	Protected                   // "\0*\0name"
	Private                     // "\0Declaring\\Class\0name"
)

// String returns "public", "protected" or "private".
func (v Visibility) String() string {
	switch v {
	case Protected:
		return "protected"
	case Private:
		return "private"
	}
	return "public"
}

// Property is an unmangled object property name.
type Property struct {
	Name       string     // the property name without PHP's mangling
	Visibility Visibility // declared visibility
	// Class is the declaring class of a private property ("" otherwise).
	// Symfony's InMemoryUser, for example, keeps its username in the private
	// property of its parent class User.
	Class string
}

// Property unmangles the key as an object property name. Integer keys and
// malformed mangled names come back as public properties named by the key.
func (k Key) Property() Property {
	s := k.String()
	if len(s) < 3 || s[0] != 0 {
		return Property{Name: s}
	}
	end := strings.IndexByte(s[1:], 0)
	if end < 0 {
		return Property{Name: s}
	}
	cls, name := s[1:1+end], s[2+end:]
	if cls == "*" {
		return Property{Name: name, Visibility: Protected}
	}
	if cls == "" {
		return Property{Name: s}
	}
	return Property{Name: name, Visibility: Private, Class: cls}
}

// Kind returns the value's kind.
func (v *Value) Kind() Kind { return v.kind }

// IsNull reports whether v is PHP null.
func (v *Value) IsNull() bool { return v.kind == Null }

// Bool returns the boolean of a Bool value (false for other kinds).
func (v *Value) Bool() bool { return v.kind == Bool && v.num != 0 }

// Int returns the integer of an Int value (0 for other kinds).
func (v *Value) Int() int64 {
	if v.kind != Int {
		return 0
	}
	return int64(v.num)
}

// Float returns the number of a Float value (0 for other kinds).
func (v *Value) Float() float64 {
	if v.kind != Float {
		return 0
	}
	return math.Float64frombits(v.num)
}

// Str returns the bytes of a String value, the case name of an Enum, or the
// opaque payload of a Custom (C:) value; "" for other kinds. The string
// aliases the decoded input.
func (v *Value) Str() string {
	switch v.kind {
	case String, Custom, Enum:
		return v.str
	}
	return ""
}

// Class returns the class name of an Object, Custom or Enum value as written
// in the input (PHP class names are case-insensitive; no folding is done).
func (v *Value) Class() string {
	switch v.kind {
	case Object, Custom, Enum:
		return v.class
	}
	return ""
}

// Len returns the number of entries of an Array or properties of an Object.
func (v *Value) Len() int { return len(v.Entries()) }

// Inner returns the decoded payload of a Custom (C:) value whose payload is
// itself one serialized value (what a nested serialize() call writes, e.g.
// Symfony tokens up to 4.2), or nil: for other kinds, and for payloads in a
// class's own text format, which stay available through [Value.Str].
//
// The payload shares the back-reference numbering with the enclosing input,
// as in PHP, so r:/R: inside it resolve to the values PHP would give them.
func (v *Value) Inner() *Value {
	if v.kind != Custom || len(v.items) == 0 {
		return nil
	}
	return &v.items[0].Value
}

// Entries returns the entries of an Array or the properties of an Object in
// input order (nil for other kinds). The slice is shared: do not modify it.
func (v *Value) Entries() []Entry {
	switch v.kind {
	case Array, Object:
		return v.items
	}
	return nil
}

// Slot returns the slot number an ObjectRef or Reference points at (PHP
// numbers every decoded value except R: and keys from 1 in input order).
func (v *Value) Slot() int {
	switch v.kind {
	case ObjectRef, Reference:
		return int(v.num)
	}
	return 0
}

// Target returns the value an ObjectRef or Reference points at, or nil for
// other kinds. The target may itself be an ObjectRef; see [Value.Deref].
//
// A Reference may point at an array or object that contains it (PHP allows
// $a['self'] = &$a), so a walk that follows Target must bound its depth.
func (v *Value) Target() *Value {
	switch v.kind {
	case ObjectRef, Reference:
		return v.ref
	}
	return nil
}

// Deref follows ObjectRef/Reference chains and returns the value they end
// at (v itself for other kinds). Chains always end: a reference can only
// point at an earlier slot.
func (v *Value) Deref() *Value {
	for v != nil && (v.kind == ObjectRef || v.kind == Reference) && v.ref != nil {
		v = v.ref
	}
	return v
}

// Get returns the entry value stored under the string key k in an Array,
// following PHP's array semantics: a decimal key such as "5" addresses the
// integer key 5. When a key occurs twice (possible only in hand-made input)
// the last one wins, as in PHP. The returned value is not dereferenced.
func (v *Value) Get(k string) (*Value, bool) {
	if v.kind != Array {
		return nil, false
	}
	if n, ok := numericKey(k); ok {
		return v.GetInt(n)
	}
	for i := len(v.items) - 1; i >= 0; i-- {
		e := &v.items[i]
		if !e.Key.isInt && e.Key.str == k {
			return &e.Value, true
		}
	}
	return nil, false
}

// GetInt returns the entry value stored under the integer key n in an Array
// (last one wins).
func (v *Value) GetInt(n int64) (*Value, bool) {
	if v.kind != Array {
		return nil, false
	}
	for i := len(v.items) - 1; i >= 0; i-- {
		e := &v.items[i]
		if e.Key.isInt && e.Key.num == n {
			return &e.Value, true
		}
	}
	return nil, false
}

// Prop returns the first property of an Object whose unmangled name is name,
// whatever its visibility or declaring class, plus that unmangled property.
// The returned value is not dereferenced.
func (v *Value) Prop(name string) (*Value, Property, bool) {
	if v.kind != Object {
		return nil, Property{}, false
	}
	for i := range v.items {
		e := &v.items[i]
		if e.Key.isInt {
			if n, ok := numericKey(name); ok && n == e.Key.num {
				return &e.Value, Property{Name: name}, true
			}
			continue
		}
		// Fast reject before unmangling: the name must end the key.
		if !strings.HasSuffix(e.Key.str, name) {
			continue
		}
		if p := e.Key.Property(); p.Name == name {
			return &e.Value, p, true
		}
	}
	return nil, Property{}, false
}

// numericKey reports whether s is a string PHP turns into an integer array
// key: "0" or an optional '-' followed by a non-zero digit and more digits,
// in int64 range ("05", "-0", "+5", " 5" stay strings).
func numericKey(s string) (int64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	i := 0
	if s[0] == '-' {
		i = 1
		if len(s) == 1 {
			return 0, false
		}
	}
	if s[i] == '0' {
		return 0, s == "0"
	}
	for j := i; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// Unserialize decodes the bytes of a String value as one serialized value,
// e.g. the serialize($token) Symfony stores under _security_<firewall>, as
// a fresh unserialize() call does (new numbering). Decoded strings alias
// v's string. For other kinds it returns an error wrapping ErrMalformed.
func (v *Value) Unserialize(lim Limits) (*Value, error) {
	if v = v.Deref(); v.kind != String {
		return nil, malformed(0, "a %v holds no serialized text", v.kind)
	}
	return UnserializeString(v.str, lim)
}
