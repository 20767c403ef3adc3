// Package gateway wires wsgate together: it is the transport's Host
// (gateway/transport moves the bytes), identifies each client from its PHP
// session (storage and phpsession) at the handshake, and hands each
// message to the WAMP node (wamp). It also holds the configuration, the
// push API, revalidation and the replicas' glue. docs/architecture.md
// describes the whole path.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/gateway/cluster"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/gateway/upstream"
	"github.com/wsgate/wsgate/metrics"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/builtin"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Version is the gateway version, set at build time with
// -ldflags "-X github.com/wsgate/wsgate/gateway.Version=...".
var Version = "dev"

// Revision is the VCS commit of the build, set with -ldflags "-X
// github.com/wsgate/wsgate/gateway.Revision=..." by the Makefile and the
// Dockerfile; when empty, the one go build stamped (vcs.revision), which a
// build without .git (a container's context) or with -buildvcs=false lacks.
// wsgate_build_info's revision label.
var Revision = ""

// ServerIdent is what WAMP WELCOME messages name as the server.
func ServerIdent() string { return "wsgate/" + Version }

// Options are the parts of a Server that are not configuration.
type Options struct {
	// Logger receives the gateway's logs; nil uses slog.Default().
	Logger *slog.Logger
	// Handlers holds the topic and RPC handlers the routes name.
	Handlers *handler.Registry
	// Metrics registers the gateway's metrics; nil uses a private registry.
	Metrics prometheus.Registerer
}

// Server is one gateway instance: the transport's Host, the session
// resolver and the WAMP node its connections share.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	resolver *SessionResolver
	guesses  guessLog // best-effort identities logged (identity.go)
	origins  *config.OriginPolicy
	handlers *handler.Registry // the routes' handlers (built-in, plugin, upstream), for the start log
	node     *wamp.Node
	clients  storage.ClientStorage
	registry *clientRegistry // batches client storage removals off the transport
	metrics  *metrics.Gateway
	tr       *transport.Transport
	work     *wamp.Pool        // runs handler work off the transport (the node's Offloader); the Server waits for it at Shutdown
	fanout   *cluster.Fanout   // relays broadcasts between replicas; nil without cluster.fanout
	control  *cluster.Control  // carries disconnects to the other replicas; nil without cluster.fanout
	presence *cluster.Presence // the presence list of every replica; nil without Redis client storage or presence routes
	events   *upstream.Events  // connection events to the app; nil without events.url

	// retained keeps WAMP retained events in Redis; nil without
	// cluster.fanout (then in the node's memory).
	retained *cluster.Retained

	keepHeaders map[string]bool // handshake headers kept for upstream forwarding
	anonLog     anonymousLog    // when each anonymous reason was last logged (anonymous.go)
	nodeID      string          // prefixes connection ids so replicas never collide
	connSeq     atomic.Uint64

	baseCtx context.Context // cancelled when the server is forced down
	cancel  context.CancelFunc

	drain    atomic.Bool   // set first thing by Shutdown; read per message
	inflight atomic.Int64  // messages being handled, for the drain
	bgStop   chan struct{} // closed by Shutdown: ends the revalidation goroutine
	bgCtx    context.Context
	bgCancel context.CancelFunc // called by Shutdown with bgStop: ends the push channel

	watchMu sync.Mutex // guards bySession
	// bySession: clients by PHP session id, while the store is watched
	// (sessionClients: the first inline; a set per id cost ≈ 190 B more per
	// idle connection, a slice per id ≈ 55 B more, issue 19).
	bySession sessionClients

	mu        sync.Mutex     // guards userConns, draining and started
	userConns map[string]int // connections per authenticated user (limits.max_connections_per_user)
	draining  bool
	started   bool // Serve started the background goroutines

	depsOnce sync.Once // closeDeps

	// wg counts the server's own goroutines: revalidation, the session
	// watcher, the push channel, the client storage writer. The transport and the work pool
	// count theirs.
	wg sync.WaitGroup
}

