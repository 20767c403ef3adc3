package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Defaults of RetainedOptions.
const (
	DefaultRetainedTTL           = 24 * time.Hour
	DefaultRetainedMaxTopics     = 10000
	DefaultRetainedMaxEventBytes = 64 << 10
	// retainedQueue bounds the writes Retain has accepted and the writer
	// has not sent yet.
	retainedQueue = 1024
)

// Reasons Retained tells RetainedOptions.Dropped.
const (
	RetainedDropQueueFull = "retained_queue_full"
	RetainedDropTooBig    = "retained_too_big"
	RetainedDropWrite     = "retained_write_failed"
	RetainedDropEvicted   = "retained_evicted"
)

// RetainedOptions configures a Retained.
type RetainedOptions struct {
	// Redis gives the connection, as FanoutOptions.Redis.
	Redis storage.RedisOptions
	// Prefix starts the keys: topic T's retained event is the string
	// Prefix+"retained:"+T, and Prefix+"retained-index" a sorted set of
	// the retained topics by time. Default storage.DefaultClientPrefix.
	Prefix string
	// TTL is how long a retained event is kept after its last publish.
	// Default DefaultRetainedTTL.
	TTL time.Duration
	// MaxTopics bounds the retained topics: past it the oldest retained
	// are deleted. Default DefaultRetainedMaxTopics.
	MaxTopics int
	// MaxEventBytes: a larger event is not retained. Default
	// DefaultRetainedMaxEventBytes.
	MaxEventBytes int
	// Dropped, if set, hears each event not retained, or evicted, with
	// one of the RetainedDrop* reasons.
	Dropped func(reason string)
	// Logger receives the warnings (at most one per kind every 10s).
	// Default slog.Default().
	Logger *slog.Logger
}

