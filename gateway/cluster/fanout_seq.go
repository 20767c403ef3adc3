package cluster

import (
	"sync"
)

// Bounds of the sequence-number state.
const (
	// fanoutMaxSeqStreams bounds the publisher's per-topic counters: when
	// it would grow past it, the publisher starts a new epoch (the map is
	// cleared and every counter starts again from 1), which receivers see
	// and take as a new baseline without counting anything lost.
	fanoutMaxSeqStreams = 1 << 16
	// fanoutMaxSeenStreams bounds the receiver's (origin, topic) baselines:
	// past it they are all forgotten, and each stream's next message sets
	// its baseline again (no loss counted for that message).
	fanoutMaxSeenStreams = 1 << 16
)

// fanoutSeqs numbers what a replica relays, per stream: per topic in
// pub/sub mode (a receiver only hears the topics it watches, so only a
// per-topic counter is contiguous at every receiver), one stream for
// everything in streams mode (every replica reads the whole Redis stream).
// Numbers are given at Publish time, before the outbound queue, so a
// message dropped by a full queue or a failed PUBLISH leaves a hole that
// receivers count as lost.
type fanoutSeqs struct {
	perTopic bool
	mu       sync.Mutex
	epoch    uint64
	next     map[string]uint64 // stream → last number given
}

// newFanoutSeqs starts at epoch start: the publishing replica's start time
// in nanoseconds, so that a replica restarted under the same NodeID (its
// counters back at 1) is a new epoch to receivers, not a run of
// duplicates.
func newFanoutSeqs(perTopic bool, start uint64) *fanoutSeqs {
	return &fanoutSeqs{perTopic: perTopic, epoch: start, next: make(map[string]uint64)}
}

// stamp numbers env (a version 2 envelope) for topic and runs send with
// the lock held, so that the order of the numbers is the order of the
// outbound queue (send must not block).
func (s *fanoutSeqs) stamp(topic string, env []byte, send func()) {
	if !s.perTopic {
		topic = ""
	}
	s.mu.Lock()
	n, ok := s.next[topic]
	if !ok && len(s.next) >= fanoutMaxSeqStreams {
		clear(s.next)
		s.epoch++
	}
	n++
	s.next[topic] = n
	setFanoutSeq(env, s.epoch, n)
	send()
	s.mu.Unlock()
}

// fanoutSeen is a receiver's last (epoch, seq) per (origin, topic) stream.
type fanoutSeen struct {
	mu    sync.Mutex
	topic map[string]map[string]fanoutPos // topic → origin → last
	n     int                             // streams held
}

type fanoutPos struct{ epoch, seq uint64 }

func newFanoutSeen() *fanoutSeen { return &fanoutSeen{topic: make(map[string]map[string]fanoutPos)} }

// check records m's position on its stream (topic is "" in streams mode)
// and returns how many messages are missing before it (lost) and whether
// it comes at or before the last one seen (dup: a PUBLISH retried by
// rueidis, or a reorder). The first message of a stream, or of a new
// epoch, sets the baseline: nothing before it is counted. Version 1
// messages (Seq 0) are never counted.
func (s *fanoutSeen) check(topic string, m *FanoutMessage) (lost uint64, dup bool) {
	if m.Seq == 0 {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byOrigin := s.topic[topic]
	if byOrigin == nil {
		byOrigin = make(map[string]fanoutPos)
		s.topic[topic] = byOrigin
	}
	last, ok := byOrigin[m.Origin]
	switch {
	case !ok:
		if s.n >= fanoutMaxSeenStreams {
			clear(s.topic)
			byOrigin = map[string]fanoutPos{}
			s.topic[topic] = byOrigin
			s.n = 0
		}
		s.n++
	case last.epoch != m.Epoch:
	case m.Seq <= last.seq:
		return 0, true
	default:
		lost = m.Seq - last.seq - 1
	}
	byOrigin[m.Origin] = fanoutPos{m.Epoch, m.Seq}
	return lost, false
}

// forget drops the baselines of topic: called once this replica no longer
// hears it (its unsubscription is confirmed), so that watching it again
// later does not count what was published meanwhile as lost.
func (s *fanoutSeen) forget(topic string) {
	s.mu.Lock()
	s.n -= len(s.topic[topic])
	delete(s.topic, topic)
	s.mu.Unlock()
}

// keepOnly forgets every topic that keep rejects (after a reconnect: the
// topics unwatched while the connection was down).
func (s *fanoutSeen) keepOnly(keep func(topic string) bool) {
	s.mu.Lock()
	for t, m := range s.topic {
		if !keep(t) {
			s.n -= len(m)
			delete(s.topic, t)
		}
	}
	s.mu.Unlock()
}
