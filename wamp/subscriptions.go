package wamp

import (
	"context"
	"errors"
	"iter"
	"log/slog"

	"github.com/wsgate/wsgate/wamp/handler"
)

// A session's subscriptions: its side of the bookkeeping (the broker keeps
// each topic's subscribers) and telling handlers when the client leaves
// topics, by UNSUBSCRIBE (requests.go), disconnect (cleanup) or revocation
// (reidentify.go).

// subscription is one topic a session is subscribed to, as the session
// keeps it (the broker keeps the subscribers of each topic). It is 48 B
// (TestSubscriptionSizeClass): the handler.Request its callbacks get is
// made from it when they are called (request), not kept: a whole Request
// (64 B, with a Kwargs that a subscription never has and the URI a second
// time) and copies of what the route has took the struct to 112 B.
type subscription struct {
	// route is the route the subscription went through, shared with it:
	// its name (Request.Route), access rule (rechecked by Reidentify) and
	// handler. A presence companion's is its topic's route (the handler is
	// the companion's, topicHandler.companion); a meta topic's the node's
	// metaRoute.
	route *route[*topicHandler]
	// uri is the topic the session subscribed to, its key in Session.subs:
	// the broker topic's own string once added (broker.add), so the
	// subscribers of a topic share one copy of it.
	uri string
	// attrs is Request.Attributes: the broker topic's map, shared by its
	// subscribers through the same route with the same values (read-only,
	// as handler.Request says).
	attrs map[string]string
	subID uint64 // v2 subscription id
	// presence: the route has RouteConfig.Presence (the session is
	// present on the topic while subscribed).
	presence bool
	// companion: uri is a presence companion topic (PresencePrefix +
	// the topic route matched); Request.URI is the topic.
	companion bool
	// subscribing is true while SUBSCRIBE is not finished (SUBSCRIBED
	// may not be sent yet, OnSubscribe is queued or running). Guarded by
	// Session.mu.
	subscribing bool
	// failed: OnSubscribe refused it, so it never was a subscription and
	// no unsubscribe is owed. Guarded by Session.mu.
	failed bool
}

// handler returns the subscription's topic handler.
func (sub *subscription) handler() *topicHandler {
	if sub.companion {
		return sub.route.handler.companion
	}
	return sub.route.handler
}

// request returns the handler.Request the subscription's callbacks get:
// the route's name, the topic (a presence companion's is the topic's, not
// the companion's) and the attributes. It allocates nothing.
func (sub *subscription) request() handler.Request {
	uri := sub.uri
	if sub.companion {
		uri = uri[len(PresencePrefix):]
	}
	return handler.Request{Route: sub.route.name, URI: uri, Attributes: sub.attrs}
}

// mayKeep reports whether the topic handler (a handler.SubscribeAuthorizer)
// admits who to this subscription; handlers that do not decide admit
// everyone the route's access rule admits.
func (sub *subscription) mayKeep(who *handler.Identity) bool {
	authz := sub.handler().authz
	return authz == nil || authz.MaySubscribe(*who, sub.request())
}

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
	if !s.allowed(sub.route.access) || !sub.mayKeep(s.identity.Load()) {
		return errDenied
	}
	if s.subs.len()+s.patternCount() >= s.node.limits.MaxSubscriptions {
		return errTooMany
	}
	sub.subscribing = true
	sub.subID, sub.uri, sub.attrs = s.node.broker.add(s.node, uri, s, sub.handler().topic, sub.request())
	s.subs.put(sub, s.proto.V2())
	s.node.subscribed(sub.uri, s, sub)
	return nil
}

