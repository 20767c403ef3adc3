package wamp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The node speaks JSON inside: messages are parsed as JSON (v2.go) and
// encoded as JSON (json.go) whatever the serializer. A wamp.2.msgpack or
// wamp.2.cbor session transcodes at its edge: an incoming binary message
// becomes the JSON text a wamp.2.json client would have sent
// (binaryToJSON), and every outgoing message is transcoded from its JSON
// encoding (jsonToBinary), once per serializer in a fan-out. One parser,
// one set of checks and limits, and handlers that never see a
// serializer.
//
// WAMP's types map exactly: integers stay integers (any int64 or uint64
// value, so ids up to 2^53 and beyond; CBOR's integers below -2^63 are
// refused, as msgpack has none), strings stay strings, and binary, which
// msgpack and CBOR carry natively, is the JSON string "\u0000" + base64 as
// the WAMP spec defines it for JSON. Map keys must be strings. What JSON
// cannot carry (NaN, infinities, msgpack extensions, CBOR tags and simple
// values other than false, true, null and undefined) is a protocol
// violation.

// binaryPrefix starts a JSON string that carries binary data (WAMP spec,
// "Binary conversion of JSON Strings").
const binaryPrefix = "\x00"

// binaryToJSON transcodes one msgpack or CBOR message of a session
// speaking p to JSON, refusing nesting deeper than maxDepth (with the
// *LimitError a JSON message that deep gets). Every other error wraps
// ErrProtocol.
func binaryToJSON(p Protocol, data []byte, maxDepth int) ([]byte, error) {
	switch p {
	case ProtocolV2MsgPack:
		return msgpackToJSON(data, maxDepth)
	case ProtocolV2CBOR:
		return cborToJSON(data, maxDepth)
	}
	return nil, fmt.Errorf("wamp: %s is not a binary serializer", p)
}

// jsonToBinary transcodes one JSON message the node encoded to the
// serializer of p. An error means msg was not valid JSON, which the node
// never produces.
func jsonToBinary(p Protocol, msg []byte) ([]byte, error) {
	tree, err := decodeJSONTree(msg)
	if err != nil {
		return nil, err
	}
	switch p {
	case ProtocolV2MsgPack:
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		enc.SetSortMapKeys(true)
		if err := enc.Encode(tree); err != nil {
			return nil, fmt.Errorf("wamp: msgpack encoding: %w", err)
		}
		return buf.Bytes(), nil
	case ProtocolV2CBOR:
		b, err := cborEnc.Marshal(tree)
		if err != nil {
			return nil, fmt.Errorf("wamp: cbor encoding: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("wamp: %s is not a binary serializer", p)
}

// decodeJSONTree decodes JSON into the generic values both binary
// encoders take: integers as int64 or uint64 (floats only when they are
// not integers or do not fit 64 bits), "\u0000"+base64 strings as []byte,
// objects as map[string]any, arrays as []any.
func decodeJSONTree(msg []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("wamp: transcoding invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("wamp: transcoding JSON with trailing data")
	}
	return convertJSONTree(v), nil
}

// convertJSONTree converts, in place where it can, the values of a JSON
// tree decoded with UseNumber (see decodeJSONTree).
func convertJSONTree(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				if i == 0 && s[0] == '-' {
					return math.Copysign(0, -1) // -0 is a float, as it came
				}
				return i
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u
			}
		}
		f, _ := strconv.ParseFloat(s, 64) // valid JSON: at worst ±Inf for huge numbers
		return f
	case string:
		// Strictly base64, and without the line breaks the decoder would
		// skip, so that only what appendJSONBinary writes is binary and
		// every other string stays the same string.
		if rest, ok := strings.CutPrefix(x, binaryPrefix); ok && !strings.ContainsAny(rest, "\r\n") {
			if b, err := base64.StdEncoding.Strict().DecodeString(rest); err == nil {
				return b
			}
		}
		return x
	case []any:
		for i := range x {
			x[i] = convertJSONTree(x[i])
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = convertJSONTree(e)
		}
		return x
	}
	return v // bool, nil
}

