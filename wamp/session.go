package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Session is one client's WAMP session. It implements handler.Client.
//
// Handle is called by the connection's reader goroutine, one message at a
// time. Close and Reidentify may be called from any goroutine, at any time,
// any number of times.
type Session struct {
	// id, peer and proto come first: a fan-out reads exactly these of
	// every subscriber, and keeping them in one cache line halves its
	// cost.
	id    string
	peer  Peer
	proto Protocol

	node *Node
	// offloaded counts this session's offloaded work queued or running.
	offloaded atomic.Int64
	// lane runs this session's offloaded topic callbacks in order. It is
	// made on first use (by enqueueLane, with cb held) and then kept: most
	// sessions never offload a topic callback, and an idle one should not
	// carry it.
	lane *lane
	// numID is the WAMP v2 session id (id is its decimal form); 0 for v1.
	numID uint64
	// seq is the node-wide open order.
	seq uint64
	// connID is set in Open and never changes (id above neither).
	connID string
	// headers are ClientInfo.Headers, fixed at Open.
	headers map[string]string
	// extra is ClientInfo.Extra, fixed at Open.
	extra json.RawMessage

	// ident is the current identity. It is replaced as a whole by
	// Reidentify (with mu and the node's mu held, so that the client
	// index and subscription checks agree with it) and read without locks.
	ident atomic.Pointer[handler.Identity]

	// ctx is cancelled by Close so in-flight handler calls see it.
	ctx    context.Context
	cancel context.CancelFunc

	// cb is held by whoever runs this client's handler callbacks: the
	// reader for a whole Handle, or a goroutine running the work
	// Reidentify or Close left (dropped subscriptions' OnUnsubscribe, the
	// disconnect cleanup). It keeps handler callbacks for one client
	// sequential, as package handler promises. Only the reader ever waits
	// for it; everyone else uses TryLock and leaves the work to the
	// holder, who looks for work after releasing it (runPending).
	cb sync.Mutex

	// mu guards the fields below. It is never held across Peer.Send or a
	// handler callback.
	mu       sync.Mutex
	inHandle bool
	closing  bool
	cleaned  bool
	// drops are subscriptions Reidentify removed whose OnUnsubscribe has
	// not run yet.
	drops []drop

	// subs and subIDs are changed only under mu: by Handle (the reader),
	// Reidentify and cleanup. prefixes and joined are touched only by
	// Handle (and cleanup, which never overlaps it).
	subs     map[string]*subscription // by topic URI
	subIDs   map[uint64]string        // v2: subscription id -> topic URI
	prefixes map[string]string        // v1 CURIE prefixes
	joined   bool                     // v2: WELCOME sent
}

// sessionIdentity is the identity of the session with id sid as the node
// keeps it: info's, with its own copy of the roles (it is published
// immutable in Session.ident), and an anonymous client (no user, or
// Anonymous) named "anon-<sid>".
func sessionIdentity(info ClientInfo, sid string) *handler.Identity {
	id := info.Identity
	id.Roles = append([]string(nil), id.Roles...)
	if id.Anonymous || id.UserIdentifier == "" {
		id.Anonymous = true
		id.UserIdentifier = "anon-" + sid
	}
	return &id
}

type subscription struct {
	h      *topicHandler
	req    handler.Request
	access accessRule // of the route, rechecked by Reidentify
	subID  uint64     // v2 subscription id
	// subscribing is true while SUBSCRIBE is not finished (SUBSCRIBED
	// may not be sent yet, OnSubscribe is queued or running). Guarded by
	// Session.mu.
	subscribing bool
	// failed: OnSubscribe refused it, so it never was a subscription and
	// no unsubscribe is owed. Guarded by Session.mu.
	failed bool
}

// drop is a subscription Reidentify took away.
type drop struct {
	uri string
	sub *subscription
	// notify: a v2 client still has to get UNSUBSCRIBED (it could not be
	// sent at once because SUBSCRIBED was not out yet).
	notify bool
}

var _ handler.Client = (*Session)(nil)

// ID returns the WAMP session id sent in WELCOME: 128 random bits in hex
// for WAMP v1, the decimal form of the random integer id in [1, 2^53] for
// v2.
func (s *Session) ID() string { return s.id }

// Protocol returns the protocol the session speaks.
func (s *Session) Protocol() Protocol { return s.proto }

// ConnID implements handler.Client.
func (s *Session) ConnID() string { return s.connID }

// SessionID implements handler.Client; it equals ID.
func (s *Session) SessionID() string { return s.id }

// Identity implements handler.Client. It changes with Reidentify.
func (s *Session) Identity() handler.Identity { return *s.ident.Load() }

