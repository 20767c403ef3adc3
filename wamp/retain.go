package wamp

import (
	"container/list"
	"context"
	"log/slog"
	"sync"
)

// Event retention (WAMP v2 advanced profile): a PUBLISH with the option
// retain true keeps the event as the topic's retained event, and a
// SUBSCRIBE with get_retained true gets it at once after SUBSCRIBED, with
// details {"retained": true}.
//
// What is kept is what the topic handler broadcasts through the TopicRef
// its OnPublish got (so a handler that refuses client publishes, like
// wsgate.user, retains nothing), or through the TopicRef of an OnPush of
// Node.PushRetained (the push API's "retain": true): the event payload only, without publisher disclosure.
// An event whose audience is restricted (exclude, eligible, or any
// *_authid / *_authrole list; the publisher's own exclusion aside) is
// delivered but not retained: a later subscriber's eligibility could not
// be judged against lists made for the subscribers of then. Retained
// events are per topic, the latest wins; a get_retained on a pattern
// subscription gets nothing (the spec leaves it open; it would need a
// scan of every retained topic).
//
// Where. NodeConfig.Retained: by default this node's memory (memRetained,
// bounded by RetainedLimits: topics and bytes, the oldest retained
// dropped to make room, an event over MaxEventBytes not retained at all);
// the gateway gives a Redis store when replicas share a Redis fan-out
// (gateway/cluster.Retained), so a subscriber on any replica gets what
// any replica retained. Reading it may block: it runs on the session's
// lane (offload.go), never on the reader.

// RetainStore keeps the retained event of each topic.
type RetainStore interface {
	// Retain keeps payload (a JSON value, owned by the store from now
	// on) as topic's retained event. It runs on the publishing goroutine
	// (a socket worker or the work pool): it must not block, so a
	// remote store queues the write.
	Retain(topic string, payload []byte)
	// Retained returns topic's retained event, if any. It may block
	// within ctx.
	Retained(ctx context.Context, topic string) ([]byte, bool, error)
	// Blocking reports whether Retained does I/O: the node then calls it
	// off the reader, on the session's lane.
	Blocking() bool
}

// RetainedLimits bound the memory RetainStore.
type RetainedLimits struct {
	// MaxTopics bounds the retained topics. Default 10000.
	MaxTopics int
	// MaxBytes bounds the bytes of retained payloads (and topic names).
	// Default 16 MiB.
	MaxBytes int
	// MaxEventBytes: a larger event is not retained. Default 64 KiB.
	MaxEventBytes int
}

// Defaults of RetainedLimits.
const (
	DefaultRetainedMaxTopics     = 10000
	DefaultRetainedMaxBytes      = 16 << 20
	DefaultRetainedMaxEventBytes = 64 << 10
)

// LimitRetained names (Observer.Limit) a retained event dropped to make
// room, or not retained because it is too big.
const LimitRetained = "retained_events"

func (l RetainedLimits) withDefaults() RetainedLimits {
	orDefault(&l.MaxTopics, DefaultRetainedMaxTopics)
	orDefault(&l.MaxBytes, DefaultRetainedMaxBytes)
	orDefault(&l.MaxEventBytes, DefaultRetainedMaxEventBytes)
	return l
}

// memRetained is the memory RetainStore: a map and a list in retention
// order, so that the oldest retained is dropped first.
type memRetained struct {
	lim RetainedLimits
	// dropped, if set, hears each event dropped or refused (the node's
	// Observer.Limit(LimitRetained)).
	dropped func()

	mu    sync.Mutex // guards byTopic, order and bytes
	byTop map[string]*list.Element
	order *list.List // of *retainedEvent, oldest first
	bytes int
}

type retainedEvent struct {
	topic   string
	payload []byte
}

// NewMemoryRetained returns a RetainStore in memory within lim (zero
// fields take the defaults).
func NewMemoryRetained(lim RetainedLimits) RetainStore {
	return &memRetained{lim: lim.withDefaults(), byTop: map[string]*list.Element{}, order: list.New()}
}

func (m *memRetained) Blocking() bool { return false }