// msgpackToJSON transcodes one msgpack value, the whole of data, to JSON.
func msgpackToJSON(data []byte, maxDepth int) ([]byte, error) {
	r := bytes.NewReader(data)
	w := msgpackWalker{d: msgpack.NewDecoder(r), r: r, maxDepth: maxDepth}
	out, err := w.value(make([]byte, 0, 2*len(data)), 0)
	if err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			return nil, err
		}
		return nil, protoErr("invalid msgpack message: %v", err)
	}
	if r.Len() != 0 {
		return nil, protoErr("invalid msgpack message: data after the message")
	}
	return out, nil
}

// msgpackWalker walks one msgpack message with the decoder's primitives
// rather than decoding into Go values: map order is kept, nothing is
// allocated for a length the input only claims (the decoder would
// allocate a bin's claimed length whole, up to 4 GiB), and depth is
// checked before descending.
type msgpackWalker struct {
	d        *msgpack.Decoder
	r        *bytes.Reader // what d reads from, directly: r.Len() is what is left
	maxDepth int
}

// bytes reads the next str or bin value, refusing a length longer than
// what is left of the message.
func (w *msgpackWalker) bytes() ([]byte, error) {
	n, err := w.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > w.r.Len() {
		return nil, io.ErrUnexpectedEOF
	}
	b := make([]byte, n)
	return b, w.d.ReadFull(b)
}

// value appends the JSON form of the next msgpack value, which sits depth
// containers deep.
func (w *msgpackWalker) value(out []byte, depth int) ([]byte, error) {
	d, maxDepth := w.d, w.maxDepth
	c, err := d.PeekCode()
	if err != nil {
		return out, err
	}
	switch {
	case c == msgpcode.Nil:
		return append(out, "null"...), d.DecodeNil()
	case c == msgpcode.True || c == msgpcode.False:
		v, err := d.DecodeBool()
		return strconv.AppendBool(out, v), err
	case c == msgpcode.Uint64:
		v, err := d.DecodeUint64()
		return strconv.AppendUint(out, v, 10), err
	case msgpcode.IsFixedNum(c) || c >= msgpcode.Uint8 && c <= msgpcode.Int64:
		v, err := d.DecodeInt64()
		return strconv.AppendInt(out, v, 10), err
	case c == msgpcode.Float || c == msgpcode.Double:
		v, err := d.DecodeFloat64()
		if err != nil {
			return out, err
		}
		return appendJSONFloat(out, v)
	case msgpcode.IsString(c):
		s, err := w.bytes()
		if err != nil {
			return out, err
		}
		if !utf8.Valid(s) {
			return out, errors.New("string is not UTF-8")
		}
		return appendJSONString(out, string(s)), nil
	case msgpcode.IsBin(c):
		b, err := w.bytes()
		return appendJSONBinary(out, b), err
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		if depth+1 > maxDepth {
			return out, limitErr(LimitJSONDepth, "nesting deeper than %d", maxDepth)
		}
		n, err := d.DecodeArrayLen()
		if err != nil {
			return out, err
		}
		out = append(out, '[')
		for i := range n {
			if i > 0 {
				out = append(out, ',')
			}
			if out, err = w.value(out, depth+1); err != nil {
				return out, err
			}
		}
		return append(out, ']'), nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		if depth+1 > maxDepth {
			return out, limitErr(LimitJSONDepth, "nesting deeper than %d", maxDepth)
		}
		n, err := d.DecodeMapLen()
		if err != nil {
			return out, err
		}
		out = append(out, '{')
		for i := range n {
			if i > 0 {
				out = append(out, ',')
			}
			k, err := d.PeekCode()
			if err != nil {
				return out, err
			}
			if !msgpcode.IsString(k) {
				return out, errors.New("map key is not a string")
			}
			if out, err = w.value(out, depth+1); err != nil {
				return out, err
			}
			out = append(out, ':')
			if out, err = w.value(out, depth+1); err != nil {
				return out, err
			}
		}
		return append(out, '}'), nil
	}
	return out, fmt.Errorf("unsupported msgpack type 0x%02x", c)
}

