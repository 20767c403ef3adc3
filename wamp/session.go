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
	"strconv"
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
	// joined (v2: WELCOME sent) is touched only by Handle (and cleanup,
	// which never overlaps it); here in proto's padding.
	joined bool
	// callsEnded (Close happened: a call linked from now on is cancelled
	// at once) is guarded by callMu; here in proto's padding.
	callsEnded bool
	// callSeq is the last linkedCall id given out (0 is none); guarded by
	// callMu, here in proto's padding.
	callSeq uint32

	node *Node
	// lane runs this session's offloaded topic callbacks in order. It is
	// made on first use (by enqueueLane, with cb held) and then kept: most
	// sessions never offload a topic callback, and an idle one should not
	// carry it.
	lane *lane
	// seq is the node-wide open order.
	seq uint64
	// connectedAt is ClientInfo.ConnectedAt in Unix nanoseconds: 8 bytes,
	// where a time.Time would take the Session to the next size class.
	connectedAt int64
	// connID is set in Open and never changes (id above neither). A v2
	// session's numeric id is not kept: id is its decimal form (v2ID).
	connID string
	// opened holds ClientInfo.Headers and Extra, fixed at Open; nil when
	// the handshake left neither (no upstream forwards headers, no connect
	// event attached extra), which saves 24 B of every such session.
	opened *openedInfo

	// identity is the client's current one. It is replaced as a whole by
	// Reidentify (with mu and the node's mu held, so that the client
	// index and subscription checks agree with it) and read without locks.
	identity atomic.Pointer[handler.Identity]

	// callMu guards callSeq, callsEnded, call1ID, call1 and callMore: the
	// handler calls in flight that Close cancels (invoke's linked ones);
	// and calls, the running v2 calls (cancel.go). A plain list, not a
	// context.Context per session: a session's context grew a children
	// map and a done channel the first time a call linked to it (≈ 460 B
	// per idle connection that ever made a call) and kept them. call1
	// (with call1ID) is the one call in flight, the common case; callMore
	// the others, one small node each, nil when there are none. The small
	// fields sit in other fields' padding: the Session stays in the
	// 192-byte size class (TestSessionSizeClass).
	callMu   sync.Mutex
	call1    context.CancelFunc
	callMore *linkedCall
	// calls lists the running v2 calls by request id, for CANCEL and
	// progressive results (cancel.go). Made on the first call and let go
	// when the last ends: an idle session carries no map.
	calls map[uint64]*pendingCall

	// cb is held by whoever runs this client's handler callbacks: the
	// reader for a whole Handle, or a goroutine running the work
	// Reidentify or Close deferred (revoked subscriptions' OnUnsubscribe,
	// the disconnect cleanup). It keeps handler callbacks for one client
	// sequential, as package handler promises. Only the reader ever waits
	// for it; everyone else uses TryLock and leaves the work to the
	// holder, who looks for work after releasing it (runDeferred).
	cb sync.Mutex

	// mu guards inHandle, closing, cleaned and subs, and the sessionMore
	// fields its comments name. It is never held across Peer.Send or a
	// handler callback.
	mu       sync.Mutex
	inHandle bool
	closing  bool
	cleaned  bool
	// call1ID is guarded by callMu; here for the padding.
	call1ID uint32

	// subs is changed only under mu: by Handle (the reader),
	// Reidentify and cleanup.
	subs subSet // by topic URI, and v2 subscription id
	// welcomed is joined once set, for readers other than Handle (the
	// session meta API); it is never cleared, and a closed session leaves
	// the node's index anyway.
	welcomed atomic.Bool
	// offloaded counts this session's offloaded work queued or running
	// (at most Limits.MaxOffloadedCallsPerSession, plus the must work a
	// disconnect or an identity change leaves, bounded by the
	// subscriptions): 4 bytes, beside welcomed.
	offloaded atomic.Int32
	// more holds what an idle session never uses (sessionMore): made on
	// first use by whoever needs it (more()), then kept, never replaced.
	more atomic.Pointer[sessionMore]
}