func (m *memRetained) Retain(topic string, payload []byte) {
	size := len(topic) + len(payload)
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.byTop[topic]; e != nil {
		old := e.Value.(*retainedEvent)
		m.bytes -= len(old.topic) + len(old.payload)
		m.order.Remove(e)
		delete(m.byTop, topic)
	}
	if len(payload) > m.lim.MaxEventBytes || size > m.lim.MaxBytes {
		m.drop()
		return
	}
	for len(m.byTop) >= m.lim.MaxTopics || m.bytes+size > m.lim.MaxBytes {
		front := m.order.Front()
		old := front.Value.(*retainedEvent)
		m.order.Remove(front)
		delete(m.byTop, old.topic)
		m.bytes -= len(old.topic) + len(old.payload)
		m.drop()
	}
	m.byTop[topic] = m.order.PushBack(&retainedEvent{topic: topic, payload: payload})
	m.bytes += size
}

func (m *memRetained) drop() {
	if m.dropped != nil {
		m.dropped()
	}
}

func (m *memRetained) Retained(_ context.Context, topic string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.byTop[topic]; e != nil {
		return e.Value.(*retainedEvent).payload, true, nil
	}
	return nil, false, nil
}

// retainSpec marks the TopicRef of an OnPublish whose PUBLISH asked for
// retain: a broadcast through it with no audience restriction other than
// excluding publisher (a session id) is retained.
type retainSpec struct{ publisher string }

// retains reports whether a broadcast with these lists may be retained.
func (r *retainSpec) retains(exclude, eligible []string) bool {
	if r == nil || eligible != nil {
		return false
	}
	return len(exclude) == 0 || len(exclude) == 1 && exclude[0] == r.publisher
}

// retainable reports whether publish options leave the event's audience
// unrestricted (but for exclude_me), so that it may be retained.
func (o *publishOptions) retainable() bool {
	return o.Retain && o.Exclude == nil && o.Eligible == nil &&
		o.ExcludeAuthID == nil && o.EligibleAuthID == nil &&
		o.ExcludeAuthRole == nil && o.EligibleAuthRole == nil
}

// broadcastRetained is broadcast that also keeps the encoded event as
// uri's retained event.
func (n *Node) broadcastRetained(uri string, event any, a *Audience, relay bool, details []byte) (int, error) {
	payload, err := appendJSON(make([]byte, 0, 64), event)
	if err != nil {
		return 0, err
	}
	n.retained.Retain(uri, payload) // nothing modifies payload below
	if relay && n.broker.relay != nil {
		n.broker.relay.Publish(uri, payload, *a)
	}
	return n.deliver(uri, payload, a, details), nil
}

// retainedDetails are the EVENT details of a retained event.
var retainedDetails = []byte(`{"retained":true}`)

// sendRetained sends the retained event of uri, if any, to the session's
// v2 subscription sub, once SUBSCRIBED is out: inline when the store
// does no I/O and the handler is not offloaded, else as a task on the
// session's lane (after OnSubscribe and SUBSCRIBED). It is sent only if
// the subscription still stands when it is read. s.cb must be held.
func (s *Session) sendRetained(ctx context.Context, uri string, sub *subscription) {
	task := func() {
		p, ok, err := s.node.retained.Retained(ctx, uri)
		if err != nil {
			s.logAt(slog.LevelWarn, "wamp: retained event not read", "topic", uri, "err", err)
			return
		}
		if !ok {
			return
		}
		if id, still := s.subscribedTo(uri); !still || id != sub.subID || s.isFailed(sub) {
			return
		}
		s.send("EVENT", encodeEventV2(sub.subID, newGlobalID(), retainedDetails, p))
	}
	if !s.node.retained.Blocking() && !sub.handler().offload {
		task()
		return
	}
	if !s.enqueueLane(false, task) {
		s.logAt(slog.LevelInfo, "wamp: retained event not sent: offloaded work at its bound", "topic", uri)
	}
}

// resendRetained is sendRetained for a SUBSCRIBE with get_retained of a
// topic the session is subscribed to already: the spec's answer is the
// same subscription, and the retained event is asked for all the same.
func (s *Session) resendRetained(ctx context.Context, uri string) {
	s.mu.Lock()
	sub := s.subs.get(uri)
	s.mu.Unlock()
	if sub != nil {
		s.sendRetained(ctx, uri, sub)
	}
}

// advertiseBrokerFeatures adds the broker features of this file and
// pattern.go to the WELCOME roles: event_retention always,
// pattern_based_subscription when patterns are served.
func advertiseBrokerFeatures(roles map[string]any, patterns bool) {
	broker := roles["broker"].(map[string]any)["features"].(map[string]bool)
	broker["event_retention"] = true
	if patterns {
		broker["pattern_based_subscription"] = true
	}
}
