package upstream

// Connection events: the gateway tells the PHP application when a websocket
// connection opens and closes, as the bundle's client_connected and
// client_disconnected events did inside the PHP process. Both are JSON POSTs
// to EventsConfig.URL, signed exactly like the RPC upstream requests (the
// v2 scheme of sign.go: timestamp, request id, the forwarded headers and the
// body; see VerifyRequest). A connect event signs the EventsConfig.
// ForwardHeaders the client sent; a disconnect event lists the same names
// but carries none of them, so each is signed as absent:
//
//	{"event": "connect" | "disconnect",
//	 "connection": {
//	   "conn_id": "c-42",             // the gateway's connection id
//	   "wamp_session_id": "…",        // the WAMP session id, never the PHP session id;
//	                                  // "" on connect when sent before the session exists
//	   "firewall": "main", "user_identifier": "alice", "anonymous": false,
//	   "roles": ["ROLE_USER"],        // [] when none
//	   "protocol": "wamp" | "wamp.2.json",
//	   "remote_addr": "203.0.113.7:51234",
//	   "connected_at": "2024-05-01T12:00:00.123Z",   // RFC 3339, UTC, milliseconds
//	   "extra": {…} | null,           // disconnect: what the app attached on connect
//	   "reason": "client_close",      // disconnect only
//	   "duration_ms": 123456          // disconnect only
//	 }}
//
// The connect event is synchronous: the handshake waits for it (at most
// EventsConfig.Timeout), and the application answers 2xx application/json
//
//	{"accept": true}  or  {"accept": true, "extra": {…}}
//	{"accept": false, "status": 403, "reason": "banned"}
//
// "extra", a JSON object of at most MaxExtraBytes, is kept with the
// connection and echoed in its disconnect event. A non-2xx status, a
// transport error, a timeout or a reply that breaks these rules is an error,
// and OnConnectError decides whether the client is admitted anyway.
//
// Disconnect events are asynchronous: Disconnected only enqueues (a full
// queue drops and counts), Workers goroutines POST them, and any 2xx answer
// is a success. They are not retried: an application that must not miss
// one reconciles with the push API's client list.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Event kinds, the "event" of the JSON body and the kind reported to an
// EventsObserver.
const (
	EventConnect    = "connect"
	EventDisconnect = "disconnect"
)

// Outcomes reported to an EventsObserver (the RPC upstream has its own
// Outcome* for RequestObserver).
const (
	// EventOutcomeOK: the application answered 2xx (connect: and accepted).
	EventOutcomeOK = "ok"
	// EventOutcomeRejected: the application refused a connect.
	EventOutcomeRejected = "rejected"
	// EventOutcomeError: transport error, non-2xx, invalid reply, or the caller
	// gave up (cancelled context).
	EventOutcomeError = "error"
	// EventOutcomeTimeout: no reply within Timeout or before the caller's deadline.
	EventOutcomeTimeout = "timeout"
	// EventOutcomeDropped: a disconnect event never sent, because the queue was
	// full, Events was closed, or Close's deadline came first.
	EventOutcomeDropped = "dropped"
)

// OnConnectError policies.
const (
	// OnConnectErrorAccept admits the client when the connect event fails:
	// the application being down does not take the websocket down with it.
	OnConnectErrorAccept = "accept"
	// OnConnectErrorReject refuses the handshake with 503 instead, for
	// applications whose connect check is a security decision.
	OnConnectErrorReject = "reject"
)

// Disconnect reasons the gateway reports in ConnEvent.Reason. The list is
// open: the application should treat an unknown reason like ReasonError.
const (
	ReasonClientClose   = "client_close"
	ReasonRevalidation  = "revalidation"
	ReasonSlowConsumer  = "slow_consumer"
	ReasonDrain         = "drain"
	ReasonAppDisconnect = "app_disconnect"
	ReasonError         = "error"
	ReasonProtocolError = "protocol_error"
)

