package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Defaults and fixed bounds of Fanout.
const (
	// DefaultFanoutQueueSize bounds each of the outbound and inbound queues
	// when FanoutOptions.QueueSize is 0.
	DefaultFanoutQueueSize = 4096
	// fanoutBatch is the most PUBLISH commands one pipeline (DoMulti)
	// carries; a bigger backlog goes out in several round trips.
	fanoutBatch = 512
	// fanoutSubChunk is the most channels one SUBSCRIBE or UNSUBSCRIBE
	// names, so that resubscribing thousands of topics after a reconnect
	// sends commands of reasonable size.
	fanoutSubChunk = 512
	// fanoutProbeEvery is the pause between two PINGs while Redis cannot
	// be reached (by the subscriber while its subscription is down, by the
	// publisher while its last attempt failed): a refused connection fails
	// at once, so the subscription is back within this pause of Redis
	// being back, instead of after a backoff of up to seconds during which
	// the publishers, already reconnected, publish to nobody.
	fanoutProbeEvery = 100 * time.Millisecond
	// fanoutIdleProbe is the pause between two PINGs of an idle publisher
	// whose last attempt worked.
	fanoutIdleProbe = time.Second
)

// Reasons given to FanoutObserver.Dropped.
const (
	FanoutDropPublishQueueFull = "publish_queue_full"
	FanoutDropDeliverQueueFull = "deliver_queue_full"
	FanoutDropPublishError     = "publish_error"
	FanoutDropDecodeError      = "decode_error"
	// FanoutDropEncodeError: Publish was given a message the envelope
	// cannot carry (empty payload, over 4 MiB, an id over 255 bytes, more
	// than 65536 ids in a list), so other replicas would refuse it.
	FanoutDropEncodeError = "encode_error"
)

// Audience is who a broadcast is for, beyond the topic's subscribers: the
// lists of a WAMP publish's options. Sessions are WAMP session ids
// (globally unique strings), users authenticated user names, roles the
// users' roles. It has the fields of wamp.Audience, in the same order, so
// that the gateway converts one to the other with Audience(a); the lists
// mean there what they mean here.
type Audience struct {
	// ExcludeSessions and EligibleSessions: sessions not to deliver to,
	// and, if non-empty, the only ones to deliver to.
	ExcludeSessions, EligibleSessions []string
	// ExcludeUsers and EligibleUsers: likewise by user name.
	ExcludeUsers, EligibleUsers []string
	// ExcludeRoles and EligibleRoles: likewise by role.
	ExcludeRoles, EligibleRoles []string
}

// FanoutMessage is one broadcast relayed between replicas.
type FanoutMessage struct {
	// Topic is the WAMP topic the event was published on.
	Topic string
	// Payload is the event, already JSON-encoded (a valid JSON value).
	Payload []byte
	// Audience restricts who receives it.
	Audience
	// Details are the WAMP v2 EVENT details disclosing the publisher (a
	// JSON object: publisher, publisher_authid, publisher_authrole), nil
	// when it is not disclosed. Only version 2 envelopes carry them, in a
	// form the previous release ignores (see fanout_envelope.go).
	Details []byte
	// Origin is the NodeID of the publishing replica.
	Origin string
	// SentAt is when the publishing replica called Publish (its clock).
	SentAt time.Time
	// Epoch and Seq place the message on its stream: the origin's
	// messages on Topic (pub/sub mode) or all the origin's messages
	// (streams mode) are numbered 1, 2, 3... within an epoch, so that a
	// receiver sees what it missed. Seq is 0 in messages from a replica of
	// the previous release (envelope version 1), which are never counted.
	Epoch, Seq uint64
}