// Retained keeps WAMP retained events in Redis, shared by the replicas
// (the node's wamp.RetainStore when the cluster has a Redis fan-out): the
// replica that publishes writes the topic's key with a TTL, and a
// subscribe on any replica reads it. Retain never blocks: writes go
// through a bounded queue to one writer goroutine, which also keeps the
// index and deletes the oldest topics past MaxTopics. Retained (the read)
// blocks within its context and the lookup timeout; the node calls it on
// the session's lane, never on a socket worker.
type Retained struct {
	keyPrefix string // Prefix + "retained:"
	index     string // Prefix + "retained-index"
	ttl       time.Duration
	maxTopics int
	maxEvent  int
	timeout   time.Duration
	opt       rueidis.ClientOption
	dropped   func(string)
	warn      *warner

	// mu guards client (made on first use, so that Redis need not be up
	// at start) and lastDial.
	mu       sync.Mutex
	client   rueidis.Client
	lastDial time.Time
	lastErr  error

	queue chan retainedWrite
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

type retainedWrite struct {
	topic   string
	payload []byte
}

// NewRetained checks the options and starts the writer.
func NewRetained(o RetainedOptions) (*Retained, error) {
	ro, opt, err := redisClient(o.Redis)
	if err != nil {
		return nil, fmt.Errorf("cluster retained: Redis: %w", err)
	}
	if o.TTL < 0 || o.MaxTopics < 0 || o.MaxEventBytes < 0 {
		return nil, errors.New("cluster retained: TTL, MaxTopics and MaxEventBytes must not be negative")
	}
	if o.Prefix == "" {
		o.Prefix = storage.DefaultClientPrefix
	}
	if o.TTL == 0 {
		o.TTL = DefaultRetainedTTL
	}
	if o.MaxTopics == 0 {
		o.MaxTopics = DefaultRetainedMaxTopics
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = DefaultRetainedMaxEventBytes
	}
	if o.Dropped == nil {
		o.Dropped = func(string) {}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opt.ClientName = "wsgate-retained"
	r := &Retained{
		keyPrefix: o.Prefix + "retained:", index: o.Prefix + "retained-index",
		ttl: o.TTL, maxTopics: o.MaxTopics, maxEvent: o.MaxEventBytes,
		timeout: ro.LookupTimeout, opt: opt, dropped: o.Dropped,
		warn:  newWarner(o.Logger.With("component", "redis_retained")),
		queue: make(chan retainedWrite, retainedQueue), stop: make(chan struct{}),
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// Blocking implements wamp.RetainStore: reads go to Redis.
func (r *Retained) Blocking() bool { return true }

// Retain queues topic's retained event for the writer; it never blocks.
// A full queue or an event over MaxEventBytes is dropped (Dropped).
func (r *Retained) Retain(topic string, payload []byte) {
	if !relayable(topic) {
		return
	}
	if len(payload) > r.maxEvent {
		r.dropped(RetainedDropTooBig)
		return
	}
	select {
	case <-r.stop:
	case r.queue <- retainedWrite{topic: topic, payload: payload}:
	default:
		r.dropped(RetainedDropQueueFull)
	}
}

// Retained reads topic's retained event.
func (r *Retained) Retained(ctx context.Context, topic string) ([]byte, bool, error) {
	c, err := r.get()
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	b, err := c.Do(ctx, c.B().Get().Key(r.keyPrefix+topic).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("cluster retained: read: %w", err)
	}
	return b, true, nil
}

// get returns the client, made on first use; while Redis cannot be
// reached, at most one attempt every reconnectPause.
func (r *Retained) get() (rueidis.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		return r.client, nil
	}
	if time.Since(r.lastDial) < reconnectPause && r.lastErr != nil {
		return nil, r.lastErr
	}
	r.lastDial = time.Now()
	c, err := rueidis.NewClient(cloneClientOption(r.opt))
	if err != nil {
		r.lastErr = fmt.Errorf("cluster retained: connect: %w", err)
		return nil, r.lastErr
	}
	r.client = c
	return c, nil
}

// run writes the queue to Redis: the key with its TTL, the index, and
// the eviction of the oldest topics past MaxTopics and of the index
// entries whose key expired.
func (r *Retained) run() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case w := <-r.queue:
			if err := r.write(w); err != nil {
				r.dropped(RetainedDropWrite)
				r.warn.warn("write", "retained event not written to Redis", "error", err)
			}
		}
	}
}

func (r *Retained) write(w retainedWrite) error {
	c, err := r.get()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	now := time.Now()
	cmds := rueidis.Commands{
		c.B().Set().Key(r.keyPrefix + w.topic).Value(rueidis.BinaryString(w.payload)).Px(r.ttl).Build(),
		c.B().Zadd().Key(r.index).ScoreMember().ScoreMember(float64(now.UnixMilli()), w.topic).Build(),
		c.B().Zremrangebyscore().Key(r.index).Min("-inf").Max(strconv.FormatInt(now.Add(-r.ttl).UnixMilli(), 10)).Build(),
		c.B().Zcard().Key(r.index).Build(),
	}
	res := c.DoMulti(ctx, cmds...)
	for _, x := range res {
		if err := x.Error(); err != nil {
			return err
		}
	}
	n, _ := res[3].AsInt64()
	if excess := n - int64(r.maxTopics); excess > 0 {
		old, err := c.Do(ctx, c.B().Zpopmin().Key(r.index).Count(excess).Build()).AsZScores()
		if err != nil {
			return err
		}
		for _, z := range old {
			// One DEL per key: in a Redis Cluster the keys live in
			// different slots.
			if err := c.Do(ctx, c.B().Del().Key(r.keyPrefix+z.Member).Build()).Error(); err != nil {
				return err
			}
			r.dropped(RetainedDropEvicted)
		}
	}
	return nil
}

// Close stops the writer (what is still queued is not written) and closes
// the client.
func (r *Retained) Close() error {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		r.client.Close()
		r.client = nil
	}
	return nil
}
