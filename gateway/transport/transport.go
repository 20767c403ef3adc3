// Package transport moves websocket bytes for the gateway. It accepts TCP
// connections, collects each upgrade request under a size cap and a
// deadline, runs the gobwas/ws upgrade with the host's callbacks, decodes
// client frames incrementally (RFC 6455, RFC 7692 inflate) and writes
// bounded per-connection queues — in one of two modes: an epoll event loop
// (Linux; an idle connection holds no goroutine and no buffer) or a
// goroutine per connection (portable, any net.Listener).
//
// Every bound on what a client can make the transport hold is enforced
// here, once, for both modes: request bytes (MaxHeaderBytes), the time to
// send them (HandshakeTimeout), sockets still sending theirs
// (MaxPendingRequests), upgrades in progress (MaxHandshakes), connections
// (MaxConnections), accept rate per IP, message size, and the bytes queued
// to a client (OutboundQueueBytes), control-frame replies and the batch
// being written included. Hitting one gives the client a documented status
// or close code and tells the Observer the limit's name (Limit* constants).
//
// The transport knows nothing of sessions or WAMP. A Host decides who may
// connect (Handshake) and what messages mean (Handler); its callbacks run on
// the transport's goroutines and, except Handshake.Admit and
// Handshake.Open, must not block.
//
// Goroutines, all owned by a Transport, started by Serve (or on demand as
// noted) and waited for by Stop:
//   - epoll: the event loop, transport.Workers read workers,
//     transport.Writers write workers, the sweeper (deadlines), and one
//     upgrade goroutine per handshake in progress (bounded by
//     MaxHandshakes);
//   - goroutine: the accept loop, one goroutine per connection (request,
//     upgrade, then reads), and a writer per connection while it has
//     output;
//   - both: the keepalive pinger when PingInterval > 0.
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Modes of Config.Mode.
const (
	ModeEpoll     = "epoll"
	ModeGoroutine = "goroutine"
)

// EpollSupported reports whether this platform has the epoll mode.
const EpollSupported = epollSupported

// DefaultMode is the mode a configuration should default to here: epoll on
// Linux, goroutine elsewhere.
const DefaultMode = defaultMode

// Names of the limits, as the Observer hears them: each is the gateway's
// configuration key without "limits.". docs/limits.md says what a client
// gets for each.
const (
	LimitHeaderBytes     = "max_header_bytes"     // 431, socket closed
	LimitHandshakeTime   = "handshake_timeout"    // 408, socket closed
	LimitPendingRequests = "max_pending_requests" // the oldest request socket gets 503 and is closed
	LimitHandshakes      = "max_handshakes"       // 503
	LimitConnections     = "max_connections"      // 503
	LimitAcceptRate      = "accept_rate_per_ip"   // 429
	LimitMessageSize     = "max_message_size"     // close 1009
	LimitOutboundQueue   = "outbound_queue_bytes" // close 1008
	LimitWriteTimeout    = "write_timeout"        // socket closed
	LimitIdleTimeout     = "idle_timeout"         // close 1001
)

// Disconnect reasons the transport gives Handler.Closed; the host adds its
// own through Conn.Close.
const (
	ReasonClientClose    = "client_close"
	ReasonIdleTimeout    = "idle_timeout"
	ReasonSlowConsumer   = "slow_consumer"
	ReasonProtocolError  = "protocol_error"
	ReasonWriteError     = "write_error"
	ReasonWriteTimeout   = "write_timeout"
	ReasonConnectionLost = "connection_lost"
	ReasonDrain          = "drain"
)

// Handshake outcomes the transport reports itself (Observer.Handshake); the
// host's Handshake.Outcome names the others.
const (
	OutcomeBadRequest  = "bad_request"  // malformed, too large or too slow a request
	OutcomeOverloaded  = "overloaded"   // no room: pending requests, handshakes or connections
	OutcomeRateLimited = "rate_limited" // limits.accept_rate_per_ip
)