// FanoutObserver hears about relay health. Its methods are called on hot
// paths (Publish, the Redis reader) and must be cheap and never block.
type FanoutObserver interface {
	// Relayed: a message from another replica was handed to Deliver; lag
	// is now - SentAt (clamped at 0: the clocks of two replicas may
	// disagree).
	Relayed(lag time.Duration)
	// Dropped: a message was lost, for one of the FanoutDrop* reasons.
	Dropped(reason string)
	// Published: n messages were accepted by Redis.
	Published(n int)
	// Lost: n messages from the replica origin never arrived here, as
	// found from the holes in its sequence numbers. They include what the
	// origin itself dropped (a full queue, a failed PUBLISH) and what
	// Redis did not bring here (this replica's subscription down), but
	// not the messages dropped here after arrival, which Dropped counts.
	// Only a hole followed by a later message is seen: messages lost at
	// the end of a burst are counted when the next one arrives.
	Lost(origin string, n uint64)
	// Duplicate: a message from origin came with a sequence number at or
	// before the last one seen (a PUBLISH retried by the client library
	// after its connection broke, or a reorder). In pub/sub mode it is
	// delivered all the same: the number cannot tell a copy from a late
	// original. In streams mode it is not: one origin's messages are in
	// order there, so it is a copy (a batch sent again after an error).
	Duplicate(origin string)
	// SubscriptionUp: this replica's subscription (or, in streams mode,
	// its reading of the stream) was lost (false) or is back (true). It
	// starts down until first set up.
	SubscriptionUp(up bool)
}

// Fan-out modes (FanoutOptions.Mode).
const (
	// FanoutPubSub relays over Redis pub/sub (sharded in a cluster): at
	// most once, nothing kept for a replica that is not listening.
	FanoutPubSub = "pubsub"
	// FanoutStreams relays through one Redis stream, Prefix+"fanout-stream",
	// that every replica reads: a replica whose link was down reads on
	// from where it stopped, so an outage shorter than the retention loses
	// nothing.
	FanoutStreams = "streams"
)

// Stream defaults (FanoutOptions.StreamRetention, StreamMaxLen).
const (
	DefaultFanoutStreamRetention = 5 * time.Minute
	DefaultFanoutStreamMaxLen    = 100000
)

// FanoutOptions configures a Fanout.
type FanoutOptions struct {
	// Redis gives the connection: Addrs, Mode (standalone, sentinel or
	// cluster), MasterName, Username, Password, DB, PipelineMultiplex;
	// its LookupTimeout (default storage.DefaultRedisLookupTimeout) bounds
	// dialing and every command. The session-reading fields are ignored.
	// DB does not separate channels (Redis pub/sub ignores it): Prefix
	// does.
	Redis storage.RedisOptions
	// Prefix starts every channel name: topic T travels on
	// Prefix+"fanout:"+T. Default storage.DefaultClientPrefix ("wsgate:"),
	// the client storage's. Deployments sharing one Redis must use
	// different prefixes.
	Prefix string
	// NodeID identifies this replica (1 to 255 bytes, required): it is the
	// Origin of what it publishes, and messages carrying it are ignored
	// on receipt, because Redis echoes our own publishes back to us.
	NodeID string
	// Deliver receives every message from another replica on a watched
	// topic (and possibly, briefly, on a topic just unwatched). It is
	// called on one goroutine, in arrival order (per topic: the order each
	// publisher published in), and must not block long: while it runs,
	// arriving messages wait in the inbound queue and overflow it.
	Deliver func(FanoutMessage)
	// QueueSize bounds the outbound queue (messages Publish has accepted
	// and the publisher has not sent yet) and, separately, the inbound
	// queue (messages received and not yet handed to Deliver). A full
	// queue drops the message and tells the Observer. Default
	// DefaultFanoutQueueSize.
	QueueSize int
	// Observer, if set, hears about publishes, relays and drops.
	Observer FanoutObserver
	// Logger receives the warnings (at most one per kind every 10s;
	// payloads are never logged). Default slog.Default().
	Logger *slog.Logger
	// Mode is FanoutPubSub (default) or FanoutStreams. Every replica
	// sharing a Prefix must use the same: the two do not hear each other.
	Mode string
	// StreamRetention (streams mode): entries older than this are trimmed
	// (XADD ... MINID ~), so a replica away longer loses what was trimmed
	// (counted as Lost). Default DefaultFanoutStreamRetention.
	StreamRetention time.Duration
	// StreamMaxLen (streams mode) caps the stream's length besides
	// (XTRIM MAXLEN ~ once per batch), so that a burst cannot fill Redis'
	// memory within the retention. Default DefaultFanoutStreamMaxLen.
	StreamMaxLen int64
}

