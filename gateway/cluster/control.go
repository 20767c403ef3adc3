package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Control message format, version 1: one JSON object per Redis message on
// the channel Prefix+"control":
//
//	{"v":1,"op":"disconnect","origin":"<NodeID>","username":"<user>"}
//
// v is the format version: a receiver drops a message of a version it does
// not know. Fields may be added without a new version (receivers ignore
// fields they do not know), and so may ops: a receiver ignores, with a
// warning, an op it does not know, so that a newer replica can send a
// command older ones cannot carry out without breaking them. origin is the
// sender's NodeID: Redis echoes a replica's own publishes back to it, and
// it has carried the command out already.
const (
	controlVersion = 1
	// controlMaxBytes bounds a control message: a command is a few dozen
	// bytes, and anything far larger is not one of ours.
	controlMaxBytes = 64 << 10
	// controlDisconnect closes a user's connections.
	controlDisconnect = "disconnect"
)

// controlCommand is a control message on the wire.
type controlCommand struct {
	V        int    `json:"v"`
	Op       string `json:"op"`
	Origin   string `json:"origin"`
	Username string `json:"username,omitempty"`
}

// ControlOptions configures a Control.
type ControlOptions struct {
	// Redis gives the connection, as FanoutOptions.Redis does.
	Redis storage.RedisOptions
	// Prefix starts the channel name: commands travel on
	// Prefix+"control". Default storage.DefaultClientPrefix; use the
	// fan-out's (the channel of the previous release's commands is
	// derived from it too).
	Prefix string
	// NodeID identifies this replica (1 to 255 bytes, required); commands
	// carrying it are this replica's own, echoed by Redis, and ignored.
	NodeID string
	// OnDisconnect closes user's connections on this replica when another
	// replica asks for it (required). It runs on a receiving goroutine,
	// one command at a time, and must not block long: commands arriving
	// meanwhile wait in the Redis connection's buffers.
	OnDisconnect func(user string)
	// Logger receives the warnings (at most one per kind every 10s).
	// Default slog.Default().
	Logger *slog.Logger
}

// Control carries commands between replicas on a Redis channel of its own,
// apart from the broadcasts of the Fanout: for now one command, disconnect
// a user everywhere (POST /api/disconnect reaches one replica, the user may
// be connected to any). Delivery is at most once, as for the fan-out: a
// replica whose subscription is down while a command is published misses
// it. In a Redis Cluster the channel is a sharded one (SPUBLISH,
// SSUBSCRIBE), as the fan-out's are.
//
// Goroutines, started by NewControl and stopped by Close: one receiver per
// subscription (standalone and sentinel: one for the control channel and
// the previous release's, see control_legacy.go; cluster: one each, as
// sharded channels of different slots cannot share a subscription), each
// with its own client, reconnecting with a capped backoff. Publishing uses
// a client of its own, created on first use.
type Control struct {
	node    string
	channel string // Prefix + "control"
	legacy  string // the previous release's control channel
	cluster bool   // sharded pub/sub
	timeout time.Duration
	opt     rueidis.ClientOption
	handle  func(user string)
	warn    *warner

	// received counts the messages taken from either channel, carried out
	// or not (tests wait on it).
	received atomic.Int64

	mu      sync.Mutex     // guards client, failErr, failAt and closed
	client  rueidis.Client // publishes; nil until first used, or after Close
	failErr error          // why the last attempt to create client failed
	failAt  time.Time      // when
	closed  bool           // Close was called: nothing is published any more
	cancel  context.CancelFunc
	wg      sync.WaitGroup // counts the receivers
}

// NewControl checks the options and starts the receivers. It does not need
// Redis to be up: they connect, and keep trying, by themselves.
func NewControl(o ControlOptions) (*Control, error) {
	l, err := newLink(o.Redis, o.Prefix, o.NodeID, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("cluster control: %w", err)
	}
	if o.OnDisconnect == nil {
		return nil, errors.New("cluster control: OnDisconnect: nil")
	}
	opt := l.client
	opt.ClientName = "wsgate-control"
	ctx, cancel := context.WithCancel(context.Background())
	c := &Control{
		node:    o.NodeID,
		channel: l.prefix + "control",
		legacy:  legacyControlChannel(l.prefix),
		cluster: l.cluster,
		timeout: l.redis.LookupTimeout,
		opt:     opt,
		handle:  o.OnDisconnect,
		warn:    newWarner(l.log.With("component", "cluster_control", "node", o.NodeID)),
		cancel:  cancel,
	}
	onLost := func(err error) {
		c.warn.warn("subscribe", "control channel subscription lost; commands from other replicas are missed until it is back", "error", err)
	}
	both := func(ch string, msg []byte) {
		c.received.Add(1)
		if ch == c.channel {
			c.receive(msg)
		} else {
			c.receiveLegacy(msg)
		}
	}
	if c.cluster {
		c.wg.Add(2)
		go func() {
			defer c.wg.Done()
			receive(ctx, opt, true, []string{c.channel}, both, onLost)
		}()
		go func() {
			defer c.wg.Done()
			receive(ctx, opt, true, []string{c.legacy}, both, onLost)
		}()
	} else {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			receive(ctx, opt, false, []string{c.channel, c.legacy}, both, onLost)
		}()
	}
	return c, nil
}

// Disconnect asks every other replica to close user's connections (this
// replica closes its own itself). It publishes the command on the control
// channel and, for replicas of the previous release, on theirs, within ctx
// and the lookup timeout, and returns an error when Redis did not accept
// both: then some replicas will not hear it.
func (c *Control) Disconnect(ctx context.Context, user string) error {
	if user == "" {
		return errors.New("cluster control: disconnect: empty username")
	}
	msg, err := json.Marshal(controlCommand{V: controlVersion, Op: controlDisconnect, Origin: c.node, Username: user})
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
	client, err := c.publisher()
	if err != nil {
		return fmt.Errorf("cluster control: disconnect: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var errs []error
	for _, r := range client.DoMulti(ctx, c.publish(client, c.channel, msg), c.publish(client, c.legacy, legacy)) {
		if err := r.Error(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster control: disconnect: %w", err)
	}
	return nil
}

// publish is the command that publishes msg on channel: sharded in a
// cluster.
func (c *Control) publish(client rueidis.Client, channel string, msg []byte) rueidis.Completed {
	if c.cluster {
		return client.B().Spublish().Channel(channel).Message(rueidis.BinaryString(msg)).Build()
	}
	return client.B().Publish().Channel(channel).Message(rueidis.BinaryString(msg)).Build()
}

// publisher returns the publishing client, creating it on first use and
// again, at most every reconnectPause, after a failure. Creating it dials
// (bounded by the lookup timeout per address) with c.mu held: concurrent
// commands wait for that one attempt rather than each making their own.
func (c *Control) publisher() (rueidis.Client, error) {
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

// receive carries out a command from the control channel.
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
		// Our own, echoed by Redis: carried out when it was sent.
	case cmd.Op == controlDisconnect && cmd.Username != "":
		c.handle(cmd.Username)
	default:
		c.warn.warn("op", "control command ignored: unknown to this release, or incomplete", "op", cmd.Op, "origin", cmd.Origin)
	}
}

// Close stops the receivers and closes the clients, waiting for the
// receivers at most a few lookup timeouts (a subscription being set up
// dials first). It returns an error if they did not stop in time (they
// still stop, later). Disconnect fails after Close.
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