// finishSubscribe ends a SUBSCRIBE once OnSubscribe returned err. On
// failure the subscription is undone; if Reidentify revoked it meanwhile,
// its announcement is cancelled, since OnSubscribe failed and the caller
// reports the failure instead.
func (s *Session) finishSubscribe(uri string, sub *subscription, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.subscribing = false
	if err == nil {
		if s.subs.get(uri) == sub { // not revoked meanwhile
			s.node.admitted(uri, s, sub)
		}
		return
	}
	sub.failed = true
	if s.subs.get(uri) == sub {
		s.removeSub(uri, sub)
		return
	}
	if m := s.more.Load(); m != nil {
		for i, l := range m.revoked {
			if l.sub == sub {
				m.revoked = append(m.revoked[:i], m.revoked[i+1:]...)
				break
			}
		}
	}
}

// isFailed reports whether OnSubscribe refused sub.
func (s *Session) isFailed(sub *subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sub.failed
}

// subscribedTo returns the v2 subscription id (0 for v1) of the session's
// subscription to uri, and whether there is one.
func (s *Session) subscribedTo(uri string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs.get(uri)
	if sub == nil {
		return 0, false
	}
	return sub.subID, true
}

// takeSub removes the subscription to uri, returning it, or nil when the
// session is not subscribed (any more).
func (s *Session) takeSub(uri string) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs.get(uri)
	if sub == nil {
		return nil
	}
	s.removeSub(uri, sub)
	return sub
}

// removeSub takes sub, the subscription to uri, from the session and the
// broker; s.mu must be held.
func (s *Session) removeSub(uri string, sub *subscription) {
	s.subs.del(sub)
	s.node.broker.remove(uri, s)
	s.node.unsubscribed(uri, s, sub)
}

// leaving is a subscription taken from the session, by a disconnect
// (cleanup) or an identity change (Reidentify revokes it), whose handler
// has yet to hear that the client left the topic (announceLeave).
type leaving struct {
	uri string
	sub *subscription
	// owesUnsubscribed: a v2 client whose subscription Reidentify revoked
	// still has to get UNSUBSCRIBED (it could not be sent at once because
	// SUBSCRIBED was not out yet).
	owesUnsubscribed bool
}

// announceLeave tells the handlers that the client left the topics of
// left (sorted by URI) for reason: a BatchUnsubscriber once for all its
// topics, any other handler once per topic. A v2 client owed an
// UNSUBSCRIBED for one of them gets it first. The callbacks are not tied
// to the session's context, which is cancelled by then: the leave is
// announced even after the client went.
func (s *Session) announceLeave(reason string, left []leaving) {
	for _, g := range s.groupByHandler(left) {
		for _, l := range g.left {
			if l.owesUnsubscribed {
				s.send("UNSUBSCRIBED", encodeRevokedV2(l.sub.subID, errURINotAuthorized))
			}
		}
		if g.handler.batch != nil {
			s.announceBatch(reason, g)
			continue
		}
		for _, l := range g.left {
			err := s.invoke(context.Background(), false, "onUnSubscribe", l.uri, func(ctx context.Context) error {
				return g.handler.topic.OnUnsubscribe(ctx, s, topicRef{n: s.node, uri: l.uri}, l.sub.request())
			})
			if err != nil {
				s.logAt(slog.LevelWarn, "wamp: topic handler failed on leave", "reason", reason, "topic", l.uri, "route", l.sub.route.name, "err", err)
			}
		}
	}
}

// leaveGroup is what one topic handler hears of a leave.
type leaveGroup struct {
	handler *topicHandler
	left    []leaving
}

// groupByHandler groups left by topic handler, in order of first
// appearance, without the subscriptions OnSubscribe refused: there is
// nothing to undo for them.
func (s *Session) groupByHandler(left []leaving) []leaveGroup {
	var groups []leaveGroup
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range left {
		if l.sub.failed {
			continue
		}
		i := len(groups) - 1
		h := l.sub.handler()
		for ; i >= 0 && groups[i].handler != h; i-- {
		}
		if i < 0 {
			groups = append(groups, leaveGroup{handler: h})
			i = len(groups) - 1
		}
		groups[i].left = append(groups[i].left, l)
	}
	return groups
}