// Defaults applied by NewEvents to zero EventsConfig fields, and limits.
const (
	DefaultEventsTimeout   = 2 * time.Second
	DefaultEventsQueueSize = 10000
	DefaultEventsWorkers   = 4
	// DefaultMaxConnectReplyBytes caps a connect reply: it is read while a
	// handshake waits, so it is kept far below DefaultMaxReplyBytes.
	DefaultMaxConnectReplyBytes = 64 << 10
	// DefaultMaxExtraBytes caps "extra" (compacted): it stays in memory
	// for the life of the connection, times every connection.
	DefaultMaxExtraBytes = 4 << 10
	// MaxRejectReasonBytes is where a refusal's "reason" is cut.
	MaxRejectReasonBytes = 200
	// RejectStatusOnError is the handshake status when a failed connect
	// event refuses the client (OnConnectErrorReject).
	RejectStatusOnError = http.StatusServiceUnavailable
)

// disconnectReplyBytes is how much of a disconnect reply is read (and
// ignored) so the keep-alive connection can be reused.
const disconnectReplyBytes = 4 << 10

// EventsConfig configures connection events (the gateway's `events:`).
type EventsConfig struct {
	// URL is the http or https endpoint receiving both events as JSON POSTs.
	URL string
	// Secret is the HMAC-SHA256 key, at least MinSecretBytes long; the
	// scheme and headers are those of the RPC upstream (VerifyRequest).
	Secret []byte
	// Timeout bounds one request, connect or disconnect, from sending to
	// the end of the reply. Zero means DefaultEventsTimeout. Connect events
	// run inside the handshake: keep it below limits.handshake_timeout.
	Timeout time.Duration
	// Connect enables connect events: synchronous, the application can
	// reject the client or attach Extra.
	Connect bool
	// Disconnect enables disconnect events: asynchronous, queued.
	Disconnect bool
	// OnConnectError is OnConnectErrorAccept ("" means it) or
	// OnConnectErrorReject.
	OnConnectError string
	// QueueSize bounds the disconnect events waiting to be sent; more are
	// dropped and reported as EventOutcomeDropped. Zero means
	// DefaultEventsQueueSize; at most config.MaxEventsQueueSize.
	QueueSize int
	// Workers is the number of goroutines sending disconnect events, so
	// also the most disconnect requests in flight. Zero means
	// DefaultEventsWorkers; at most config.MaxEventsWorkers.
	Workers int
	// ForwardHeaders names handshake headers (e.g. "Cookie") copied onto
	// connect events and covered by their signature, with the rules of
	// Config.ForwardHeaders. Disconnect events carry none (the handshake
	// is long gone) and sign them as absent.
	ForwardHeaders []string
	// MaxReplyBytes caps a connect reply. Zero means
	// DefaultMaxConnectReplyBytes.
	MaxReplyBytes int64
	// MaxExtraBytes caps the compacted "extra" of a connect reply; a
	// larger one makes the reply invalid. Zero means DefaultMaxExtraBytes.
	MaxExtraBytes int
	// Client sends the requests. Nil means a keep-alive pool of its own
	// (NewTransport) that does not follow redirects, closed by Close.
	Client *http.Client
}

// ConnEvent describes one connection.
type ConnEvent struct {
	// ConnID is the gateway's connection id.
	ConnID string
	// SessionID is the WAMP session id. Never put the PHP session id here:
	// the event body is not a place for credentials.
	SessionID string
	// Identity is who the client is (UserIdentifier "" on the connect
	// event of an anonymous client, whose WAMP session does not exist
	// yet); embedded, so ev.UserIdentifier, ev.Roles, ... read it.
	handler.Identity
	// Protocol is the negotiated subprotocol, "wamp" or "wamp.2.json".
	Protocol   string
	RemoteAddr string
	// ConnectedAt is when the connection was admitted. Zero means now on a
	// connect event and null on a disconnect event.
	ConnectedAt time.Time
	// Extra is what the application attached on connect (ConnectDecision.
	// Extra), echoed back in the disconnect event.
	Extra json.RawMessage
	// Reason is why the connection ended, disconnect only (Reason*).
	Reason string
	// Duration is how long the connection lasted, disconnect only. Zero
	// with a ConnectedAt means the time from ConnectedAt to the Disconnected
	// call.
	Duration time.Duration
}

