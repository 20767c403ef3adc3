package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// FanoutMessage is one broadcast relayed between replicas.
type FanoutMessage struct {
	// Topic is the WAMP topic the event was published on.
	Topic string
	// Payload is the event, already JSON-encoded (a valid JSON value).
	Payload []byte
	// Exclude lists WAMP session ids (globally unique strings) not to
	// deliver to.
	Exclude []string
	// Eligible, if non-empty, restricts delivery to these session ids.
	Eligible []string
	// Origin is the NodeID of the publishing replica.
	Origin string
	// SentAt is when the publishing replica called Publish (its clock).
	SentAt time.Time
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
}

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
// subscription connection is down (from the loss until the resubscription
// after reconnecting) are lost for that replica, as are messages dropped by
// a full queue. Nothing is retried, so nothing is delivered twice either,
// except in the rare case of a PUBLISH retried by rueidis after its
// connection broke once the command was already sent.
//
// Goroutines, all started by NewFanout and stopped by Close:
//
//	publisher    drains the outbound queue, PUBLISHes in pipelined batches
//	deliverer    drains the inbound queue into Deliver
//	subscriber   standalone/sentinel: owns the dedicated connection,
//	             applies Watch/Unwatch, reconnects and resubscribes;
//	             cluster: applies Watch/Unwatch by starting and stopping
//	             one receiver goroutine per watched topic (each counted in
//	             the same WaitGroup)
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
	channel string
	data    []byte
}

// nopFanoutObserver stands in for a nil Observer.
type nopFanoutObserver struct{}

func (nopFanoutObserver) Relayed(time.Duration) {}
func (nopFanoutObserver) Dropped(string)        {}
func (nopFanoutObserver) Published(int)         {}

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
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultFanoutQueueSize
	}
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
	f.wg.Add(3)
	go f.runPublisher()
	go f.runDeliverer()
	if f.cluster {
		go f.runShardedSubscriber()
	} else {
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

// Publish relays an event to the other replicas. It never blocks: the
// message is encoded (copying payload and ids, so the caller may reuse
// them) and put on the bounded outbound queue; when the queue is full it is
// dropped and the Observer hears Dropped("publish_queue_full"). A topic
// that is not relayable (see relayable) is dropped as "encode_error".
// After Close it does nothing.
func (f *Fanout) Publish(topic string, payload []byte, exclude, eligible []string) {
	if f.closed.Load() {
		return
	}
	if !relayable(topic) {
		f.obs.Dropped(FanoutDropEncodeError)
		f.warn.warn("encode", "fan-out message not published: its topic holds a NUL byte")
		return
	}
	m := FanoutMessage{Payload: payload, Exclude: exclude, Eligible: eligible, Origin: f.node, SentAt: time.Now()}
	data, err := encodeFanout(nil, &m)
	if err != nil {
		f.obs.Dropped(FanoutDropEncodeError)
		f.warn.warn("encode", "fan-out message not published", "topic", topic, "error", err)
		return
	}
	select {
	case f.outbound <- fanoutOut{channel: f.chanPrefix + topic, data: data}:
	default:
		f.obs.Dropped(FanoutDropPublishQueueFull)
	}
}

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
	if all {
		for t := range f.want {
			if !subscribed[t] {
				add = append(add, t)
			}
		}
		for t := range subscribed {
			if _, ok := f.want[t]; !ok {
				drop = append(drop, t)
			}
		}
		clear(f.dirty)
		return add, drop
	}
	for t := range f.dirty {
		_, wanted := f.want[t]
		switch {
		case wanted && !subscribed[t]:
			add = append(add, t)
		case !wanted && subscribed[t]:
			drop = append(drop, t)
		}
	}
	clear(f.dirty)
	return add, drop
}

// Watching returns the number of topics currently subscribed in Redis
// (confirmed by Redis; 0 while the subscription connection is down).
func (f *Fanout) Watching() int { return int(f.watching.Load()) }

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
	select {
	case f.inbound <- m:
	default:
		f.obs.Dropped(FanoutDropDeliverQueueFull)
	}
}

// runPublisher sends the outbound queue to Redis in pipelined batches: the
// first message wakes it, and whatever queued meanwhile (up to fanoutBatch)
// goes in the same round trip, so a burst costs a few round trips, not one
// per message.
func (f *Fanout) runPublisher() {
	defer f.wg.Done()
	p := &fanoutPublisher{f: f}
	defer p.close()
	batch := make([]fanoutOut, 0, fanoutBatch)
	for {
		select {
		case <-f.stop:
			// Last flush of what was queued before Close, within one
			// timeout, on a fresh context: f.ctx is already cancelled.
			ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
			defer cancel()
			for ctx.Err() == nil {
				batch = batch[:0]
			last:
				for len(batch) < cap(batch) {
					select {
					case m := <-f.outbound:
						batch = append(batch, m)
					default:
						break last
					}
				}
				if len(batch) == 0 {
					return
				}
				p.send(ctx, batch, false)
			}
			return
		case m := <-f.outbound:
			batch = append(batch[:0], m)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case m := <-f.outbound:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		// Not f.ctx: a batch in flight when Close comes still goes out,
		// within its timeout, like the rest of the queue.
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		p.send(ctx, batch, true)
		cancel()
		clear(batch) // let the sent envelopes go
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

// send publishes batch within ctx and reports the outcome. dial says
// whether a missing client may be created (not during Close).
func (p *fanoutPublisher) send(ctx context.Context, batch []fanoutOut, dial bool) {
	f := p.f
	if p.client == nil {
		if dial && (p.failErr == nil || time.Since(p.failAt) >= reconnectPause) {
			c, err := rueidis.NewClient(f.clientOpt)
			if err != nil {
				p.failErr, p.failAt = err, time.Now()
			} else {
				p.client, p.failErr = c, nil
			}
		}
		if p.client == nil {
			for range batch {
				f.obs.Dropped(FanoutDropPublishError)
			}
			err := p.failErr
			if err == nil {
				err = errClosed
			}
			f.warn.warn("publish", "fan-out messages not published: cannot connect to Redis", "messages", len(batch), "error", err)
			return
		}
	}
	c := p.client
	cmds := make(rueidis.Commands, len(batch))
	for i, m := range batch {
		if f.cluster {
			cmds[i] = c.B().Spublish().Channel(m.channel).Message(rueidis.BinaryString(m.data)).Build()
		} else {
			cmds[i] = c.B().Publish().Channel(m.channel).Message(rueidis.BinaryString(m.data)).Build()
		}
	}
	ok, failed := 0, 0
	var firstErr error
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		ok++
	}
	if ok > 0 {
		f.obs.Published(ok)
	}
	for range failed {
		f.obs.Dropped(FanoutDropPublishError)
	}
	if firstErr != nil {
		f.warn.warn("publish", "fan-out messages not published", "messages", failed, "error", firstErr)
	}
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
