package wamp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// WAMP v1 message type ids.
const (
	msgWelcome     = 0
	msgPrefix      = 1
	msgCall        = 2
	msgCallResult  = 3
	msgCallError   = 4
	msgSubscribe   = 5
	msgUnsubscribe = 6
	msgPublish     = 7
	msgEvent       = 8
)

// ErrProtocol is wrapped by every error Session.Handle returns for input
// that is not valid WAMP v1: malformed JSON, a non-array message, an
// unknown or server-only message type, wrong arity or element types, and
// exceeded client limits. Ratchet closes such connections with status 1007
// and so should the gateway.
var ErrProtocol = errors.New("wamp protocol error")

// ErrLimit is wrapped (together with ErrProtocol) by errors for a client
// that exceeded a Limits bound, so the gateway can log or count it apart
// from garbage input while still closing the connection. Those errors are
// *LimitError, which names the limit.
var ErrLimit = fmt.Errorf("%w: client limit exceeded", ErrProtocol)

// Names of the limits a client can run into (LimitError.Limit and
// Observer.Limit): each is the gateway's configuration key without
// "limits.", so that one metric label names them all.
const (
	LimitURILength             = "max_uri_length"
	LimitPrefixes              = "max_prefixes"
	LimitSubscriptions         = "max_subscriptions"
	LimitJSONDepth             = "max_json_depth"
	LimitPendingCallsPerClient = "max_pending_calls_per_connection"
	LimitPendingCalls          = "max_pending_calls"
)

// LimitError is a client going over one of the node's Limits. Handle
// returns it; it wraps ErrLimit (and so ErrProtocol): the gateway closes
// the connection, with 1008 (policy violation), and counts Limit.
type LimitError struct {
	// Limit is one of the Limit* names.
	Limit string
	// Detail says by how much, for logs.
	Detail string
}

func (e *LimitError) Error() string { return ErrLimit.Error() + ": " + e.Limit + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrLimit) and errors.Is(err, ErrProtocol) hold.
func (e *LimitError) Unwrap() error { return ErrLimit }

func limitErr(limit, format string, a ...any) error {
	return &LimitError{Limit: limit, Detail: fmt.Sprintf(format, a...)}
}

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// message is one parsed client-to-server WAMP message. URIs are as sent,
// before CURIE expansion.
type message struct {
	typ int

	// PREFIX
	prefix string

	// PREFIX uri; CALL procURI; SUBSCRIBE/UNSUBSCRIBE/PUBLISH topicURI.
	uri string

	// CALL: callID is the raw JSON string or number, echoed back verbatim.
	callID json.RawMessage
	args   []json.RawMessage

	// PUBLISH
	event     json.RawMessage
	excludeMe bool
	exclude   []string
	eligible  []string
}

