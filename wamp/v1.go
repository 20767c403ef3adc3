package wamp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
)

// WAMP v1 message type ids.
const (
	v1Welcome     = 0
	v1Prefix      = 1
	v1Call        = 2
	v1CallResult  = 3
	v1CallError   = 4
	v1Subscribe   = 5
	v1Unsubscribe = 6
	v1Publish     = 7
	v1Event       = 8
)

// typeNameV1 names a client message type for the observer and errors.
func typeNameV1(t int) string {
	switch t {
	case v1Prefix:
		return "PREFIX"
	case v1Call:
		return "CALL"
	case v1Subscribe:
		return "SUBSCRIBE"
	case v1Unsubscribe:
		return "UNSUBSCRIBE"
	case v1Publish:
		return "PUBLISH"
	}
	return strconv.Itoa(t)
}

// messageV1 is one parsed client-to-server WAMP v1 message. URIs are as
// sent, before CURIE expansion.
type messageV1 struct {
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
	// ignored counts exclude and eligible elements that were no session
	// id (see sessionIDList).
	ignored int
}

// parseMessageV1 decodes and validates one client message. Its rules follow
// Ratchet 0.4's ServerProtocol, made strict where Ratchet would hit a PHP
// notice or type error: URIs and prefixes must be strings, the call id a
// string or number, and each type has a fixed arity.
func parseMessageV1(data []byte, maxDepth int) (messageV1, error) {
	var m messageV1
	arr, typ, err := splitMessage(data, maxDepth)
	if err != nil {
		return m, err
	}
	m.typ = typ
	switch typ {
	case v1Prefix:
		if len(arr) != 3 {
			return m, protoErr("PREFIX needs 3 elements, got %d", len(arr))
		}
		if m.prefix, err = jsonString(arr[1], "PREFIX prefix"); err != nil {
			return m, err
		}
		if m.uri, err = jsonString(arr[2], "PREFIX uri"); err != nil {
			return m, err
		}
	case v1Call:
		if len(arr) < 3 {
			return m, protoErr("CALL needs at least 3 elements, got %d", len(arr))
		}
		if !isJSONStringOrNumber(arr[1]) {
			return m, protoErr("CALL id must be a string or number")
		}
		m.callID = arr[1]
		if m.uri, err = jsonString(arr[2], "CALL procURI"); err != nil {
			return m, err
		}
		m.args = arr[3:]
	case v1Subscribe, v1Unsubscribe:
		if len(arr) != 2 {
			return m, protoErr("%s needs 2 elements, got %d", typeNameV1(typ), len(arr))
		}
		if m.uri, err = jsonString(arr[1], typeNameV1(typ)+" topicURI"); err != nil {
			return m, err
		}
	case v1Publish:
		if err := m.parsePublish(arr); err != nil {
			return m, err
		}
	default:
		return m, protoErr("invalid WAMP message type %d", typ)
	}
	return m, nil
}

// parsePublish reads PUBLISH [7, topicURI, event, excludeMe|exclude,
// eligible] into m, with Ratchet's reading of the fourth element: a list is
// the exclude list, anything else the excludeMe flag.
func (m *messageV1) parsePublish(arr []json.RawMessage) error {
	if len(arr) < 3 || len(arr) > 5 {
		return protoErr("PUBLISH needs 3 to 5 elements, got %d", len(arr))
	}
	var err error
	if m.uri, err = jsonString(arr[1], "PUBLISH topicURI"); err != nil {
		return err
	}
	m.event = arr[2]
	if len(arr) >= 4 {
		switch x := arr[3]; {
		case isJSONArray(x):
			m.exclude = m.sessionIDList(x)
		case bytes.Equal(x, []byte("true")):
			m.excludeMe = true
		case bytes.Equal(x, []byte("false")):
		default:
			return protoErr("PUBLISH excludeMe must be a boolean or a list of session ids")
		}
	}
	if len(arr) == 5 {
		if !isJSONArray(arr[4]) {
			return protoErr("PUBLISH eligible must be a list of session ids")
		}
		ignored := m.ignored
		m.eligible = m.sessionIDList(arr[4])
		if len(m.eligible) == 0 && m.ignored > ignored {
			// The publisher named someone, only not by a session id:
			// reach nobody rather than, as an empty list would, everybody.
			m.eligible = append(m.eligible, "")
		}
	}
	return nil
}