// Config is how a Transport serves. Zero values take the defaults noted;
// the gateway's configuration validates them first.
type Config struct {
	// Mode is ModeEpoll or ModeGoroutine.
	Mode string
	// Workers read and dispatch readable connections in epoll mode; 0 is
	// 16 per CPU.
	Workers int
	// Writers flush outbound queues in epoll mode; 0 is 2 per CPU.
	Writers int
	// PermessageDeflate accepts RFC 7692 compression from clients that
	// offer it; what the gateway sends stays uncompressed.
	PermessageDeflate bool
	// HandshakeTimeout bounds the whole upgrade: the request bytes, then
	// the host's Admit.
	HandshakeTimeout time.Duration
	// MaxHeaderBytes bounds the upgrade request (request line and headers).
	MaxHeaderBytes int
	// MaxPendingRequests bounds sockets whose request is not complete yet;
	// past it the oldest is closed to make room.
	MaxPendingRequests int
	// MaxHandshakes bounds upgrades in progress (the host's Admit).
	MaxHandshakes int
	// MaxConnections bounds established connections.
	MaxConnections int
	// AcceptRatePerIP bounds new connections per second per client IP; 0 is
	// no limit.
	AcceptRatePerIP int
	// MaxMessageSize bounds one incoming message, inflated.
	MaxMessageSize int
	// OutboundQueueBytes bounds the bytes queued to one client, the batch
	// being written included.
	OutboundQueueBytes int
	// WriteTimeout bounds how long a client's socket may refuse our bytes.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection that sent nothing for this long.
	IdleTimeout time.Duration
	// PingInterval sends every client a ping this often; 0 sends none.
	PingInterval time.Duration
	// Logger gets the transport's logs; nil discards them.
	Logger *slog.Logger
	// Observer hears counts and limits; nil ignores them.
	Observer Observer
}

// Host is what the transport serves connections for.
type Host interface {
	// Handshake begins the upgrade of one complete request from remote. It
	// is called on a handshake goroutine, after the request's size and
	// deadline were checked and a slot of MaxHandshakes was taken.
	Handshake(remote net.Addr) Handshake
}

// Handshake is the host's side of one upgrade. Its methods are called on
// one goroutine, in order: Header and Protocol while the request is parsed,
// Admit once it is, then Open or Abandon, then Outcome.
type Handshake interface {
	// Header sees each request header, Host included. key and value are
	// only valid during the call.
	Header(key, value []byte)
	// Protocol is asked, in the client's order, about each offered
	// subprotocol until it returns true: that one is chosen.
	Protocol(name []byte) bool
	// Admit decides whether the upgrade completes. It may block (a session
	// lookup): ctx ends at the handshake deadline or when the transport
	// stops. An error from Reject answers with its status and reason; any
	// other error with 400.
	Admit(ctx context.Context) error
	// Open makes the upgraded connection live: the 101 is queued on c,
	// and c may Send from now on. It returns the connection's Handler, or
	// nil to close it at once (the host began to drain). It may block like
	// Admit.
	Open(c *Conn) Handler
	// Abandon is called instead of Open when Admit accepted but the
	// connection cannot be opened (the transport is stopping): the host
	// releases what Admit reserved.
	Abandon()
	// Outcome names how the handshake ended, for Observer.Handshake.
	Outcome() string
}

// Handler is the host's side of one established connection.
type Handler interface {
	// Message gets one complete text message (binary after
	// Conn.SetBinary), in order, on the goroutine
	// reading the connection (a read worker in epoll mode). payload is only
	// valid during the call. It must not block on I/O. Returning false stops
	// reading: the host closed the connection (Conn.Close) meanwhile.
	Message(payload []byte) bool
	// Closed is called once, after the socket is closed, with the reason
	// (Reason* or what the host gave Conn.Close). It runs on whichever
	// transport goroutine closed it and must not block.
	Closed(reason string)
}

// Observer hears what the transport does, for metrics. Its methods must be
// cheap and safe for concurrent use; label values come from this package's
// constants and the host's outcomes, never from clients.
type Observer interface {
	// Handshake counts one handshake that ended with outcome.
	Handshake(outcome string)
	// Limit counts one hit of a bound (Limit* constants).
	Limit(limit string)
	// Read counts bytes read from clients.
	Read(n int)
	// Wrote counts bytes written to clients by one write call lasting d.
	Wrote(n int, d time.Duration)
	// MessageIn counts a message handed to a Handler.
	MessageIn()
	// MessageOut counts a message queued to a client.
	MessageOut()
	// Dropped counts a message not queued, by reason (slow_consumer,
	// closing).
	Dropped(reason string)
}