// Fanout relays topic events between gateway replicas over Redis
// pub/sub: what a handler broadcasts on one replica reaches the subscribers
// of that topic on every other replica. Each replica subscribes only to the
// channels of topics it has local subscribers for (Watch / Unwatch). It is
// the WAMP node's Relay (wamp.Relay: Publish, Watch, Unwatch).
//
// Standalone and sentinel use classic pub/sub (PUBLISH, SUBSCRIBE) on one
// dedicated connection; cluster uses sharded pub/sub (SPUBLISH,
// SSUBSCRIBE; Redis >= 7), so that a message travels only within the shard
// that owns its channel instead of across the whole cluster bus.
//
// Delivery is at most once: Redis pub/sub keeps nothing for a subscriber
// that is not connected, so messages published while a replica's
// subscription connection is down (from the loss until the resubscription,
// within fanoutProbeEvery of Redis answering again) are lost for that
// replica, as are messages dropped by a full queue; the receivers count
// them from the holes in the sequence numbers (FanoutObserver.Lost).
// Nothing is retried, so nothing is delivered twice either, except in the
// rare case of a PUBLISH retried by rueidis after its connection broke once
// the command was already sent (counted as Duplicate). Streams mode
// (FanoutStreams) trades memory in Redis and reading every message for
// surviving outages shorter than its retention.
//
// Goroutines, all started by NewFanout and stopped by Close:
//
//	publisher    drains the outbound queue, PUBLISHes (streams: XADDs) in
//	             pipelined batches; PINGs while idle, for Up
//	deliverer    drains the inbound queue into Deliver
//	subscriber   standalone/sentinel: owns the dedicated connection,
//	             applies Watch/Unwatch, reconnects and resubscribes;
//	             cluster: applies Watch/Unwatch by starting and stopping
//	             one receiver goroutine per watched topic (each counted in
//	             the same WaitGroup)
//	stream reader  streams mode, instead of the subscriber: XREADs the
//	             stream from its last id on a client of its own
//
// The publisher and the subscriber each own their rueidis client (so a
// subscription connection killed or stuck never holds up publishing) and
// close it when they stop.
type Fanout struct {
	node       string
	chanPrefix string // Prefix + "fanout:"
	cluster    bool   // sharded pub/sub
	timeout    time.Duration
	clientOpt  rueidis.ClientOption // for the publisher
	subOpt     rueidis.ClientOption // for the subscriber: named, see fanoutClientName
	deliver    func(FanoutMessage)
	obs        FanoutObserver
	streams    bool   // FanoutStreams mode
	streamKey  string // Prefix + "fanout-stream"
	retention  time.Duration
	maxLen     int64
	started    time.Time

	seqs *fanoutSeqs // numbers what Publish relays
	seen *fanoutSeen // last numbers heard, per origin and topic

	// pubUp: the publisher's last attempt reached Redis (Up).
	pubUp atomic.Bool
	// sub tracks the subscription's ups and downs, for the logs and the
	// Observer.
	sub fanoutSubState

	outbound chan fanoutOut     // bounded by QueueSize: Publish → publisher
	inbound  chan FanoutMessage // bounded by QueueSize: Redis → deliverer

	// want is the set of topics with local subscribers, as last told by
	// Watch/Unwatch; dirty holds the topics whose want changed since the
	// subscriber last looked. Both are bounded by the number of topics,
	// not by the number of calls: repeated calls coalesce.
	mu     sync.Mutex
	want   map[string]struct{}
	dirty  map[string]struct{}
	kick   chan struct{} // capacity 1: "dirty is not empty"
	closed atomic.Bool
	// pwant counts the local patterns per Redis glob (WatchPattern,
	// fanout_patterns.go) and pdirty holds the globs that came or went
	// since the subscriber last looked; guarded by mu, like want.
	pwant  map[string]int
	pdirty map[string]struct{}
	// npatterns is len(pwant), read without mu by onMessage.
	npatterns atomic.Int64
	// psubscribed are the globs PSUBSCRIBEd on the current connection;
	// only the subscriber goroutine touches it, under procMu.
	psubscribed map[string]bool

	// procMu is held by the subscriber while it applies changes; tests
	// hold it to make Watch/Unwatch calls land in one batch.
	procMu sync.Mutex

	watching atomic.Int64 // topics subscribed in Redis, confirmed
	// subscribes and unsubscribes count the channels named in SUBSCRIBE /
	// SSUBSCRIBE and UNSUBSCRIBE / SUNSUBSCRIBE commands (tests).
	subscribes, unsubscribes atomic.Int64
	// connects counts the subscription connections that were set up and
	// resubscribed (standalone/sentinel; tests).
	connects atomic.Int64

	warn *warner // rate-limited warnings

	ctx       context.Context // cancelled by Close: ends every wait
	cancel    context.CancelFunc
	stop      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// fanoutOut is one encoded message waiting in the outbound queue.
type fanoutOut struct {
	channel string // pub/sub mode
	topic   string
	data    []byte
}

// nopFanoutObserver stands in for a nil Observer.
type nopFanoutObserver struct{}

func (nopFanoutObserver) Relayed(time.Duration) {}
func (nopFanoutObserver) Dropped(string)        {}
func (nopFanoutObserver) Published(int)         {}
func (nopFanoutObserver) Lost(string, uint64)   {}
func (nopFanoutObserver) Duplicate(string)      {}
func (nopFanoutObserver) SubscriptionUp(bool)   {}

// NewFanout checks the options and starts the goroutines. It does not
// need Redis to be up: the clients are created by the goroutines that use
// them, and again after a failure, with a capped backoff.
func NewFanout(o FanoutOptions) (*Fanout, error) {
	l, err := newLink(o.Redis, o.Prefix, o.NodeID, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("cluster fanout: %w", err)
	}
	switch {
	case o.Deliver == nil:
		return nil, errors.New("cluster fanout: Deliver: nil")
	case o.QueueSize < 0:
		return nil, fmt.Errorf("cluster fanout: QueueSize: negative (%d)", o.QueueSize)
	case o.Mode != "" && o.Mode != FanoutPubSub && o.Mode != FanoutStreams:
		return nil, fmt.Errorf("cluster fanout: Mode: %q, want %q or %q", o.Mode, FanoutPubSub, FanoutStreams)
	case o.StreamRetention < 0:
		return nil, fmt.Errorf("cluster fanout: StreamRetention: negative (%v)", o.StreamRetention)
	case o.StreamMaxLen < 0:
		return nil, fmt.Errorf("cluster fanout: StreamMaxLen: negative (%d)", o.StreamMaxLen)
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultFanoutQueueSize
	}
	if o.StreamRetention == 0 {
		o.StreamRetention = DefaultFanoutStreamRetention
	}
	if o.StreamMaxLen == 0 {
		o.StreamMaxLen = DefaultFanoutStreamMaxLen
	}
	streams := o.Mode == FanoutStreams
	now := time.Now()
	if o.Observer == nil {
		o.Observer = nopFanoutObserver{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fanout{
		node:       o.NodeID,
		chanPrefix: l.prefix + "fanout:",
		cluster:    l.cluster,
		timeout:    l.redis.LookupTimeout,
		clientOpt:  l.client,
		subOpt:     cloneClientOption(l.client),
		deliver:    o.Deliver,
		obs:        o.Observer,
		streams:    streams,
		streamKey:  l.prefix + "fanout-stream",
		retention:  o.StreamRetention,
		maxLen:     o.StreamMaxLen,
		started:    now,
		seqs:       newFanoutSeqs(!streams, uint64(now.UnixNano())),
		seen:       newFanoutSeen(),
		warn:       newWarner(l.log.With("component", "redis_fanout", "node", o.NodeID)),
		outbound:   make(chan fanoutOut, o.QueueSize),
		inbound:    make(chan FanoutMessage, o.QueueSize),
		want:       make(map[string]struct{}),
		dirty:      make(map[string]struct{}),
		kick:       make(chan struct{}, 1),
		ctx:        ctx,
		cancel:     cancel,
		stop:       make(chan struct{}),
	}
	f.clientOpt.ClientName = "wsgate-fanout"
	f.subOpt.ClientName = fanoutClientName(o.NodeID)
	f.pubUp.Store(true) // see runPublisher
	f.wg.Add(3)
	go f.runPublisher()
	go f.runDeliverer()
	switch {
	case streams:
		go f.runStreamReader()
	case f.cluster:
		go f.runShardedSubscriber()
	default:
		go f.runSubscriber()
	}
	return f, nil
}

// fanoutClientName is the CLIENT SETNAME of a replica's subscription
// connections, "wsgate-fanout-sub-<NodeID>", so that an operator (or a
// test) can tell them apart in CLIENT LIST. Redis refuses spaces and
// control characters in names: they become '_'.
func fanoutClientName(node string) string {
	b := []byte("wsgate-fanout-sub-" + node)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b)
}

// Publish relays an event to the other replicas, for audience a. It never
// blocks: the message is encoded (copying payload and lists, so the caller
// may reuse them), numbered on its stream and put on the bounded outbound
// queue; when the queue is full it is dropped and the Observer hears
// Dropped("publish_queue_full") (and the receivers, from the hole in the
// numbers, Lost). A topic that is not relayable (see relayable) is dropped
// as "encode_error", unnumbered. After Close it does nothing.
func (f *Fanout) Publish(topic string, payload []byte, a Audience) {
	f.PublishDetails(topic, payload, a, nil)
}

// PublishDetails is Publish of an event whose publisher is disclosed:
// details are the v2 EVENT details naming it (a JSON object, at most
// 4 KiB), which the other replicas put in the EVENTs they deliver.
func (f *Fanout) PublishDetails(topic string, payload []byte, a Audience, details []byte) {
	if f.closed.Load() {
		return
	}
	if !relayable(topic) {
		f.obs.Dropped(FanoutDropEncodeError)
		f.warn.warn("encode", "fan-out message not published: its topic holds a NUL byte")
		return
	}
	// Seq 1 makes a version 2 envelope; stamp writes the real numbers.
	m := FanoutMessage{Payload: payload, Audience: a, Details: details, Origin: f.node, SentAt: time.Now(), Seq: 1}
	data, err := encodeFanout(nil, &m)
	if err != nil {
		f.obs.Dropped(FanoutDropEncodeError)
		f.warn.warn("encode", "fan-out message not published", "topic", topic, "error", err)
		return
	}
	out := fanoutOut{topic: topic, data: data}
	if !f.streams {
		out.channel = f.chanPrefix + topic
	}
	f.seqs.stamp(topic, data, func() {
		select {
		case f.outbound <- out:
		default:
			f.obs.Dropped(FanoutDropPublishQueueFull)
		}
	})
}

// Up reports whether the publisher reached Redis on its last attempt (a
// batch sent, or its probe while idle or down: at most a second old; true
// until the first attempt, a second after NewFanout at the latest) and,
// in streams mode, whether its last XADD succeeded: while it is false, what
// Publish accepts is probably lost, and the push API says so (503).
func (f *Fanout) Up() bool { return f.pubUp.Load() }

// Watch tells that this replica got its first local subscriber of topic:
// its channel is subscribed soon after. It never blocks (the caller may hold
// a lock): it records the wish and wakes the subscriber. Calls coalesce:
// Watch then Unwatch before the subscriber runs sends nothing to Redis. A
// topic that is not relayable is never subscribed: its subscribers hear
// this replica's broadcasts only.
func (f *Fanout) Watch(topic string) {
	if relayable(topic) {
		f.setWant(topic, true)
	}
}

// relayable reports whether topic may travel between replicas: not when it
// holds a NUL byte. No URI does, but a route whose placeholder takes any
// segment matches one; and the previous release carried its disconnect
// commands on the topic "\x00wsgate-control" of this very fan-out, so
// relaying such a topic during a rolling upgrade would let a client's
// broadcast be read as a command by the older replicas, or let a client
// subscribe to their commands.
func relayable(topic string) bool { return strings.IndexByte(topic, 0) < 0 }

// Unwatch tells that the last local subscriber of topic left: its channel
// is unsubscribed soon after. It never blocks.
func (f *Fanout) Unwatch(topic string) { f.setWant(topic, false) }

func (f *Fanout) setWant(topic string, on bool) {
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		return
	}
	_, had := f.want[topic]
	if had == on {
		f.mu.Unlock()
		return
	}
	if on {
		f.want[topic] = struct{}{}
	} else {
		delete(f.want, topic)
	}
	if f.streams {
		// The stream reader reads everything and looks at want: there is
		// nothing to (un)subscribe.
		f.mu.Unlock()
		return
	}
	f.dirty[topic] = struct{}{}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default: // already due
	}
}

