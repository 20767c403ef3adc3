package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// The steps of CALL, SUBSCRIBE, UNSUBSCRIBE and PUBLISH that both
// protocols take once a message is parsed and its URI checked: routing and
// access rules, running the handler (inline, or offloaded: offload.go), and
// what a client is told of a failure. v1.go and v2.go word the answers.

// refusal is a CALL the node turns down itself, before any handler runs,
// with what the client is told: the same description in both protocols,
// the code of the v1 CALLERROR details, the URI of the v2 ERROR.
type refusal struct {
	desc  string
	code  int
	uriV2 string
}

// routeCall finds the route and method for a CALL of uri and checks the
// route's access rule. A refusal is logged and counted; a call without a
// route is answered (404) where the bundle threw and left the client
// waiting forever.
func (s *Session) routeCall(uri string) (*route[*rpcHandler], handler.Request, handler.RPCMethod, *refusal) {
	r, attrs, ok := s.node.rpcRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no rpc route", "uri", uri)
		s.node.obs.RoutingMiss("rpc")
		return nil, handler.Request{}, nil, &refusal{fmt.Sprintf("Unable to find route for %q", uri), 404, errURINoSuchProcedure}
	}
	if !s.allowed(r.access) {
		s.logAt(slog.LevelInfo, "wamp: rpc access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("rpc")
		return nil, handler.Request{}, nil, &refusal{"Access denied", 403, errURINotAuthorized}
	}
	method, ok := r.handler.lookup(attrs["method"])
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: rpc method not found", "uri", uri, "route", r.name, "handler", r.handler.rpc.Name(), "method", attrs["method"])
		s.node.obs.RoutingMiss("rpc")
		return nil, handler.Request{}, nil, &refusal{"Could not execute RPC callback, method not found", 404, errURINoSuchProcedure}
	}
	return r, handler.Request{Route: r.name, URI: uri, Attributes: attrs}, method, nil
}

