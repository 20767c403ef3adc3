package wamp

import (
	"sync"
	"sync/atomic"

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
	mu     sync.RWMutex
	topics map[string]*topicState
}

type topicState struct {
	subs map[*Session]struct{}
	// snap is an immutable []*Session of subs, or nil when stale.
	snap atomic.Pointer[[]*Session]
}

// add subscribes s to id.
func (b *broker) add(id string, s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[id]
	if t == nil {
		t = &topicState{subs: map[*Session]struct{}{}}
		b.topics[id] = t
	}
	t.subs[s] = struct{}{}
	t.snap.Store(nil)
}

// remove unsubscribes s from id and deletes the topic when it is empty, so
// topics do not accumulate as clients come and go.
func (b *broker) remove(id string, s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[id]
	if t == nil {
		return
	}
	delete(t.subs, s)
	t.snap.Store(nil)
	if len(t.subs) == 0 {
		delete(b.topics, id)
	}
}

func (b *broker) count(id string) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if t := b.topics[id]; t != nil {
		return len(t.subs)
	}
	return 0
}

func (b *broker) topicCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.topics)
}

// snapshot returns the current subscribers of id. The slice must not be
// modified.
func (b *broker) snapshot(id string) []*Session {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[id]
	if t == nil {
		return nil
	}
	if p := t.snap.Load(); p != nil {
		return *p
	}
	// Concurrent readers may both build; both results are identical
	// because writers are excluded by the read lock.
	list := make([]*Session, 0, len(t.subs))
	for s := range t.subs {
		list = append(list, s)
	}
	t.snap.Store(&list)
	return list
}

// topicRef implements handler.TopicRef by topic URI, so it stays valid
// when the topic empties and is created again.
type topicRef struct {
	n  *Node
	id string
}

var _ handler.TopicRef = topicRef{}

func (t topicRef) ID() string { return t.id }

func (t topicRef) Count() int { return t.n.broker.count(t.id) }

func (t topicRef) Broadcast(event any, exclude, eligible []string) error {
	_, err := t.n.broadcast(t.id, event, exclude, eligible)
	return err
}

// Topic returns a handle on the topic with the given (fully expanded) URI,
// for broadcasting from outside a handler callback, e.g. a server-side push.
func (n *Node) Topic(uri string) handler.TopicRef { return topicRef{n: n, id: uri} }

// broadcast encodes EVENT once and hands the same bytes to every selected
// subscriber. It returns how many peers accepted the message.
func (n *Node) broadcast(id string, event any, exclude, eligible []string) (int, error) {
	msg, err := encodeEvent(id, event)
	if err != nil {
		return 0, err
	}
	subs := n.broker.snapshot(id)
	if len(subs) == 0 {
		return 0, nil
	}
	ex := newIDSet(exclude)
	el := newIDSet(eligible)
	sent := 0
	for _, s := range subs {
		if ex.has(s.id) {
			continue
		}
		if el.n > 0 && !el.has(s.id) {
			continue
		}
		if s.peer.Send(msg) {
			sent++
		}
	}
	return sent, nil
}

// idSet is a small set of session ids: linear for the usual handful, a map
// for long lists so that filtering 10k subscribers stays linear.
type idSet struct {
	n    int
	list []string
	m    map[string]struct{}
}

func newIDSet(ids []string) idSet {
	if len(ids) <= 8 {
		return idSet{n: len(ids), list: ids}
	}
	m := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return idSet{n: len(ids), m: m}
}

func (s idSet) has(id string) bool {
	if s.m != nil {
		_, ok := s.m[id]
		return ok
	}
	for _, x := range s.list {
		if x == id {
			return true
		}
	}
	return false
}