// takeDirty returns the changes since the last call: the topics to
// subscribe (wanted, not in subscribed) and to unsubscribe (in subscribed,
// not wanted). With all, every wanted topic counts as changed (after a
// reconnect, when subscribed is empty).
func (f *Fanout) takeDirty(subscribed map[string]bool, all bool) (add, drop []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return takeChanges(f.want, f.dirty, subscribed, all)
}

// takeChanges compares what is wanted with what is subscribed, for the
// names in dirty (every wanted one with all), and empties dirty: the
// topics of takeDirty and the globs of takePatternDirty alike. f.mu must
// be held.
func takeChanges[V any](want map[string]V, dirty map[string]struct{}, subscribed map[string]bool, all bool) (add, drop []string) {
	if all {
		for t := range want {
			if !subscribed[t] {
				add = append(add, t)
			}
		}
		for t := range subscribed {
			if _, ok := want[t]; !ok {
				drop = append(drop, t)
			}
		}
		clear(dirty)
		return add, drop
	}
	for t := range dirty {
		_, wanted := want[t]
		switch {
		case wanted && !subscribed[t]:
			add = append(add, t)
		case !wanted && subscribed[t]:
			drop = append(drop, t)
		}
	}
	clear(dirty)
	return add, drop
}

// wanted reports whether topic has local subscribers, as last told.
func (f *Fanout) wanted(topic string) bool {
	f.mu.Lock()
	_, ok := f.want[topic]
	f.mu.Unlock()
	return ok
}

