package wamp

import (
	"encoding/json"
	"strconv"
)

// WAMP v2 message type codes (basic profile).
const (
	v2Hello        = 1
	v2Welcome      = 2
	v2Abort        = 3
	v2Goodbye      = 6
	v2Error        = 8
	v2Publish      = 16
	v2Published    = 17
	v2Subscribe    = 32
	v2Subscribed   = 33
	v2Unsubscribe  = 34
	v2Unsubscribed = 35
	v2Event        = 36
	v2Call         = 48
	v2Cancel       = 49
	v2Result       = 50
	v2Register     = 64
	v2Unregister   = 66
	v2Yield        = 70
)

// maxV2ID is 2^53, the largest WAMP id.
const maxV2ID = 1 << 53

// WAMP v2 error and close URIs the node sends.
const (
	errURINotAuthorized      = "wamp.error.not_authorized"
	errURINoSuchRealm        = "wamp.error.no_such_realm"
	errURIProtocolViolation  = "wamp.error.protocol_violation"
	errURINoSuchProcedure    = "wamp.error.no_such_procedure"
	errURINoSuchSubscription = "wamp.error.no_such_subscription"
	errURIInvalidURI         = "wamp.error.invalid_uri"
	errURIInvalidArgument    = "wamp.error.invalid_argument"
	errURIRuntime            = "wamp.error.runtime_error"
	// errURIBusy answers a call refused at the bound of offloaded calls.
	errURIBusy         = "wsgate.error.busy"
	closeGoodbyeAndOut = "wamp.close.goodbye_and_out"
)

func typeNameV2(t int) string {
	switch t {
	case v2Hello:
		return "HELLO"
	case v2Welcome:
		return "WELCOME"
	case v2Abort:
		return "ABORT"
	case v2Goodbye:
		return "GOODBYE"
	case v2Error:
		return "ERROR"
	case v2Publish:
		return "PUBLISH"
	case v2Published:
		return "PUBLISHED"
	case v2Subscribe:
		return "SUBSCRIBE"
	case v2Subscribed:
		return "SUBSCRIBED"
	case v2Unsubscribe:
		return "UNSUBSCRIBE"
	case v2Unsubscribed:
		return "UNSUBSCRIBED"
	case v2Event:
		return "EVENT"
	case v2Call:
		return "CALL"
	case v2Cancel:
		return "CANCEL"
	case v2Result:
		return "RESULT"
	case v2Register:
		return "REGISTER"
	case v2Unregister:
		return "UNREGISTER"
	case v2Yield:
		return "YIELD"
	}
	return "OTHER"
}

// message2 is one parsed client-to-router WAMP v2 message.
type message2 struct {
	typ int
	// reqID: PUBLISH, SUBSCRIBE, UNSUBSCRIBE, CALL, REGISTER, UNREGISTER,
	// CANCEL, YIELD, ERROR request id.
	reqID uint64
	// uri: HELLO realm, PUBLISH/SUBSCRIBE topic, CALL procedure, ABORT/
	// GOODBYE reason, REGISTER procedure.
	uri string
	// dict: HELLO/ABORT/GOODBYE details, PUBLISH/SUBSCRIBE/CALL options.
	dict json.RawMessage
	// subID: UNSUBSCRIBE subscription id.
	subID uint64
	// args (a JSON array) and kwargs (a JSON object), nil when absent.
	args   json.RawMessage
	kwargs json.RawMessage
}

