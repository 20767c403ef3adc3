package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// broker maps topic URIs to their subscribers.
//
// Membership changes take the write lock; broadcasts take the read lock only
// long enough to grab an immutable snapshot of the subscriber list, and call
// Peer.Send after releasing it, so a slow gateway queue can never stall
// subscribe/unsubscribe for everyone. The snapshot is cached per topic and
// rebuilt only after membership changed, so repeated broadcasts to a stable
// topic do not allocate per subscriber.
type broker struct {
	// mu guards topics (and each topic's subscribers and stopTimer) and
	// subscriptions.
	mu     sync.RWMutex
	topics map[string]*topicState
	// subscriptions is the sum of len(subscribers) over topics.
	subscriptions int
	// relay, when set, hears when a topic gains its first and loses its
	// last local subscriber, so that other replicas' broadcasts reach
	// this node only for topics someone here listens to.
	relay Relay
	// patterns are the pattern-based subscriptions (pattern.go).
	patterns patternIndex
}

// topicState is one topic with local subscribers.
type topicState struct {
	subscribers map[*Session]struct{}
	// snap is an immutable copy of subscribers, or nil when stale.
	snap atomic.Pointer[subscriberSnap]
	// subID is the WAMP v2 subscription id of the topic: router scope,
	// shared by every v2 subscriber of the topic so that one EVENT
	// encoding serves them all. A topic that empties and comes back gets
	// a new one.
	subID uint64
	// stopTimer stops the PeriodicTopic goroutine, if one runs.
	stopTimer context.CancelFunc
	// route and attrs are the first subscriber's Request.Route and
	// Request.Attributes: every later subscriber of the topic through the
	// same route gets the same attributes, so they share this map (a map
	// per subscription was a third of an idle subscribed connection's
	// heap). handler.Request documents Attributes as read-only.
	route string
	attrs map[string]string
	// uri is the topic's key in broker.topics, the same string: its
	// subscriptions keep it (add).
	uri string
}

// add subscribes s to uri and returns the topic's v2 subscription id, its
// URI (the topic's own string, which the subscription keeps instead of its
// own copy: one per topic, not one per subscriber) and the attributes the
// subscription keeps: the topic's shared map when req.Attributes equals it
// (same route, same values), else req.Attributes. The first subscriber of
// a topic served by a PeriodicTopic handler starts its timer.
func (b *broker) add(n *Node, uri string, s *Session, h handler.Topic, req handler.Request) (uint64, string, map[string]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[uri]
	if t == nil {
		t = &topicState{subscribers: map[*Session]struct{}{}, subID: n.subSeq.Add(1), uri: uri, route: req.Route, attrs: req.Attributes}
		b.topics[uri] = t
		if b.relay != nil {
			b.relay.Watch(uri)
		}
		if p, ok := h.(handler.PeriodicTopic); ok {
			t.stopTimer = n.startTimer(p, uri, req)
		}
	}
	if _, dup := t.subscribers[s]; !dup {
		t.subscribers[s] = struct{}{}
		b.subscriptions++
		t.snap.Store(nil)
	}
	if t.route == req.Route && maps.Equal(t.attrs, req.Attributes) {
		return t.subID, t.uri, t.attrs
	}
	return t.subID, t.uri, req.Attributes
}

// remove unsubscribes s from uri and deletes the topic when it is empty, so
// topics do not accumulate as clients come and go; that stops the topic's
// timer.
func (b *broker) remove(uri string, s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[uri]
	if t == nil {
		return
	}
	if _, ok := t.subscribers[s]; !ok {
		return
	}
	delete(t.subscribers, s)
	b.subscriptions--
	t.snap.Store(nil)
	if len(t.subscribers) == 0 {
		delete(b.topics, uri)
		if b.relay != nil {
			b.relay.Unwatch(uri)
		}
		if t.stopTimer != nil {
			t.stopTimer()
		}
	}
}

func (b *broker) count(uri string) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if t := b.topics[uri]; t != nil {
		return len(t.subscribers)
	}
	return 0
}

func (b *broker) topicCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.topics)
}

// subscriberRef is what a fan-out needs of one subscriber, copied out of its
// Session so that a broadcast walks one contiguous array instead of
// touching every Session's memory. s is read only by a broadcast whose
// Audience names users or roles, for the subscriber's identity (one
// atomic load, no lock).
type subscriberRef struct {
	id   string
	peer Peer
	s    *Session
}

// subscriberSnap is a topic's subscribers split by protocol, so that each
// protocol's fan-out is a plain loop over the same encoded message: v2 is
// wamp.2.json, v2bin the binary serializers (index binaryIndex).
type subscriberSnap struct {
	v1, v2 []subscriberRef
	v2bin  [2][]subscriberRef
}

// binaryProtocols are the Protocol.Binary protocols in the order of
// subscriberSnap.v2bin.
var binaryProtocols = [2]Protocol{ProtocolV2MsgPack, ProtocolV2CBOR}

