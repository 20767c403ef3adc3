package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Control message format, version 1: one JSON object per entry of the
// Redis stream Prefix+"control-stream", in the entry's field "cmd":
//
//	{"v":1,"op":"disconnect","origin":"<NodeID>","username":"<user>","at":<Unix ms>}
//
// v is the format version: a receiver drops a message of a version it does
// not know. Fields may be added without a new version (receivers ignore
// fields they do not know), and so may ops: a receiver ignores, with a
// warning, an op it does not know, so that a newer replica can send a
// command older ones cannot carry out without breaking them. origin is the
// sender's NodeID: every replica reads the whole stream, its own commands
// included, and it has carried those out already. at is the sender's clock
// when it sent the command: a disconnect closes only the connections
// established by then (see controlClockSlack), so that a replica reading
// an old command late, after its link to Redis came back, does not close
// the connections the user opened since.
//
// The commands went on the pub/sub channel Prefix+"control" during the
// development of this release; no release ever shipped that channel (the
// repository had no tag), so nothing listens there and it is not bridged.
const (
	controlVersion = 1
	// controlMaxBytes bounds a control message: a command is a few dozen
	// bytes, and anything far larger is not one of ours.
	controlMaxBytes = 64 << 10
	// controlDisconnect closes a user's connections.
	controlDisconnect = "disconnect"
	// controlField is the stream entry's field holding the command.
	controlField = "cmd"
)

// Bounds and pauses of the control stream.
const (
	// controlMaxLen bounds the stream's length (trimmed approximately on
	// every command): a burst of commands cannot grow it without end
	// within the retention.
	controlMaxLen = 10000
	// DefaultControlRetention is how long a command stays in the stream
	// when ControlOptions.Retention is zero: a replica whose link to Redis
	// comes back within it still carries out what it missed.
	DefaultControlRetention = 10 * time.Minute
	// controlReadCount bounds the entries one read takes: a backlog is
	// worked through in bounded batches.
	controlReadCount = 256
	// controlBlock is how long one read waits for a command; the reader
	// notices Close and a silent link within it.
	controlBlock = time.Second
	// controlProbe is the pause between two attempts to reach Redis while
	// the reader's link is down: short and fixed, so that commands flow
	// again at once when Redis is back (a probe is one dial).
	controlProbe = 200 * time.Millisecond
	// controlClockSlack is added to a command's at before comparing it to
	// the connections' times: sender and receiver read different clocks,
	// and a connection established just before the command must close even
	// if the receiver's clock is a little ahead. A connection opened within
	// it after the command closes too (a logout and a new login are
	// further apart than that).
	controlClockSlack = 500 * time.Millisecond
	// controlStartReplay is how far before its start a replica begins to
	// read the stream: the stream's ids come from Redis' clock, not the
	// replica's. Reading a few commands from before the start is harmless:
	// they carry an at older than every connection of the new replica.
	controlStartReplay = 5 * time.Second
)

// ErrControlUnavailable is what Disconnect returns (wrapped) when Redis did
// not take the command: no replica will carry it out, and the caller may
// retry (carrying out a disconnect twice is harmless).
var ErrControlUnavailable = errors.New("control stream unavailable")

// controlCommand is a control message on the wire.
type controlCommand struct {
	V        int    `json:"v"`
	Op       string `json:"op"`
	Origin   string `json:"origin"`
	Username string `json:"username,omitempty"`
	At       int64  `json:"at,omitempty"` // sender's clock, Unix ms
}

// ControlOptions configures a Control.
type ControlOptions struct {
	// Redis gives the connection, as FanoutOptions.Redis does.
	Redis storage.RedisOptions
	// Prefix starts the key names: commands go on the stream
	// Prefix+"control-stream". Default storage.DefaultClientPrefix; use
	// the fan-out's (the channel of the previous release's commands is
	// derived from it too).
	Prefix string
	// NodeID identifies this replica (1 to 255 bytes, required); commands
	// carrying it are this replica's own, and skipped.
	NodeID string
	// Retention is how long a command stays in the stream (default
	// DefaultControlRetention): a replica whose link to Redis was down
	// for less carries out every command it missed when the link is back.
	Retention time.Duration
	// OnDisconnect closes user's connections on this replica that were
	// established before before, when another replica asks for it
	// (required). It runs on the reading goroutine, one command at a
	// time, and must not block long: commands after it wait.
	OnDisconnect func(user string, before time.Time)
	// OnLegacyFailure, if set, hears that a disconnect was written to the
	// stream but its copy for replicas of the previous release was not
	// published (they will not carry it out); for a metric. The command
	// still succeeds: the stream is what this release trusts.
	OnLegacyFailure func(error)
	// Logger receives the warnings (at most one per kind every 10s) and
	// the state of the link. Default slog.Default().
	Logger *slog.Logger
}