// Watching returns the number of topics currently subscribed in Redis
// (confirmed by Redis; 0 while the subscription connection is down). In
// streams mode: the number of watched topics while the stream reader's
// last XREAD worked, else 0.
func (f *Fanout) Watching() int {
	if f.streams {
		f.sub.mu.Lock()
		up := f.sub.up
		f.sub.mu.Unlock()
		if !up {
			return 0
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.want)
	}
	return int(f.watching.Load())
}

// Close stops every goroutine, closes the connections and waits, at most
// a few lookup timeouts, for all of it. Messages still in the outbound
// queue get one last pipelined PUBLISH within the lookup timeout; those in
// the inbound queue are not delivered. It returns an error if the
// goroutines did not stop in time (they still stop, later).
func (f *Fanout) Close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed.Store(true)
		f.mu.Unlock()
		f.cancel()
		close(f.stop)
	})
	if err := waitStopped(&f.wg, f.clientOpt, f.timeout); err != nil {
		return fmt.Errorf("cluster fanout: close: %w", err)
	}
	return nil
}

// runDeliverer hands inbound messages to Deliver, one at a time.
func (f *Fanout) runDeliverer() {
	defer f.wg.Done()
	for {
		select {
		case <-f.stop:
			return
		case m := <-f.inbound:
			lag := max(time.Since(m.SentAt), 0)
			if m.SentAt.IsZero() {
				lag = 0
			}
			f.deliver(m)
			f.obs.Relayed(lag)
		}
	}
}