// openedInfo is what a session keeps of ClientInfo beyond the identity,
// fixed at Open and never modified (see Session.opened).
type openedInfo struct {
	// headers are ClientInfo.Headers.
	headers map[string]string
	// extra is ClientInfo.Extra.
	extra json.RawMessage
}

// sessionMore is the part of a Session that an idle session, subscribed to
// a topic or a few, never uses: CURIE prefixes, revoked subscriptions,
// pattern subscriptions. It is made on first use (Session.more) and kept;
// moving these fields (56 B of the Session, with grants a pointer then)
// out of it took the Session from the 320-byte size class to the 192-byte
// one, with the other cuts (issue 19). Each field keeps the guard it had
// in the Session.
type sessionMore struct {
	// grants caches the access decisions of topics delivered through the
	// pattern subscriptions (its own mu guards it) for fan-outs, which
	// read it without Session.mu. It is in this struct, not behind a
	// pointer of its own, and first: a pattern fan-out reaches it from
	// the Session through one pointer, as it did when the Session held
	// the pointer.
	grants topicGrants
	// prefixes are the v1 CURIE prefixes; touched only by Handle (and
	// cleanup, which never overlaps it).
	prefixes map[string]string
	// revoked are subscriptions Reidentify took whose handlers have not
	// heard of it yet (announceRevoked). Guarded by Session.mu.
	revoked []leaving
	// patKeys and patIDs are the pattern subscriptions (pattern.go), by
	// pattern and by subscription id; nil until the first one. Guarded by
	// Session.mu.
	patKeys map[patternKey]uint64
	patIDs  map[uint64]patternKey
}

// moreFields returns the session's sessionMore, making it on first use.
// Any goroutine may call it: the pointer is set once, by compare and swap,
// and never changes after.
func (s *Session) moreFields() *sessionMore {
	if m := s.more.Load(); m != nil {
		return m
	}
	m := &sessionMore{}
	if s.more.CompareAndSwap(nil, m) {
		return m
	}
	return s.more.Load()
}

// takeRevoked returns and clears the revoked subscriptions; s.mu must be
// held.
func (s *Session) takeRevoked() []leaving {
	m := s.more.Load()
	if m == nil {
		return nil
	}
	revoked := m.revoked
	m.revoked = nil
	return revoked
}

// hasRevoked reports whether revoked subscriptions wait to be announced;
// s.mu must be held.
func (s *Session) hasRevoked() bool {
	m := s.more.Load()
	return m != nil && len(m.revoked) > 0
}

// patternCount is the number of pattern subscriptions; s.mu must be held.
func (s *Session) patternCount() int {
	if m := s.more.Load(); m != nil {
		return len(m.patKeys)
	}
	return 0
}

// v2ID returns the WAMP v2 session id (id is its decimal form), 0 for a
// v1 session. It is parsed from id rather than kept: only WELCOME, the
// meta API and publisher disclosure need it, and 8 bytes took the Session
// over a size class.
func (s *Session) v2ID() uint64 {
	if !s.proto.V2() {
		return 0
	}
	id, _ := strconv.ParseUint(s.id, 10, 64)
	return id
}

