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

// encodeRevokedV2 is the router-initiated UNSUBSCRIBED [35, 0,
// {"subscription": subID, "reason": reason}].
func encodeRevokedV2(subID uint64, reason string) []byte {
	b := []byte(`[35,0,{"subscription":`)
	b = appendID(b, subID)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	return append(b, "}]"...)
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
