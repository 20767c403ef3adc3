package wamp

import (
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// The WAMP v2 meta events (advanced profile, session and subscription
// meta API) and the subscription procedures beyond count_subscribers,
// under the same NodeConfig.MetaAPI rule as meta.go's procedures: a v2
// client the rule admits may subscribe to the meta topics; everyone else
// gets wamp.error.not_authorized (v1 sessions: no route). Each replica
// publishes the events of its own sessions and subscriptions to its own
// subscribers of them (they are not relayed): a subscription is a
// per-replica thing (its id is this node's), and so are these events.
//
// Event arguments follow the spec:
//
//	wamp.session.on_join            [{session, authid, authrole, authmethod, authprovider, transport: {protocol}}]
//	wamp.session.on_leave           [session, authid, authrole]
//	wamp.subscription.on_create     [session, {id, created, uri, match}]
//	wamp.subscription.on_subscribe  [session, subscription]
//	wamp.subscription.on_unsubscribe [session, subscription]
//	wamp.subscription.on_delete     [session, subscription]
//
// session is null for a WAMP v1 session (it has no integer id). The
// subscription events leave out the meta topics themselves and presence
// companion topics (reserved URIs).

// The meta topics.
const (
	metaOnJoin        = "wamp.session.on_join"
	metaOnLeave       = "wamp.session.on_leave"
	metaOnCreate      = "wamp.subscription.on_create"
	metaOnSubscribe   = "wamp.subscription.on_subscribe"
	metaOnUnsubscribe = "wamp.subscription.on_unsubscribe"
	metaOnDelete      = "wamp.subscription.on_delete"
)

// The subscription procedures answered here (see metaCallV2).
const (
	metaSubList            = "wamp.subscription.list"
	metaSubLookup          = "wamp.subscription.lookup"
	metaSubMatch           = "wamp.subscription.match"
	metaSubGet             = "wamp.subscription.get"
	metaSubListSubscribers = "wamp.subscription.list_subscribers"
)

// isMetaTopic reports whether uri is a meta topic the node publishes.
func isMetaTopic(uri string) bool {
	switch uri {
	case metaOnJoin, metaOnLeave, metaOnCreate, metaOnSubscribe, metaOnUnsubscribe, metaOnDelete:
		return true
	}
	return false
}

// reservedTopic reports whether uri is a topic the node publishes itself
// (meta and presence companion topics): clients never publish there and
// subscription meta events leave them out.
func reservedTopic(uri string) bool {
	return strings.HasPrefix(uri, "wamp.") || strings.HasPrefix(uri, PresencePrefix)
}

// metaTopics is what the subscription meta API needs beyond the broker:
// when each topic got its first local subscriber. Kept only when the meta
// API is enabled.
type metaTopics struct {
	// mu guards topics.
	mu     sync.Mutex
	topics map[string]*metaTopic
}

type metaTopic struct {
	created string // ISO 8601, as wamp.subscription.get returns it
	count   int    // local subscribers
}

// accessRule returns the meta API rule as a route access rule, so that a
// meta topic subscription is checked (and rechecked by Reidentify) like
// any other: no anonymous client, and the role when one is required.
func (m metaAccess) accessRule() accessRule {
	a := accessRule{denyAnon: true}
	if m.role != "" {
		a.roles = []string{m.role}
	}
	return a
}

// metaSubscription makes a v2 session's subscription to the meta topic
// uri, or returns ErrNoRoute (meta API disabled, or a v1 session) or
// errDenied.
func (s *Session) metaSubscription(uri string) (*subscription, error) {
	if !s.node.meta.enabled || !s.proto.V2() {
		s.node.obs.RoutingMiss("topic")
		return nil, ErrNoRoute
	}
	sub := &subscription{route: s.node.metaRoute, uri: uri}
	if err := s.addSub(uri, sub); err != nil {
		return nil, err
	}
	return sub, nil
}

// metaPublish sends a meta event to this node's subscribers of topic,
// with args (a JSON list's elements, without the brackets) as the EVENT's
// arguments. Only v2 sessions subscribe to meta topics, so no v1 EVENT is
// ever made of it. build runs only when someone listens.
func (n *Node) metaPublish(topic string, build func() []byte) {
	if !n.meta.enabled || n.broker.count(topic) == 0 {
		return
	}
	n.deliver(topic, build(), &Audience{}, nil)
}

// metaSessionID is s's id as a meta event argument: null for v1.
func metaSessionID(b []byte, s *Session) []byte {
	if !s.proto.V2() {
		return append(b, "null"...)
	}
	return append(b, s.id...) // the decimal form of the v2 id
}

// sessionJoined publishes wamp.session.on_join for a v2 session that was
// just welcomed.
func (n *Node) sessionJoined(s *Session) {
	n.metaPublish(metaOnJoin, func() []byte {
		who := s.identity.Load()
		b, _ := appendJSON(nil, struct {
			sessionMeta
			Transport map[string]string `json:"transport"`
		}{sessionMeta{Session: s.v2ID(), AuthID: who.UserIdentifier, AuthRole: authRole(who), AuthMethod: "cookie", AuthProvider: "symfony"},
			map[string]string{"protocol": s.proto.Subprotocol()}})
		return b
	})
}

// sessionLeft publishes wamp.session.on_leave for a v2 session that had
// joined and is closing.
func (n *Node) sessionLeft(s *Session) {
	if !s.proto.V2() || !s.welcomed.Load() {
		return
	}
	n.metaPublish(metaOnLeave, func() []byte {
		who := s.identity.Load()
		b := append([]byte(nil), s.id...) // the decimal form of the v2 id
		b = append(b, ',')
		b = appendJSONString(b, who.UserIdentifier)
		b = append(b, ',')
		return appendJSONString(b, authRole(who))
	})
}

// admitted is called once the handler's OnSubscribe accepted s's
// subscription sub to uri (s.mu held): the presence join, so that a
// subscription the handler refuses never shows as a join and a leave.
func (n *Node) admitted(uri string, s *Session, sub *subscription) {
	if sub.presence {
		n.presenceChanged(uri, n.presence.join(uri, s))
	}
}

// subscribed is called once s got the subscription sub to uri (s.mu
// held): subscription meta events.
func (n *Node) subscribed(uri string, s *Session, sub *subscription) {
	if !n.meta.enabled || reservedTopic(uri) {
		return
	}
	n.metaTopics.mu.Lock()
	if n.metaTopics.topics == nil {
		n.metaTopics.topics = map[string]*metaTopic{}
	}
	t := n.metaTopics.topics[uri]
	created := t == nil
	if created {
		t = &metaTopic{created: time.Now().UTC().Format("2006-01-02T15:04:05.000Z")}
		n.metaTopics.topics[uri] = t
	}
	t.count++
	stamp := t.created
	n.metaTopics.mu.Unlock()
	if created {
		n.metaPublish(metaOnCreate, func() []byte {
			b := metaSessionID(nil, s)
			b, _ = appendJSON(append(b, ','), subscriptionMeta{ID: sub.subID, Created: stamp, URI: uri, Match: "exact"})
			return b
		})
	}
	n.metaPublish(metaOnSubscribe, func() []byte { return metaSubArgs(s, sub.subID) })
}

// unsubscribed is called once s lost the subscription sub to uri (s.mu
// held): presence leave (when it had joined), subscription meta events.
func (n *Node) unsubscribed(uri string, s *Session, sub *subscription) {
	if sub.presence {
		n.presenceChanged(uri, n.presence.leave(uri, s))
	}
	if !n.meta.enabled || reservedTopic(uri) {
		return
	}
	n.metaTopics.mu.Lock()
	t := n.metaTopics.topics[uri]
	deleted := false
	if t != nil {
		t.count--
		if t.count <= 0 {
			delete(n.metaTopics.topics, uri)
			deleted = true
		}
	}
	n.metaTopics.mu.Unlock()
	n.metaPublish(metaOnUnsubscribe, func() []byte { return metaSubArgs(s, sub.subID) })
	if deleted {
		n.metaPublish(metaOnDelete, func() []byte { return metaSubArgs(s, sub.subID) })
	}
}

// metaSubArgs are the arguments [session, subscription].
func metaSubArgs(s *Session, subID uint64) []byte {
	b := metaSessionID(nil, s)
	return appendID(append(b, ','), subID)
}

// subscriptionMeta is the spec's SubscriptionDetails.
type subscriptionMeta struct {
	ID      uint64 `json:"id"`
	Created string `json:"created"`
	URI     string `json:"uri"`
	Match   string `json:"match"`
}

// metaSubCall answers the subscription procedures of this file; ok is
// false for another procedure. It returns the result or an error URI and
// message.
func (n *Node) metaSubCall(uri string, args []json.RawMessage) (out any, errURI, errMsg string, ok bool) {
	switch uri {
	case metaSubList:
		prefix, wildcard := n.broker.patternSubscriptionIDs()
		return map[string][]uint64{"exact": n.broker.subscriptionIDs(), "prefix": prefix, "wildcard": wildcard}, "", "", true
	case metaSubLookup, metaSubMatch:
		if len(args) < 1 {
			return nil, errURIInvalidArgument, "the topic must be a string", true
		}
		topic, err := jsonString(args[0], "topic")
		if err != nil {
			return nil, errURIInvalidArgument, "the topic must be a string", true
		}
		if uri == metaSubMatch {
			// The exact subscription and every pattern matching the
			// topic, as the spec's wamp.subscription.match returns.
			ids := n.broker.matchingSubscriptionIDs(topic)
			if len(ids) == 0 {
				return nil, "", "", true
			}
			return ids, "", "", true
		}
		match := matchExact
		if len(args) > 1 {
			o, err := parseSubscribeOptions(args[1])
			if err != nil {
				return nil, errURIInvalidArgument, err.Error(), true
			}
			match = o.match
		}
		var id uint64
		if match == matchExact {
			id = n.broker.subscriptionID(topic)
		} else {
			id = n.broker.patternSubscriptionID(patternKey{match: match, pattern: topic})
		}
		if id == 0 {
			return nil, "", "", true
		}
		return id, "", "", true
	case metaSubGet, metaSubListSubscribers:
		id, valid := metaIDArg(args)
		if !valid {
			return nil, errURIInvalidArgument, "the subscription id must be an integer", true
		}
		topic, subs, found := n.broker.subscribersByID(id)
		if !found {
			key, psubs, pfound := n.broker.patternSubscribersByID(id)
			if !pfound {
				return nil, errURINoSuchSubscription, "no such subscription", true
			}
			if uri == metaSubListSubscribers {
				return psubs, "", "", true
			}
			// The node keeps no creation time of a pattern.
			return subscriptionMeta{ID: id, URI: key.pattern, Match: key.match}, "", "", true
		}
		if uri == metaSubListSubscribers {
			return subs, "", "", true
		}
		n.metaTopics.mu.Lock()
		var created string
		if t := n.metaTopics.topics[topic]; t != nil {
			created = t.created
		}
		n.metaTopics.mu.Unlock()
		return subscriptionMeta{ID: id, Created: created, URI: topic, Match: "exact"}, "", "", true
	}
	return nil, "", "", false
}

// subscriptionIDs returns the subscription ids of this node's topics,
// reserved ones left out.
func (b *broker) subscriptionIDs() []uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := []uint64{}
	for uri, t := range b.topics {
		if !reservedTopic(uri) {
			out = append(out, t.subID)
		}
	}
	return out
}