// sessionIdentity is the identity of the session with id sid as the node
// keeps it (published immutable in Session.identity): info's, and an
// anonymous client (no user, or Anonymous) named "anon-<sid>". The roles
// are info's slice, not a copy: handler.Identity's Roles is read-only
// wherever it goes (ClientInfo.Identity says so to the gateway), and a
// copy per session was 48 B of every idle connection.
func sessionIdentity(info ClientInfo, sid string) *handler.Identity {
	who := info.Identity
	if who.Anonymous || who.UserIdentifier == "" {
		who.Anonymous = true
		who.UserIdentifier = "anon-" + sid
	}
	return &who
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
func (s *Session) Identity() handler.Identity { return *s.identity.Load() }

// UserIdentifier implements handler.Client. It changes with Reidentify.
func (s *Session) UserIdentifier() string { return s.identity.Load().UserIdentifier }

// Anonymous implements handler.Client. It changes with Reidentify.
func (s *Session) Anonymous() bool { return s.identity.Load().Anonymous }

// Roles implements handler.Client; the slice is a copy. They change with
// Reidentify.
func (s *Session) Roles() []string { return append([]string(nil), s.identity.Load().Roles...) }

// ConnectedAt returns when the connection was accepted
// (ClientInfo.ConnectedAt), for the gateway's client storage.
func (s *Session) ConnectedAt() time.Time { return time.Unix(0, s.connectedAt) }

// Extra implements handler.Client: what the application attached on
// connect, fixed for the life of the connection.
func (s *Session) Extra() json.RawMessage {
	if s.opened == nil {
		return nil
	}
	return s.opened.extra
}

// Firewall implements handler.Client. It changes with Reidentify.
func (s *Session) Firewall() string { return s.identity.Load().Firewall }

// HandshakeHeader returns a handshake request header the gateway kept for
// handlers (ClientInfo.Headers), or "". It lets an HTTP upstream forward,
// say, the browser's Cookie to the PHP app.
func (s *Session) HandshakeHeader(name string) string {
	if s.opened == nil {
		return ""
	}
	return s.opened.headers[textproto.CanonicalMIMEHeaderKey(name)]
}

// allowed reports whether the current identity passes a route's access
// rule.
func (s *Session) allowed(a accessRule) bool {
	who := s.identity.Load()
	return a.allows(who.Anonymous, who.Roles)
}

// Handle processes one incoming message in the session's protocol
// (handleV1 in v1.go, handleV2 in v2.go): a text message, or for a
// Protocol.Binary session a binary one, which is transcoded to JSON first
// (serializer.go). It returns an error wrapping
// ErrProtocol for input that is not valid in that protocol (the gateway
// should close with 1007, as Ratchet does; a *LimitError for a client over
// one of the Limits), ErrGoodbye when a v2 session ended normally,
// ErrClosed after Close, and nil otherwise: routing misses and handler
// failures are reported to the client (v1 CALLERROR, v2 ERROR) or logged,
// never returned. ctx should be the connection's context; handler calls
// derive from it.
func (s *Session) Handle(ctx context.Context, msg []byte) error {
	if err := s.beginHandle(); err != nil {
		return err
	}
	defer s.endHandle()
	if ctx == nil {
		ctx = context.Background()
	}
	if s.proto.Binary() {
		var err error
		if msg, err = binaryToJSON(s.proto, msg, s.node.limits.MaxJSONDepth); err != nil {
			s.node.obs.MessageIn(s.proto, "INVALID")
			return s.violation(err)
		}
		if max := s.node.limits.MaxMessageSize; max > 0 && len(msg) > max {
			s.node.obs.MessageIn(s.proto, "INVALID")
			return limitErr(LimitMessageSize, "binary message transcoded into %d bytes of JSON, at most %d", len(msg), max)
		}
	}
	if s.proto.V2() {
		return s.handleV2(ctx, msg)
	}
	return s.handleV1(ctx, msg)
}

// beginHandle starts a Handle call: it marks the session as in a Handle
// call and takes cb, waiting for callbacks Reidentify or Close deferred to
// keep this client's callbacks in order. It returns ErrClosed (having
// ended the call) once the session is closing, and errConcurrentHandle
// for a second reader.
func (s *Session) beginHandle() error {
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
	return nil
}

// endHandle ends a Handle call, which holds cb: it announces the
// subscriptions Reidentify revoked meanwhile, then releases cb and runs
// what is left (cleanup, if Close came during the call).
func (s *Session) endHandle() {
	for {
		s.mu.Lock()
		revoked := s.takeRevoked()
		if len(revoked) == 0 {
			s.inHandle = false
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		s.announceRevoked(revoked)
	}
	s.cb.Unlock()
	s.runDeferred()
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
	s.runDeferred()
}

// runDeferred runs the callbacks deferred for this client (revoked
// subscriptions, then the disconnect cleanup once closing and no Handle is
// in flight) unless someone else holds cb: the holder calls runDeferred
// after releasing it, so nothing is stranded.
func (s *Session) runDeferred() {
	for {
		s.mu.Lock()
		pending := s.hasRevoked() || s.closing && !s.inHandle && !s.cleaned
		s.mu.Unlock()
		if !pending || !s.cb.TryLock() {
			return
		}
		for {
			s.mu.Lock()
			revoked := s.takeRevoked()
			clean := len(revoked) == 0 && s.closing && !s.inHandle && !s.cleaned
			if clean {
				s.cleaned = true
			}
			s.mu.Unlock()
			if len(revoked) > 0 {
				s.announceRevoked(revoked)
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
	s.subs = subSet{}
	for sub := range subs.all() {
		s.node.broker.remove(sub.uri, s)
		s.node.unsubscribed(sub.uri, s, sub)
	}
	s.dropPatternSubs()
	s.mu.Unlock()
	s.node.forget(s)
	s.node.sessionLeft(s)
	if subs.len() == 0 {
		return
	}
	left := make([]leaving, 0, subs.len())
	for sub := range subs.all() {
		left = append(left, leaving{uri: sub.uri, sub: sub})
	}
	sort.Slice(left, func(i, j int) bool { return left[i].uri < left[j].uri })
	s.enqueueLane(true, func() { s.announceLeave(handler.LeaveDisconnect, left) })
}

// checkURI refuses a URI (or prefix) longer than Limits.MaxURILength;
// what names it in the error.
func (s *Session) checkURI(what, uri string) error {
	if len(uri) > s.node.limits.MaxURILength {
		return limitErr(LimitURILength, "%s longer than %d bytes", what, s.node.limits.MaxURILength)
	}
	return nil
}

// send sends one message of type typ (for the observer) to the client;
// msg is JSON, transcoded here for a Protocol.Binary session.
func (s *Session) send(typ string, msg []byte) {
	if s.proto.Binary() {
		var err error
		if msg, err = jsonToBinary(s.proto, msg); err != nil {
			s.logger().Error("wamp: cannot transcode message", "type", typ, "err", err)
			return
		}
	}
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
	var link uint32
	if linked {
		// If Close already happened this cancels at once, which is right:
		// nobody is left to receive the answer.
		link = s.linkCall(cancel)
	}
	defer func() {
		s.unlinkCall(link)
		cancel()
		if p := recover(); p != nil {
			s.logger().Error("wamp: handler panic", "what", what, "uri", uri, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = errPanic
		}
	}()
	return fn(ctx)
}

// linkedCall is a handler call in flight that Close cancels, beyond the
// session's first (Session.callMore): a list of one node per call, so that
// a session keeps nothing once its calls ended, and the Session holds one
// pointer where a slice header took 24 bytes.
type linkedCall struct {
	id     uint32
	cancel context.CancelFunc
	next   *linkedCall
}

// linkCall records cancel to be called by Close and returns its id for
// unlinkCall; after Close it cancels at once and returns 0.
func (s *Session) linkCall(cancel context.CancelFunc) uint32 {
	s.callMu.Lock()
	if s.callsEnded {
		s.callMu.Unlock()
		cancel()
		return 0
	}
	s.callSeq++
	if s.callSeq == 0 { // wrapped: 0 means none
		s.callSeq = 1
	}
	id := s.callSeq
	if s.call1 == nil {
		s.call1, s.call1ID = cancel, id
	} else {
		s.callMore = &linkedCall{id: id, cancel: cancel, next: s.callMore}
	}
	s.callMu.Unlock()
	return id
}

// unlinkCall forgets the call linkCall returned id for (0: none).
func (s *Session) unlinkCall(id uint32) {
	if id == 0 {
		return
	}
	s.callMu.Lock()
	defer s.callMu.Unlock()
	if s.call1ID == id && s.call1 != nil {
		s.call1, s.call1ID = nil, 0
		return
	}
	for p := &s.callMore; *p != nil; p = &(*p).next {
		if (*p).id == id {
			*p = (*p).next
			return
		}
	}
}

// cancel cancels every linked call in flight and every one linked later:
// what Close (and closeInHandle) owe the handlers still running.
func (s *Session) cancel() {
	s.callMu.Lock()
	s.callsEnded = true
	one, rest := s.call1, s.callMore
	s.call1, s.call1ID, s.callMore = nil, 0, nil
	s.callMu.Unlock()
	if one != nil {
		one()
	}
	for c := rest; c != nil; c = c.next {
		c.cancel()
	}
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