// onMessage handles one message from Redis, on rueidis' reader goroutine
// (standalone) or the topic's receiver (cluster): it must not block, so it
// only decodes and queues.
func (f *Fanout) onMessage(channel, data string) {
	topic, ok := strings.CutPrefix(channel, f.chanPrefix)
	if !ok {
		f.obs.Dropped(FanoutDropDecodeError)
		f.warn.warn("decode", "fan-out message on an unexpected channel", "channel", channel)
		return
	}
	m, own, err := decodeFanoutExcept([]byte(data), f.node)
	if own {
		return // our own publish, echoed by Redis
	}
	if err != nil {
		f.obs.Dropped(FanoutDropDecodeError)
		f.warn.warn("decode", "fan-out message dropped", "topic", topic, "bytes", len(data), "error", err)
		return
	}
	m.Topic = topic
	if f.npatterns.Load() > 0 {
		// A channel matched by an exact subscription and patterns
		// arrives once per match, one copy after the other: the copies
		// carry the same number (fanout_patterns.go).
		lost, dup := f.seen.check(topic, &m)
		if dup {
			return
		}
		if lost > 0 {
			f.obs.Lost(m.Origin, lost)
			f.warn.warn("lost", "fan-out messages from another replica never arrived", "origin", m.Origin, "messages", lost)
		}
	} else {
		f.count(topic, &m)
	}
	f.enqueue(m)
}

// count checks m's number against the last one heard on its stream (topic
// "" in streams mode), tells the Observer of holes and repeats, and
// reports a repeat.
func (f *Fanout) count(stream string, m *FanoutMessage) (dup bool) {
	lost, dup := f.seen.check(stream, m)
	if lost > 0 {
		f.obs.Lost(m.Origin, lost)
		f.warn.warn("lost", "fan-out messages from another replica never arrived", "origin", m.Origin, "messages", lost)
	}
	if dup {
		f.obs.Duplicate(m.Origin)
	}
	return dup
}