// ConnectDecision is the application's answer to a connect event.
type ConnectDecision struct {
	// Reject refuses the handshake.
	Reject bool
	// Status is the HTTP status of the refused handshake (400–599),
	// default 403 for a refusal by the application, RejectStatusOnError
	// for a failed event under OnConnectErrorReject. 0 when accepted.
	Status int
	// Reason is a short text for logs and the refused handshake, at most
	// MaxRejectReasonBytes of valid UTF-8 without control characters. The
	// application must not put secrets in it.
	Reason string
	// Extra is a compacted JSON object the application attaches to the
	// connection, or nil. Pass it back in ConnEvent.Extra on disconnect.
	Extra json.RawMessage
}

// EventsObserver is told the outcome of every event, for metrics. kind is
// EventConnect or EventDisconnect, outcome one of the EventOutcome* constants,
// d the time the request took (0 for a dropped event). It must not block.
type EventsObserver interface {
	Event(kind, outcome string, d time.Duration)
}

// HeaderMap is a HeaderSource over handshake headers kept as canonical
// name → value (the gateway's kept headers), for the connect event, which is
// sent before the WAMP session that otherwise serves as HeaderSource exists.
type HeaderMap map[string]string

// HandshakeHeader implements HeaderSource.
func (m HeaderMap) HandshakeHeader(name string) string {
	return m[http.CanonicalHeaderKey(name)]
}

// Events sends connection events to the application. It owns its disconnect
// workers, which stop in Close. Safe for concurrent use.
type Events struct {
	url       string
	signer    *signer
	timeout   time.Duration
	connect   bool
	onErr     string
	maxReply  int64
	maxExtra  int
	client    *http.Client
	ownClient bool
	obs       EventsObserver
	log       *slog.Logger
	now       func() time.Time

	// queue holds pending disconnect events; nil when Disconnect is off.
	// It is closed by Close under mu, so Disconnected checks closed under
	// the read lock before sending.
	queue  chan ConnEvent
	mu     sync.RWMutex
	closed bool

	// base is the context of disconnect requests; Close cancels it when
	// its deadline comes, aborting requests in flight and dropping the rest.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // workers
	done   chan struct{}  // closed when every worker has returned
	once   sync.Once

	dropped   atomic.Uint64 // disconnect events never sent
	abandoned atomic.Uint64 // of which because Close's deadline came
	dropLog   logLimiter
	failLog   logLimiter
}

