package phpsession

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// dump renders v compactly for table tests. References print their slot and
// what they dereference to, without recursing into it (targets may contain
// the reference).
func dump(v *Value) string {
	var b strings.Builder
	dumpTo(&b, v)
	return b.String()
}

func dumpTo(b *strings.Builder, v *Value) {
	switch v.Kind() {
	case Null:
		b.WriteString("N")
	case Bool:
		fmt.Fprintf(b, "b:%v", v.Bool())
	case Int:
		fmt.Fprintf(b, "i:%d", v.Int())
	case Float:
		fmt.Fprintf(b, "d:%v", v.Float())
	case String:
		fmt.Fprintf(b, "s:%q", v.Str())
	case Array, Object:
		if v.Kind() == Object {
			fmt.Fprintf(b, "O:%s", v.Class())
		}
		b.WriteString("{")
		for i, e := range v.Entries() {
			if i > 0 {
				b.WriteString(",")
			}
			if e.Key.IsInt() {
				b.WriteString(e.Key.String())
			} else {
				fmt.Fprintf(b, "%q", e.Key.String())
			}
			b.WriteString("=")
			dumpTo(b, &v.Entries()[i].Value)
		}
		b.WriteString("}")
	case Custom:
		fmt.Fprintf(b, "C:%s:%q", v.Class(), v.Str())
	case Enum:
		fmt.Fprintf(b, "E:%s:%s", v.Class(), v.Str())
	case ObjectRef, Reference:
		t := v.Deref()
		tk := "nil"
		if t != nil {
			tk = t.Kind().String()
		}
		fmt.Fprintf(b, "%v%d->%s", v.Kind(), v.Slot(), tk)
	}
}

// encode re-serializes v the way PHP's serialize() would, for round-trip
// properties in tests and fuzzing.
func encode(v *Value) string {
	var b strings.Builder
	encodeTo(&b, v)
	return b.String()
}

func encodeTo(b *strings.Builder, v *Value) {
	switch v.Kind() {
	case Null:
		b.WriteString("N;")
	case Bool:
		if v.Bool() {
			b.WriteString("b:1;")
		} else {
			b.WriteString("b:0;")
		}
	case Int:
		fmt.Fprintf(b, "i:%d;", v.Int())
	case Float:
		f := v.Float()
		switch {
		case math.IsNaN(f):
			b.WriteString("d:NAN;")
		case math.IsInf(f, 1):
			b.WriteString("d:INF;")
		case math.IsInf(f, -1):
			b.WriteString("d:-INF;")
		default:
			b.WriteString("d:" + strconv.FormatFloat(f, 'g', -1, 64) + ";")
		}
	case String:
		fmt.Fprintf(b, "s:%d:\"%s\";", len(v.Str()), v.Str())
	case Array, Object:
		if v.Kind() == Object {
			fmt.Fprintf(b, "O:%d:\"%s\":%d:{", len(v.Class()), v.Class(), v.Len())
		} else {
			fmt.Fprintf(b, "a:%d:{", v.Len())
		}
		for i, e := range v.Entries() {
			if e.Key.IsInt() {
				fmt.Fprintf(b, "i:%d;", e.Key.Int())
			} else {
				fmt.Fprintf(b, "s:%d:\"%s\";", len(e.Key.String()), e.Key.String())
			}
			encodeTo(b, &v.Entries()[i].Value)
		}
		b.WriteString("}")
	case Custom:
		fmt.Fprintf(b, "C:%d:\"%s\":%d:{%s}", len(v.Class()), v.Class(), len(v.Str()), v.Str())
	case Enum:
		s := v.Class() + ":" + v.Str()
		fmt.Fprintf(b, "E:%d:\"%s\";", len(s), s)
	case ObjectRef:
		fmt.Fprintf(b, "r:%d;", v.Slot())
	case Reference:
		fmt.Fprintf(b, "R:%d;", v.Slot())
	}
}

// phpDump renders v like test/php/unserialize-dump.php renders PHP's
// unserialize() result, so the two can be compared byte for byte. It applies
// PHP's array semantics (duplicate keys keep the first position and the last
// value) and the view of unserialize(..., allowed_classes=false): objects
// and C: values become incomplete objects, C: payloads are dropped.
// References are followed up to a fixed depth, as the PHP side does.
func phpDump(v *Value, depth int) string {
	if depth > 6 {
		return "~"
	}
	v = v.Deref()
	switch v.Kind() {
	case Null:
		return "N"
	case Bool:
		if v.Bool() {
			return "b1"
		}
		return "b0"
	case Int:
		return "i" + strconv.FormatInt(v.Int(), 10)
	case Float:
		f := v.Float()
		if math.IsNaN(f) {
			return "dNAN"
		}
		return fmt.Sprintf("d%016x", math.Float64bits(f))
	case String:
		return "s" + hex.EncodeToString([]byte(v.Str()))
	case Array, Object, Custom:
		order, vals := phpEntries(v)
		var b strings.Builder
		if v.Kind() != Array {
			b.WriteString("O" + hex.EncodeToString([]byte(v.Class())))
		}
		b.WriteString("[")
		for _, ks := range order {
			b.WriteString(ks + "=" + phpDump(vals[ks], depth+1) + ",")
		}
		b.WriteString("]")
		return b.String()
	case Enum:
		return "E" + hex.EncodeToString([]byte(v.Class()+":"+v.Str()))
	}
	return "?"
}

// phpEntries lists an array's or object's entries as PHP's json_encode of
// (array) sees them: numeric string keys become ints, a later duplicate
// key overwrites the earlier value in the earlier place. Keys come back
// rendered ("i<n>" or "s<hex>") in order.
func phpEntries(v *Value) (order []string, vals map[string]*Value) {
	vals = map[string]*Value{}
	for i := range v.Entries() {
		e := &v.Entries()[i]
		k := e.Key
		if !k.IsInt() {
			// (array) casts of objects canonicalise numeric names too.
			if n, ok := numericKey(k.String()); ok {
				k = IntKey(n)
			}
		}
		var ks string
		if k.IsInt() {
			ks = "i" + k.String()
		} else {
			ks = "s" + hex.EncodeToString([]byte(k.String()))
		}
		if _, ok := vals[ks]; !ok {
			order = append(order, ks)
		}
		vals[ks] = &e.Value
	}
	return order, vals
}
