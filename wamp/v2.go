package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// handleV2 processes one WAMP v2 message. See doc.go for the behaviour.
func (s *Session) handleV2(ctx context.Context, msg []byte) error {
	m, err := parseMessageV2(msg, s.node.limits.MaxJSONDepth)
	if err != nil {
		s.node.obs.MessageIn(ProtocolV2JSON, "INVALID")
		return s.violation(err)
	}
	s.node.obs.MessageIn(ProtocolV2JSON, typeNameV2(m.typ))
	if !s.joined {
		switch m.typ {
		case v2Hello:
			return s.handleHello(m)
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
		s.leave()
		return ErrGoodbye
	case v2Abort:
		s.leave()
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
		// Calls run to completion before the next message is read, so
		// there is never a pending call to cancel.
		return nil
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

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// leave ends a joined session's realm membership: its subscriptions go as
// on Close. Further messages are refused with ErrClosed.
func (s *Session) leave() {
	s.joined = false
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
	// cleanup runs in endHandle, once Handle returns.
}

func (s *Session) checkReqID(m message2) error {
	if m.reqID == 0 {
		return s.violation(protoErr("%s request id 0 is outside [1, 2^53]", typeNameV2(m.typ)))
	}
	return nil
}

func (s *Session) handleHello(m message2) error {
	if err := s.checkURI("HELLO realm", m.uri); err != nil {
		return s.violation(err)
	}
	if s.node.realm != "" && m.uri != s.node.realm {
		s.send("ABORT", encodeCloseV2(v2Abort, "no such realm", errURINoSuchRealm))
		s.leave()
		return ErrGoodbye
	}
	id := s.ident.Load()
	role := "authenticated"
	switch {
	case id.Anonymous:
		role = "anonymous"
	case len(id.Roles) > 0:
		role = id.Roles[0]
	}
	roles := id.Roles
	if roles == nil {
		roles = []string{}
	}
	s.joined = true
	s.send("WELCOME", encodeWelcomeV2(s.numID, welcomeDetails{
		Realm: m.uri, AuthID: id.UserIdentifier, AuthRole: role,
		AuthMethod: "cookie", AuthProvider: "symfony",
		AuthExtra: welcomeExtra{Roles: roles, Firewall: id.Firewall, Anonymous: id.Anonymous},
		Agent:     s.node.ident, Roles: routerRoles,
	}))
	return nil
}

func (s *Session) sendErrorV2(reqType int, reqID uint64, errURI, desc string, kwargs []byte) {
	s.send("ERROR", encodeErrorV2(reqType, reqID, errURI, desc, kwargs))
}

// handlerErrorV2 sends the ERROR for a handler failure: a *handler.Error
// controls the URI (default wamp.error.runtime_error), the description
// (the single positional argument) and kwargs {"code": Code, "details":
// Details}; other errors give their text and code 500; panics give
// "Internal Server Error".
func (s *Session) handlerErrorV2(reqType int, reqID uint64, err error) {
	uri, desc, code := errURIRuntime, err.Error(), 500
	var details any
	var he *handler.Error
	switch {
	case errors.As(err, &he):
		if he.URI != "" {
			uri = he.URI
		}
		desc = he.Desc
		if he.Code != 0 {
			code = he.Code
		}
		details = he.Details
	case errors.Is(err, errPanic):
		desc = "Internal Server Error"
	}
	kw := []byte(`{"code":` + strconv.Itoa(code))
	if details != nil {
		if b, encErr := appendJSON(nil, details); encErr == nil {
			kw = append(append(kw, `,"details":`...), b...)
		} else {
			s.logAt(slog.LevelWarn, "wamp: handler error details not JSON-encodable", "err", encErr)
		}
	}
	kw = append(kw, '}')
	s.sendErrorV2(reqType, reqID, uri, desc, kw)
}

func (s *Session) subscribeV2(ctx context.Context, m message2) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	if err := s.checkURI("SUBSCRIBE topic", m.uri); err != nil {
		return s.violation(err)
	}
	uri := m.uri
	if !isEmptyContainer(m.dict) {
		var o struct {
			Match string `json:"match"`
		}
		if json.Unmarshal(m.dict, &o) != nil || (o.Match != "" && o.Match != "exact") {
			s.sendErrorV2(v2Subscribe, m.reqID, errURIInvalidArgument, "only exact topic matching is supported", nil)
			return nil
		}
	}
	s.mu.Lock()
	var dupID uint64
	if sub := s.subs[uri]; sub != nil {
		dupID = sub.subID
	}
	s.mu.Unlock()
	if dupID != 0 {
		// The spec: subscribing again returns the existing subscription.
		s.send("SUBSCRIBED", encodeV2IDs(v2Subscribed, m.reqID, dupID))
		return nil
	}
	r, attrs, ok := s.node.topicRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no topic route for subscribe", "uri", uri)
		s.node.obs.RoutingMiss("topic")
		s.sendErrorV2(v2Subscribe, m.reqID, errURIInvalidURI, fmt.Sprintf("no route for topic %q", uri), nil)
		return nil
	}
	sub := &subscription{h: r.handler, req: handler.Request{Route: r.name, URI: uri, Attributes: attrs}, access: r.access}
	switch s.addSub(uri, sub) {
	case errDenied:
		s.logAt(slog.LevelInfo, "wamp: subscribe access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("topic")
		s.sendErrorV2(v2Subscribe, m.reqID, errURINotAuthorized, "Access denied", nil)
		return nil
	case errTooMany:
		return s.violation(limitErr(LimitSubscriptions, "more than %d subscriptions", s.node.limits.MaxSubscriptions))
	}
	ref := topicRef{n: s.node, id: uri}
	if !s.topicTask(sub.h, false, func() {
		// SUBSCRIBED goes out before OnSubscribe so that the client knows
		// the subscription id when the handler's join broadcast reaches
		// it, as a v1 client sees its own join.
		s.send("SUBSCRIBED", encodeV2IDs(v2Subscribed, m.reqID, sub.subID))
		err := s.invoke(ctx, true, "onSubscribe", uri, func(ctx context.Context) error {
			return sub.h.h.OnSubscribe(ctx, s, ref, sub.req)
		})
		s.subscribed(uri, sub, err)
		if err != nil {
			// The handler refused: the subscription is undone; revoke it
			// with the advanced profile's router-initiated UNSUBSCRIBED
			// (request 0), which autobahn understands.
			s.logAt(slog.LevelWarn, "wamp: topic subscribe failed", "uri", uri, "route", r.name, "err", err)
			reason := errURIRuntime
			var he *handler.Error
			if errors.As(err, &he) && he.URI != "" {
				reason = he.URI
			}
			s.send("UNSUBSCRIBED", encodeRevokedV2(sub.subID, reason))
		}
	}) {
		s.subscribed(uri, sub, errBusy)
		s.sendErrorV2(v2Subscribe, m.reqID, errURIBusy, errDescBusy, []byte(`{"code":503}`))
	}
	return nil
}

func (s *Session) unsubscribeV2(ctx context.Context, m message2) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	s.mu.Lock()
	uri, ok := s.subIDs[m.subID]
	s.mu.Unlock()
	var sub *subscription
	if ok {
		// Only the reader adds subscriptions, so uri is still this
		// subscription's topic unless Reidentify took it meanwhile.
		sub = s.takeSub(uri)
	}
	if sub == nil {
		s.sendErrorV2(v2Unsubscribe, m.reqID, errURINoSuchSubscription, "no such subscription", nil)
		return nil
	}
	s.send("UNSUBSCRIBED", encodeV2IDs(v2Unsubscribed, m.reqID))
	s.unsubscribed(ctx, uri, sub, func(error) {}) // v2 has answered already
	return nil
}

func (s *Session) publishV2(ctx context.Context, m message2) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	if err := s.checkURI("PUBLISH topic", m.uri); err != nil {
		return s.violation(err)
	}
	uri := m.uri
	opts, err := parsePublishOptions(m.dict)
	if err != nil {
		// Options the client got wrong are its error, not a violation.
		s.sendErrorV2(v2Publish, m.reqID, errURIInvalidArgument, "invalid PUBLISH options", nil)
		return nil
	}
	r, attrs, ok := s.node.topicRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no topic route for publish", "uri", uri)
		s.node.obs.RoutingMiss("topic")
		if opts.Acknowledge {
			s.sendErrorV2(v2Publish, m.reqID, errURIInvalidURI, fmt.Sprintf("no route for topic %q", uri), nil)
		}
		return nil
	}
	if !s.allowed(r.access) {
		s.logAt(slog.LevelInfo, "wamp: publish access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("topic")
		if opts.Acknowledge {
			s.sendErrorV2(v2Publish, m.reqID, errURINotAuthorized, "Access denied", nil)
		}
		return nil
	}
	exclude, eligible := s.node.receivers(s, opts)
	req := handler.Request{Route: r.name, URI: uri, Attributes: attrs, Kwargs: m.kwargs}
	event := eventFromArgs(m.args, m.kwargs)
	if !s.topicTask(r.handler, false, func() {
		err := s.invoke(ctx, true, "onPublish", uri, func(ctx context.Context) error {
			return r.handler.h.OnPublish(ctx, s, topicRef{n: s.node, id: uri}, req, event, exclude, eligible)
		})
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: topic publish failed", "uri", uri, "route", r.name, "err", err)
			if opts.Acknowledge {
				s.handlerErrorV2(v2Publish, m.reqID, err)
			}
			return
		}
		if opts.Acknowledge {
			s.send("PUBLISHED", encodeV2IDs(v2Published, m.reqID, newGlobalID()))
		}
	}) && opts.Acknowledge {
		s.sendErrorV2(v2Publish, m.reqID, errURIBusy, errDescBusy, []byte(`{"code":503}`))
	}
	return nil
}