// UserIdentifier implements handler.Client. It changes with Reidentify.
func (s *Session) UserIdentifier() string { return s.ident.Load().UserIdentifier }

// Anonymous implements handler.Client. It changes with Reidentify.
func (s *Session) Anonymous() bool { return s.ident.Load().Anonymous }

// Roles implements handler.Client; the slice is a copy. They change with
// Reidentify.
func (s *Session) Roles() []string { return append([]string(nil), s.ident.Load().Roles...) }

// Extra implements handler.Client: what the application attached on
// connect, fixed for the life of the connection.
func (s *Session) Extra() json.RawMessage { return s.extra }

// Firewall implements handler.Client. It changes with Reidentify.
func (s *Session) Firewall() string { return s.ident.Load().Firewall }

// HandshakeHeader returns a handshake request header the gateway kept for
// handlers (ClientInfo.Headers), or "". It lets an HTTP upstream forward,
// say, the browser's Cookie to the PHP app.
func (s *Session) HandshakeHeader(name string) string {
	return s.headers[textproto.CanonicalMIMEHeaderKey(name)]
}

// allowed reports whether the current identity passes a route's access
// rule.
func (s *Session) allowed(a accessRule) bool {
	id := s.ident.Load()
	return a.allows(id.Anonymous, id.Roles)
}

// Handle processes one incoming text message. It returns an error wrapping
// ErrProtocol for input that is not valid WAMP v1 (the gateway should close
// with 1007, as Ratchet does), ErrClosed after Close, and nil otherwise:
// routing misses and handler failures are reported to the client as
// CALLERROR or logged, never returned. ctx should be the connection's
// context; handler calls derive from it.
func (s *Session) Handle(ctx context.Context, msg []byte) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.inHandle {
		s.mu.Unlock()
		return errConcurrentHandle
	}
	s.inHandle = true
	s.mu.Unlock()
	if !s.cb.TryLock() {
		// Reidentify's or Close's leftover callbacks are running: wait
		// for them, to keep this client's callbacks in order.
		s.cb.Lock()
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			s.endHandle()
			return ErrClosed
		}
	}
	defer s.endHandle()
	if ctx == nil {
		ctx = context.Background()
	}
	if s.proto == ProtocolV2JSON {
		return s.handleV2(ctx, msg)
	}

	m, err := parseMessage(msg, s.node.limits.MaxJSONDepth)
	if err != nil {
		s.node.obs.MessageIn(ProtocolV1, "INVALID")
		return err
	}
	s.node.obs.MessageIn(ProtocolV1, typeName(m.typ))
	switch m.typ {
	case msgPrefix:
		return s.handlePrefix(m)
	case msgCall:
		return s.handleCall(ctx, m)
	case msgSubscribe:
		return s.handleSubscribe(ctx, m)
	case msgUnsubscribe:
		return s.handleUnsubscribe(ctx, m)
	case msgPublish:
		return s.handlePublish(ctx, m)
	}
	return protoErr("invalid WAMP message type %d", m.typ)
}