// callMethod runs an RPC method and encodes its result. It returns the
// handler's error, or a nil result for what the bundle treats as a failed
// call (null, false, or a result that cannot be encoded), and reports the
// call to the observer.
func (s *Session) callMethod(ctx context.Context, r *route[*rpcHandler], method handler.RPCMethod, req handler.Request, params json.RawMessage) ([]byte, error) {
	var result any
	start := time.Now()
	err := s.invoke(ctx, true, "call", req.URI, func(ctx context.Context) error {
		var err error
		result, err = method(ctx, s, req, params)
		return err
	})
	if err != nil {
		s.node.obs.Call(r.handler.rpc.Name(), time.Since(start), true)
		// An error the handler meant for the client (a *handler.Error
		// under 500: bad arguments, not allowed) is the call's answer,
		// not the gateway's problem.
		level := slog.LevelWarn
		if he := (*handler.Error)(nil); errors.As(err, &he) && he.Code > 0 && he.Code < 500 {
			level = slog.LevelDebug
		}
		s.logAt(level, "wamp: rpc handler failed", "uri", req.URI, "route", r.name, "err", err)
		return nil, err
	}
	out, encErr := appendJSON(nil, result)
	failed := encErr != nil || string(out) == "null" || string(out) == "false"
	s.node.obs.Call(r.handler.rpc.Name(), time.Since(start), failed)
	if failed {
		// The bundle treats null and false as a failed call; an
		// unencodable result is a handler bug of the same kind.
		if encErr != nil {
			s.logAt(slog.LevelWarn, "wamp: rpc result not JSON-encodable", "uri", req.URI, "route", r.name, "err", encErr)
		} else {
			s.logAt(slog.LevelWarn, "wamp: rpc handler returned a failed result", "result", string(out), "uri", req.URI, "route", r.name)
		}
		return nil, nil
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

// newSubscription routes a SUBSCRIBE to uri and adds the subscription
// (addSub). When it does not, it returns ErrNoRoute or errDenied (both
// logged and counted), or errTooMany. Nothing is kept for a topic without
// a route: nobody could ever publish to it.
func (s *Session) newSubscription(uri string) (*subscription, error) {
	if sub, err, reserved := s.reservedSubscription(uri); reserved {
		return sub, err
	}
	r, attrs, ok := s.node.topicRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no topic route for subscribe", "uri", uri)
		s.node.obs.RoutingMiss("topic")
		return nil, ErrNoRoute
	}
	sub := &subscription{route: r, uri: uri, attrs: attrs, presence: r.presence}
	err := s.addSub(uri, sub)
	if errors.Is(err, errDenied) {
		s.logAt(slog.LevelInfo, "wamp: subscribe access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("topic")
	}
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// runOnSubscribe runs a new subscription's OnSubscribe as a topic task (on
// the lane for an offloaded handler): first joined, if not nil, then the
// callback. When the callback fails, the subscription is undone, so that a
// handler can refuse a client by failing (Ratchet kept the client
// subscribed), and failed tells the client. It returns false, with the
// subscription undone, when the task is refused: the caller answers busy.
func (s *Session) runOnSubscribe(ctx context.Context, uri string, sub *subscription, joined func(), failed func(error)) bool {
	ref := topicRef{n: s.node, uri: uri}
	h := sub.handler()
	if s.topicTask(h, false, func() {
		if joined != nil {
			joined()
		}
		err := s.invoke(ctx, true, "onSubscribe", uri, func(ctx context.Context) error {
			return h.topic.OnSubscribe(ctx, s, ref, sub.request())
		})
		s.finishSubscribe(uri, sub, err)
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: topic subscribe failed", "uri", uri, "route", sub.route.name, "err", err)
			failed(err)
		}
	}) {
		return true
	}
	s.finishSubscribe(uri, sub, errBusy)
	return false
}

// runOnUnsubscribe tells the handler of a subscription the client took
// back (OnUnsubscribe, on the lane for an offloaded handler); onErr reports
// the handler's failure to the client. It is never refused: each follows a
// subscription that was taken, so the handler always hears of it.
func (s *Session) runOnUnsubscribe(ctx context.Context, uri string, sub *subscription, onErr func(error)) {
	h := sub.handler()
	s.topicTask(h, true, func() {
		if s.isFailed(sub) {
			return
		}
		err := s.invoke(ctx, true, "onUnSubscribe", uri, func(ctx context.Context) error {
			return h.topic.OnUnsubscribe(ctx, s, topicRef{n: s.node, uri: uri}, sub.request())
		})
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: topic unsubscribe failed", "uri", uri, "route", sub.route.name, "err", err)
			onErr(err)
		}
	})
}

// routePublish routes a PUBLISH to uri and checks the route's access rule.
// When it does not pass, it returns ErrNoRoute or errDenied, logged and
// counted.
// disclose is the route's publisher identification policy (see
// RouteConfig.Disclose): "" for allow.
func (s *Session) routePublish(uri string) (h *topicHandler, req handler.Request, disclose string, err error) {
	if isMetaTopic(uri) || strings.HasPrefix(uri, PresencePrefix) {
		// The node publishes meta and presence events; nobody else may.
		s.logAt(slog.LevelInfo, "wamp: publish to a reserved topic refused", "uri", uri)
		s.node.obs.AccessDenied("topic")
		return nil, handler.Request{}, "", errDenied
	}
	r, attrs, ok := s.node.topicRoutes.match(uri)
	if !ok {
		s.logAt(slog.LevelInfo, "wamp: no topic route for publish", "uri", uri)
		s.node.obs.RoutingMiss("topic")
		return nil, handler.Request{}, "", ErrNoRoute
	}
	if !s.allowed(r.access) {
		s.logAt(slog.LevelInfo, "wamp: publish access denied", "uri", uri, "route", r.name)
		s.node.obs.AccessDenied("topic")
		return nil, handler.Request{}, "", errDenied
	}
	return r.handler, handler.Request{Route: r.name, URI: uri, Attributes: attrs}, r.disclose, nil
}

// runOnPublish runs OnPublish as a topic task (on the lane for an
// offloaded handler); done gets the handler's error, nil on success, once
// a failure is logged. The publish never forwards by itself: the handler
// decides. pub, when not nil, is the publish's Audience for the TopicRef
// the handler gets (see published); details, when not nil, are the v2
// EVENT details disclosing the publisher (see publisherDetails); retain,
// when not nil, retains what the handler broadcasts (retain.go). It
// returns false when the task is refused: the caller answers busy.
func (s *Session) runOnPublish(ctx context.Context, h *topicHandler, req handler.Request, event json.RawMessage, exclude, eligible []string, pub *published, details []byte, retain *retainSpec, done func(error)) bool {
	return s.topicTask(h, false, func() {
		err := s.invoke(ctx, true, "onPublish", req.URI, func(ctx context.Context) error {
			ref := topicRef{n: s.node, uri: req.URI, pub: pub, details: details, retain: retain}
			return h.topic.OnPublish(ctx, s, ref, req, event, exclude, eligible)
		})
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: topic publish failed", "uri", req.URI, "route", req.Route, "err", err)
		}
		done(err)
	})
}

// errDescBusy answers a call, subscribe or publish refused at the bound of
// offloaded work.
const errDescBusy = "Too many calls in progress, try again later"

// handlerFailure is what a client is told of a handler's error. A
// *handler.Error controls it: its URI (the protocol's default when empty),
// description, code (500 when 0) and details (nil when it has none or they
// do not encode). Any other error is code 500 with its text, as the bundle
// reports an exception, except a panic, whose text stays in the log.
type handlerFailure struct {
	uri     string
	desc    string
	code    int
	details []byte
}

// describeFailure makes the handlerFailure for err, the error of a handler
// serving uri.
func (s *Session) describeFailure(uri string, err error) handlerFailure {
	var he *handler.Error
	if !errors.As(err, &he) {
		f := handlerFailure{desc: err.Error(), code: 500}
		if errors.Is(err, errPanic) {
			f.desc = "Internal Server Error"
		}
		return f
	}
	f := handlerFailure{uri: he.URI, desc: he.Desc, code: he.Code}
	if f.code == 0 {
		f.code = 500
	}
	if he.Details != nil {
		b, encErr := appendJSON(nil, he.Details)
		if encErr != nil {
			s.logAt(slog.LevelWarn, "wamp: handler error details not JSON-encodable", "uri", uri, "err", encErr)
		} else {
			f.details = b
		}
	}
	return f
}