// parseMessage decodes and validates one client message. Its rules follow
// Ratchet 0.4's ServerProtocol, made strict where Ratchet would hit a PHP
// notice or type error: URIs and prefixes must be strings, the call id a
// string or number, and each type has a fixed arity.
func parseMessage(data []byte, maxDepth int) (message, error) {
	var m message
	arr, typ, err := splitMessage(data, maxDepth)
	if err != nil {
		return m, err
	}
	m.typ = typ
	switch typ {
	case msgPrefix:
		if len(arr) != 3 {
			return m, protoErr("PREFIX needs 3 elements, got %d", len(arr))
		}
		var err error
		if m.prefix, err = jsonString(arr[1], "PREFIX prefix"); err != nil {
			return m, err
		}
		if m.uri, err = jsonString(arr[2], "PREFIX uri"); err != nil {
			return m, err
		}
	case msgCall:
		if len(arr) < 3 {
			return m, protoErr("CALL needs at least 3 elements, got %d", len(arr))
		}
		if !isJSONStringOrNumber(arr[1]) {
			return m, protoErr("CALL id must be a string or number")
		}
		m.callID = arr[1]
		var err error
		if m.uri, err = jsonString(arr[2], "CALL procURI"); err != nil {
			return m, err
		}
		m.args = arr[3:]
	case msgSubscribe, msgUnsubscribe:
		if len(arr) != 2 {
			return m, protoErr("%s needs 2 elements, got %d", typeName(typ), len(arr))
		}
		var err error
		if m.uri, err = jsonString(arr[1], typeName(typ)+" topicURI"); err != nil {
			return m, err
		}
	case msgPublish:
		if len(arr) < 3 || len(arr) > 5 {
			return m, protoErr("PUBLISH needs 3 to 5 elements, got %d", len(arr))
		}
		var err error
		if m.uri, err = jsonString(arr[1], "PUBLISH topicURI"); err != nil {
			return m, err
		}
		m.event = arr[2]
		if len(arr) >= 4 {
			// Ratchet: a list is the exclude list, anything else is the
			// excludeMe flag.
			switch x := arr[3]; {
			case isJSONArray(x):
				if m.exclude, err = stringList(x, "PUBLISH exclude"); err != nil {
					return m, err
				}
			case bytes.Equal(x, []byte("true")):
				m.excludeMe = true
			case bytes.Equal(x, []byte("false")):
			default:
				return m, protoErr("PUBLISH excludeMe must be a boolean or a list of session ids")
			}
		}
		if len(arr) == 5 {
			if m.eligible, err = stringList(arr[4], "PUBLISH eligible"); err != nil {
				return m, err
			}
		}
	default:
		return m, protoErr("invalid WAMP message type %d", typ)
	}
	return m, nil
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

func typeName(t int) string {
	switch t {
	case msgPrefix:
		return "PREFIX"
	case msgCall:
		return "CALL"
	case msgSubscribe:
		return "SUBSCRIBE"
	case msgUnsubscribe:
		return "UNSUBSCRIBE"
	case msgPublish:
		return "PUBLISH"
	}
	return strconv.Itoa(t)
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

func isJSONStringOrNumber(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	c := raw[0]
	return c == '"' || c == '-' || (c >= '0' && c <= '9')
}

func isJSONArray(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '[' }

func isJSONContainer(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '[' || raw[0] == '{')
}

func stringList(raw json.RawMessage, what string) ([]string, error) {
	if !isJSONArray(raw) {
		return nil, protoErr("%s must be a list of session ids", what)
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, protoErr("%s must be a list of session id strings", what)
	}
	return out, nil
}

// callParams applies Ratchet's rule: exactly one argument that is an array
// (JSON array or object) becomes the params, otherwise the list of
// arguments does.
func callParams(args []json.RawMessage) json.RawMessage {
	if len(args) == 1 && isJSONContainer(args[0]) {
		return args[0]
	}
	if len(args) == 0 {
		return json.RawMessage("[]")
	}
	n := 2
	for _, a := range args {
		n += len(a) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a...)
	}
	return append(b, ']')
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

func encodeWelcome(sessionID, serverIdent string) []byte {
	b := make([]byte, 0, 16+len(sessionID)+len(serverIdent))
	b = append(b, "[0,"...)
	b = appendJSONString(b, sessionID)
	b = append(b, ",1,"...)
	b = appendJSONString(b, serverIdent)
	return append(b, ']')
}

// encodeEvent builds EVENT [8, topicURI, event] once for a whole fan-out.
func encodeEvent(topicURI string, event any) ([]byte, error) {
	payload, err := appendJSON(nil, event)
	if err != nil {
		return nil, err
	}
	return encodeEventRaw(topicURI, payload), nil
}

// encodeEventRaw builds EVENT [8, topicURI, payload] from encoded JSON.
func encodeEventRaw(topicURI string, payload []byte) []byte {
	b := make([]byte, 0, 8+len(topicURI)+len(payload))
	b = append(b, "[8,"...)
	b = appendJSONString(b, topicURI)
	b = append(b, ',')
	b = append(b, payload...)
	return append(b, ']')
}

func encodeCallResult(callID json.RawMessage, result []byte) []byte {
	b := make([]byte, 0, 8+len(callID)+len(result))
	b = append(b, "[3,"...)
	b = append(b, callID...)
	b = append(b, ',')
	b = append(b, result...)
	return append(b, ']')
}

func encodeCallError(callID json.RawMessage, errorURI, desc string, details []byte) []byte {
	b := make([]byte, 0, 16+len(callID)+len(errorURI)+len(desc)+len(details))
	b = append(b, "[4,"...)
	b = append(b, callID...)
	b = append(b, ',')
	b = appendJSONString(b, errorURI)
	b = append(b, ',')
	b = appendJSONString(b, desc)
	if details != nil {
		b = append(b, ',')
		b = append(b, details...)
	}
	return append(b, ']')
}

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
