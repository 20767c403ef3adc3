package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Presence (RouteConfig.Presence): who is subscribed to a topic, told as
// join and leave events on a companion topic and listed by an RPC, both in
// WAMP v1 and v2, so that autobahn 0.8 (GosWebSocketBundle) clients and
// autobahn-js 26 clients use it alike.
//
//   - The companion topic of topic T is PresencePrefix+T. A client may
//     subscribe to it when T's route has presence and the client could
//     subscribe to T itself (the route's anonymous and roles rules and the
//     handler's SubscribeAuthorizer, rechecked when its identity changes,
//     like any subscription). Nobody may publish to it.
//   - Its events are one JSON object: {"event":"join"|"leave","topic":T,
//     "user":"alice"} for an authenticated user, {"event":...,"topic":T,
//     "user":null,"anonymous":true} for an anonymous client (its
//     anon-<session id> name stays private: session ids are what PUBLISH
//     exclude lists target). A user joins with its first subscription to T
//     (once the topic handler's OnSubscribe accepted it: a refused one
//     never shows) and leaves with its last one (unsubscribe, disconnect,
//     revocation, identity change): without a PresenceDirectory, counted
//     on this node; with one that EmitsEvents (the Redis client storage),
//     counted across all replicas by the directory, which also makes a
//     crashed replica's users leave. Each anonymous session joins and
//     leaves on its own. The events are broadcasts: with a Relay they
//     reach the companion's subscribers on every replica.
//   - The procedure PresenceList ("wsgate.presence.list") with the one
//     argument T returns PresenceList: at most PresenceListMax users,
//     sorted, the anonymous subscribers' count and whether the list was
//     truncated. With a PresenceDirectory (the Redis client storage) it
//     covers every replica, else this node's subscribers.

// PresencePrefix starts the companion topic of a presence topic.
const PresencePrefix = "wsgate.presence/"

// PresenceListProcedure is the procedure listing who is subscribed to a
// presence topic.
const PresenceListProcedure = "wsgate.presence.list"

// PresenceListMax bounds the users PresenceListProcedure returns (and the
// users each replica publishes to a PresenceDirectory).
const PresenceListMax = 1000

// PresenceList is what PresenceListProcedure returns.
type PresenceList struct {
	// Topic is the topic listed.
	Topic string `json:"topic"`
	// Users are the user identifiers of the authenticated subscribers,
	// sorted, at most PresenceListMax.
	Users []string `json:"users"`
	// Anonymous is how many anonymous sessions are subscribed (never
	// truncated).
	Anonymous int `json:"anonymous"`
	// Truncated is set when there were more users than Users holds.
	Truncated bool `json:"truncated"`
}

// PresenceDirectory shares presence between replicas (the gateway's Redis
// implementation in gateway/cluster). The node tells it when a topic's
// local presence changed; it reads the node's side with
// Node.LocalPresence and Node.PresenceTopics.
type PresenceDirectory interface {
	// Changed reports that topic's local presence changed. It is called
	// with session locks held: it must not block nor call back into the
	// node.
	Changed(topic string)
	// List returns the presence of topic on every replica, at most max
	// users. It may block (bounded by ctx); the node calls it off the
	// socket goroutines.
	List(ctx context.Context, topic string, max int) (PresenceList, error)
	// EmitsEvents reports whether the directory publishes the users'
	// joins and leaves itself (Node.PresenceEvent), once per change of the
	// cluster-wide presence; the node then publishes only anonymous
	// sessions' events, which are per session anyway.
	EmitsEvents() bool
}

// presenceTable is a node's presence: per presence topic, who of its
// local sessions is subscribed.
type presenceTable struct {
	// mu guards topics and everything in them.
	mu     sync.Mutex
	topics map[string]*presenceTopic
}

// presenceTopic is one topic's local presence.
type presenceTopic struct {
	// sessions maps each subscribed session to the key it joined under:
	// its user identifier, "" when anonymous (kept so that it leaves
	// under the same key after an identity change).
	sessions map[*Session]string
	// users counts the sessions of each authenticated user.
	users     map[string]int
	anonymous int
}

// presenceEvent encodes a join or leave event; user "" is anonymous.
func presenceEvent(kind, topic, user string) []byte {
	b := make([]byte, 0, 48+len(topic)+len(user))
	b = append(b, `{"event":`...)
	b = appendJSONString(b, kind)
	b = append(b, `,"topic":`...)
	b = appendJSONString(b, topic)
	if user == "" {
		return append(b, `,"user":null,"anonymous":true}`...)
	}
	b = append(b, `,"user":`...)
	b = appendJSONString(b, user)
	return append(b, '}')
}

