package wamp

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// splitMessage does what both protocols' parsers do first: check that data
// is UTF-8 JSON (PHP's json_decode rejects invalid UTF-8, and echoing it
// would put invalid UTF-8 into a text frame), split the top-level array and
// read the message type. It works on one private copy: the raw elements
// (params, event, args) are handed to handlers, which may keep them, while
// the gateway may reuse its read buffer as soon as Handle returns.
func splitMessage(data []byte, maxDepth int) ([]json.RawMessage, int, error) {
	if !utf8.Valid(data) {
		return nil, 0, protoErr("message is not valid UTF-8")
	}
	if d := jsonDepth(data, maxDepth); d > maxDepth {
		// Judged before anything else looks at the nesting: handlers (and
		// the PHP app behind an upstream) decode it recursively.
		return nil, 0, limitErr(LimitJSONDepth, "nested deeper than %d", maxDepth)
	}
	if !json.Valid(data) {
		return nil, 0, protoErr("malformed JSON")
	}
	arr, ok := splitArray(bytes.Clone(data))
	if !ok {
		return nil, 0, protoErr("message is not a JSON array")
	}
	if len(arr) == 0 {
		return nil, 0, protoErr("empty message")
	}
	typ, ok := parseTypeID(arr[0])
	if !ok {
		return nil, 0, protoErr("message type %.32s is not an integer", arr[0])
	}
	return arr, typ, nil
}

// parseTypeID accepts a plain non-negative JSON integer of at most 3 digits.
func parseTypeID(raw json.RawMessage) (int, bool) {
	if len(raw) == 0 || len(raw) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// splitArray returns the raw top-level elements of data, which must be
// valid JSON (json.Valid), or false if it is not an array. It is the
// allocation-light equivalent of json.Unmarshal into []json.RawMessage; the
// elements alias data.
func splitArray(data []byte) ([]json.RawMessage, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	out := make([]json.RawMessage, 0, 8)
	if i < len(data) && data[i] == ']' {
		return out, true
	}
	for i < len(data) {
		start := i
		i = skipValue(data, i)
		out = append(out, json.RawMessage(data[start:i:i]))
		i = skipSpace(data, i)
		if i >= len(data) {
			break
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return out, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// skipSpace returns the index of the first byte from i on that is not
// JSON whitespace.
func skipSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at d[i].
func skipValue(d []byte, i int) int {
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '[', '{':
		depth := 0
		for i < len(d) {
			switch d[i] {
			case '"':
				i = skipString(d, i)
				continue
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(d) {
			switch d[i] {
			case ',', ']', '}', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the index just past the string starting at d[i].
func skipString(d []byte, i int) int {
	for i++; i < len(d); i++ {
		switch d[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// jsonDepth returns how deep arrays and objects nest in d, counting up to
// just past limit (it stops there). It only counts brackets outside
// strings; d need not be valid JSON.
func jsonDepth(d []byte, limit int) int {
	depth, deepest := 0, 0
	for i := 0; i < len(d); i++ {
		switch d[i] {
		case '"':
			i = skipString(d, i) - 1
		case '[', '{':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > limit {
					return deepest
				}
			}
		case ']', '}':
			depth--
		}
	}
	return deepest
}

// jsonString reads a JSON string; what names it in the error.
func jsonString(raw json.RawMessage, what string) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", protoErr("%s must be a string", what)
	}
	// Fast path: no escapes.
	if bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", protoErr("%s: %v", what, err)
	}
	return s, nil
}

// jsonDict requires a JSON object (a WAMP dict); what names it in the
// error.
func jsonDict(raw json.RawMessage, what string) (json.RawMessage, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, protoErr("%s must be a dictionary", what)
	}
	return raw, nil
}

// isJSONStringOrNumber reports whether the valid JSON raw is a string or a
// number.
func isJSONStringOrNumber(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	c := raw[0]
	return c == '"' || c == '-' || (c >= '0' && c <= '9')
}

// isJSONArray reports whether the valid JSON raw is an array.
func isJSONArray(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '[' }

// isJSONContainer reports whether the valid JSON raw is an array or an
// object: what PHP decodes to an array.
func isJSONContainer(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '[' || raw[0] == '{')
}

// isEmptyContainer reports whether raw is [] or {} (with any whitespace).
func isEmptyContainer(raw json.RawMessage) bool {
	if len(raw) < 2 {
		return false
	}
	return skipSpace(raw, 1) == len(raw)-1
}

// appendJSON appends the JSON encoding of v without HTML escaping (the
// output goes to websocket clients, not into HTML) and without the
// encoder's trailing newline.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case json.RawMessage:
		if !json.Valid(x) {
			return b, errors.New("invalid json.RawMessage")
		}
		return append(b, x...), nil
	case string:
		return appendJSONString(b, x), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return b, err
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does, so the output is always a valid text frame.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but JavaScript parsers before ES2019 choke.
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