// NewEvents checks cfg, applies its defaults and starts the disconnect
// workers (when cfg.Disconnect). obs and log may be nil. A bad field is a
// *config.Error naming it (as the `events:` config spells it) and its value.
func NewEvents(cfg EventsConfig, obs EventsObserver, log *slog.Logger) (*Events, error) {
	if !cfg.Connect && !cfg.Disconnect {
		return nil, errors.New("upstream events: neither connect nor disconnect is enabled")
	}
	u, sg, err := cfg.resolve()
	if err != nil {
		return nil, fmt.Errorf("upstream events: %w", err)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Events{
		url:      u.String(),
		signer:   sg,
		timeout:  cfg.Timeout,
		connect:  cfg.Connect,
		onErr:    cfg.OnConnectError,
		maxReply: cfg.MaxReplyBytes,
		maxExtra: cfg.MaxExtraBytes,
		client:   cfg.Client,
		obs:      obs,
		log:      log.With("component", "upstream_events"),
		now:      time.Now,
		done:     make(chan struct{}),
	}
	if e.client == nil {
		// Connect events come with handshakes, in bursts at a restart:
		// keep as many idle connections as the RPC upstreams do, plus the
		// disconnect workers.
		e.ownClient = true
		e.client = newClient(DefaultMaxConcurrent + cfg.Workers)
	}
	e.base, e.cancel = context.WithCancel(context.Background())
	if !cfg.Disconnect {
		close(e.done)
		return e, nil
	}
	e.start(cfg.QueueSize, cfg.Workers)
	return e, nil
}

// resolve checks NewEvents' copy of the config and applies its defaults.
// The bounds of queue_size and workers are the gateway's events: ones.
func (c *EventsConfig) resolve() (*url.URL, *signer, error) {
	u, sg, err := newEndpoint(c.URL, c.Secret, c.ForwardHeaders)
	if err != nil {
		return nil, nil, err
	}
	if c.OnConnectError == "" {
		c.OnConnectError = OnConnectErrorAccept
	}
	err = config.First(
		config.OrDefault("timeout", &c.Timeout, DefaultEventsTimeout, 0),
		config.OneOf("on_connect_error", c.OnConnectError, OnConnectErrorAccept, OnConnectErrorReject),
		config.OrDefault("queue_size", &c.QueueSize, DefaultEventsQueueSize, config.MaxEventsQueueSize),
		config.OrDefault("workers", &c.Workers, DefaultEventsWorkers, config.MaxEventsWorkers),
		config.OrDefault("max_reply_bytes", &c.MaxReplyBytes, DefaultMaxConnectReplyBytes, 0),
		config.OrDefault("max_extra_bytes", &c.MaxExtraBytes, DefaultMaxExtraBytes, 0),
	)
	if err != nil {
		return nil, nil, err
	}
	return u, sg, nil
}

// start makes the disconnect queue and its workers.
func (e *Events) start(queueSize, workers int) {
	e.queue = make(chan ConnEvent, queueSize)
	for range workers {
		e.wg.Go(e.worker)
	}
	// Close waits on done with a select, which a WaitGroup cannot join;
	// this goroutine ends with the last worker.
	go func() {
		e.wg.Wait()
		close(e.done)
	}()
}

// canonForwardHeaders applies the ForwardHeaders rules of New: valid names,
// none the request owns, canonical, without duplicates.
func canonForwardHeaders(names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, h := range names {
		if !validToken(h) {
			return nil, fmt.Errorf("%q is not a header name", h)
		}
		canon := http.CanonicalHeaderKey(h)
		if forbiddenForward[canon] || strings.HasPrefix(canon, "X-Wsgate-") {
			return nil, fmt.Errorf("%q cannot be forwarded", h)
		}
		if !seen[canon] {
			seen[canon] = true
			out = append(out, canon)
		}
	}
	return out, nil
}

// Connected sends the connect event for ev and returns the application's
// decision. It blocks for at most Timeout and not past ctx. When the event
// fails it returns the decision of OnConnectError (accept, or reject with
// RejectStatusOnError) together with the error, for the caller to log and
// count; the error never quotes the reply body, headers or secrets. headers
// (may be nil) supplies ForwardHeaders. With Connect off it accepts at once.
func (e *Events) Connected(ctx context.Context, ev ConnEvent, headers HeaderSource) (ConnectDecision, error) {
	if !e.connect {
		return ConnectDecision{}, nil
	}
	start := time.Now()
	d, err := e.sendConnect(ctx, ev, headers)
	took := time.Since(start)
	if err != nil {
		oc := EventOutcomeError
		if errors.Is(err, context.DeadlineExceeded) {
			oc = EventOutcomeTimeout
		}
		e.obs.Event(EventConnect, oc, took)
		if e.onErr == OnConnectErrorReject {
			d = ConnectDecision{Reject: true, Status: RejectStatusOnError, Reason: "connection check unavailable"}
		} else {
			d = ConnectDecision{}
		}
		return d, fmt.Errorf("upstream events: connect: %w", err)
	}
	if d.Reject {
		e.obs.Event(EventConnect, EventOutcomeRejected, took)
	} else {
		e.obs.Event(EventConnect, EventOutcomeOK, took)
	}
	return d, nil
}

func (e *Events) sendConnect(ctx context.Context, ev ConnEvent, headers HeaderSource) (ConnectDecision, error) {
	if ev.ConnectedAt.IsZero() {
		ev.ConnectedAt = e.now()
	}
	payload, err := encodeEvent(EventConnect, ev)
	if err != nil {
		return ConnectDecision{}, err
	}
	var body []byte
	err = e.post(ctx, payload, headers, func(resp *http.Response) error {
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				return errors.New("reply is not application/json")
			}
		}
		b, err := readReply(resp.Body, e.maxReply)
		if err != nil {
			if errors.Is(err, errReplyTooLarge) {
				return err
			}
			return errors.New("reply cut short")
		}
		body = b
		return nil
	})
	if err != nil {
		return ConnectDecision{}, err
	}
	d, err := parseConnectReply(body, e.maxExtra)
	if err != nil {
		return ConnectDecision{}, fmt.Errorf("invalid reply: %w", err)
	}
	return d, nil
}