// parseMessageV2 decodes and validates one client message against the
// WAMP v2 basic profile: a JSON array whose first element is a known type
// code, with that type's arity and element types (ids integers in
// [0, 2^53], URIs strings, dicts objects, Arguments a list, ArgumentsKw a
// dict). Every error wraps ErrProtocol.
func parseMessageV2(data []byte, maxDepth int) (message2, error) {
	var m message2
	arr, typ, err := splitMessage(data, maxDepth)
	if err != nil {
		return m, err
	}
	m.typ = typ
	name := typeNameV2(typ)
	arity := func(min, max int) error {
		if len(arr) < min || len(arr) > max {
			if min == max {
				return protoErr("%s needs %d elements, got %d", name, min, len(arr))
			}
			return protoErr("%s needs %d to %d elements, got %d", name, min, max, len(arr))
		}
		return nil
	}
	switch typ {
	case v2Hello: // [HELLO, Realm|uri, Details|dict]
		if err = arity(3, 3); err != nil {
			return m, err
		}
		if m.uri, err = jsonString(arr[1], "HELLO realm"); err != nil {
			return m, err
		}
		m.dict, err = jsonDict(arr[2], "HELLO details")
	case v2Abort, v2Goodbye: // [GOODBYE, Details|dict, Reason|uri]
		if err = arity(3, 3); err != nil {
			return m, err
		}
		if m.dict, err = jsonDict(arr[1], name+" details"); err != nil {
			return m, err
		}
		m.uri, err = jsonString(arr[2], name+" reason")
	case v2Publish, v2Call: // [PUBLISH, Request|id, Options|dict, Topic|uri, Arguments|list, ArgumentsKw|dict]
		if err = arity(4, 6); err != nil {
			return m, err
		}
		if m.reqID, err = jsonID(arr[1], name+" request id"); err != nil {
			return m, err
		}
		if m.dict, err = jsonDict(arr[2], name+" options"); err != nil {
			return m, err
		}
		if m.uri, err = jsonString(arr[3], name+" uri"); err != nil {
			return m, err
		}
		m.args, m.kwargs, err = argsKwargs(arr[4:], name)
	case v2Subscribe, v2Register: // [SUBSCRIBE, Request|id, Options|dict, Topic|uri]
		if err = arity(4, 4); err != nil {
			return m, err
		}
		if m.reqID, err = jsonID(arr[1], name+" request id"); err != nil {
			return m, err
		}
		if m.dict, err = jsonDict(arr[2], name+" options"); err != nil {
			return m, err
		}
		m.uri, err = jsonString(arr[3], name+" uri")
	case v2Unsubscribe, v2Unregister: // [UNSUBSCRIBE, Request|id, SUBSCRIBED.Subscription|id]
		if err = arity(3, 3); err != nil {
			return m, err
		}
		if m.reqID, err = jsonID(arr[1], name+" request id"); err != nil {
			return m, err
		}
		m.subID, err = jsonID(arr[2], name+" id")
	case v2Cancel: // [CANCEL, CALL.Request|id, Options|dict]
		if err = arity(3, 3); err != nil {
			return m, err
		}
		if m.reqID, err = jsonID(arr[1], name+" request id"); err != nil {
			return m, err
		}
		m.dict, err = jsonDict(arr[2], name+" options")
	default:
		// ERROR and YIELD are callee messages; the node never sends
		// INVOCATION, so they are violations too, like router-only types.
		return m, protoErr("unexpected WAMP v2 message type %d", typ)
	}
	return m, err
}

// jsonID parses a WAMP id: a plain JSON integer in [0, 2^53]. Zero is
// accepted here and refused where the spec requires [1, 2^53].
func jsonID(raw json.RawMessage, what string) (uint64, error) {
	if len(raw) == 0 || len(raw) > 16 {
		return 0, protoErr("%s must be an integer in [1, 2^53]", what)
	}
	var n uint64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, protoErr("%s must be an integer in [1, 2^53]", what)
		}
		n = n*10 + uint64(c-'0')
	}
	if n > maxV2ID {
		return 0, protoErr("%s must be an integer in [1, 2^53]", what)
	}
	return n, nil
}

func jsonDict(raw json.RawMessage, what string) (json.RawMessage, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, protoErr("%s must be a dictionary", what)
	}
	return raw, nil
}

// argsKwargs validates the optional trailing Arguments|list and
// ArgumentsKw|dict. Empty ones are returned as nil.
func argsKwargs(rest []json.RawMessage, name string) (args, kwargs json.RawMessage, err error) {
	if len(rest) >= 1 {
		if !isJSONArray(rest[0]) {
			return nil, nil, protoErr("%s arguments must be a list", name)
		}
		if !isEmptyContainer(rest[0]) {
			args = rest[0]
		}
	}
	if len(rest) == 2 {
		if kwargs, err = jsonDict(rest[1], name+" keyword arguments"); err != nil {
			return nil, nil, err
		}
		if isEmptyContainer(kwargs) {
			kwargs = nil
		}
	}
	return args, kwargs, nil
}

// isEmptyContainer reports whether raw is [] or {} (with any whitespace).
func isEmptyContainer(raw json.RawMessage) bool {
	if len(raw) < 2 {
		return false
	}
	return skipSpace(raw, 1) == len(raw)-1
}

// eventFromArgs maps v2 Arguments/ArgumentsKw to the single event value a
// topic handler gets (see handler.Topic.OnPublish): the only positional
// argument, else the keyword dictionary when there are no positional
// arguments, else null when there is neither, else the positional list.
func eventFromArgs(args, kwargs json.RawMessage) json.RawMessage {
	if args == nil {
		if kwargs != nil {
			return kwargs
		}
		return json.RawMessage("null")
	}
	if elems, ok := splitArray(args); ok && len(elems) == 1 {
		return elems[0]
	}
	return args
}

// paramsFromArgs maps v2 CALL Arguments/ArgumentsKw to RPC params:
// Ratchet's rule on the positional list, or the keyword dictionary when
// there are no positional arguments.
func paramsFromArgs(args, kwargs json.RawMessage) json.RawMessage {
	if args == nil {
		if kwargs != nil {
			return kwargs
		}
		return json.RawMessage("[]")
	}
	elems, ok := splitArray(args)
	if !ok {
		return args
	}
	return callParams(elems)
}