// presenceKey is the key s is present under: its user identifier, "" when
// anonymous.
func presenceKey(s *Session) string {
	who := s.identity.Load()
	if who.Anonymous {
		return ""
	}
	return who.UserIdentifier
}

// join records s on topic and returns the join event to broadcast, nil
// when s's user was already present here.
func (p *presenceTable) join(topic string, s *Session) *presenceEv {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.topics == nil {
		p.topics = map[string]*presenceTopic{}
	}
	t := p.topics[topic]
	if t == nil {
		t = &presenceTopic{sessions: map[*Session]string{}, users: map[string]int{}}
		p.topics[topic] = t
	}
	if _, dup := t.sessions[s]; dup {
		return nil
	}
	key := presenceKey(s)
	t.sessions[s] = key
	if key == "" {
		t.anonymous++
		return &presenceEv{presenceEvent("join", topic, ""), true}
	}
	t.users[key]++
	if t.users[key] > 1 {
		return nil
	}
	return &presenceEv{presenceEvent("join", topic, key), false}
}

// leave forgets s on topic and returns the leave event to broadcast, nil
// when another session of s's user is still present here.
func (p *presenceTable) leave(topic string, s *Session) *presenceEv {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	if t == nil {
		return nil
	}
	key, ok := t.sessions[s]
	if !ok {
		return nil
	}
	delete(t.sessions, s)
	if len(t.sessions) == 0 {
		delete(p.topics, topic)
	}
	if key == "" {
		t.anonymous--
		return &presenceEv{presenceEvent("leave", topic, ""), true}
	}
	t.users[key]--
	if t.users[key] > 0 {
		return nil
	}
	delete(t.users, key)
	return &presenceEv{presenceEvent("leave", topic, key), false}
}

// list returns topic's local presence, at most max users.
func (p *presenceTable) list(topic string, max int) PresenceList {
	p.mu.Lock()
	t := p.topics[topic]
	out := PresenceList{Topic: topic, Users: []string{}}
	if t != nil {
		out.Anonymous = t.anonymous
		out.Users = make([]string, 0, min(len(t.users), max))
		for u := range t.users {
			out.Users = append(out.Users, u)
		}
	}
	p.mu.Unlock()
	slices.Sort(out.Users)
	if len(out.Users) > max {
		out.Users, out.Truncated = out.Users[:max], true
	}
	return out
}

// LocalPresence returns who of this node's sessions is subscribed to the
// presence topic topic, at most max users (for a PresenceDirectory).
func (n *Node) LocalPresence(topic string, max int) PresenceList {
	return n.presence.list(topic, max)
}

// PresenceTopics returns the presence topics this node has subscribers
// of (for a PresenceDirectory's refresh).
func (n *Node) PresenceTopics() []string {
	n.presence.mu.Lock()
	defer n.presence.mu.Unlock()
	out := make([]string, 0, len(n.presence.topics))
	for t := range n.presence.topics {
		out = append(out, t)
	}
	return out
}

// presenceEv is a local presence change: its event, and whether it is an
// anonymous session's.
type presenceEv struct {
	payload   []byte
	anonymous bool
}

// presenceChanged tells the directory that topic's local presence changed
// (ev nil: it did not) and broadcasts the event on the companion topic,
// on every replica; a user's event is left to a directory that emits
// them cluster-wide (PresenceDirectory.EmitsEvents).
func (n *Node) presenceChanged(topic string, ev *presenceEv) {
	if ev == nil {
		return
	}
	if n.presenceDir != nil {
		n.presenceDir.Changed(topic)
		if !ev.anonymous && n.presenceDir.EmitsEvents() {
			return
		}
	}
	n.broadcastPresence(topic, ev.payload)
}

// broadcastPresence broadcasts a presence event of topic on its companion
// topic, on every replica.
func (n *Node) broadcastPresence(topic string, event []byte) {
	if _, err := n.broadcast(PresencePrefix+topic, json.RawMessage(event), &Audience{}, true, nil); err != nil {
		n.log.Error("wamp: presence event not sent", "topic", topic, "err", err)
	}
}

// PresenceEvent broadcasts, on every replica, that user (an anonymous
// session when "") joined (join true) or left topic: a PresenceDirectory
// that EmitsEvents calls it once per change of the cluster-wide presence.
func (n *Node) PresenceEvent(topic string, join bool, user string) {
	kind := "leave"
	if join {
		kind = "join"
	}
	n.broadcastPresence(topic, presenceEvent(kind, topic, user))
}