// announceBatch tells a BatchUnsubscriber of all of g's topics at once.
func (s *Session) announceBatch(reason string, g leaveGroup) {
	subs := make([]handler.Subscription, len(g.left))
	for i, l := range g.left {
		subs[i] = handler.Subscription{Topic: topicRef{n: s.node, uri: l.uri}, Request: l.sub.request()}
	}
	err := s.invoke(context.Background(), false, "onUnSubscribeBatch", g.left[0].uri, func(ctx context.Context) error {
		return g.handler.batch.OnUnsubscribeBatch(ctx, s, reason, subs)
	})
	if err != nil {
		s.logAt(slog.LevelWarn, "wamp: topic handler failed on leave", "reason", reason, "topics", len(subs), "handler", g.handler.topic.Name(), "err", err)
	}
}

// subSet is a session's subscriptions, by topic URI and, for a v2
// session, by subscription id. Most sessions subscribe to one topic, and a
// map holding one entry costs ≈ 200 B (an empty one 48 B): the first
// subscription sits in one, and the maps (subIndex) are made from the
// second on and kept. Guarded by Session.mu.
type subSet struct {
	// one is the only subscription while many is nil.
	one *subscription
	// many holds every subscription once there were two at a time: one
	// pointer here, where the two maps took 16 B of every Session.
	many *subIndex
}

// subIndex is a subSet with two subscriptions or more.
type subIndex struct {
	// byURI holds every subscription, by subscription.uri; byID (v2
	// sessions only) the same, by subID.
	byURI map[string]*subscription
	byID  map[uint64]*subscription
}

// get returns the subscription to uri, or nil.
func (ss *subSet) get(uri string) *subscription {
	if ss.many != nil {
		return ss.many.byURI[uri]
	}
	if ss.one != nil && ss.one.uri == uri {
		return ss.one
	}
	return nil
}

// byID returns the v2 subscription with id, or nil.
func (ss *subSet) byID(id uint64) *subscription {
	if ss.many != nil {
		return ss.many.byID[id]
	}
	if ss.one != nil && ss.one.subID == id {
		return ss.one
	}
	return nil
}

// put adds sub under sub.uri, replacing a subscription to the same topic;
// v2 indexes it by subID too.
func (ss *subSet) put(sub *subscription, v2 bool) {
	if ss.many == nil {
		if ss.one == nil || ss.one.uri == sub.uri {
			ss.one = sub
			return
		}
		ss.many = &subIndex{byURI: map[string]*subscription{ss.one.uri: ss.one}}
		if v2 {
			ss.many.byID = map[uint64]*subscription{ss.one.subID: ss.one}
		}
		ss.one = nil
	}
	ss.many.byURI[sub.uri] = sub
	if ss.many.byID != nil {
		ss.many.byID[sub.subID] = sub
	}
}

// del removes sub, if it is the set's subscription to sub.uri.
func (ss *subSet) del(sub *subscription) {
	if ss.many == nil {
		if ss.one == sub {
			ss.one = nil
		}
		return
	}
	if ss.many.byURI[sub.uri] == sub {
		delete(ss.many.byURI, sub.uri)
		if ss.many.byID[sub.subID] == sub {
			delete(ss.many.byID, sub.subID)
		}
	}
}

// len is the number of subscriptions.
func (ss *subSet) len() int {
	if ss.many != nil {
		return len(ss.many.byURI)
	}
	if ss.one != nil {
		return 1
	}
	return 0
}

// all yields every subscription, in no particular order. The set must not
// change during the iteration.
func (ss *subSet) all() iter.Seq[*subscription] {
	return func(yield func(*subscription) bool) {
		if ss.many == nil {
			if ss.one != nil {
				yield(ss.one)
			}
			return
		}
		for _, sub := range ss.many.byURI {
			if !yield(sub) {
				return
			}
		}
	}
}