// New builds a Server from a validated configuration. It opens the session
// store (without requiring it to answer yet: a store that is down makes
// handshakes fail with 503 until it is back) and compiles the routes.
func New(cfg config.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = slog.New(newRateLimitedHandler(log.Handler())) // loglimit.go
	reg := opts.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	handlers := opts.Handlers
	if handlers == nil {
		handlers = handler.NewRegistry()
	}
	// The built-in handlers the caller's registry lacks (cmd/wsgate adds
	// them before the plugins; an embedding program need not).
	if err := builtin.Register(handlers); err != nil {
		return nil, err
	}
	m := metrics.New(reg)
	metrics.RegisterBuildInfo(reg, metrics.ReadBuildInfo(Version, Revision))
	if err := addUpstreams(cfg.Upstreams, cfg.Routes, handlers, os.Getenv, upstreamObserver{m}); err != nil {
		return nil, err
	}
	origins, err := config.NewOriginPolicy(cfg.Origins)
	if err != nil {
		return nil, err
	}
	var idb [4]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("node id: %w", err)
	}
	nodeID := hex.EncodeToString(idb[:])
	s := &Server{
		cfg:         cfg,
		log:         log,
		origins:     origins,
		metrics:     m,
		nodeID:      nodeID,
		userConns:   make(map[string]int),
		bySession:   newSessionClients(),
		keepHeaders: keptHeaders(cfg.Upstreams, cfg.Events),
		bgStop:      make(chan struct{}),
		handlers:    handlers,
	}
	// Everything opened below is closed again if a later step fails.
	ok := false
	defer func() {
		if !ok {
			s.closeDeps()
		}
	}()
	local := &nodeClients{} // the node's index, once there is a node
	if s.clients, err = newClientStorage(cfg.ClientStorage, clientStorageObserver{m: m, log: log}, local); err != nil {
		return nil, err
	}
	s.registry = newClientRegistry(s.clients, cfg.Session.LookupTimeout, cfg.Limits.MaxConnections, log, m)
	s.work = wamp.NewPool(cfg.Limits.MaxPendingCalls)
	nodeCfg := wamp.NodeConfig{
		ServerIdent: ServerIdent(),
		Routes:      cfg.Routes,
		Handlers:    handlers,
		Logger:      log,
		CallTimeout: cfg.Limits.CallTimeout,
		Limits: wamp.Limits{
			MaxURILength:                cfg.Limits.MaxURILength,
			MaxPrefixes:                 cfg.Limits.MaxPrefixes,
			MaxSubscriptions:            cfg.Limits.MaxSubscriptions,
			MaxJSONDepth:                cfg.Limits.MaxJSONDepth,
			MaxOffloadedCallsPerSession: cfg.Limits.MaxPendingCallsPerConnection,
			MaxOffloadedCalls:           cfg.Limits.MaxPendingCalls,
			MaxPatterns:                 cfg.Limits.MaxPatterns,
			MaxMessageSize:              cfg.Limits.MaxMessageSize,
		},
		Realm:     cfg.WAMP.Realm,
		MetaAPI:   cfg.WAMP.MetaAPI,
		Observer:  wampObserver{m},
		Offloader: s.work,
	}
	nodeCfg.RetainedLimits = wamp.RetainedLimits{MaxTopics: cfg.WAMP.RetainedMaxTopics, MaxBytes: cfg.WAMP.RetainedMaxBytes}
	var everyReplica *cluster.Clients
	if cfg.ClientStorage.Driver == "redis" {
		// Handlers find every replica's clients.
		everyReplica = cluster.NewClients(s.clients, cfg.Session.LookupTimeout, log)
		nodeCfg.Clients = everyReplica
	}
	if cfg.Cluster.Relayed() {
		if s.fanout, err = s.newFanout(); err != nil {
			return nil, err
		}
		nodeCfg.Relay = fanoutRelay{s.fanout}
		if s.retained, err = s.newRetained(); err != nil { // run.go
			return nil, err
		}
		nodeCfg.Retained = s.retained
	}
	if s.presence, err = newPresence(cfg, nodeID, s); err != nil { // presence.go
		return nil, err
	}
	if s.presence != nil {
		nodeCfg.Presence = presenceDirectory{s.presence}
	}
	if s.node, err = wamp.NewNode(nodeCfg); err != nil {
		return nil, routesError(err)
	}
	if s.presence != nil {
		s.presence.SetSource(presenceSource(s.node))
	}
	local.local = s.node.Clients()
	if everyReplica != nil {
		everyReplica.SetLocal(s.node.Clients())
	}
	node := s.node
	m.WatchWAMP(func() (sessions map[string]int, topics, subscriptions int) {
		st := node.Stats()
		sessions = make(map[string]int, len(st.Sessions))
		for p, n := range st.Sessions {
			sessions[p.String()] = n
		}
		return sessions, st.Topics, st.Subscriptions
	})
	watchErr := func(err error) {
		log.Warn("session watch failed; logouts are seen by revalidation only until it recovers", "err", err)
	}
	if s.resolver, err = newSessionResolver(cfg.Session, storeObserver{m}, watchErr); err != nil {
		return nil, err
	}
	logSessionWarnings(log, cfg.Session, s.resolver.Warnings()) // identity.go
	if cfg.Events.URL != "" {
		if s.events, err = newEvents(cfg.Events, os.Getenv, eventsObserver{m}, log); err != nil {
			return nil, err
		}
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.bgCtx, s.bgCancel = context.WithCancel(s.baseCtx)
	lim := cfg.Limits
	s.tr, err = transport.New(transport.Config{
		Mode:               cfg.Transport.Mode,
		Workers:            cfg.Transport.Workers,
		Writers:            cfg.Transport.Writers,
		PermessageDeflate:  cfg.Transport.PermessageDeflate,
		HandshakeTimeout:   lim.HandshakeTimeout,
		MaxHeaderBytes:     lim.MaxHeaderBytes,
		MaxPendingRequests: lim.MaxPendingRequests,
		MaxHandshakes:      lim.MaxHandshakes,
		MaxConnections:     lim.MaxConnections,
		AcceptRatePerIP:    lim.AcceptRatePerIP,
		MaxMessageSize:     lim.MaxMessageSize,
		OutboundQueueBytes: lim.OutboundQueueBytes,
		WriteTimeout:       lim.WriteTimeout,
		IdleTimeout:        lim.IdleTimeout,
		PingInterval:       keepaliveInterval(cfg.Keepalive),
		Logger:             log,
		Observer:           transportObserver{m},
	}, s)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster.Relayed() {
		// Last: its commands close connections, found through s.tr.
		if s.control, err = s.newControl(); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// keepaliveInterval is the transport's ping interval: keepalive.interval
// when keepalive.ping is on, else none.
func keepaliveInterval(k config.KeepaliveConfig) time.Duration {
	if !k.Ping {
		return 0
	}
	return k.Interval
}

// closeDeps closes the stores and relays New opened, in reverse order,
// once: Shutdown may be called again.
func (s *Server) closeDeps() { s.depsOnce.Do(s.closeDepsOnce) }

func (s *Server) closeDepsOnce() {
	if s.events != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.events.Close(ctx); err != nil {
			s.log.Warn("connection events: not all disconnect events were sent", "err", err)
		}
		cancel()
	}
	if s.resolver != nil {
		s.resolver.Close()
	}
	if s.control != nil {
		s.control.Close()
	}
	if s.fanout != nil {
		s.fanout.Close()
	}
	if s.retained != nil {
		s.retained.Close()
	}
	if s.presence != nil {
		s.presence.Close() // after the drain: writes this replica's last leaves
	}
	if s.clients != nil {
		s.clients.Close()
	}
}

// Serve accepts connections on ln until Shutdown closes it. With
// transport.mode epoll it needs a TCP listener. It returns nil after
// Shutdown and the accept error otherwise. The first Serve also starts the
// server's background goroutines (revalidation, the push channel, the
// client storage writer).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errors.New("gateway: serve after shutdown")
	}
	start := !s.started
	s.started = true
	s.mu.Unlock()
	if start {
		s.wg.Add(1)
		go s.registry.run(&s.wg)
		if s.cfg.Session.RevalidateInterval > 0 {
			s.wg.Add(1)
			go s.revalidate()
		}
		if n := s.resolver.Notifier(); n != nil {
			s.wg.Add(1)
			go s.watchSessions(n)
		}
		if s.cfg.Push.RedisChannel != "" {
			s.wg.Add(1)
			go s.receivePushes()
		}
		if s.cfg.Transport.ReleaseMemory {
			s.wg.Add(1)
			go s.releaseMemoryAfterBursts(memReleaseEvery)
		}
	}
	return s.tr.Serve(ln)
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Ready reports whether the gateway should receive new clients: not
// draining and the session store answers.
func (s *Server) Ready() error {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		return errors.New("draining")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Session.LookupTimeout)
	defer cancel()
	if err := s.resolver.Ping(ctx); err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return nil
}