// enqueue puts m on the inbound queue, or drops it when full.
func (f *Fanout) enqueue(m FanoutMessage) {
	select {
	case f.inbound <- m:
	default:
		f.obs.Dropped(FanoutDropDeliverQueueFull)
	}
}

// runPublisher sends the outbound queue to Redis in pipelined batches: the
// first message wakes it, and whatever queued meanwhile (up to fanoutBatch)
// goes in the same round trip, so a burst costs a few round trips, not one
// per message. While idle it PINGs Redis (every fanoutIdleProbe, every
// fanoutProbeEvery while Redis is unreachable), so that Up tells the truth
// without a message having to fail first.
func (f *Fanout) runPublisher() {
	defer f.wg.Done()
	p := &fanoutPublisher{f: f}
	defer p.close()
	batch := make([]fanoutOut, 0, fanoutBatch)
	// held (streams mode) is what Redis did not take: it goes out again,
	// first and in order, every fanoutProbeEvery until Redis takes it,
	// while newer messages wait in the bounded outbound queue (full: they
	// are dropped and counted, and the receivers count the hole).
	var held []fanoutOut
	// Up starts true (NewFanout), as if a first probe had worked, and that
	// probe waits as an idle one would: a probe at once would hold the
	// publisher for a whole lookup timeout when Redis is unreachable,
	// before it has even taken the first message (and Up would be false
	// for as long when Redis is fine). The first batch or probe tells.
	probe := time.NewTimer(fanoutIdleProbe)
	defer probe.Stop()
	for {
		if len(held) > 0 {
			if !f.sleep(fanoutProbeEvery) {
				p.flush(held)
				return
			}
			batch = append(batch[:0], held...)
			held = nil
		} else {
			select {
			case <-f.stop:
				p.flush(nil)
				return
			case <-probe.C:
				p.probe()
				probe.Reset(p.probeIn())
				continue
			case m := <-f.outbound:
				batch = append(batch[:0], m)
			}
		}
		batch = f.fill(batch)
		// Not f.ctx: a batch in flight when Close comes still goes out,
		// within its timeout, like the rest of the queue.
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		held = p.send(ctx, batch, true)
		cancel()
		clear(batch) // let the sent envelopes go
		if !probe.Stop() {
			select {
			case <-probe.C:
			default:
			}
		}
		probe.Reset(p.probeIn())
	}
}