// PresenceWatched returns the topics whose presence someone on this node
// watches (subscribers of their companion topics), for a
// PresenceDirectory that must notice crashed replicas' users leaving.
func (n *Node) PresenceWatched() []string {
	n.broker.mu.RLock()
	defer n.broker.mu.RUnlock()
	var out []string
	for uri := range n.broker.topics {
		if t, ok := strings.CutPrefix(uri, PresencePrefix); ok {
			out = append(out, t)
		}
	}
	return out
}

// presenceTopicHandler serves companion topics: subscribing needs nothing
// more than the access check made before, and nobody publishes.
type presenceTopicHandler struct{}

func (presenceTopicHandler) Name() string { return "wsgate.presence" }

func (presenceTopicHandler) OnSubscribe(context.Context, handler.Client, handler.TopicRef, handler.Request) error {
	return nil
}

func (presenceTopicHandler) OnUnsubscribe(context.Context, handler.Client, handler.TopicRef, handler.Request) error {
	return nil
}

func (presenceTopicHandler) OnPublish(context.Context, handler.Client, handler.TopicRef, handler.Request, json.RawMessage, []string, []string) error {
	return &handler.Error{Code: 403, Desc: "presence topics are published by the gateway only"}
}

// errNoPresence: the topic has no route with presence.
var errNoPresence = errors.New("no presence for this topic")

// presenceRoute checks that s may see the presence of topic: topic's
// route has presence and s may subscribe to topic (route access and the
// handler's SubscribeAuthorizer). It returns the route and the request the
// check was made for, errNoPresence or errDenied.
func (s *Session) presenceRoute(topic string) (*route[*topicHandler], handler.Request, error) {
	r, attrs, ok := s.node.topicRoutes.match(topic)
	if !ok || !r.presence || strings.HasPrefix(topic, PresencePrefix) {
		return nil, handler.Request{}, errNoPresence
	}
	req := handler.Request{Route: r.name, URI: topic, Attributes: attrs}
	who := s.identity.Load()
	if !s.allowed(r.access) || (r.handler.authz != nil && !r.handler.authz.MaySubscribe(*who, req)) {
		s.node.obs.AccessDenied("topic")
		return nil, handler.Request{}, errDenied
	}
	return r, req, nil
}

// presenceSubscription makes the subscription to the companion topic uri
// (PresencePrefix + topic), or returns ErrNoRoute (no presence there) or
// errDenied. Its access rule and authorizer are those of topic's route,
// so that Reidentify revokes it when the client could no longer subscribe
// to topic.
func (s *Session) presenceSubscription(uri string) (*subscription, error) {
	r, req, err := s.presenceRoute(uri[len(PresencePrefix):])
	if errors.Is(err, errNoPresence) {
		s.node.obs.RoutingMiss("topic")
		return nil, ErrNoRoute
	}
	if err != nil {
		return nil, err
	}
	sub := &subscription{route: r, uri: uri, attrs: req.Attributes, companion: true}
	if err := s.addSub(uri, sub); err != nil {
		return nil, err
	}
	return sub, nil
}

// presenceList answers PresenceListProcedure with args (the topic) through
// reply (the JSON result) or fail (an error: errNoPresence, errDenied, or
// a bad argument or directory failure as a *handler.Error). With a
// directory the list is read off the socket goroutine.
func (s *Session) presenceList(ctx context.Context, args []json.RawMessage, reply func([]byte), fail func(error)) {
	if len(args) != 1 {
		fail(&handler.Error{Code: 400, URI: errURIInvalidArgument, Desc: "wsgate.presence.list takes one argument: the topic"})
		return
	}
	topic, err := jsonString(args[0], "topic")
	if err != nil {
		fail(&handler.Error{Code: 400, URI: errURIInvalidArgument, Desc: "the topic must be a string"})
		return
	}
	if _, _, err := s.presenceRoute(topic); err != nil {
		fail(err)
		return
	}
	answer := func(l PresenceList) {
		b, err := appendJSON(nil, l)
		if err != nil { // strings, an int and a bool always encode
			fail(err)
			return
		}
		reply(b)
	}
	dir := s.node.presenceDir
	if dir == nil {
		answer(s.node.presence.list(topic, PresenceListMax))
		return
	}
	s.runCall(&rpcHandler{offload: true}, func() {
		if s.node.callTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.node.callTimeout)
			defer cancel()
		}
		l, err := dir.List(ctx, topic, PresenceListMax)
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: presence list failed", "topic", topic, "err", err)
			fail(&handler.Error{Code: 503, Desc: "presence is unavailable, try again later"})
			return
		}
		answer(l)
	}, func() {
		fail(&handler.Error{Code: 503, URI: errURIBusy, Desc: errDescBusy})
	})
}