// Control carries commands between replicas on a Redis stream of its own,
// apart from the broadcasts of the Fanout: for now one command, disconnect
// a user everywhere (POST /api/disconnect reaches one replica, the user may
// be connected to any). Disconnect returns nil only once Redis has taken
// the command; then every replica alive carries it out, as every replica
// reads the whole stream from its start and, after losing its link,
// resumes where it stopped (within the retention). In a Redis Cluster the
// stream is one key, on one shard.
//
// Goroutines, started by NewControl and stopped by Close: the stream
// reader, with a client of its own; and the receiver of the previous
// release's channel (control_legacy.go), with its own. Sending uses a
// third client, created on first use.
type Control struct {
	node      string
	stream    string // Prefix + "control-stream"
	legacy    string // the previous release's control channel
	cluster   bool   // sharded pub/sub for the legacy channel
	timeout   time.Duration
	retention time.Duration
	opt       rueidis.ClientOption
	handle    func(user string, before time.Time)
	onLegacy  func(error)
	log       *slog.Logger
	warn      *warner

	// received counts the stream entries and legacy messages taken,
	// carried out or not, each once it has been dealt with (tests wait on
	// it, then look at what was carried out); linked says whether the
	// stream reader's last read worked (tests wait on it).
	received atomic.Int64
	linked   atomic.Bool

	mu      sync.Mutex     // guards client, failErr, failAt and closed
	client  rueidis.Client // sends; nil until first used, or after Close
	failErr error          // why the last attempt to create client failed
	failAt  time.Time      // when
	closed  bool           // Close was called: nothing is sent any more
	cancel  context.CancelFunc
	wg      sync.WaitGroup // counts the receivers
}

// NewControl checks the options and starts the receivers. It does not need
// Redis to be up: they connect, and keep trying, by themselves; the stream
// reader begins at this replica's start, so commands sent before it first
// reached Redis are carried out too.
func NewControl(o ControlOptions) (*Control, error) { return newControlAt(o, time.Now()) }

// newControlAt is NewControl for a replica that started at start.
func newControlAt(o ControlOptions, start time.Time) (*Control, error) {
	l, err := newLink(o.Redis, o.Prefix, o.NodeID, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("cluster control: %w", err)
	}
	if o.OnDisconnect == nil {
		return nil, errors.New("cluster control: OnDisconnect: nil")
	}
	switch {
	case o.Retention < 0:
		return nil, fmt.Errorf("cluster control: Retention: %v is negative", o.Retention)
	case o.Retention == 0:
		o.Retention = DefaultControlRetention
	}
	opt := l.client
	opt.ClientName = "wsgate-control"
	ctx, cancel := context.WithCancel(context.Background())
	log := l.log.With("component", "cluster_control", "node", o.NodeID)
	c := &Control{
		node:      o.NodeID,
		stream:    l.prefix + "control-stream",
		legacy:    legacyControlChannel(l.prefix),
		cluster:   l.cluster,
		timeout:   l.redis.LookupTimeout,
		retention: o.Retention,
		opt:       opt,
		handle:    o.OnDisconnect,
		onLegacy:  o.OnLegacyFailure,
		log:       log,
		warn:      newWarner(log),
		cancel:    cancel,
	}
	from := streamID(start.Add(-controlStartReplay))
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.read(ctx, from)
	}()
	go func() {
		defer c.wg.Done()
		receive(ctx, opt, c.cluster, []string{c.legacy}, func(_ string, msg []byte) {
			c.receiveLegacy(msg)
			c.received.Add(1)
		}, func(err error) {
			c.warn.warn("subscribe", "legacy control channel subscription lost; disconnects from replicas of the previous release are missed until it is back", "error", err)
		})
	}()
	return c, nil
}