// subscriptionID returns the subscription id of topic on this node, 0
// when nobody here is subscribed (or the topic is reserved).
func (b *broker) subscriptionID(topic string) uint64 {
	if reservedTopic(topic) {
		return 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if t := b.topics[topic]; t != nil {
		return t.subID
	}
	return 0
}

// subscribersByID returns the topic of subscription id and the v2 session
// ids of its subscribers (v1 sessions have none and are left out).
func (b *broker) subscribersByID(id uint64) (string, []uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for uri, t := range b.topics {
		if t.subID != id || reservedTopic(uri) {
			continue
		}
		out := make([]uint64, 0, len(t.subscribers))
		for s := range t.subscribers {
			if s.proto.V2() {
				out = append(out, s.v2ID())
			}
		}
		return uri, out, true
	}
	return "", nil, false
}

// patternSubscriptionIDs returns the subscription ids of this node's
// prefix and wildcard patterns.
func (b *broker) patternSubscriptionIDs() (prefix, wildcard []uint64) {
	prefix, wildcard = []uint64{}, []uint64{}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for key, p := range b.patterns.byKey {
		if key.match == matchPrefix {
			prefix = append(prefix, p.subID)
		} else {
			wildcard = append(wildcard, p.subID)
		}
	}
	return prefix, wildcard
}

// patternSubscriptionID returns the subscription id of a pattern on this
// node, 0 when nobody here subscribes to it.
func (b *broker) patternSubscriptionID(key patternKey) uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if p := b.patterns.byKey[key]; p != nil {
		return p.subID
	}
	return 0
}

// matchingSubscriptionIDs returns the ids of the subscriptions an event
// on topic would reach on this node: its exact one and every matching
// pattern's.
func (b *broker) matchingSubscriptionIDs(topic string) []uint64 {
	var out []uint64
	if id := b.subscriptionID(topic); id != 0 {
		out = append(out, id)
	}
	if reservedTopic(topic) {
		return out
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, p := range b.patterns.matchingPatterns(topic, nil) {
		out = append(out, p.subID)
	}
	return out
}

// patternSubscribersByID returns the pattern of subscription id and the
// v2 session ids of its subscribers.
func (b *broker) patternSubscribersByID(id uint64) (patternKey, []uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for key, p := range b.patterns.byKey {
		if p.subID != id {
			continue
		}
		out := make([]uint64, 0, len(p.subscribers))
		for s := range p.subscribers {
			if s.proto.V2() {
				out = append(out, s.v2ID())
			}
		}
		return key, out, true
	}
	return patternKey{}, nil, false
}