// receivers turns v2 PUBLISH options into the handler's exclude and
// eligible session id lists (see handler.Topic.OnPublish).
func (n *Node) receivers(pub *Session, o publishOptions) (exclude, eligible []string) {
	for _, id := range o.Exclude {
		exclude = append(exclude, strconv.FormatUint(id, 10))
	}
	if o.ExcludeMe == nil || *o.ExcludeMe {
		exclude = append(exclude, pub.id)
	}
	named := o.Eligible != nil || o.EligibleAuthID != nil
	for _, id := range o.Eligible {
		eligible = append(eligible, strconv.FormatUint(id, 10))
	}
	if len(o.ExcludeAuthID) > 0 || len(o.EligibleAuthID) > 0 {
		n.mu.RLock()
		for _, u := range o.ExcludeAuthID {
			for _, s := range n.byUser[u] {
				exclude = append(exclude, s.id)
			}
		}
		for _, u := range o.EligibleAuthID {
			for _, s := range n.byUser[u] {
				eligible = append(eligible, s.id)
			}
		}
		n.mu.RUnlock()
	}
	if named && len(eligible) == 0 {
		eligible = []string{""} // named nobody: reach nobody
	}
	return exclude, eligible
}

func (s *Session) callV2(ctx context.Context, m message2) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	if err := s.checkURI("CALL procedure", m.uri); err != nil {
		return s.violation(err)
	}
	uri := m.uri
	r, attrs, ok := s.node.rpcRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no rpc route", "uri", uri)
		s.node.obs.RoutingMiss("rpc")
		s.sendErrorV2(v2Call, m.reqID, errURINoSuchProcedure, fmt.Sprintf("Unable to find route for %q", uri), nil)
		return nil
	}
	if !s.allowed(r.access) {
		s.logAt(slog.LevelInfo, "wamp: rpc access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("rpc")
		s.sendErrorV2(v2Call, m.reqID, errURINotAuthorized, "Access denied", nil)
		return nil
	}
	method, ok := r.handler.lookup(attrs["method"])
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: rpc method not found", "uri", uri, "route", r.name, "handler", r.handler.h.Name(), "method", attrs["method"])
		s.node.obs.RoutingMiss("rpc")
		s.sendErrorV2(v2Call, m.reqID, errURINoSuchProcedure, "Could not execute RPC callback, method not found", nil)
		return nil
	}
	req := handler.Request{Route: r.name, URI: uri, Attributes: attrs, Kwargs: m.kwargs}
	s.runCall(r.handler, func() {
		out, err := s.callMethod(ctx, r, method, req, paramsFromArgs(m.args, m.kwargs))
		if err != nil {
			s.handlerErrorV2(v2Call, m.reqID, err)
			return
		}
		if out == nil {
			s.sendErrorV2(v2Call, m.reqID, errURIRuntime, "RPC Error", []byte(`{"code":500}`))
			return
		}
		s.send("RESULT", encodeResultV2(m.reqID, out))
	}, func() {
		s.sendErrorV2(v2Call, m.reqID, errURIBusy, errDescBusy, []byte(`{"code":503}`))
	})
	return nil
}