// fill adds to batch what the outbound queue holds, up to fanoutBatch.
func (f *Fanout) fill(batch []fanoutOut) []fanoutOut {
	for len(batch) < cap(batch) {
		select {
		case m := <-f.outbound:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// flush is the last send at Close: held, then what was queued before
// Close, within one timeout, on a fresh context (f.ctx is already
// cancelled). What Redis does not take then is dropped and counted.
func (p *fanoutPublisher) flush(held []fanoutOut) {
	f := p.f
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	batch := make([]fanoutOut, 0, fanoutBatch)
	for ctx.Err() == nil {
		n := copy(batch[:min(len(held), cap(batch))], held)
		batch, held = batch[:n], held[n:]
		batch = f.fill(batch)
		if len(batch) == 0 {
			break
		}
		p.drop(p.send(ctx, batch, false))
	}
	p.drop(held)
}

// drop counts messages that will never go out as publish errors.
func (p *fanoutPublisher) drop(msgs []fanoutOut) {
	for range msgs {
		p.f.obs.Dropped(FanoutDropPublishError)
	}
}

// fanoutPublisher is the publisher goroutine's state: its client, created
// on first use and again after a failure, at most every reconnectPause.
type fanoutPublisher struct {
	f       *Fanout
	client  rueidis.Client
	failErr error
	failAt  time.Time
}

func (p *fanoutPublisher) close() {
	if p.client != nil {
		p.client.Close()
	}
}

// probeIn is the pause before the next idle probe.
func (p *fanoutPublisher) probeIn() time.Duration {
	if p.f.pubUp.Load() {
		return fanoutIdleProbe
	}
	return fanoutProbeEvery
}

// probe PINGs Redis (creating the client if need be) and records in Up
// whether it answered.
func (p *fanoutPublisher) probe() {
	f := p.f
	c, err := p.connect(true)
	if err == nil {
		ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
		err = c.Do(ctx, c.B().Ping().Build()).Error()
		cancel()
	}
	if f.ctx.Err() != nil {
		return
	}
	f.pubUp.Store(err == nil)
	if err != nil {
		f.warn.warn("probe", "fan-out publisher cannot reach Redis; what is published now is lost", "error", err)
	}
}

// connect returns the client, creating it if there is none and dial says
// it may (not during Close), at most every reconnectPause.
func (p *fanoutPublisher) connect(dial bool) (rueidis.Client, error) {
	if p.client != nil {
		return p.client, nil
	}
	if dial && (p.failErr == nil || time.Since(p.failAt) >= reconnectPause) {
		c, err := rueidis.NewClient(p.f.clientOpt)
		if err != nil {
			p.failErr, p.failAt = err, time.Now()
		} else {
			p.client, p.failErr = c, nil
			return c, nil
		}
	}
	if p.failErr != nil {
		return nil, p.failErr
	}
	return nil, errClosed
}

// send publishes batch within ctx and reports the outcome. dial says
// whether a missing client may be created (not during Close). In pub/sub
// mode what Redis did not take is dropped and counted; in streams mode it
// is returned (a copy, in order) for the publisher to send again.
func (p *fanoutPublisher) send(ctx context.Context, batch []fanoutOut, dial bool) (held []fanoutOut) {
	f := p.f
	c, err := p.connect(dial)
	if err != nil {
		f.pubUp.Store(false)
		if f.streams {
			f.warn.warn("publish", "fan-out messages held until Redis answers: cannot connect", "messages", len(batch), "error", err)
			return append([]fanoutOut(nil), batch...)
		}
		p.drop(batch)
		f.warn.warn("publish", "fan-out messages not published: cannot connect to Redis", "messages", len(batch), "error", err)
		return nil
	}
	cmds := make(rueidis.Commands, len(batch), len(batch)+1)
	var minID string
	if f.streams {
		minID = strconv.FormatInt(time.Now().Add(-f.retention).UnixMilli(), 10)
	}
	for i, m := range batch {
		switch {
		case f.streams:
			// MINID ~ trims by age at every XADD (cheap: whole macro
			// nodes only); MAXLEN ~ once per batch, below.
			cmds[i] = c.B().Xadd().Key(f.streamKey).Minid().Almost().Threshold(minID).Id("*").
				FieldValue().FieldValue(fanoutStreamTopic, m.topic).FieldValue(fanoutStreamEnvelope, rueidis.BinaryString(m.data)).Build()
		case f.cluster:
			cmds[i] = c.B().Spublish().Channel(m.channel).Message(rueidis.BinaryString(m.data)).Build()
		default:
			cmds[i] = c.B().Publish().Channel(m.channel).Message(rueidis.BinaryString(m.data)).Build()
		}
	}
	if f.streams {
		cmds = append(cmds, c.B().Xtrim().Key(f.streamKey).Maxlen().Almost().Threshold(strconv.FormatInt(f.maxLen, 10)).Build())
	}
	ok, failed := 0, 0
	var firstErr, lastErr error
	for i, r := range c.DoMulti(ctx, cmds...) {
		err := r.Error()
		if i == len(batch) { // the XTRIM
			if err != nil {
				f.warn.warn("trim", "fan-out stream not trimmed", "error", err)
			}
			continue
		}
		lastErr = err
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			if f.streams {
				held = append(held, batch[i])
			}
			continue
		}
		ok++
	}
	if f.streams {
		f.pubUp.Store(lastErr == nil)
	} else {
		f.pubUp.Store(ok > 0 || failed == 0)
	}
	if ok > 0 {
		f.obs.Published(ok)
	}
	switch {
	case firstErr == nil:
	case f.streams:
		f.warn.warn("publish", "fan-out messages held until Redis takes them", "messages", failed, "error", firstErr)
	default:
		for range failed {
			f.obs.Dropped(FanoutDropPublishError)
		}
		f.warn.warn("publish", "fan-out messages not published", "messages", failed, "error", firstErr)
	}
	return held
}

// sleep waits d or until Close; it reports whether it was not closed.
func (f *Fanout) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.stop:
		return false
	case <-t.C:
		return true
	}
}