// sessionIDList reads a PUBLISH exclude or eligible list, a JSON array:
// strings are session ids, integers in [0, 2^53] v2 session ids as
// their decimal form (as v2 clients write them); other elements are
// dropped and counted in m.ignored, since v1 PUBLISH has no error reply
// and one odd element should not cost the publisher its connection.
func (m *messageV1) sessionIDList(raw json.RawMessage) []string {
	elems, _ := splitArray(raw) // raw is a valid JSON array
	ids := make([]string, 0, len(elems))
	for _, e := range elems {
		id, ok := sessionIDElem(e)
		if !ok {
			m.ignored++
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

// encodeWelcomeV1 builds WELCOME [0, sessionId, 1, serverIdent].
func encodeWelcomeV1(sessionID, serverIdent string) []byte {
	b := make([]byte, 0, 16+len(sessionID)+len(serverIdent))
	b = append(b, "[0,"...)
	b = appendJSONString(b, sessionID)
	b = append(b, ",1,"...)
	b = appendJSONString(b, serverIdent)
	return append(b, ']')
}

// encodeEventV1 builds EVENT [8, topicURI, payload] from the encoded
// payload, once for a whole fan-out.
func encodeEventV1(topicURI string, payload []byte) []byte {
	b := make([]byte, 0, 8+len(topicURI)+len(payload))
	b = append(b, "[8,"...)
	b = appendJSONString(b, topicURI)
	b = append(b, ',')
	b = append(b, payload...)
	return append(b, ']')
}

// encodeCallResultV1 builds CALLRESULT [3, callID, result].
func encodeCallResultV1(callID json.RawMessage, result []byte) []byte {
	b := make([]byte, 0, 8+len(callID)+len(result))
	b = append(b, "[3,"...)
	b = append(b, callID...)
	b = append(b, ',')
	b = append(b, result...)
	return append(b, ']')
}

// encodeCallErrorV1 builds CALLERROR [4, callID, errorURI, desc,
// details]; details is left out when nil.
func encodeCallErrorV1(callID json.RawMessage, errorURI, desc string, details []byte) []byte {
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

// The v1 handlers, one per message type, called by Handle on the reader;
// handler callbacks run there or, when offloaded, on the Offloader.

// handleV1 processes one WAMP v1 message (see Handle).
func (s *Session) handleV1(ctx context.Context, msg []byte) error {
	m, err := parseMessageV1(msg, s.node.limits.MaxJSONDepth)
	if err != nil {
		s.node.obs.MessageIn(ProtocolV1, "INVALID")
		return err
	}
	s.node.obs.MessageIn(ProtocolV1, typeNameV1(m.typ))
	switch m.typ {
	case v1Prefix:
		return s.prefixV1(m)
	case v1Call:
		return s.callV1(ctx, m)
	case v1Subscribe:
		return s.subscribeV1(ctx, m)
	case v1Unsubscribe:
		return s.unsubscribeV1(ctx, m)
	case v1Publish:
		return s.publishV1(ctx, m)
	}
	return protoErr("invalid WAMP message type %d", m.typ)
}

// expandCURIE expands a CURIE exactly as Ratchet 0.4's WampConnection::getUri:
// URIs containing "http://" or "https://" are left alone; otherwise
// "prefix:action" becomes prefixes[prefix] + "#" + action when the prefix
// is known. Like PHP's explode/list, only the text up to a second ':' is
// kept as the action.
func (s *Session) expandCURIE(uri string) string {
	m := s.more.Load()
	if m == nil || len(m.prefixes) == 0 || containsHTTPScheme(uri) {
		return uri
	}
	i := strings.IndexByte(uri, ':')
	if i < 0 {
		return uri
	}
	base, ok := m.prefixes[uri[:i]]
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

// expandURI checks the raw URI, expands a CURIE and checks the result.
func (s *Session) expandURI(what, raw string) (string, error) {
	if err := s.checkURI(what, raw); err != nil {
		return "", err
	}
	uri := s.expandCURIE(raw)
	if err := s.checkURI(what, uri); err != nil {
		return "", err
	}
	return uri, nil
}

// prefixV1 defines a CURIE prefix for the session's later URIs.
func (s *Session) prefixV1(m messageV1) error {
	if err := s.checkURI("PREFIX prefix", m.prefix); err != nil {
		return err
	}
	if err := s.checkURI("PREFIX uri", m.uri); err != nil {
		return err
	}
	more := s.moreFields() // most clients define no prefix
	if _, exists := more.prefixes[m.prefix]; !exists && len(more.prefixes) >= s.node.limits.MaxPrefixes {
		return limitErr(LimitPrefixes, "more than %d prefixes", s.node.limits.MaxPrefixes)
	}
	if more.prefixes == nil {
		more.prefixes = make(map[string]string, 1)
	}
	more.prefixes[m.prefix] = m.uri
	return nil
}

// callV1 answers CALL with CALLRESULT or CALLERROR, the bundle's way.
func (s *Session) callV1(ctx context.Context, m messageV1) error {
	uri, err := s.expandURI("CALL procURI", m.uri)
	if err != nil {
		return err
	}
	params := callParams(m.args)
	if uri == PresenceListProcedure {
		s.presenceCallV1(ctx, m.callID, uri, m.args, params)
		return nil
	}
	r, req, method, refused := s.routeCall(uri)
	if refused != nil {
		s.send("CALLERROR", encodeCallErrorV1(m.callID, uri, refused.desc, rpcDetails(refused.code, params)))
		return nil
	}
	s.runCall(r.handler, func() {
		out, err := s.callMethod(ctx, r, method, req, params)
		if err != nil {
			s.send("CALLERROR", s.handlerErrorV1(m.callID, uri, err, func(code int) []byte { return rpcDetails(code, params) }))
			return
		}
		if out == nil {
			s.send("CALLERROR", encodeCallErrorV1(m.callID, uri, "RPC Error", rpcDetails(500, params)))
			return
		}
		if !isJSONContainer(out) {
			// The bundle wraps scalar results: return 5 sends [5].
			out = append(append([]byte{'['}, out...), ']')
		}
		s.send("CALLRESULT", encodeCallResultV1(m.callID, out))
	}, func() {
		s.send("CALLERROR", encodeCallErrorV1(m.callID, uri, errDescBusy, rpcDetails(503, params)))
	})
	return nil
}

// subscribeV1 subscribes the client to a topic. v1 acknowledges nothing:
// the client hears only of a refusal or a failing OnSubscribe (a topic
// CALLERROR), and duplicates and topics without a route are ignored, as
// Ratchet and the bundle do.
func (s *Session) subscribeV1(ctx context.Context, m messageV1) error {
	uri, err := s.expandURI("SUBSCRIBE topicURI", m.uri)
	if err != nil {
		return err
	}
	if _, dup := s.subscribedTo(uri); dup {
		return nil
	}
	sub, err := s.newSubscription(uri)
	switch {
	case errors.Is(err, errDenied):
		s.sendTopicErrorV1(uri, "onSubscribe", "Access denied", 403)
		return nil
	case errors.Is(err, errTooMany):
		return limitErr(LimitSubscriptions, "more than %d subscriptions", s.node.limits.MaxSubscriptions)
	case err != nil:
		return nil // no route: the bundle only logged
	}
	if !s.runOnSubscribe(ctx, uri, sub, nil, func(err error) {
		s.sendTopicFailureV1(uri, "onSubscribe", err)
	}) {
		s.sendTopicErrorV1(uri, "onSubscribe", errDescBusy, 503)
	}
	return nil
}

// unsubscribeV1 takes a subscription back; one the client does not have is
// ignored, as Ratchet does.
func (s *Session) unsubscribeV1(ctx context.Context, m messageV1) error {
	uri, err := s.expandURI("UNSUBSCRIBE topicURI", m.uri)
	if err != nil {
		return err
	}
	sub := s.takeSub(uri)
	if sub == nil {
		return nil
	}
	s.runOnUnsubscribe(ctx, uri, sub, func(err error) {
		s.sendTopicFailureV1(uri, "onUnSubscribe", err)
	})
	return nil
}

// publishV1 hands a PUBLISH to the topic handler; excludeMe=true becomes
// exclude=[own session id]. A topic without a route is ignored.
func (s *Session) publishV1(ctx context.Context, m messageV1) error {
	uri, err := s.expandURI("PUBLISH topicURI", m.uri)
	if err != nil {
		return err
	}
	h, req, disclose, err := s.routePublish(uri)
	if errors.Is(err, errDenied) {
		s.sendTopicErrorV1(uri, "onPublish", "Access denied", 403)
	}
	if err != nil {
		return nil
	}
	if m.ignored > 0 {
		// No counter fits (the message itself was valid), and v1 has no
		// reply to tell the client.
		s.logAt(slog.LevelDebug, "wamp: PUBLISH list elements that are no session id ignored", "uri", uri, "ignored", m.ignored)
	}
	exclude := m.exclude
	if m.excludeMe {
		exclude = []string{s.id}
	}
	// A v1 PUBLISH cannot ask for disclosure; only a route's force
	// discloses a v1 publisher, without a WAMP v2 session id.
	var details []byte
	if disclose == DiscloseForce {
		details = s.publisherDetails()
	}
	if !s.runOnPublish(ctx, h, req, m.event, exclude, m.eligible, nil, details, nil, func(err error) {
		if err != nil {
			s.sendTopicFailureV1(uri, "onPublish", err)
		}
	}) {
		s.sendTopicErrorV1(uri, "onPublish", errDescBusy, 503)
	}
	return nil
}

// sendTopicErrorV1 sends the bundle's topic CALLERROR for a topic request
// the node refused: event is the callback's name in the bundle
// ("onSubscribe", "onUnSubscribe", "onPublish").
func (s *Session) sendTopicErrorV1(uri, event, desc string, code int) {
	s.send("CALLERROR", encodeCallErrorV1(topicCallID(uri), uri, desc, topicDetails(event)(code)))
}

// sendTopicFailureV1 sends the bundle's topic CALLERROR for a topic
// callback that failed with err.
func (s *Session) sendTopicFailureV1(uri, event string, err error) {
	s.send("CALLERROR", s.handlerErrorV1(topicCallID(uri), uri, err, topicDetails(event)))
}

// handlerErrorV1 builds the CALLERROR for a handler's error (see
// handlerFailure): its URI defaults to the request's, and the handler's
// details, when it gave some, replace the bundle's details.
func (s *Session) handlerErrorV1(callID json.RawMessage, uri string, err error, details func(code int) []byte) []byte {
	f := s.describeFailure(uri, err)
	if f.uri == "" {
		f.uri = uri
	}
	d := f.details
	if d == nil {
		d = details(f.code)
	}
	return encodeCallErrorV1(callID, f.uri, f.desc, d)
}