// cborDec decodes CBOR for cborToJSON: no tags (WAMP defines none), no
// duplicate map keys, valid UTF-8, string map keys. Its nesting bound is
// set per call from the node's MaxJSONDepth (cborDecFor).
var cborDecOpts = cbor.DecOptions{
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	TagsMd:           cbor.TagsForbidden,
	IntDec:           cbor.IntDecConvertNone,
	DefaultMapType:   reflect.TypeFor[map[string]any](),
	UTF8:             cbor.UTF8RejectInvalid,
	MaxArrayElements: math.MaxInt32, // the message size bounds them already
	MaxMapPairs:      math.MaxInt32,
}

// cborEnc encodes with sorted map keys, so one JSON message always gives
// the same bytes.
var cborEnc = must(cbor.EncOptions{Sort: cbor.SortBytewiseLexical}.EncMode())

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// cborDecFor returns the decoder bounding nesting at maxDepth, which the
// library takes in [4, 65535]; below 4 the JSON parser's own depth check
// still applies to the transcoded message.
func cborDecFor(maxDepth int) (cbor.DecMode, error) {
	o := cborDecOpts
	o.MaxNestedLevels = min(max(maxDepth, 4), 65535)
	return o.DecMode()
}

// cborToJSON transcodes one CBOR data item, the whole of data, to JSON.
// The library checks the item is well-formed and within the nesting bound
// before it decodes anything, so a claimed length costs nothing.
func cborToJSON(data []byte, maxDepth int) ([]byte, error) {
	dm, err := cborDecFor(maxDepth)
	if err != nil {
		return nil, fmt.Errorf("wamp: cbor decoder: %w", err)
	}
	var v any
	if err := dm.Unmarshal(data, &v); err != nil {
		var nl *cbor.MaxNestedLevelError
		if errors.As(err, &nl) {
			return nil, limitErr(LimitJSONDepth, "nesting deeper than %d", maxDepth)
		}
		return nil, protoErr("invalid cbor message: %v", err)
	}
	out, err := appendTreeJSON(make([]byte, 0, 2*len(data)), v)
	if err != nil {
		return nil, protoErr("invalid cbor message: %v", err)
	}
	return out, nil
}

// appendTreeJSON appends the JSON form of a value the CBOR decoder made.
// Map keys are sorted, so one message always gives the same JSON.
func appendTreeJSON(out []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		return append(out, "null"...), nil
	case bool:
		return strconv.AppendBool(out, x), nil
	case uint64:
		return strconv.AppendUint(out, x, 10), nil
	case int64:
		return strconv.AppendInt(out, x, 10), nil
	case big.Int, *big.Int:
		// A negative integer below -2^63: msgpack has none, so neither
		// has the node, and no WAMP value needs one.
		return out, errors.New("integer below -2^63")
	case float32:
		return appendJSONFloat(out, float64(x))
	case float64:
		return appendJSONFloat(out, x)
	case string:
		return appendJSONString(out, x), nil
	case []byte:
		return appendJSONBinary(out, x), nil
	case []any:
		out = append(out, '[')
		for i, e := range x {
			if i > 0 {
				out = append(out, ',')
			}
			if out, err = appendTreeJSON(out, e); err != nil {
				return out, err
			}
		}
		return append(out, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out = append(out, '{')
		for i, k := range keys {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(appendJSONString(out, k), ':')
			if out, err = appendTreeJSON(out, x[k]); err != nil {
				return out, err
			}
		}
		return append(out, '}'), nil
	}
	return out, fmt.Errorf("unsupported value %T", v)
}

// appendJSONFloat appends f as encoding/json would, refusing what JSON
// cannot carry.
func appendJSONFloat(out []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return out, errors.New("NaN or infinity")
	}
	return appendJSON(out, f)
}

// appendJSONBinary appends b as the WAMP JSON form of binary data.
func appendJSONBinary(out []byte, b []byte) []byte {
	out = append(out, `"\u0000`...)
	out = base64.StdEncoding.AppendEncode(out, b)
	return append(out, '"')
}