// Shutdown drains the gateway: it stops accepting, lets calls in flight
// finish, sends close 1001 to every client and waits for them to go until
// ctx ends, then closes what is left. The transport, the handler work, the
// client storage writer and the stores are released afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain.Store(true)
	s.mu.Lock()
	if !s.draining {
		close(s.bgStop)
		s.bgCancel()
	}
	s.draining = true
	s.mu.Unlock()
	s.tr.StopAccepting()
	var err error
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	// Calls in flight finish and send their results before the clients
	// are told to go; new messages are not taken (client.Message).
inflight:
	for s.inflight.Load() > 0 || s.node.OffloadedCalls() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			break inflight
		}
	}
	s.tr.Range(func(c *transport.Conn) bool {
		c.Close(transport.CloseGoingAway, "server shutting down", transport.ReasonDrain)
		return true
	})
wait:
	for s.tr.Len() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			err = fmt.Errorf("drain: %w", ctx.Err())
			break wait
		}
	}
	s.cancel() // handler calls and session lookups still running end now
	s.tr.Stop()
	// The disconnects' handler work (unsubscribe notices to the app) goes
	// out within the drain budget, or a short grace when drain used it all.
	workCtx, workCancel := graceCtx(ctx)
	if e := s.work.Wait(workCtx); e != nil {
		s.log.Warn("drain: handler work still running", "err", e)
	}
	workCancel()
	s.registry.close()
	s.wg.Wait()
	if s.events != nil {
		// Every drained connection queued its disconnect event; the app
		// hears about all of them before we exit.
		evCtx, cancel := graceCtx(ctx)
		if e := s.events.Close(evCtx); e != nil {
			s.log.Warn("connection events: not all disconnect events were sent", "err", e)
		}
		cancel()
		s.events = nil
	}
	s.closeDeps()
	return err
}