type nopObserver struct{}

func (nopObserver) Handshake(string)         {}
func (nopObserver) Limit(string)             {}
func (nopObserver) Read(int)                 {}
func (nopObserver) Wrote(int, time.Duration) {}
func (nopObserver) MessageIn()               {}
func (nopObserver) MessageOut()              {}
func (nopObserver) Dropped(string)           {}

// Reject returns the error Handshake.Admit gives to answer the upgrade
// with status and reason (e.g. 403 "origin not allowed").
func Reject(status int, reason string) error {
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

// Transport serves websocket connections for one Host.
type Transport struct {
	cfg  Config
	host Host
	log  *slog.Logger
	obs  Observer

	pending    pendingList   // sockets whose request is not complete
	handshakes chan struct{} // semaphore: upgrades in progress
	rate       *ipRateLimiter

	baseCtx context.Context // handed to Admit and Open; cancelled by Stop
	cancel  context.CancelFunc

	nopen atomic.Int64 // established connections (len of conns)

	mu sync.Mutex // guards the fields below, and every Conn's slot
	// conns lists the established connections, each at its Conn.slot-1:
	// a slice with swap-removal, where a set keyed by *Conn took ≈ 38 B
	// per idle connection (issue 19).
	conns     []*Conn
	ln        net.Listener
	loop      *eventLoop // epoll mode, once Serve started it
	accepting bool       // Serve runs and StopAccepting was not called
	stopped   bool
	pingStop  chan struct{} // closed by Stop: ends the pinger

	wg sync.WaitGroup // every goroutine the transport starts
}

// New checks cfg and returns a Transport for host; Serve starts it.
func New(cfg Config, host Host) (*Transport, error) {
	if host == nil {
		return nil, errors.New("transport: nil host")
	}
	switch cfg.Mode {
	case ModeGoroutine:
	case ModeEpoll:
		if !epollSupported {
			return nil, errors.New("transport: epoll mode needs Linux")
		}
	default:
		return nil, fmt.Errorf("transport: unknown mode %q", cfg.Mode)
	}
	if cfg.HandshakeTimeout <= 0 || cfg.WriteTimeout <= 0 || cfg.IdleTimeout <= 0 {
		return nil, errors.New("transport: timeouts must be positive")
	}
	if cfg.MaxHeaderBytes < 64 || cfg.MaxHandshakes < 1 || cfg.MaxPendingRequests < 1 || cfg.MaxConnections < 1 ||
		cfg.MaxMessageSize < 1 || cfg.OutboundQueueBytes < 1 || cfg.AcceptRatePerIP < 0 || cfg.PingInterval < 0 {
		return nil, errors.New("transport: limits out of range")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16 * runtime.GOMAXPROCS(0)
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2 * runtime.GOMAXPROCS(0)
	}
	t := &Transport{
		cfg:        cfg,
		host:       host,
		log:        cfg.Logger,
		obs:        cfg.Observer,
		handshakes: make(chan struct{}, cfg.MaxHandshakes),
		rate:       newIPRateLimiter(cfg.AcceptRatePerIP),
		pingStop:   make(chan struct{}),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if t.obs == nil {
		t.obs = nopObserver{}
	}
	t.pending.max = cfg.MaxPendingRequests
	t.baseCtx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// Serve accepts connections on ln until StopAccepting or Stop; it returns
// nil then, and the accept error otherwise. Epoll mode needs a
// *net.TCPListener. Serve may be called once.
func (t *Transport) Serve(ln net.Listener) error {
	t.mu.Lock()
	if t.stopped || t.ln != nil {
		t.mu.Unlock()
		return errors.New("transport: Serve after Stop or twice")
	}
	t.ln = ln
	t.accepting = true
	if t.cfg.PingInterval > 0 {
		t.wg.Add(1)
		go t.keepalive()
	}
	t.mu.Unlock()
	if t.cfg.Mode == ModeEpoll {
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return fmt.Errorf("transport: epoll mode needs a TCP listener, got %T", ln)
		}
		return t.serveEpoll(tl)
	}
	return t.serveGoroutines(ln)
}

// isAccepting reports whether new connections are still taken.
func (t *Transport) isAccepting() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.accepting
}

// StopAccepting closes the listener and every socket still sending its
// request (they would be refused anyway); established connections go on.
// It is the first step of a drain.
func (t *Transport) StopAccepting() {
	t.mu.Lock()
	t.accepting = false
	ln, loop := t.ln, t.loop
	t.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if loop != nil {
		loop.stopAccepting()
	}
	t.pending.closeAll()
}

// Len returns the number of established connections.
func (t *Transport) Len() int { return int(t.nopen.Load()) }

// Range calls f for every established connection until f returns false.
// It works on a snapshot: f may close connections.
func (t *Transport) Range(f func(*Conn) bool) {
	for _, c := range t.snapshot() {
		if !f(c) {
			return
		}
	}
}

func (t *Transport) snapshot() []*Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.conns)
}