// Disconnected enqueues the disconnect event for ev and returns at once.
// When the queue is full, or Events is closed, the event is dropped,
// counted (Dropped) and reported as EventOutcomeDropped. A zero ev.Duration is
// computed now, so the time spent in the queue does not count.
func (e *Events) Disconnected(ev ConnEvent) {
	if e.queue == nil {
		return
	}
	if ev.Duration == 0 && !ev.ConnectedAt.IsZero() {
		ev.Duration = max(e.now().Sub(ev.ConnectedAt), 0)
	}
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		e.drop("events closed")
		return
	}
	select {
	case e.queue <- ev:
		e.mu.RUnlock()
	default:
		e.mu.RUnlock()
		e.drop("queue full")
	}
}

// Dropped returns how many disconnect events were never sent.
func (e *Events) Dropped() uint64 { return e.dropped.Load() }

func (e *Events) drop(why string) {
	n := e.dropped.Add(1)
	e.obs.Event(EventDisconnect, EventOutcomeDropped, 0)
	if s, ok := e.dropLog.allow(e.now()); ok {
		e.log.Warn("disconnect event dropped", "why", why, "dropped_total", n, "not_logged", s)
	}
}

// worker sends queued disconnect events until Close closes the queue.
func (e *Events) worker() {
	for ev := range e.queue {
		if e.base.Err() != nil {
			// Close's deadline passed: empty the queue without I/O.
			e.abandoned.Add(1)
			e.drop("close deadline")
			continue
		}
		e.sendDisconnect(ev)
	}
}

func (e *Events) sendDisconnect(ev ConnEvent) {
	start := time.Now()
	payload, err := encodeEvent(EventDisconnect, ev)
	if err == nil {
		err = e.post(e.base, payload, nil, func(resp *http.Response) error {
			// Any 2xx is a success; read a little so the connection
			// can be reused.
			_, _ = readReply(resp.Body, disconnectReplyBytes)
			return nil
		})
	}
	took := time.Since(start)
	if err == nil {
		e.obs.Event(EventDisconnect, EventOutcomeOK, took)
		return
	}
	oc := EventOutcomeError
	if errors.Is(err, context.DeadlineExceeded) {
		oc = EventOutcomeTimeout
	}
	if e.base.Err() != nil {
		e.abandoned.Add(1)
	}
	e.obs.Event(EventDisconnect, oc, took)
	if s, ok := e.failLog.allow(e.now()); ok {
		e.log.Warn("disconnect event not delivered", "conn_id", ev.ConnID, "outcome", oc, "error", err, "not_logged", s)
	}
}

// Close stops accepting disconnect events (later ones are dropped), sends
// those already queued until ctx ends, then aborts requests in flight and
// drops what is left, and returns once every worker has stopped (promptly
// after ctx ends: the remaining work is cancelled, not waited for). The
// gateway calls it at the end of the drain, so the disconnect event of
// every drained connection is sent. Without a deadline in ctx, Close waits
// for the whole queue, each request still bounded by Timeout. The error,
// when ctx ended first, counts the events not delivered. Connected keeps
// working after Close.
func (e *Events) Close(ctx context.Context) error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		if e.queue != nil {
			close(e.queue)
		}
		e.mu.Unlock()
	})
	select {
	case <-e.done:
	case <-ctx.Done():
		e.cancel()
		<-e.done // bounded: every request now fails at once
	}
	e.cancel()
	if e.ownClient {
		e.client.CloseIdleConnections()
	}
	if n := e.abandoned.Load(); n > 0 {
		return fmt.Errorf("upstream events: close: %d disconnect events not delivered: %w", n, context.Cause(ctx))
	}
	return nil
}