// graceCtx is ctx, or a 2-second grace when ctx has less than a second
// left: what must still go out after a drain gets a chance.
func graceCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < time.Second {
		return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	}
	return ctx, func() {}
}

// handshake is the gateway's side of one upgrade (transport.Handshake):
// what the request's headers say, and who admit found. The transport calls
// its methods on one goroutine, one after the other, so no lock is needed.
type handshake struct {
	srv         *Server
	host        string
	origin      string
	cookie      sessionCookie      // the session cookie as PHP reads it (cookie.go)
	sessionID   string             // its value, set by admit
	sessionMark storage.ChangeMark // the store's change reports before admit read the session
	offered     bool               // client offered a subprotocol
	matched     bool               // and the node speaks one of them
	proto       wamp.Protocol      // the one chosen; ProtocolV1 when none was offered
	info        wamp.ClientInfo
	outcome     string
	headers     map[string]string // kept for upstream forwarding
	userKey     string            // reserved in Server.userConns by admit
	ident       handler.Identity  // who admit found
	connID      string            // the connection id, fixed by admit
	remote      string            // the peer's address, kept only for the connect event
	connectedAt time.Time         // when the connect event was sent
	announced   bool              // the app accepted the connect event: it is owed a disconnect
}

var _ transport.Handshake = (*handshake)(nil)