// reservedSubscription makes the subscription to a presence companion or
// meta topic; reserved is false for any other URI, which routes decide.
func (s *Session) reservedSubscription(uri string) (sub *subscription, err error, reserved bool) {
	switch {
	case strings.HasPrefix(uri, PresencePrefix):
		sub, err = s.presenceSubscription(uri)
	case isMetaTopic(uri):
		sub, err = s.metaSubscription(uri)
	default:
		return nil, nil, false
	}
	if errors.Is(err, errDenied) {
		s.logAt(slog.LevelInfo, "wamp: subscribe access denied", "uri", uri)
		if isMetaTopic(uri) { // presenceRoute counted its own
			s.node.obs.AccessDenied("topic")
		}
	}
	return sub, err, true
}

// presenceCallV2 answers a v2 CALL of PresenceListProcedure: RESULT with
// the PresenceList, or ERROR (wamp.error.not_authorized, or
// wamp.error.invalid_argument for a topic without presence).
func (s *Session) presenceCallV2(ctx context.Context, m messageV2) {
	var args []json.RawMessage
	if m.args != nil && json.Unmarshal(m.args, &args) != nil {
		s.sendErrorV2(v2Call, m.reqID, errURIInvalidArgument, "invalid arguments", nil)
		return
	}
	s.presenceList(ctx, args, func(b []byte) {
		s.send("RESULT", encodeResultV2(m.reqID, b))
	}, func(err error) {
		switch {
		case errors.Is(err, errDenied):
			s.sendErrorV2(v2Call, m.reqID, errURINotAuthorized, "Access denied", nil)
		case errors.Is(err, errNoPresence):
			s.sendErrorV2(v2Call, m.reqID, errURIInvalidArgument, "no presence for this topic", nil)
		default:
			s.handlerErrorV2(v2Call, m.reqID, PresenceListProcedure, err)
		}
	})
}

// presenceCallV1 answers a v1 CALL of PresenceListProcedure: CALLRESULT
// with the PresenceList, or the bundle's CALLERROR (403 Access denied, 404
// for a topic without presence).
func (s *Session) presenceCallV1(ctx context.Context, callID json.RawMessage, uri string, args []json.RawMessage, params json.RawMessage) {
	s.presenceList(ctx, args, func(b []byte) {
		s.send("CALLRESULT", encodeCallResultV1(callID, b))
	}, func(err error) {
		switch {
		case errors.Is(err, errDenied):
			s.send("CALLERROR", encodeCallErrorV1(callID, uri, "Access denied", rpcDetails(403, params)))
		case errors.Is(err, errNoPresence):
			s.send("CALLERROR", encodeCallErrorV1(callID, uri, "no presence for this topic", rpcDetails(404, params)))
		default:
			s.send("CALLERROR", s.handlerErrorV1(callID, uri, err, func(code int) []byte { return rpcDetails(code, params) }))
		}
	})
}

// representLocked moves s, whose identity just changed, to its new
// presence key on the presence topics it is still subscribed to: the old
// user leaves (if this was its last session there) and the new one joins
// (if it is its first), e.g. a downgrade to anonymous on a route that
// admits anonymous clients. s.mu must be held.
func (s *Session) representLocked() {
	for sub := range s.subs.all() {
		uri := sub.uri
		if !sub.presence || !s.node.presence.keyChanged(uri, s) {
			continue
		}
		s.node.presenceChanged(uri, s.node.presence.leave(uri, s))
		s.node.presenceChanged(uri, s.node.presence.join(uri, s))
	}
}

// keyChanged reports whether s is present on topic under another key
// than its identity's now.
func (p *presenceTable) keyChanged(topic string, s *Session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	if t == nil {
		return false
	}
	key, ok := t.sessions[s]
	return ok && key != presenceKey(s)
}

// ErrNoPresence is returned by ListPresence for a topic whose route has
// no presence (or that has no route).
var ErrNoPresence = errNoPresence

// ListPresence returns who is subscribed to topic (at most
// PresenceListMax users), for the application (the gateway's HTTP API),
// without any client's access rules: on every replica with a
// PresenceDirectory, else on this node. It may block on the directory,
// bounded by ctx. A topic without presence gives ErrNoPresence.
func (n *Node) ListPresence(ctx context.Context, topic string) (PresenceList, error) {
	r, _, ok := n.topicRoutes.match(topic)
	if !ok || !r.presence || strings.HasPrefix(topic, PresencePrefix) {
		return PresenceList{}, ErrNoPresence
	}
	if n.presenceDir == nil {
		return n.presence.list(topic, PresenceListMax), nil
	}
	return n.presenceDir.List(ctx, topic, PresenceListMax)
}