// publishOptions are the PUBLISH options the node honours.
type publishOptions struct {
	Acknowledge    bool     `json:"acknowledge"`
	ExcludeMe      *bool    `json:"exclude_me"`
	Exclude        []uint64 `json:"exclude"`
	Eligible       []uint64 `json:"eligible"`
	ExcludeAuthID  []string `json:"exclude_authid"`
	EligibleAuthID []string `json:"eligible_authid"`
}

func parsePublishOptions(dict json.RawMessage) (publishOptions, error) {
	var o publishOptions
	if isEmptyContainer(dict) {
		return o, nil
	}
	if err := json.Unmarshal(dict, &o); err != nil {
		return o, err
	}
	for _, id := range append(o.Exclude, o.Eligible...) {
		if id > maxV2ID {
			return o, protoErr("session id out of range")
		}
	}
	return o, nil
}

// appendID appends a WAMP id.
func appendID(b []byte, id uint64) []byte { return strconv.AppendUint(b, id, 10) }

// encodeEventV2 builds EVENT [36, subscriptionId, publicationId, {},
// [payload]] once per fan-out.
func encodeEventV2(subID, pubID uint64, payload []byte) []byte {
	b := make([]byte, 0, 48+len(payload))
	b = append(b, "[36,"...)
	b = appendID(b, subID)
	b = append(b, ',')
	b = appendID(b, pubID)
	b = append(b, ",{},["...)
	b = append(b, payload...)
	return append(b, "]]"...)
}

// encodeV2 builds [typ, id1, id2...] for SUBSCRIBED, UNSUBSCRIBED,
// PUBLISHED.
func encodeV2IDs(typ int, ids ...uint64) []byte {
	b := make([]byte, 0, 8+18*len(ids))
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(typ), 10)
	for _, id := range ids {
		b = append(b, ',')
		b = appendID(b, id)
	}
	return append(b, ']')
}

// encodeResultV2 builds RESULT [50, request, {}, [result]].
func encodeResultV2(reqID uint64, result []byte) []byte {
	b := make([]byte, 0, 32+len(result))
	b = append(b, "[50,"...)
	b = appendID(b, reqID)
	b = append(b, ",{},["...)
	b = append(b, result...)
	return append(b, "]]"...)
}

// encodeErrorV2 builds ERROR [8, requestType, request, {}, errorURI,
// [desc], kwargs]; kwargs is omitted when nil.
func encodeErrorV2(reqType int, reqID uint64, errURI, desc string, kwargs []byte) []byte {
	b := make([]byte, 0, 64+len(errURI)+len(desc)+len(kwargs))
	b = append(b, "[8,"...)
	b = strconv.AppendInt(b, int64(reqType), 10)
	b = append(b, ',')
	b = appendID(b, reqID)
	b = append(b, ",{},"...)
	b = appendJSONString(b, errURI)
	b = append(b, ",["...)
	b = appendJSONString(b, desc)
	b = append(b, ']')
	if kwargs != nil {
		b = append(b, ',')
		b = append(b, kwargs...)
	}
	return append(b, ']')
}

// encodeCloseV2 builds ABORT or GOODBYE [typ, {"message": msg}, reason].
func encodeCloseV2(typ int, msg, reason string) []byte {
	b := make([]byte, 0, 32+len(msg)+len(reason))
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(typ), 10)
	b = append(b, ',', '{')
	if msg != "" {
		b = append(b, `"message":`...)
		b = appendJSONString(b, msg)
	}
	b = append(b, "},"...)
	b = appendJSONString(b, reason)
	return append(b, ']')
}

// welcomeDetails are the WELCOME details: the client's identity from the
// PHP session and the router roles the node implements.
type welcomeDetails struct {
	Realm        string         `json:"realm"`
	AuthID       string         `json:"authid"`
	AuthRole     string         `json:"authrole"`
	AuthMethod   string         `json:"authmethod"`
	AuthProvider string         `json:"authprovider"`
	AuthExtra    welcomeExtra   `json:"authextra"`
	Agent        string         `json:"agent"`
	Roles        map[string]any `json:"roles"`
}

type welcomeExtra struct {
	Roles     []string `json:"roles"`
	Firewall  string   `json:"firewall"`
	Anonymous bool     `json:"anonymous"`
}

var routerRoles = map[string]any{
	"broker": map[string]any{"features": map[string]bool{
		"publisher_exclusion":           true,
		"subscriber_blackwhite_listing": true,
	}},
	"dealer": map[string]any{"features": map[string]bool{}},
}

func encodeWelcomeV2(sessionID uint64, d welcomeDetails) []byte {
	b := make([]byte, 0, 256)
	b = append(b, "[2,"...)
	b = appendID(b, sessionID)
	b = append(b, ',')
	b, _ = appendJSON(b, d) // a plain struct of strings always encodes
	return append(b, ']')
}