// Handshake implements transport.Host.
func (s *Server) Handshake(remote net.Addr) transport.Handshake {
	h := &handshake{srv: s, outcome: metrics.OutcomeBadRequest, cookie: newSessionCookie(s.cfg.Session.Cookie)}
	if s.events != nil && remote != nil {
		h.remote = remote.String() // only the connect event needs the peer
	}
	return h
}

// Header implements transport.Handshake.
func (h *handshake) Header(key, value []byte) {
	s := h.srv
	switch {
	case bytes.EqualFold(key, []byte("Host")):
		h.host = string(value)
		return
	case bytes.EqualFold(key, []byte("Cookie")):
		// The session id is what PHP's $_COOKIE holds, nothing else.
		h.cookie.feed(value)
	case bytes.EqualFold(key, []byte("Origin")):
		h.origin = string(value)
	}
	if s.keepHeaders != nil {
		h.keep(textproto.CanonicalMIMEHeaderKey(string(key)), string(value), s.keepHeaders)
	}
}

// Protocol implements transport.Handshake: the first offered subprotocol
// the node speaks wins: "wamp" (v1, autobahn 0.8), "wamp.2.json" (today's
// autobahn), "wamp.2.msgpack" or "wamp.2.cbor" (autobahn with its
// optional serializer packages).
func (h *handshake) Protocol(p []byte) bool {
	h.offered = true
	h.proto, h.matched = wamp.ProtocolFor(string(p))
	return h.matched
}

// Admit implements transport.Handshake.
func (h *handshake) Admit(ctx context.Context) error { return h.srv.admit(ctx, h) }

// Outcome implements transport.Handshake.
func (h *handshake) Outcome() string { return h.outcome }

// Open implements transport.Handshake: the connection goes live.
func (h *handshake) Open(c *transport.Conn) transport.Handler {
	if cl := h.srv.register(c, h); cl != nil {
		return cl
	}
	return nil
}

// Abandon implements transport.Handshake: the transport stopped between
// Admit and Open.
func (h *handshake) Abandon() {
	h.srv.releaseUser(h.userKey)
	h.userKey = ""
	h.srv.abandon(h, upstream.ReasonDrain)
}

// keep records a header the upstreams forward; repeated ones are joined
// ("; " for Cookie, as browsers join cookies, ", " otherwise).
func (h *handshake) keep(name, value string, wanted map[string]bool) {
	if !wanted[name] {
		return
	}
	if h.headers == nil {
		h.headers = map[string]string{}
	}
	if prev, ok := h.headers[name]; ok {
		sep := ", "
		if name == "Cookie" {
			sep = "; "
		}
		value = prev + sep + value
	}
	h.headers[name] = value
}

// reject is transport.Reject, short.
func reject(status int, reason string) error { return transport.Reject(status, reason) }