// endHandle ends a Handle call, which holds cb: it runs the drops
// Reidentify left meanwhile, then releases cb and runs what is left
// (cleanup, if Close came during the call).
func (s *Session) endHandle() {
	for {
		s.mu.Lock()
		drops := s.drops
		s.drops = nil
		if len(drops) == 0 {
			s.inHandle = false
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		s.runDrops(drops)
	}
	s.cb.Unlock()
	s.runPending()
}

// Close ends the session: it cancels in-flight handler calls, unsubscribes
// every topic (calling each topic handler's OnUnsubscribe, as the bundle
// does on disconnect) and removes the client from the ClientManipulator. If
// a Handle call (or callbacks left by Reidentify) is in flight, that
// cleanup runs when it returns, so Close never waits for a handler.
// Idempotent.
func (s *Session) Close() {
	s.cancel()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.runPending()
}

// runPending runs the callbacks left for this client (dropped
// subscriptions, then the disconnect cleanup once closing and no Handle is
// in flight) unless someone else holds cb: the holder calls runPending
// after releasing it, so nothing is stranded.
func (s *Session) runPending() {
	for {
		s.mu.Lock()
		pending := len(s.drops) > 0 || s.closing && !s.inHandle && !s.cleaned
		s.mu.Unlock()
		if !pending || !s.cb.TryLock() {
			return
		}
		for {
			s.mu.Lock()
			drops := s.drops
			s.drops = nil
			clean := len(drops) == 0 && s.closing && !s.inHandle && !s.cleaned
			if clean {
				s.cleaned = true
			}
			s.mu.Unlock()
			if len(drops) > 0 {
				s.runDrops(drops)
				continue
			}
			if clean {
				s.cleanup()
			}
			break
		}
		s.cb.Unlock()
	}
}

// cleanup unsubscribes everything and forgets the session. It runs once,
// with cb held and no Handle in flight. The handlers hear of it off the
// calling goroutine (the transport's, at a disconnect), in one task on the
// session's lane: after the offloaded callbacks still queued there, and
// one callback per handler when it takes a batch.
func (s *Session) cleanup() {
	s.mu.Lock()
	subs := s.subs
	s.subs = map[string]*subscription{}
	clear(s.subIDs)
	for id := range subs {
		s.node.broker.remove(id, s)
	}
	s.mu.Unlock()
	s.node.forget(s)
	if len(subs) == 0 {
		return
	}
	left := make([]drop, 0, len(subs))
	for id, sub := range subs {
		left = append(left, drop{uri: id, sub: sub})
	}
	sort.Slice(left, func(i, j int) bool { return left[i].uri < left[j].uri })
	s.enqueueLane(true, func() { s.announceLeave(handler.LeaveDisconnect, left) })
}

// announceLeave tells the handlers that the client left the topics of left (sorted
// by URI) for reason: a BatchUnsubscriber once for all its topics, any
// other handler once per topic. A v2 client whose drop asks for it first
// gets its UNSUBSCRIBED. The callbacks are not tied to the session's
// context, which is cancelled by then: the leave is announced even after
// the client went.
func (s *Session) announceLeave(reason string, left []drop) {
	type group struct {
		h    *topicHandler
		subs []drop
	}
	var groups []group
	s.mu.Lock()
	for _, d := range left {
		if d.sub.failed {
			continue // OnSubscribe refused it: nothing to undo
		}
		i := len(groups) - 1
		for ; i >= 0 && groups[i].h != d.sub.h; i-- {
		}
		if i < 0 {
			groups = append(groups, group{h: d.sub.h})
			i = len(groups) - 1
		}
		groups[i].subs = append(groups[i].subs, d)
	}
	s.mu.Unlock()
	for _, g := range groups {
		for _, d := range g.subs {
			if d.notify {
				s.send("UNSUBSCRIBED", encodeRevokedV2(d.sub.subID, errURINotAuthorized))
			}
		}
		if g.h.batch != nil {
			subs := make([]handler.Subscription, len(g.subs))
			for i, d := range g.subs {
				subs[i] = handler.Subscription{Topic: topicRef{n: s.node, id: d.uri}, Request: d.sub.req}
			}
			err := s.invoke(context.Background(), false, "onUnSubscribeBatch", g.subs[0].uri, func(ctx context.Context) error {
				return g.h.batch.OnUnsubscribeBatch(ctx, s, reason, subs)
			})
			if err != nil {
				s.logAt(slog.LevelWarn, "wamp: topic handler failed on leave", "reason", reason, "topics", len(subs), "handler", g.h.h.Name(), "err", err)
			}
			continue
		}
		for _, d := range g.subs {
			err := s.invoke(context.Background(), false, "onUnSubscribe", d.uri, func(ctx context.Context) error {
				return g.h.h.OnUnsubscribe(ctx, s, topicRef{n: s.node, id: d.uri}, d.sub.req)
			})
			if err != nil {
				s.logAt(slog.LevelWarn, "wamp: topic handler failed on leave", "reason", reason, "topic", d.uri, "route", d.sub.req.Route, "err", err)
			}
		}
	}
}

func (s *Session) checkURI(what, uri string) error {
	if len(uri) > s.node.limits.MaxURILength {
		return limitErr(LimitURILength, "%s longer than %d bytes", what, s.node.limits.MaxURILength)
	}
	return nil
}

// errDescBusy answers a call, subscribe or publish refused at the bound of
// offloaded work.
const errDescBusy = "Too many calls in progress, try again later"

var (
	errDenied  = errors.New("access denied")
	errTooMany = errors.New("too many subscriptions")
	errBusy    = errors.New("too much offloaded work in progress")
)

// addSub adds sub (for uri) to the session and the broker, marked as
// subscribing, unless the current identity fails its route's access rule
// (errDenied) or the session is at its limit (errTooMany). The check and
// the insertion are atomic with respect to Reidentify.
func (s *Session) addSub(uri string, sub *subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.allowed(sub.access) {
		return errDenied
	}
	if len(s.subs) >= s.node.limits.MaxSubscriptions {
		return errTooMany
	}
	sub.subscribing = true
	sub.subID = s.node.broker.add(s.node, uri, s, sub.h.h, sub.req)
	s.subs[uri] = sub
	if s.subIDs != nil {
		s.subIDs[sub.subID] = uri
	}
	return nil
}

// subscribed ends a SUBSCRIBE once OnSubscribe returned err. On failure
// the subscription is undone; if Reidentify dropped it meanwhile, its
// queued drop is cancelled, since OnSubscribe failed and the caller
// reports the failure instead.
func (s *Session) subscribed(uri string, sub *subscription, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.subscribing = false
	if err == nil {
		return
	}
	sub.failed = true
	if s.subs[uri] == sub {
		delete(s.subs, uri)
		if s.subIDs != nil {
			delete(s.subIDs, sub.subID)
		}
		s.node.broker.remove(uri, s)
		return
	}
	for i, d := range s.drops {
		if d.sub == sub {
			s.drops = append(s.drops[:i], s.drops[i+1:]...)
			break
		}
	}
}

// takeSub removes the subscription to uri, returning it, or nil when the
// session is not subscribed (any more).
func (s *Session) takeSub(uri string) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[uri]
	if sub == nil {
		return nil
	}
	delete(s.subs, uri)
	if s.subIDs != nil {
		delete(s.subIDs, sub.subID)
	}
	s.node.broker.remove(uri, s)
	return sub
}