// binaryIndex returns p's index in binaryProtocols.
func binaryIndex(p Protocol) int {
	if p == ProtocolV2CBOR {
		return 1
	}
	return 0
}

// snapshot returns the current subscribers of uri by protocol and the
// topic's v2 subscription id. The snapshot must not be modified.
func (b *broker) snapshot(uri string) (*subscriberSnap, uint64) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[uri]
	if t == nil {
		return nil, 0
	}
	if p := t.snap.Load(); p != nil {
		return p, t.subID
	}
	// Concurrent readers may both build; both results are identical
	// because writers are excluded by the read lock.
	snap := buildSnap(t.subscribers)
	t.snap.Store(snap)
	return snap, t.subID
}

// startTimer starts the PeriodicTopic goroutine of a topic that just got
// its first subscriber; it is called with the broker's write lock held and
// must not take it. The goroutine belongs to the node (counted in
// n.timers); it ends when the returned cancel is called, which remove does
// when the topic empties. OnTick runs without any node lock held, so it
// may broadcast.
func (n *Node) startTimer(p handler.PeriodicTopic, uri string, req handler.Request) context.CancelFunc {
	period := p.Period()
	if period <= 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	ref := topicRef{n: n, uri: uri, local: true} // every replica with subscribers runs its own timer
	n.timers.Add(1)
	go func() {
		defer n.timers.Done()
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if ctx.Err() != nil {
				return
			}
			n.runTick(ctx, p, ref, req)
		}
	}()
	return cancel
}

func (n *Node) runTick(ctx context.Context, p handler.PeriodicTopic, ref topicRef, req handler.Request) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("wamp: periodic topic handler panic", "topic", ref.uri, "route", req.Route, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	if n.callTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.callTimeout)
		defer cancel()
	}
	p.OnTick(ctx, ref)
}

// topicRef implements handler.TopicRef by topic URI, so it stays valid
// when the topic empties and is created again.
type topicRef struct {
	n   *Node
	uri string
	// local keeps broadcasts on this node: set for pushes every replica
	// receives by itself (the Redis push channel), which relaying would
	// deliver once per replica.
	local bool
	// pub, on the TopicRef handed to OnPublish for a PUBLISH whose
	// Audience says more than session ids, is what the publish asked for
	// (see published).
	pub *published
	// details, on the TopicRef handed to OnPublish for a disclosed
	// publisher, are the v2 EVENT details naming it (see
	// RouteConfig.Disclose): every broadcast through this TopicRef
	// carries them, on this node and, through a DisclosingRelay, on the
	// other replicas.
	details []byte
	// retain, on the TopicRef handed to OnPublish for a PUBLISH with
	// retain, keeps what the handler broadcasts with the lists it got
	// (retain.go).
	retain *retainSpec
}

var _ handler.TopicRef = topicRef{}

func (t topicRef) ID() string { return t.uri }

func (t topicRef) Count() int { return t.n.broker.count(t.uri) }

// Broadcast implements handler.TopicRef. exclude and eligible are session
// ids, except on the TopicRef of an OnPublish when they are the very
// lists OnPublish got: then the broadcast carries the publish's whole
// Audience (its users and roles too), here and to the other replicas.
func (t topicRef) Broadcast(event any, exclude, eligible []string) error {
	a := Audience{ExcludeSessions: exclude, EligibleSessions: eligible}
	if t.pub != nil && t.pub.given(exclude, eligible) {
		a = t.pub.audience
	}
	if t.retain.retains(exclude, eligible) {
		_, err := t.n.broadcastRetained(t.uri, event, &a, !t.local, t.details)
		return err
	}
	_, err := t.n.broadcast(t.uri, event, &a, !t.local, t.details)
	return err
}

// Topic returns a handle on the topic with the given (fully expanded) URI,
// for broadcasting from outside a handler callback, e.g. a server-side push.
// Broadcasts through it also reach the other replicas when the node has a
// Relay.
func (n *Node) Topic(uri string) handler.TopicRef { return topicRef{n: n, uri: uri} }

// LocalTopic is Topic for a source that every replica receives by itself
// (the Redis push channel): its broadcasts reach this node's subscribers
// only, never the Relay.
func (n *Node) LocalTopic(uri string) handler.TopicRef {
	return topicRef{n: n, uri: uri, local: true}
}

// BroadcastTo sends event to the subscribers of the topic uri that a
// selects, as a handler's TopicRef.Broadcast does, and returns how many of
// this node's peers accepted it. With relay set and a Relay configured,
// the broadcast and its Audience also go to the other replicas, each of
// which selects its own subscribers (users and roles wherever they are
// connected); leave relay unset for a source every replica receives by
// itself (the Redis push channel). An error means event could not be
// JSON-encoded.
func (n *Node) BroadcastTo(uri string, event any, a Audience, relay bool) (int, error) {
	return n.broadcast(uri, event, &a, relay, nil)
}