// post signs and sends payload, bounded by Timeout and parent, and hands a
// 2xx response to onOK. Errors carry no URL (it may hold a token in its
// query), no header and no body; a deadline, ours or parent's, wraps
// context.DeadlineExceeded.
func (e *Events) post(parent context.Context, payload []byte, headers HeaderSource, onOK func(*http.Response) error) error {
	ctx, cancel := context.WithTimeout(parent, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "wsgate-events")
	e.signer.sign(req.Header, headers, e.now(), payload)
	resp, err := e.client.Do(req)
	if err != nil {
		if cerr := ctxErr(parent, ctx, e.timeout); cerr != nil {
			return cerr
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("application unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = readReply(resp.Body, disconnectReplyBytes)
		return fmt.Errorf("application answered %s", resp.Status)
	}
	if err := onOK(resp); err != nil {
		if cerr := ctxErr(parent, ctx, e.timeout); cerr != nil {
			return cerr
		}
		return err
	}
	return nil
}

// ctxErr reports why ctx (derived from parent with timeout d) ended, or nil
// while it is live: the caller cancelling is not a timeout.
func ctxErr(parent, ctx context.Context, d time.Duration) error {
	switch {
	case ctx.Err() == nil:
		return nil
	case errors.Is(parent.Err(), context.Canceled):
		return fmt.Errorf("cancelled: %w", parent.Err())
	case parent.Err() != nil:
		return fmt.Errorf("no reply before the caller's deadline: %w", context.DeadlineExceeded)
	default:
		return fmt.Errorf("no reply within %v: %w", d, context.DeadlineExceeded)
	}
}

// eventBody is the JSON POSTed for an event.
type eventBody struct {
	Event      string    `json:"event"`
	Connection eventConn `json:"connection"`
}

// eventConn is the "connection" of an event body; reason and duration_ms
// are present on disconnect events only.
type eventConn struct {
	ConnID         string          `json:"conn_id"`
	WAMPSessionID  string          `json:"wamp_session_id"`
	Firewall       string          `json:"firewall"`
	UserIdentifier string          `json:"user_identifier"`
	Anonymous      bool            `json:"anonymous"`
	Roles          []string        `json:"roles"`
	Protocol       string          `json:"protocol"`
	RemoteAddr     string          `json:"remote_addr"`
	ConnectedAt    *string         `json:"connected_at"`
	Extra          json.RawMessage `json:"extra"`
	Reason         *string         `json:"reason,omitempty"`
	DurationMS     *int64          `json:"duration_ms,omitempty"`
}

// connectedAtLayout is RFC 3339 with milliseconds: PHP's DateTime parses it,
// and nanoseconds would be noise.
const connectedAtLayout = "2006-01-02T15:04:05.000Z07:00"

func encodeEvent(kind string, ev ConnEvent) ([]byte, error) {
	c := eventConn{
		ConnID:         ev.ConnID,
		WAMPSessionID:  ev.SessionID,
		Firewall:       ev.Firewall,
		UserIdentifier: ev.UserIdentifier,
		Anonymous:      ev.Anonymous,
		Roles:          ev.Roles,
		Protocol:       ev.Protocol,
		RemoteAddr:     ev.RemoteAddr,
	}
	if c.Roles == nil {
		c.Roles = []string{}
	}
	if !ev.ConnectedAt.IsZero() {
		s := ev.ConnectedAt.UTC().Format(connectedAtLayout)
		c.ConnectedAt = &s
	}
	if kind == EventDisconnect {
		if len(ev.Extra) > 0 {
			c.Extra = ev.Extra
		}
		reason := ev.Reason
		if reason == "" {
			reason = ReasonError
		}
		ms := ev.Duration.Milliseconds()
		c.Reason, c.DurationMS = &reason, &ms
	}
	b, err := json.Marshal(eventBody{Event: kind, Connection: c})
	if err != nil {
		// Only a corrupt Extra can get here.
		return nil, fmt.Errorf("encode %s event: %w", kind, err)
	}
	return b, nil
}

// nopObserver is the EventsObserver when none is given.
type nopObserver struct{}

func (nopObserver) Event(string, string, time.Duration) {}

// logLimiter lets one log line through per interval, counting the others,
// so that an application outage during a drain of 100k connections logs a
// few lines, not 100k.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const logEvery = 10 * time.Second

// allow reports whether to log now, and how many lines were held back since
// the last one.
func (l *logLimiter) allow(now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return 0, false
	}
	s := l.suppressed
	l.last, l.suppressed = now, 0
	return s, true
}