// unsubscribed tells the handler of a subscription the client took back
// (OnUnsubscribe, on the lane for an offloaded handler); onErr reports the
// handler's failure to the client. It is never refused: each follows a
// subscription that was taken, so the handler always hears of it.
func (s *Session) unsubscribed(ctx context.Context, uri string, sub *subscription, onErr func(error)) {
	s.topicTask(sub.h, true, func() {
		if s.isFailed(sub) {
			return
		}
		err := s.invoke(ctx, true, "onUnSubscribe", uri, func(ctx context.Context) error {
			return sub.h.h.OnUnsubscribe(ctx, s, topicRef{n: s.node, id: uri}, sub.req)
		})
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: topic unsubscribe failed", "uri", uri, "route", sub.req.Route, "err", err)
			onErr(err)
		}
	})
}

// isFailed reports whether OnSubscribe refused sub.
func (s *Session) isFailed(sub *subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sub.failed
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
		s.node.obs.Call(r.handler.h.Name(), time.Since(start), true)
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
	s.node.obs.Call(r.handler.h.Name(), time.Since(start), failed)
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

// send sends one message of type typ (for the observer) to the client.
func (s *Session) send(typ string, msg []byte) {
	if !s.peer.Send(msg) {
		s.logger().Debug("wamp: peer refused message", "type", typ)
		return
	}
	s.node.obs.MessagesOut(s.proto, typ, 1)
}

// errPanic marks a recovered handler panic; its text is not sent to the
// client because it may expose internals.
var errPanic = errors.New("handler panicked")

// invoke runs a handler callback with a bounded context that also ends when
// the session closes, and turns a panic into an error so one faulty plugin
// cannot take the gateway down.
//
// linked ties the call to the session's lifetime; the disconnect callbacks
// run after Close and are not linked, or they would start cancelled.
func (s *Session) invoke(parent context.Context, linked bool, what, uri string, fn func(ctx context.Context) error) (err error) {
	var ctx context.Context
	var cancel context.CancelFunc
	if s.node.callTimeout > 0 {
		ctx, cancel = context.WithTimeout(parent, s.node.callTimeout)
	} else {
		ctx, cancel = context.WithCancel(parent)
	}
	stop := func() bool { return false }
	if linked {
		// If Close already happened this cancels at once, which is right:
		// nobody is left to receive the answer.
		stop = context.AfterFunc(s.ctx, cancel)
	}
	defer func() {
		stop()
		cancel()
		if p := recover(); p != nil {
			s.logger().Error("wamp: handler panic", "what", what, "uri", uri, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = errPanic
		}
	}()
	return fn(ctx)
}

// logger returns the node's logger with this session's attributes. It is
// built when something is logged, not kept per session: an idle session
// would otherwise hold a few hundred bytes of attributes for nothing.
func (s *Session) logger() *slog.Logger {
	return s.node.log.With("session", s.id, "conn", s.connID, "protocol", s.proto.String())
}

// logAt logs msg at level for this session. Most session lines are caused
// by the client, one per message: the gateway bounds them with a
// rate-limiting slog handler (gateway/loglimit.go), which is why message
// texts here are constants and the variable parts are attributes.
func (s *Session) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !s.node.log.Enabled(ctx, level) {
		return
	}
	s.logger().Log(ctx, level, msg, args...)
}