// admit decides whether the handshake may complete and who the client is.
func (s *Server) admit(ctx context.Context, h *handshake) error {
	if h.offered && !h.matched {
		return reject(400, "unsupported subprotocol: this gateway speaks wamp, wamp.2.json, wamp.2.msgpack and wamp.2.cbor")
	}
	if !s.origins.Allowed(h.origin, h.host) {
		h.outcome = metrics.OutcomeForbidden
		return reject(403, "origin not allowed")
	}
	if s.isDraining() {
		h.outcome = metrics.OutcomeOverloaded
		return reject(503, "gateway draining")
	}
	res := Resolution{Status: StatusAnonymous, Reason: "no session cookie", AnonymousReason: AnonNoCookie}
	if id, ok := h.cookie.id(); ok {
		h.sessionID = id
		if n := s.resolver.Notifier(); n != nil {
			h.sessionMark = n.Mark()
		}
		start := time.Now()
		var err error
		res, err = s.resolver.Resolve(ctx, id)
		result := res.Status
		if err != nil {
			result = "error"
		}
		s.metrics.SessionLookups.WithLabelValues(result).Observe(time.Since(start).Seconds())
		if err != nil {
			reason := storage.Result(err) // busy, timeout, unavailable, closed
			s.log.Warn("session lookup failed", "reason", reason, "err", err)
			if s.cfg.Session.OnUnavailable != "anonymous" || !s.cfg.AllowAnonymous {
				h.outcome = metrics.OutcomeUnavailable
				return reject(503, "session store unavailable: "+reason)
			}
			// Configured to admit such clients as anonymous: revalidation
			// does not upgrade them later; they reconnect for that.
			res = Resolution{Status: StatusAnonymous, Reason: "session store unavailable", AnonymousReason: AnonStoreUnavailable}
		}
	}
	s.noteBestEffort(res.Authenticated()) // identity.go
	ident := res.Identity()
	if ident.Anonymous {
		s.noteAnonymous(&res) // anonymous.go
		if !s.cfg.AllowAnonymous {
			h.outcome = metrics.OutcomeRefusedAnon
			return reject(403, "authentication required")
		}
		h.outcome = metrics.OutcomeAnonymous
		h.info = wamp.ClientInfo{Identity: ident}
		return s.askApp(ctx, h)
	}
	if s.cfg.Limits.MaxConnectionsPerUser > 0 { // counting costs memory per connection: only when limited
		key := userKey(ident)
		if !s.reserveUser(key) {
			h.outcome = metrics.OutcomeRateLimited
			s.metrics.LimitExceeded.WithLabelValues("max_connections_per_user").Inc()
			return reject(429, "too many connections for this user")
		}
		h.userKey = key
	}
	h.ident = ident
	h.outcome = metrics.OutcomeAuthenticated
	h.info = wamp.ClientInfo{Identity: ident}
	if err := s.askApp(ctx, h); err != nil {
		s.releaseUser(h.userKey)
		h.userKey = ""
		return err
	}
	return nil
}

// askApp sends the connect event, when configured, before the upgrade: the
// app may refuse the client (its status and reason become the handshake's
// answer) or attach extra data that handlers then see. The connection id
// is fixed here so that the app can match the later disconnect event; the
// WAMP session id does not exist yet.
func (s *Server) askApp(ctx context.Context, h *handshake) error {
	h.connID = fmt.Sprintf("%s-%d", s.nodeID, s.connSeq.Add(1))
	if s.events == nil || !s.cfg.Events.Connect {
		return nil
	}
	h.connectedAt = time.Now()
	var headers upstream.HeaderSource
	if h.headers != nil {
		headers = upstream.HeaderMap(h.headers)
	}
	d, err := s.events.Connected(ctx, upstream.ConnEvent{
		ConnID: h.connID, Identity: h.info.Identity, Protocol: h.proto.Subprotocol(),
		ConnectedAt: h.connectedAt, RemoteAddr: h.remote,
	}, headers)
	if err != nil {
		s.log.Warn("connect event failed", "conn", h.connID, "on_connect_error", s.cfg.Events.OnConnectError, "err", err)
	}
	if d.Reject {
		h.outcome = metrics.OutcomeRejectedByApp
		status := d.Status
		if status == 0 {
			status = 403
		}
		reason := d.Reason
		if reason == "" {
			reason = "refused by the application"
		}
		return reject(status, reason)
	}
	h.info.Extra = d.Extra
	h.announced = true
	return nil
}

// abandon ends a handshake the app was told about (connect event accepted)
// but that never became a live connection: the gateway began to drain
// meanwhile. The app still gets the disconnect event it is owed, so its
// bookkeeping of connect and disconnect pairs stays whole.
func (s *Server) abandon(h *handshake, reason string) {
	if !h.announced || s.events == nil || !s.cfg.Events.Disconnect {
		return
	}
	h.announced = false
	s.events.Disconnected(upstream.ConnEvent{
		ConnID: h.connID, Identity: h.info.Identity, Protocol: h.proto.Subprotocol(),
		ConnectedAt: h.connectedAt, Extra: h.info.Extra, Reason: reason,
	})
}