// streamID is the first stream id of t's millisecond.
func streamID(t time.Time) string { return strconv.FormatInt(max(t.UnixMilli(), 0), 10) + "-0" }

// Disconnect asks every other replica to close user's connections
// established until now (this replica closes its own itself). It writes
// the command to the stream within ctx and the lookup timeout, and returns
// nil only when Redis took it; otherwise an error wrapping
// ErrControlUnavailable (a retry is safe), or, for a user no command can
// carry, another error. It also sends the command to replicas of the
// previous release; that copy failing is logged and reported to
// OnLegacyFailure, not returned.
func (c *Control) Disconnect(ctx context.Context, user string) error {
	if user == "" {
		return errors.New("cluster control: disconnect: empty username")
	}
	now := time.Now()
	msg, err := json.Marshal(controlCommand{V: controlVersion, Op: controlDisconnect, Origin: c.node, Username: user, At: now.UnixMilli()})
	if err != nil {
		return fmt.Errorf("cluster control: disconnect: %w", err)
	}
	if len(msg) > controlMaxBytes {
		// The receivers would drop it.
		return fmt.Errorf("cluster control: disconnect: command of %d bytes, at most %d", len(msg), controlMaxBytes)
	}
	legacy, err := legacyDisconnect(c.node, user)
	if err != nil {
		return fmt.Errorf("cluster control: disconnect: %w", err)
	}
	client, err := c.sender()
	if err != nil {
		return fmt.Errorf("cluster control: disconnect: %w: %w", ErrControlUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	b := client.B()
	rs := client.DoMulti(ctx,
		b.Xadd().Key(c.stream).Maxlen().Almost().Threshold(strconv.Itoa(controlMaxLen)).Id("*").FieldValue().FieldValue(controlField, string(msg)).Build(),
		// Old entries go by age too: a replica never needs one older than
		// the retention, and an idle deployment keeps a short stream.
		b.Xtrim().Key(c.stream).Minid().Almost().Threshold(streamID(now.Add(-c.retention))).Build(),
		c.publishLegacy(client, legacy),
	)
	if err := rs[0].Error(); err != nil {
		return fmt.Errorf("cluster control: disconnect: %w: %w", ErrControlUnavailable, err)
	}
	if err := rs[1].Error(); err != nil {
		c.warn.warn("trim", "control stream not trimmed by age (Redis older than 6.2?); its length stays bounded", "error", err)
	}
	if err := rs[2].Error(); err != nil {
		c.warn.warn("legacy", "disconnect not sent to replicas of the previous release", "error", err)
		if c.onLegacy != nil {
			c.onLegacy(err)
		}
	}
	return nil
}

// publishLegacy is the command that publishes msg on the previous
// release's channel: sharded in a cluster.
func (c *Control) publishLegacy(client rueidis.Client, msg []byte) rueidis.Completed {
	if c.cluster {
		return client.B().Spublish().Channel(c.legacy).Message(rueidis.BinaryString(msg)).Build()
	}
	return client.B().Publish().Channel(c.legacy).Message(rueidis.BinaryString(msg)).Build()
}

// sender returns the sending client, creating it on first use and again,
// at most every reconnectPause, after a failure. Creating it dials
// (bounded by the lookup timeout per address) with c.mu held: concurrent
// commands wait for that one attempt rather than each making their own.
func (c *Control) sender() (rueidis.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, errClosed
	case c.client != nil:
		return c.client, nil
	case c.failErr != nil && time.Since(c.failAt) < reconnectPause:
		return nil, c.failErr
	}
	client, err := rueidis.NewClient(cloneClientOption(c.opt))
	if err != nil {
		c.failErr, c.failAt = err, time.Now()
		return nil, err
	}
	c.client, c.failErr = client, nil
	return client, nil
}

// read reads the stream from the id from until ctx ends, carrying out
// each command, with a client of its own. When the link fails it closes
// the client (nothing of a broken connection outlives it), probes Redis
// every controlProbe with a new one, and resumes after the last entry it
// took: what was written meanwhile is read then.
func (c *Control) read(ctx context.Context, from string) {
	last := from
	var (
		client rueidis.Client
		lostAt time.Time // when the link was lost; zero while up
	)
	defer func() {
		if client != nil {
			client.Close()
		}
	}()
	lost := func(err error) {
		c.linked.Store(false)
		if lostAt.IsZero() {
			lostAt = time.Now()
			c.log.Warn("control stream: link to Redis lost; commands are read when it is back", "error", err)
		}
	}
	for ctx.Err() == nil {
		if client == nil {
			cl, err := rueidis.NewClient(cloneClientOption(c.opt))
			if err != nil {
				lost(err)
				if !sleepCtx(ctx, controlProbe) {
					return
				}
				continue
			}
			client = cl
		}
		// Bounded by the block and the lookup timeout: a Redis that stops
		// answering is noticed as a lost link. The bound is a timer, not a
		// context deadline: rueidis runs a blocking command with a deadline
		// on the socket, where cancelling ctx (Close) could not end it
		// before the block does.
		rctx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(controlBlock+c.timeout, cancel)
		streams, err := client.Do(rctx, client.B().Xread().Count(controlReadCount).Block(controlBlock.Milliseconds()).Streams().Key(c.stream).Id(last).Build()).AsXRead()
		timer.Stop()
		cancel()
		if err != nil && !rueidis.IsRedisNil(err) { // nil: nothing new within the block
			if ctx.Err() != nil {
				return
			}
			client.Close()
			client = nil
			lost(err)
			if !sleepCtx(ctx, controlProbe) {
				return
			}
			continue
		}
		c.linked.Store(true)
		if !lostAt.IsZero() {
			down := time.Since(lostAt)
			if down > c.retention {
				c.log.Warn("control stream: link to Redis restored after more than the retention; commands older than it were missed", "down", down.Round(time.Millisecond), "retention", c.retention)
			} else {
				c.log.Info("control stream: link to Redis restored; reading the commands sent meanwhile", "down", down.Round(time.Millisecond))
			}
			lostAt = time.Time{}
		}
		for _, e := range streams[c.stream] {
			last = e.ID
			if msg, ok := e.FieldValues[controlField]; ok {
				c.receive([]byte(msg))
			} else {
				c.warn.warn("decode", "control stream entry skipped: no command field", "id", e.ID)
			}
			c.received.Add(1)
		}
	}
}

// sleepCtx waits d, or less if ctx ends first; it returns false then.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// receive carries out a command from the stream.
func (c *Control) receive(msg []byte) {
	if len(msg) > controlMaxBytes {
		c.warn.warn("decode", "control message dropped: too large", "bytes", len(msg))
		return
	}
	var cmd controlCommand
	if err := json.Unmarshal(msg, &cmd); err != nil {
		c.warn.warn("decode", "control message dropped: not a JSON command", "bytes", len(msg), "error", err)
		return
	}
	switch {
	case cmd.V != controlVersion:
		c.warn.warn("decode", "control message dropped: unknown version", "v", cmd.V, "origin", cmd.Origin)
	case cmd.Origin == "":
		c.warn.warn("decode", "control message dropped: no origin", "op", cmd.Op)
	case cmd.Origin == c.node:
		// Our own: carried out when it was sent.
	case cmd.Op == controlDisconnect && cmd.Username != "" && cmd.At > 0:
		c.handle(cmd.Username, time.UnixMilli(cmd.At).Add(controlClockSlack))
	default:
		c.warn.warn("op", "control command ignored: unknown to this release, or incomplete", "op", cmd.Op, "origin", cmd.Origin)
	}
}

// Close stops the receivers and closes the clients, waiting for the
// receivers at most a few lookup timeouts (a client being created dials
// first). It returns an error if they did not stop in time (they still
// stop, later). Disconnect fails after Close.
func (c *Control) Close() error {
	c.mu.Lock()
	c.closed = true
	client := c.client
	c.client = nil
	c.mu.Unlock()
	c.cancel()
	if client != nil {
		client.Close()
	}
	if err := waitStopped(&c.wg, c.opt, c.timeout); err != nil {
		return fmt.Errorf("cluster control: close: %w", err)
	}
	return nil
}