// broadcast encodes the event payload once, wraps it once per protocol
// that has a selected subscriber (v1 EVENT, v2 EVENT with the topic's
// subscription id and a fresh publication id), and hands the same bytes to
// every selected subscriber of that protocol. It returns how many peers
// accepted the message. With relay set and a Relay configured, the
// encoded payload and the audience also go to the other replicas. details
// are the v2 EVENT details, nil for {}; a DisclosingRelay carries them.
func (n *Node) broadcast(uri string, event any, a *Audience, relay bool, details []byte) (int, error) {
	payload, err := appendJSON(make([]byte, 0, 64), event)
	if err != nil {
		return 0, err
	}
	if relay && n.broker.relay != nil {
		// The relay keeps payload: appendJSON gave us a fresh buffer that
		// nothing below modifies.
		var dr DisclosingRelay
		if details != nil { // most broadcasts disclose nobody: no type check
			dr, _ = n.broker.relay.(DisclosingRelay)
		}
		if dr != nil {
			dr.PublishDetails(uri, payload, *a, details)
		} else {
			n.broker.relay.Publish(uri, payload, *a)
		}
	}
	return n.deliver(uri, payload, a, details), nil
}

// DeliverRelayed hands a broadcast relayed from another replica to this
// node's subscribers of topic that a selects, without relaying it again.
// payload is the JSON-encoded event; a payload that is not valid JSON is
// refused, since it would corrupt every subscriber's stream. It returns
// how many peers accepted the message.
func (n *Node) DeliverRelayed(topic string, payload []byte, a Audience) (int, error) {
	return n.DeliverRelayedDetails(topic, payload, a, nil)
}

// DeliverRelayedDetails is DeliverRelayed of an event whose publisher
// another replica disclosed: details (a JSON object, nil for none) are
// the v2 EVENT details, delivered as they came. Details that are not a
// JSON object are refused with the event.
func (n *Node) DeliverRelayedDetails(topic string, payload []byte, a Audience, details []byte) (int, error) {
	if !json.Valid(payload) {
		return 0, errors.New("wamp: relayed payload is not valid JSON")
	}
	if len(details) == 0 {
		details = nil
	} else if details[0] != '{' || !json.Valid(details) {
		return 0, errors.New("wamp: relayed event details are not a JSON object")
	}
	return n.deliver(topic, payload, &a, details), nil
}

// deliver wraps the encoded payload once per protocol and fans it out to
// this node's subscribers of uri that a selects; details are the v2 EVENT
// details (nil for {}). The v2 EVENT is encoded once as JSON, and
// transcoded once for each binary serializer that has subscribers; all
// carry the same publication id, and so do the EVENTs of the pattern
// subscriptions matching uri (deliverPatterns, pattern.go).
func (n *Node) deliver(uri string, payload []byte, a *Audience, details []byte) int {
	snap, subID := n.broker.snapshot(uri)
	var pubID uint64
	sent := 0
	if snap != nil {
		f := newAudienceFilter(a)
		if len(snap.v1) > 0 {
			if c := fanout(snap.v1, encodeEventV1(uri, payload), &f); c > 0 {
				n.obs.MessagesOut(ProtocolV1, "EVENT", c)
				sent += c
			}
		}
		if len(snap.v2) > 0 || len(snap.v2bin[0]) > 0 || len(snap.v2bin[1]) > 0 {
			pubID = newGlobalID()
			msg := encodeEventV2(subID, pubID, details, payload)
			if len(snap.v2) > 0 {
				if c := fanout(snap.v2, msg, &f); c > 0 {
					n.obs.MessagesOut(ProtocolV2JSON, "EVENT", c)
					sent += c
				}
			}
			for i, subs := range snap.v2bin {
				if len(subs) > 0 {
					sent += n.fanoutBinary(binaryProtocols[i], subs, msg, &f)
				}
			}
		}
	}
	if n.broker.patterns.n.Load() > 0 { // pattern.go; one atomic load when there are none
		if pubID == 0 {
			pubID = newGlobalID()
		}
		sent += n.deliverPatterns(uri, payload, a, details, pubID)
	}
	return sent
}

// fanoutBinary transcodes the JSON v2 EVENT msg to p once and hands it to
// every subscriber in subs f admits.
func (n *Node) fanoutBinary(p Protocol, subs []subscriberRef, msg []byte, f *audienceFilter) int {
	bin, err := jsonToBinary(p, msg)
	if err != nil {
		n.log.Error("wamp: cannot transcode event", "protocol", p.String(), "err", err)
		return 0
	}
	c := fanout(subs, bin, f)
	if c > 0 {
		n.obs.MessagesOut(p, "EVENT", c)
	}
	return c
}

// fanout hands msg to every subscriber f admits and counts the peers that
// accepted it.
func fanout(subs []subscriberRef, msg []byte, f *audienceFilter) int {
	sent := 0
	for _, s := range subs {
		if f.any && !f.admits(s.id, s.s) {
			continue
		}
		if s.peer.Send(msg) {
			sent++
		}
	}
	return sent
}
