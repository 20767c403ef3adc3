package wamp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/wsgate/wsgate/wamp/handler"
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

// rpcDetails is the bundle's CALLERROR details for RPC calls. "rpc" and
// "request" are PHP objects with only private properties, which
// json_encode renders as {}.
func rpcDetails(code int, params json.RawMessage) []byte {
	b := make([]byte, 0, 48+len(params))
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"rpc":{},"params":`...)
	b = append(b, params...)
	return append(b, `,"request":{}}`...)
}

// topicDetails is the bundle's CALLERROR details for topic callbacks; the
// event names are those of the bundle's TopicDispatcher.
func topicDetails(event string) func(code int) []byte {
	return func(code int) []byte {
		b := make([]byte, 0, 64)
		b = append(b, `{"code":`...)
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, `,"topic":{},"request":{},"event":`...)
		b = appendJSONString(b, event)
		return append(b, '}')
	}
}

// topicCallID: the bundle uses the topic id as the call id of a topic
// CALLERROR.
func topicCallID(uri string) json.RawMessage { return appendJSONString(nil, uri) }

// resolve expands a CURIE exactly as Ratchet 0.4's WampConnection::getUri:
// URIs containing "http://" or "https://" are left alone; otherwise
// "prefix:action" becomes prefixes[prefix] + "#" + action when the prefix
// is known. Like PHP's explode/list, only the text up to a second ':' is
// kept as the action.
func (s *Session) resolve(uri string) string {
	if len(s.prefixes) == 0 || containsHTTPScheme(uri) {
		return uri
	}
	i := strings.IndexByte(uri, ':')
	if i < 0 {
		return uri
	}
	base, ok := s.prefixes[uri[:i]]
	if !ok {
		return uri
	}
	action := uri[i+1:]
	if j := strings.IndexByte(action, ':'); j >= 0 {
		action = action[:j]
	}
	return base + "#" + action
}

// containsHTTPScheme reports whether s matches Ratchet's unanchored
// /http(s*):\/\// anywhere.
func containsHTTPScheme(s string) bool {
	for {
		i := strings.Index(s, "http")
		if i < 0 {
			return false
		}
		rest := s[i+4:]
		rest = strings.TrimLeft(rest, "s")
		if strings.HasPrefix(rest, "://") {
			return true
		}
		s = s[i+4:]
	}
}

// expand validates the raw URI, resolves CURIEs and validates the result.
func (s *Session) expand(what, raw string) (string, error) {
	if err := s.checkURI(what, raw); err != nil {
		return "", err
	}
	uri := s.resolve(raw)
	if err := s.checkURI(what, uri); err != nil {
		return "", err
	}
	return uri, nil
}

func (s *Session) handlePrefix(m message) error {
	if err := s.checkURI("PREFIX prefix", m.prefix); err != nil {
		return err
	}
	if err := s.checkURI("PREFIX uri", m.uri); err != nil {
		return err
	}
	if _, exists := s.prefixes[m.prefix]; !exists && len(s.prefixes) >= s.node.limits.MaxPrefixes {
		return limitErr(LimitPrefixes, "more than %d prefixes", s.node.limits.MaxPrefixes)
	}
	if s.prefixes == nil {
		s.prefixes = make(map[string]string, 1) // most clients define none
	}
	s.prefixes[m.prefix] = m.uri
	return nil
}

func (s *Session) handleCall(ctx context.Context, m message) error {
	uri, err := s.expand("CALL procURI", m.uri)
	if err != nil {
		return err
	}
	params := callParams(m.args)
	r, attrs, ok := s.node.rpcRoutes.match(uri)
	if !ok {
		// The bundle throws here and the client never gets an answer;
		// answering 404 keeps the client's call from hanging forever.
		s.logAt(slog.LevelInfo, "wamp: no rpc route", "uri", uri)
		s.node.obs.RoutingMiss("rpc")
		s.send("CALLERROR", encodeCallError(m.callID, uri, fmt.Sprintf("Unable to find route for %q", uri), rpcDetails(404, params)))
		return nil
	}
	if !s.allowed(r.access) {
		s.logAt(slog.LevelInfo, "wamp: rpc access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("rpc")
		s.send("CALLERROR", encodeCallError(m.callID, uri, "Access denied", rpcDetails(403, params)))
		return nil
	}
	req := handler.Request{Route: r.name, URI: uri, Attributes: attrs}
	method, ok := r.handler.lookup(attrs["method"])
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: rpc method not found", "uri", uri, "route", r.name, "handler", r.handler.h.Name(), "method", attrs["method"])
		s.node.obs.RoutingMiss("rpc")
		s.send("CALLERROR", encodeCallError(m.callID, uri, "Could not execute RPC callback, method not found", rpcDetails(404, params)))
		return nil
	}
	s.runCall(r.handler, func() {
		out, err := s.callMethod(ctx, r, method, req, params)
		if err != nil {
			s.send("CALLERROR", s.errorMessage(m.callID, uri, err, func(code int) []byte { return rpcDetails(code, params) }))
			return
		}
		if out == nil {
			s.send("CALLERROR", encodeCallError(m.callID, uri, "RPC Error", rpcDetails(500, params)))
			return
		}
		if !isJSONContainer(out) {
			// The bundle wraps scalar results: return 5 sends [5].
			out = append(append([]byte{'['}, out...), ']')
		}
		s.send("CALLRESULT", encodeCallResult(m.callID, out))
	}, func() {
		s.send("CALLERROR", encodeCallError(m.callID, uri, errDescBusy, rpcDetails(503, params)))
	})
	return nil
}

func (s *Session) handleSubscribe(ctx context.Context, m message) error {
	uri, err := s.expand("SUBSCRIBE topicURI", m.uri)
	if err != nil {
		return err
	}
	s.mu.Lock()
	_, dup := s.subs[uri]
	s.mu.Unlock()
	if dup {
		return nil // Ratchet ignores duplicate subscriptions
	}
	r, attrs, ok := s.node.topicRoutes.match(uri)
	if !ok {
		// The bundle fails to route and only logs; nobody could ever
		// publish to an unrouted topic, so there is nothing to keep.
		s.logAt(slog.LevelInfo, "wamp: no topic route for subscribe", "uri", uri)
		s.node.obs.RoutingMiss("topic")
		return nil
	}
	sub := &subscription{h: r.handler, req: handler.Request{Route: r.name, URI: uri, Attributes: attrs}, access: r.access}
	switch s.addSub(uri, sub) {
	case errDenied:
		s.logAt(slog.LevelInfo, "wamp: subscribe access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("topic")
		s.send("CALLERROR", encodeCallError(topicCallID(uri), uri, "Access denied", topicDetails("onSubscribe")(403)))
		return nil
	case errTooMany:
		return limitErr(LimitSubscriptions, "more than %d subscriptions", s.node.limits.MaxSubscriptions)
	}
	ref := topicRef{n: s.node, id: uri}
	if !s.topicTask(sub.h, false, func() {
		err := s.invoke(ctx, true, "onSubscribe", uri, func(ctx context.Context) error {
			return sub.h.h.OnSubscribe(ctx, s, ref, sub.req)
		})
		s.subscribed(uri, sub, err)
		if err != nil {
			// Undone, so a handler can refuse a subscription by failing.
			// (Ratchet would keep the client subscribed after the handler
			// threw.)
			s.logAt(slog.LevelWarn, "wamp: topic subscribe failed", "uri", uri, "route", r.name, "err", err)
			s.send("CALLERROR", s.errorMessage(topicCallID(uri), uri, err, topicDetails("onSubscribe")))
		}
	}) {
		s.subscribed(uri, sub, errBusy)
		s.send("CALLERROR", encodeCallError(topicCallID(uri), uri, errDescBusy, topicDetails("onSubscribe")(503)))
	}
	return nil
}

func (s *Session) handleUnsubscribe(ctx context.Context, m message) error {
	uri, err := s.expand("UNSUBSCRIBE topicURI", m.uri)
	if err != nil {
		return err
	}
	sub := s.takeSub(uri)
	if sub == nil {
		return nil // not subscribed: Ratchet ignores it
	}
	s.unsubscribed(ctx, uri, sub, func(err error) {
		s.send("CALLERROR", s.errorMessage(topicCallID(uri), uri, err, topicDetails("onUnSubscribe")))
	})
	return nil
}

func (s *Session) handlePublish(ctx context.Context, m message) error {
	uri, err := s.expand("PUBLISH topicURI", m.uri)
	if err != nil {
		return err
	}
	r, attrs, ok := s.node.topicRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no topic route for publish", "uri", uri)
		s.node.obs.RoutingMiss("topic")
		return nil
	}
	if !s.allowed(r.access) {
		s.logAt(slog.LevelInfo, "wamp: publish access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("topic")
		s.send("CALLERROR", encodeCallError(topicCallID(uri), uri, "Access denied", topicDetails("onPublish")(403)))
		return nil
	}
	req := handler.Request{Route: r.name, URI: uri, Attributes: attrs}
	exclude := m.exclude
	if m.excludeMe {
		exclude = []string{s.id}
	}
	if !s.topicTask(r.handler, false, func() {
		err := s.invoke(ctx, true, "onPublish", uri, func(ctx context.Context) error {
			return r.handler.h.OnPublish(ctx, s, topicRef{n: s.node, id: uri}, req, m.event, exclude, m.eligible)
		})
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: topic publish failed", "uri", uri, "route", r.name, "err", err)
			s.send("CALLERROR", s.errorMessage(topicCallID(uri), uri, err, topicDetails("onPublish")))
		}
	}) {
		s.send("CALLERROR", encodeCallError(topicCallID(uri), uri, errDescBusy, topicDetails("onPublish")(503)))
	}
	return nil
}

// errorMessage builds the CALLERROR for a handler error: a *handler.Error
// controls URI, description, code and details; any other error is code 500
// with its message, as the bundle reports an exception.
func (s *Session) errorMessage(callID json.RawMessage, uri string, err error, details func(code int) []byte) []byte {
	var he *handler.Error
	if errors.As(err, &he) {
		errURI := he.URI
		if errURI == "" {
			errURI = uri
		}
		code := he.Code
		if code == 0 {
			code = 500
		}
		d := details(code)
		if he.Details != nil {
			b, encErr := appendJSON(nil, he.Details)
			if encErr != nil {
				s.logAt(slog.LevelWarn, "wamp: handler error details not JSON-encodable", "uri", uri, "err", encErr)
			} else {
				d = b
			}
		}
		return encodeCallError(callID, errURI, he.Desc, d)
	}
	desc := err.Error()
	if errors.Is(err, errPanic) {
		desc = "Internal Server Error"
	}
	return encodeCallError(callID, uri, desc, details(500))
}
