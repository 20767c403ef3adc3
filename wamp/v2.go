package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/wsgate/wsgate/wamp/handler"
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

// typeNameV2 names a message type for the observer and errors.
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

// messageV2 is one parsed client-to-router WAMP v2 message.
type messageV2 struct {
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
func parseMessageV2(data []byte, maxDepth int) (messageV2, error) {
	var m messageV2
	arr, typ, err := splitMessage(data, maxDepth)
	if err != nil {
		return m, err
	}
	m.typ = typ
	e := elementsV2{arr: arr, name: typeNameV2(typ)}
	switch typ {
	case v2Hello: // [HELLO, Realm|uri, Details|dict]
		e.arity(3, 3)
		m.uri = e.str(1, "realm")
		m.dict = e.dict(2, "details")
	case v2Abort, v2Goodbye: // [GOODBYE, Details|dict, Reason|uri]
		e.arity(3, 3)
		m.dict = e.dict(1, "details")
		m.uri = e.str(2, "reason")
	case v2Publish, v2Call: // [PUBLISH, Request|id, Options|dict, Topic|uri, Arguments|list, ArgumentsKw|dict]
		e.arity(4, 6)
		m.reqID = e.id(1, "request id")
		m.dict = e.dict(2, "options")
		m.uri = e.str(3, "uri")
		m.args, m.kwargs = e.argsKwargs(4)
	case v2Subscribe, v2Register: // [SUBSCRIBE, Request|id, Options|dict, Topic|uri]
		e.arity(4, 4)
		m.reqID = e.id(1, "request id")
		m.dict = e.dict(2, "options")
		m.uri = e.str(3, "uri")
	case v2Unsubscribe, v2Unregister: // [UNSUBSCRIBE, Request|id, SUBSCRIBED.Subscription|id]
		e.arity(3, 3)
		m.reqID = e.id(1, "request id")
		m.subID = e.id(2, "id")
	case v2Cancel: // [CANCEL, CALL.Request|id, Options|dict]
		e.arity(3, 3)
		m.reqID = e.id(1, "request id")
		m.dict = e.dict(2, "options")
	default:
		// ERROR and YIELD are callee messages; the node never sends
		// INVOCATION, so they are violations too, like router-only types.
		return m, protoErr("unexpected WAMP v2 message type %d", typ)
	}
	return m, e.err
}

// elementsV2 reads the elements of one v2 message of type name, in order;
// after the first error it reads nothing more and keeps that error. What
// each element is called in errors is name + " " + what.
type elementsV2 struct {
	arr  []json.RawMessage
	name string
	err  error
}

// arity requires min to max elements.
func (e *elementsV2) arity(min, max int) {
	if len(e.arr) >= min && len(e.arr) <= max {
		return
	}
	if min == max {
		e.err = protoErr("%s needs %d elements, got %d", e.name, min, len(e.arr))
		return
	}
	e.err = protoErr("%s needs %d to %d elements, got %d", e.name, min, max, len(e.arr))
}

// id reads element i as a WAMP id.
func (e *elementsV2) id(i int, what string) uint64 {
	if e.err != nil {
		return 0
	}
	var v uint64
	v, e.err = jsonID(e.arr[i], e.name+" "+what)
	return v
}

// dict reads element i as a dictionary.
func (e *elementsV2) dict(i int, what string) json.RawMessage {
	if e.err != nil {
		return nil
	}
	var v json.RawMessage
	v, e.err = jsonDict(e.arr[i], e.name+" "+what)
	return v
}

// str reads element i as a string.
func (e *elementsV2) str(i int, what string) string {
	if e.err != nil {
		return ""
	}
	var v string
	v, e.err = jsonString(e.arr[i], e.name+" "+what)
	return v
}

// argsKwargs reads the optional Arguments|list and ArgumentsKw|dict from
// element i on (see argsKwargs).
func (e *elementsV2) argsKwargs(i int) (args, kwargs json.RawMessage) {
	if e.err != nil {
		return nil, nil
	}
	args, kwargs, e.err = argsKwargs(e.arr[i:], e.name)
	return args, kwargs
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
	Acknowledge bool  `json:"acknowledge"`
	ExcludeMe   *bool `json:"exclude_me"`
	// DiscloseMe asks for publisher identification (see
	// RouteConfig.Disclose).
	DiscloseMe bool `json:"disclose_me"`
	// Retain keeps the event as the topic's retained event (retain.go).
	Retain bool `json:"retain"`
	// Exclude and Eligible are session ids, numbers (v2) or strings
	// (v1); parsePublishOptions reads them into exclude and eligible.
	Exclude          []json.RawMessage `json:"exclude"`
	Eligible         []json.RawMessage `json:"eligible"`
	ExcludeAuthID    []string          `json:"exclude_authid"`
	EligibleAuthID   []string          `json:"eligible_authid"`
	ExcludeAuthRole  []string          `json:"exclude_authrole"`
	EligibleAuthRole []string          `json:"eligible_authrole"`

	// exclude and eligible are Exclude and Eligible as session id
	// strings, nil when the option is absent.
	exclude, eligible []string
}

// parsePublishOptions reads PUBLISH options; an error is the client's
// (ERROR wamp.error.invalid_argument), not a violation. A session id list
// may mix v2 ids (integers in [0, 2^53]) and v1 ids (strings), since v1
// and v2 clients share topics; any other element is an error.
func parsePublishOptions(dict json.RawMessage) (publishOptions, error) {
	var o publishOptions
	if isEmptyContainer(dict) {
		return o, nil
	}
	if err := json.Unmarshal(dict, &o); err != nil {
		return o, err
	}
	var err error
	if o.exclude, err = sessionIDOption(o.Exclude, "exclude"); err != nil {
		return o, err
	}
	if o.eligible, err = sessionIDOption(o.Eligible, "eligible"); err != nil {
		return o, err
	}
	return o, nil
}

// sessionIDOption reads the PUBLISH option what, a list of session ids,
// keeping nil (absent) apart from empty (named nobody).
func sessionIDOption(raw []json.RawMessage, what string) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	ids := make([]string, 0, len(raw))
	for _, e := range raw {
		id, ok := sessionIDElem(e)
		if !ok {
			return nil, fmt.Errorf("PUBLISH option %s: %.32s is not a session id", what, e)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// appendID appends a WAMP id.
func appendID(b []byte, id uint64) []byte { return strconv.AppendUint(b, id, 10) }

// encodeEventV2 builds EVENT [36, subscriptionId, publicationId, details,
// [payload]] once per fan-out; nil details are {}. The details depend on
// the publish, never on the receiver, so one encoding serves every
// subscriber.
func encodeEventV2(subID, pubID uint64, details, payload []byte) []byte {
	b := make([]byte, 0, 48+len(details)+len(payload))
	b = append(b, "[36,"...)
	b = appendID(b, subID)
	b = append(b, ',')
	b = appendID(b, pubID)
	if details == nil {
		b = append(b, ",{},["...)
	} else {
		b = append(b, ',')
		b = append(b, details...)
		b = append(b, ",["...)
	}
	b = append(b, payload...)
	return append(b, "]]"...)
}

// publisherDetails are the EVENT details disclosing s as a publisher
// (publisher identification): publisher, its WAMP v2 session id (left out
// for a v1 session, which has none), and publisher_authid and
// publisher_authrole as its WELCOME announced them.
func (s *Session) publisherDetails() []byte {
	who := s.identity.Load()
	b := make([]byte, 0, 96)
	b = append(b, '{')
	if s.proto.V2() {
		b = append(b, `"publisher":`...)
		b = append(b, s.id...) // the decimal form of the v2 id
		b = append(b, ',')
	}
	b = append(b, `"publisher_authid":`...)
	b = appendJSONString(b, who.UserIdentifier)
	b = append(b, `,"publisher_authrole":`...)
	b = appendJSONString(b, authRole(who))
	return append(b, '}')
}

// encodeIDsV2 builds [typ, id1, id2...] for SUBSCRIBED, UNSUBSCRIBED,
// PUBLISHED.
func encodeIDsV2(typ int, ids ...uint64) []byte {
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

// encodeRevokedV2 is the router-initiated UNSUBSCRIBED [35, 0,
// {"subscription": subID, "reason": reason}].
func encodeRevokedV2(subID uint64, reason string) []byte {
	b := []byte(`[35,0,{"subscription":`)
	b = appendID(b, subID)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	return append(b, "}]"...)
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

// newRouterRoles builds the WELCOME roles: the broker and dealer
// features the node implements, session_meta_api only when the meta API
// is enabled (see NodeConfig.MetaAPI).
func newRouterRoles(meta bool) map[string]any {
	broker := map[string]bool{
		"publisher_exclusion":           true,
		"publisher_identification":      true,
		"subscriber_blackwhite_listing": true,
	}
	dealer := map[string]bool{
		"progressive_call_results": true,
		"call_canceling":           true,
		"call_timeout":             true,
	}
	if meta {
		broker["session_meta_api"] = true
		broker["subscription_meta_api"] = true // meta_events.go
		dealer["session_meta_api"] = true
	}
	return map[string]any{
		"broker": map[string]any{"features": broker},
		"dealer": map[string]any{"features": dealer},
	}
}

// encodeWelcomeV2 builds WELCOME [2, session, details].
func encodeWelcomeV2(sessionID uint64, d welcomeDetails) []byte {
	b := make([]byte, 0, 256)
	b = append(b, "[2,"...)
	b = appendID(b, sessionID)
	b = append(b, ',')
	b, _ = appendJSON(b, d) // strings, bools and maps of them always encode
	return append(b, ']')
}

// The v2 handlers, one per message type, called by Handle on the reader;
// handler callbacks run there or, when offloaded, on the Offloader.

// handleV2 processes one WAMP v2 message (see Handle and, for the
// behaviour, doc.go).
func (s *Session) handleV2(ctx context.Context, msg []byte) error {
	m, err := parseMessageV2(msg, s.node.limits.MaxJSONDepth)
	if err != nil {
		s.node.obs.MessageIn(s.proto, "INVALID")
		return s.violation(err)
	}
	s.node.obs.MessageIn(s.proto, typeNameV2(m.typ))
	if !s.joined {
		switch m.typ {
		case v2Hello:
			return s.helloV2(m)
		case v2Abort:
			return ErrGoodbye
		}
		return s.violation(protoErr("%s before HELLO", typeNameV2(m.typ)))
	}
	switch m.typ {
	case v2Hello:
		return s.violation(protoErr("HELLO in an established session"))
	case v2Goodbye:
		s.send("GOODBYE", encodeCloseV2(v2Goodbye, "", closeGoodbyeAndOut))
		s.closeInHandle()
		return ErrGoodbye
	case v2Abort:
		s.closeInHandle()
		return ErrGoodbye
	case v2Subscribe:
		return s.subscribeV2(ctx, m)
	case v2Unsubscribe:
		return s.unsubscribeV2(ctx, m)
	case v2Publish:
		return s.publishV2(ctx, m)
	case v2Call:
		return s.callV2(ctx, m)
	case v2Cancel:
		return s.cancelV2(m)
	case v2Register, v2Unregister:
		if err := s.checkReqID(m); err != nil {
			return err
		}
		s.sendErrorV2(m.typ, m.reqID, errURINotAuthorized, "this router does not accept callees", nil)
		return nil
	}
	return s.violation(protoErr("unexpected message type %d", m.typ))
}

// violation sends ABORT wamp.error.protocol_violation, ends the session and
// returns err (which wraps ErrProtocol): the gateway closes the
// connection.
func (s *Session) violation(err error) error {
	s.send("ABORT", encodeCloseV2(v2Abort, clip(err.Error(), 200), errURIProtocolViolation))
	s.joined = false
	return err
}

// clip cuts s to at most n bytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// closeInHandle is Close from within Handle, when the client ends the
// session (GOODBYE, ABORT) or is refused its realm: the subscriptions go as
// on Close, once Handle returns (cleanup runs in endHandle), and further
// messages are refused with ErrClosed.
func (s *Session) closeInHandle() {
	s.joined = false
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
}

// checkRequestV2 checks what every v2 request has: a request id in
// [1, 2^53] and a URI (what names it) within Limits.MaxURILength. A
// failure is a protocol violation.
func (s *Session) checkRequestV2(m messageV2, what string) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	if err := s.checkURI(what, m.uri); err != nil {
		return s.violation(err)
	}
	return nil
}

// checkReqID refuses request id 0, which the parser lets through because
// ids elsewhere may be 0.
func (s *Session) checkReqID(m messageV2) error {
	if m.reqID == 0 {
		return s.violation(protoErr("%s request id 0 is outside [1, 2^53]", typeNameV2(m.typ)))
	}
	return nil
}

// helloV2 joins the realm: WELCOME with the client's identity, or ABORT
// for a realm the node does not serve.
func (s *Session) helloV2(m messageV2) error {
	if err := s.checkURI("HELLO realm", m.uri); err != nil {
		return s.violation(err)
	}
	if s.node.realm != "" && m.uri != s.node.realm {
		s.send("ABORT", encodeCloseV2(v2Abort, "no such realm", errURINoSuchRealm))
		s.closeInHandle()
		return ErrGoodbye
	}
	who := s.identity.Load()
	role := authRole(who)
	roles := who.Roles
	if roles == nil {
		roles = []string{}
	}
	s.joined = true
	s.welcomed.Store(true)
	s.send("WELCOME", encodeWelcomeV2(s.v2ID(), welcomeDetails{
		Realm: m.uri, AuthID: who.UserIdentifier, AuthRole: role,
		AuthMethod: "cookie", AuthProvider: "symfony",
		AuthExtra: welcomeExtra{Roles: roles, Firewall: who.Firewall, Anonymous: who.Anonymous},
		Agent:     s.node.serverIdent, Roles: s.node.routerRoles,
	}))
	s.node.sessionJoined(s)
	return nil
}

// sendErrorV2 sends ERROR for a request of type reqType; kwargs may be nil.
func (s *Session) sendErrorV2(reqType int, reqID uint64, errURI, desc string, kwargs []byte) {
	s.send("ERROR", encodeErrorV2(reqType, reqID, errURI, desc, kwargs))
}

// handlerErrorV2 sends the ERROR for a handler's error (see
// handlerFailure): its URI defaults to wamp.error.runtime_error, the
// description is the single positional argument and kwargs are {"code",
// "details"}.
func (s *Session) handlerErrorV2(reqType int, reqID uint64, uri string, err error) {
	f := s.describeFailure(uri, err)
	if f.uri == "" {
		f.uri = errURIRuntime
	}
	kw := []byte(`{"code":` + strconv.Itoa(f.code))
	if f.details != nil {
		kw = append(append(kw, `,"details":`...), f.details...)
	}
	kw = append(kw, '}')
	s.sendErrorV2(reqType, reqID, f.uri, f.desc, kw)
}

// sendBusyV2 answers a request refused at the bound of offloaded work.
func (s *Session) sendBusyV2(reqType int, reqID uint64) {
	s.sendErrorV2(reqType, reqID, errURIBusy, errDescBusy, []byte(`{"code":503}`))
}

// subscribeV2 answers SUBSCRIBE with SUBSCRIBED, sent before OnSubscribe so
// that the client knows the subscription id when the handler's join
// broadcast reaches it (as a v1 client sees its own join), or ERROR.
// Subscribing again returns the existing subscription, as the spec says.
func (s *Session) subscribeV2(ctx context.Context, m messageV2) error {
	if err := s.checkRequestV2(m, "SUBSCRIBE topic"); err != nil {
		return err
	}
	uri := m.uri
	opts, err := parseSubscribeOptions(m.dict)
	if err != nil {
		s.sendErrorV2(v2Subscribe, m.reqID, errURIInvalidArgument, clip(err.Error(), 200), nil)
		return nil
	}
	if opts.match != matchExact {
		return s.subscribePatternV2(m, opts) // pattern.go
	}
	if subID, dup := s.subscribedTo(uri); dup {
		s.send("SUBSCRIBED", encodeIDsV2(v2Subscribed, m.reqID, subID))
		if opts.getRetained {
			s.resendRetained(ctx, uri) // retain.go
		}
		return nil
	}
	sub, err := s.newSubscription(uri)
	switch {
	case errors.Is(err, ErrNoRoute):
		s.sendErrorV2(v2Subscribe, m.reqID, errURIInvalidURI, fmt.Sprintf("no route for topic %q", uri), nil)
		return nil
	case errors.Is(err, errDenied):
		s.sendErrorV2(v2Subscribe, m.reqID, errURINotAuthorized, "Access denied", nil)
		return nil
	case errors.Is(err, errTooMany):
		return s.violation(limitErr(LimitSubscriptions, "more than %d subscriptions", s.node.limits.MaxSubscriptions))
	}
	if !s.runOnSubscribe(ctx, uri, sub, func() {
		s.send("SUBSCRIBED", encodeIDsV2(v2Subscribed, m.reqID, sub.subID))
	}, func(err error) {
		// The handler refused: revoke the subscription with the advanced
		// profile's router-initiated UNSUBSCRIBED (request 0), which
		// autobahn understands.
		reason := errURIRuntime
		var he *handler.Error
		if errors.As(err, &he) && he.URI != "" {
			reason = he.URI
		}
		s.send("UNSUBSCRIBED", encodeRevokedV2(sub.subID, reason))
	}) {
		s.sendBusyV2(v2Subscribe, m.reqID)
		return nil
	}
	if opts.getRetained {
		s.sendRetained(ctx, uri, sub) // retain.go
	}
	return nil
}

// unsubscribeV2 answers UNSUBSCRIBE with UNSUBSCRIBED at once, then tells
// the handler.
func (s *Session) unsubscribeV2(ctx context.Context, m messageV2) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	if s.takePatternSub(m.subID) { // pattern.go: no handler to tell
		s.send("UNSUBSCRIBED", encodeIDsV2(v2Unsubscribed, m.reqID))
		return nil
	}
	s.mu.Lock()
	var uri string
	found := s.subs.byID(m.subID)
	if found != nil {
		uri = found.uri
	}
	s.mu.Unlock()
	var sub *subscription
	if found != nil {
		// Only the reader adds subscriptions, so uri is still this
		// subscription's topic unless Reidentify took it meanwhile.
		sub = s.takeSub(uri)
	}
	if sub == nil {
		s.sendErrorV2(v2Unsubscribe, m.reqID, errURINoSuchSubscription, "no such subscription", nil)
		return nil
	}
	s.send("UNSUBSCRIBED", encodeIDsV2(v2Unsubscribed, m.reqID))
	s.runOnUnsubscribe(ctx, uri, sub, func(error) {}) // v2 has answered already
	return nil
}

// publishV2 hands a PUBLISH to the topic handler. Its errors and PUBLISHED
// are sent only when the publisher asked for acknowledge; options the
// client got wrong are its error, not a violation.
func (s *Session) publishV2(ctx context.Context, m messageV2) error {
	if err := s.checkRequestV2(m, "PUBLISH topic"); err != nil {
		return err
	}
	uri := m.uri
	opts, err := parsePublishOptions(m.dict)
	if err != nil {
		s.sendErrorV2(v2Publish, m.reqID, errURIInvalidArgument, "invalid PUBLISH options", nil)
		return nil
	}
	h, req, disclose, err := s.routePublish(uri)
	if err != nil {
		if opts.Acknowledge && errors.Is(err, ErrNoRoute) {
			s.sendErrorV2(v2Publish, m.reqID, errURIInvalidURI, fmt.Sprintf("no route for topic %q", uri), nil)
		} else if opts.Acknowledge {
			s.sendErrorV2(v2Publish, m.reqID, errURINotAuthorized, "Access denied", nil)
		}
		return nil
	}
	exclude, eligible, pub := s.node.receivers(s, opts)
	req.Kwargs = m.kwargs
	var details []byte
	if disclose == DiscloseForce || disclose == "" && opts.DiscloseMe {
		details = s.publisherDetails()
	}
	var retain *retainSpec
	if opts.retainable() {
		retain = &retainSpec{publisher: s.id}
	}
	if !s.runOnPublish(ctx, h, req, eventFromArgs(m.args, m.kwargs), exclude, eligible, pub, details, retain, func(err error) {
		switch {
		case !opts.Acknowledge:
		case err != nil:
			s.handlerErrorV2(v2Publish, m.reqID, uri, err)
		default:
			s.send("PUBLISHED", encodeIDsV2(v2Published, m.reqID, newGlobalID()))
		}
	}) && opts.Acknowledge {
		s.sendBusyV2(v2Publish, m.reqID)
	}
	return nil
}

// receivers turns v2 PUBLISH options into the publish's Audience and the
// handler's exclude and eligible session id lists (see
// handler.Topic.OnPublish): the options' session ids, the publisher
// unless exclude_me is false, and the sessions on this node of the named
// users and roles. When users or roles are named, pub remembers the
// Audience for the handler's TopicRef (see published), so that a
// Broadcast with these lists selects the users and roles on every
// replica; pub is nil when the lists say all there is.
func (n *Node) receivers(publisher *Session, o publishOptions) (exclude, eligible []string, pub *published) {
	a := Audience{
		ExcludeSessions: o.exclude, EligibleSessions: o.eligible,
		ExcludeUsers: o.ExcludeAuthID, EligibleUsers: o.EligibleAuthID,
		ExcludeRoles: o.ExcludeAuthRole, EligibleRoles: o.EligibleAuthRole,
	}
	if o.ExcludeMe == nil || *o.ExcludeMe {
		a.ExcludeSessions = append(a.ExcludeSessions, publisher.id)
	}
	named := o.Eligible != nil || o.EligibleAuthID != nil || o.EligibleAuthRole != nil
	if named && !a.named() {
		a.EligibleSessions = []string{""} // named nobody: reach nobody
	}
	if !a.byIdentity() {
		return a.ExcludeSessions, a.EligibleSessions, nil
	}
	// Lists of their own (capacity at least 1, so never nil nor sharing
	// the zero-size array), so that published.given recognises them.
	exclude = append(make([]string, 0, len(a.ExcludeSessions)+1), a.ExcludeSessions...)
	eligible = append(make([]string, 0, len(a.EligibleSessions)+1), a.EligibleSessions...)
	exclude, eligible = n.localSessions(&a, exclude, eligible)
	if named && len(eligible) == 0 {
		eligible = append(eligible, "")
	}
	return exclude, eligible, &published{exclude: exclude, eligible: eligible, audience: a}
}

// localSessions appends to exclude and eligible the ids of this node's
// sessions whose user or roles a's Exclude and Eligible lists name, with
// the rule deliver applies (see Audience).
func (n *Node) localSessions(a *Audience, exclude, eligible []string) ([]string, []string) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if len(a.ExcludeRoles) == 0 && len(a.EligibleRoles) == 0 {
		// Users only: the index has them.
		return n.userSessions(exclude, a.ExcludeUsers), n.userSessions(eligible, a.EligibleUsers)
	}
	// Roles are not indexed: every session is looked at once.
	exUser, elUser := newIDSet(a.ExcludeUsers), newIDSet(a.EligibleUsers)
	exRole, elRole := newIDSet(a.ExcludeRoles), newIDSet(a.EligibleRoles)
	for s := range n.byUser.all() {
		who := s.identity.Load()
		if identityIn(&exUser, &exRole, who) {
			exclude = append(exclude, s.id)
		}
		if identityIn(&elUser, &elRole, who) {
			eligible = append(eligible, s.id)
		}
	}
	return exclude, eligible
}

// userSessions appends to ids the ids of this node's sessions of users,
// never an anonymous client's ("anon-<session>" names no user); n.mu must
// be held.
func (n *Node) userSessions(ids, users []string) []string {
	for _, u := range users {
		for s := range n.byUser.of(u) {
			if !s.identity.Load().Anonymous {
				ids = append(ids, s.id)
			}
		}
	}
	return ids
}

// callV2 answers CALL with RESULT, carrying the handler's result as its
// single positional argument, or ERROR.
func (s *Session) callV2(ctx context.Context, m messageV2) error {
	if err := s.checkRequestV2(m, "CALL procedure"); err != nil {
		return err
	}
	uri := m.uri
	if s.node.meta.enabled && isMetaProcedure(uri) {
		s.metaCallV2(m)
		return nil
	}
	if uri == PresenceListProcedure {
		s.presenceCallV2(ctx, m)
		return nil
	}
	r, req, method, refused := s.routeCall(uri)
	if refused != nil {
		s.sendErrorV2(v2Call, m.reqID, refused.uriV2, refused.desc, nil)
		return nil
	}
	req.Kwargs = m.kwargs
	// Listed before the handler runs, so that a CANCEL read next finds
	// it (cancel.go).
	callCtx, pc := s.beginCallV2(ctx, m.reqID, parseCallOptions(m.dict))
	s.runCall(r.handler, func() {
		out, err := s.callMethod(callCtx, r, method, req, paramsFromArgs(m.args, m.kwargs))
		pc.answer(err != nil || out == nil, func() {
			switch {
			case err != nil:
				s.handlerErrorV2(v2Call, m.reqID, req.URI, err)
			case out == nil:
				s.sendErrorV2(v2Call, m.reqID, errURIRuntime, "RPC Error", []byte(`{"code":500}`))
			default:
				s.send("RESULT", encodeResultV2(m.reqID, out))
			}
		})
	}, func() {
		pc.answer(true, func() { s.sendBusyV2(v2Call, m.reqID) })
	})
	return nil
}