// register makes an upgraded connection live: it gets its WAMP session
// (which queues WELCOME behind the 101) and its client storage entry. It
// returns nil when the server is draining; the transport then closes the
// connection. It runs on the handshake's goroutine, which may wait for the
// client storage.
func (s *Server) register(conn *transport.Conn, h *handshake) *client {
	c := &client{
		srv:       s,
		conn:      conn,
		id:        h.connID,
		sessionID: h.sessionID,
	}
	if h.userKey != "" {
		key := h.userKey
		c.userKey.Store(&key)
	}
	if c.id == "" {
		c.id = fmt.Sprintf("%s-%d", s.nodeID, s.connSeq.Add(1))
	}
	h.info.ConnID = c.id
	h.info.Headers = h.headers
	// The connect event's time, so both events of a pair agree; the
	// WAMP session keeps it.
	h.info.ConnectedAt = h.connectedAt
	if h.info.ConnectedAt.IsZero() {
		h.info.ConnectedAt = time.Now()
	}
	if s.isDraining() {
		s.releaseUser(h.userKey)
		s.abandon(h, upstream.ReasonDrain)
		return nil
	}
	s.metrics.Connections.Inc()
	var peer wamp.Peer = conn
	if h.proto.Binary() {
		conn.SetBinary()
		peer = binaryPeer{conn}
	}
	c.sess = s.node.OpenProtocol(peer, h.info, h.proto)
	s.watchClient(c, h.sessionMark)
	if err := s.clients.Add(s.baseCtx, s.clientEntry(c)); err != nil {
		s.log.Warn("client storage add failed", "conn", c.id, "err", err)
	}
	s.log.Debug("client connected", "conn", c.id, "anonymous", h.info.Identity.Anonymous, "firewall", h.info.Identity.Firewall)
	return c
}

// clientEntry is c's client storage entry: its identity as its WAMP
// session has it (an anonymous client named).
func (s *Server) clientEntry(c *client) storage.ClientEntry {
	return storage.ClientEntry{
		ConnID: c.id, WAMPSessionID: c.sess.ID(), Identity: c.sess.Identity(),
		ConnectedAt: c.connectedAt(), Extra: c.sess.Extra(),
	}
}

// userKey is the Server.userConns key of an authenticated identity.
func userKey(id handler.Identity) string { return id.Firewall + "\x00" + id.UserIdentifier }

// reserveUser counts one more connection for key, or returns false when
// the user is at limits.max_connections_per_user.
func (s *Server) reserveUser(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := s.cfg.Limits.MaxConnectionsPerUser; limit > 0 && s.userConns[key] >= limit {
		return false
	}
	s.userConns[key]++
	return true
}

// releaseUser gives back what reserveUser counted; "" is no reservation.
func (s *Server) releaseUser(key string) {
	if key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userConns[key] <= 1 {
		delete(s.userConns, key)
	} else {
		s.userConns[key]--
	}
}

// newClientStorage opens the configured client storage; the memory one
// answers from local, this process's own index of its connections.
func newClientStorage(c config.ClientStorageConfig, obs storage.ClientStorageObserver, local storage.ClientIndex) (storage.ClientStorage, error) {
	if c.Driver != "redis" {
		return storage.NewIndexClientStorage(local), nil
	}
	r := c.Redis
	cs, err := storage.NewRedisClientStorage(storage.RedisClientStorageOptions{
		Redis:  r.Options(),
		Prefix: c.Prefix, TTL: c.TTL, CheckInterval: c.CheckInterval, Observer: obs,
	})
	if err != nil {
		return nil, fmt.Errorf("client storage redis: %w", err)
	}
	return cs, nil
}