// track adds an upgraded connection, or returns false when Stop began.
func (t *Transport) track(c *Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	if c.slot != 0 {
		return true // already listed
	}
	t.conns = append(t.conns, c)
	c.slot = int32(len(t.conns))
	t.nopen.Add(1)
	return true
}

// untrack removes c from conns (the last entry takes its place); a
// connection not listed is left alone.
func (t *Transport) untrack(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := int(c.slot) - 1
	if i < 0 || i >= len(t.conns) || t.conns[i] != c {
		return
	}
	last := len(t.conns) - 1
	t.conns[i] = t.conns[last]
	t.conns[i].slot = int32(i + 1)
	t.conns[last] = nil
	t.conns = t.conns[:last]
	c.slot = 0
	t.nopen.Add(-1)
	if cap(t.conns) > 1024 && len(t.conns) < cap(t.conns)/4 {
		// Most connections have gone (a drain, a storm's end): give
		// the array back rather than keep the peak.
		t.conns = slices.Clip(slices.Clone(t.conns))
	}
}

// Stop ends everything: accepting, the connections still open (closed
// without a close frame, reason drain), the event loop and its workers. It
// waits for every goroutine the transport started; Handler.Closed has run
// for every connection when it returns. Idempotent.
func (t *Transport) Stop() {
	t.StopAccepting()
	t.mu.Lock()
	first := !t.stopped
	t.stopped = true
	loop := t.loop
	t.mu.Unlock()
	if first {
		t.cancel()
		close(t.pingStop)
		for _, c := range t.snapshot() {
			c.Kill(ReasonDrain)
		}
		if loop != nil {
			loop.stop()
		}
	}
	t.wg.Wait()
}

// limit counts a hit of the bound named name.
func (t *Transport) limit(name string) { t.obs.Limit(name) }

// handshakeEnded counts a handshake that ended with outcome.
func (t *Transport) handshakeEnded(outcome string) { t.obs.Handshake(outcome) }

// acquireHandshake takes a slot of MaxHandshakes, or counts the refusal.
func (t *Transport) acquireHandshake() bool {
	select {
	case t.handshakes <- struct{}{}:
		return true
	default:
		t.limit(LimitHandshakes)
		t.handshakeEnded(OutcomeOverloaded)
		return false
	}
}

func (t *Transport) releaseHandshake() { <-t.handshakes }

// admitSocket applies the accept-time bounds to a new socket from addr:
// the per-IP rate. It returns the answer to write before closing, or nil.
func (t *Transport) admitSocket(addr net.Addr) []byte {
	if t.rate == nil {
		return nil
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || t.rate.allow(tcp.IP, time.Now()) {
		return nil
	}
	t.limit(LimitAcceptRate)
	t.handshakeEnded(OutcomeRateLimited)
	return responseTooManyRequests
}

// keepalive pings every client each PingInterval; the pongs count as
// activity for the idle timeout.
func (t *Transport) keepalive() {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.pingStop:
			return
		case <-tick.C:
			t.Range(func(c *Conn) bool {
				c.sendControl(pingFrame)
				return true
			})
		}
	}
}

// pingFrame is shared by every keepalive: queued bytes are never modified.
var pingFrame = controlFrame(ws.OpPing, nil)
