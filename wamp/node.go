package wamp

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Peer is the gateway's send side of one websocket connection.
type Peer interface {
	// Send queues one complete WAMP message for the client as one text
	// frame, or one binary frame for a Protocol.Binary session. It must never block and must not call back into the Session
	// synchronously. msg must not be modified afterwards: the same bytes
	// are handed to many peers (fan-out encodes once). It returns false
	// when the peer is closing or its queue overflowed; the gateway then
	// closes the connection (and calls Session.Close).
	Send(msg []byte) bool
}

// ClientInfo is what the gateway knows of a connection when it opens its
// session: who it is, from the PHP session, and what the handshake left.
type ClientInfo struct {
	// ConnID is the gateway connection id, unique across replicas.
	ConnID string
	// Identity is who the client is. Leave UserIdentifier empty for an
	// anonymous client: the node names it "anon-<WAMP session id>", as the
	// bundle does, because only the node knows the session id. An empty
	// UserIdentifier makes the client anonymous.
	// Its Roles slice is kept by the session, not copied: it must not be
	// modified after Open (or Reidentify) is given it.
	Identity handler.Identity
	// Headers are handshake request headers the gateway kept for handlers
	// (e.g. Cookie, forwarded to an HTTP upstream), by canonical name.
	// Nil when none are kept; never modified after Open.
	Headers map[string]string
	// Extra is what the application attached to the connection when it
	// accepted the connect event (a JSON object), or nil; handlers read it
	// with Client.Extra. Never modified after Open.
	Extra json.RawMessage
	// ConnectedAt is when the connection was accepted (Session.ConnectedAt);
	// zero means when Open runs.
	ConnectedAt time.Time
}

// Defaults of NodeConfig.
const (
	DefaultCallTimeout = 30 * time.Second
	DefaultServerIdent = "wsgate"
)

// NodeConfig configures a Node.
type NodeConfig struct {
	// ServerIdent is the server identity in WELCOME (Ratchet sends
	// "Ratchet/0.4.4"). Default "wsgate".
	ServerIdent string
	// Routes maps URIs to handlers.
	Routes RoutesConfig
	// Handlers holds the handlers routes name. The node binds to it
	// (handler.Registry.BindClients), after which it cannot be changed or
	// used by another node. Nil means no handlers, so any route fails.
	Handlers *handler.Registry
	// Logger receives protocol and handler diagnostics. Nil discards them.
	Logger *slog.Logger
	// CallTimeout bounds each handler invocation through its context.
	// Zero means DefaultCallTimeout; negative means no timeout. Handlers
	// that ignore ctx are not interrupted.
	CallTimeout time.Duration
	// Limits bounds per-client state.
	Limits Limits
	// Realm is the WAMP v2 realm clients must name in HELLO; a HELLO for
	// another realm gets ABORT wamp.error.no_such_realm. Empty accepts any
	// realm (and WELCOME echoes it). WAMP v1 has no realms.
	Realm string
	// Observer receives metrics events; nil discards them.
	Observer Observer
	// Relay, when set, carries broadcasts to and from other gateway
	// replicas (see Relay). Nil keeps every broadcast on this node.
	Relay Relay
	// Offloader runs offloaded handler work (see Offloader); nil runs it on
	// plain goroutines, at most Limits.MaxOffloadedCalls at once.
	Offloader Offloader
	// Clients, when set, is the ClientManipulator handlers get instead of
	// the node's own index (Node.Clients), typically one that also sees
	// the clients of other replicas through a shared client storage.
	Clients handler.ClientManipulator
	// MetaAPI enables the WAMP v2 session meta API procedures
	// wamp.session.count, wamp.session.list, wamp.session.get and
	// wamp.subscription.count_subscribers, answered by the node itself
	// from its own sessions and subscribers (per replica), and announces
	// session_meta_api in WELCOME: "" or "none" (the default) disables
	// them, "authenticated" admits every authenticated (not anonymous)
	// client, "role:<ROLE>" only clients with that role. They expose
	// other users' identities, hence the secure default.
	MetaAPI string
	// Retained keeps the events published with the v2 PUBLISH option
	// retain (event retention, retain.go); nil keeps them in this node's
	// memory (NewMemoryRetained with RetainedLimits). The gateway gives
	// a Redis one when replicas share a Redis fan-out.
	Retained RetainStore
	// RetainedLimits bound the memory store when Retained is nil.
	RetainedLimits RetainedLimits
	// Presence, when set, shares the presence of RouteConfig.Presence
	// topics between replicas, so that PresenceListProcedure lists every
	// replica's subscribers; nil lists this node's.
	Presence PresenceDirectory
}

// Node is the WAMP engine of one gateway process: compiled routes, the
// topic broker and the index of connected clients. It is safe for
// concurrent use.
type Node struct {
	serverIdent string
	realm       string
	log         *slog.Logger
	obs         Observer
	callTimeout time.Duration
	limits      Limits
	// meta is the session meta API access (NodeConfig.MetaAPI).
	meta metaAccess
	// metaRoute is the route of every meta topic subscription: no name,
	// the meta API's access rule, a handler that does nothing.
	metaRoute *route[*topicHandler]
	// routerRoles are the WELCOME roles, fixed at NewNode.
	routerRoles map[string]any
	// patterns: pattern-based subscriptions are served (the Relay, if
	// any, carries them; pattern.go).
	patterns bool
	// retained keeps the retained events (retain.go).
	retained RetainStore

	rpcRoutes   *router[*rpcHandler]
	topicRoutes *router[*topicHandler]

	// offloader runs offloaded handler work.
	offloader Offloader

	broker broker

	// mu guards the client index (byConn, byUser), sessionCount and seq.
	mu           sync.RWMutex
	byConn       map[string]*Session
	byUser       userIndex
	sessionCount map[Protocol]int
	seq          uint64 // session open order, for FindByUsername

	// subSeq numbers v2 subscriptions (router scope, sequential).
	subSeq atomic.Uint64

	// offloaded counts offloaded work queued or running: calls,
	// offloaded topic callbacks, disconnect unsubscribes.
	offloaded atomic.Int64

	// timers counts running PeriodicTopic goroutines.
	timers sync.WaitGroup

	clients clientIndex

	// presence is the local presence of RouteConfig.Presence topics;
	// presenceDir shares it (NodeConfig.Presence, may be nil).
	presence    presenceTable
	presenceDir PresenceDirectory
	// metaTopics backs the subscription meta API (meta_events.go).
	metaTopics metaTopics
}

// NewNode compiles the routes against the registered handlers. The error
// names the offending route and value: a bad pattern, a bad requirement
// regexp, a requirement for a placeholder the pattern does not have, or an
// unknown handler name.
func NewNode(cfg NodeConfig) (*Node, error) {
	n := &Node{
		serverIdent:  cfg.ServerIdent,
		realm:        cfg.Realm,
		log:          cfg.Logger,
		obs:          cfg.Observer,
		sessionCount: map[Protocol]int{},
		callTimeout:  cfg.CallTimeout,
		limits:       cfg.Limits.withDefaults(),
		byConn:       map[string]*Session{},
		byUser:       newUserIndex(),
	}
	if n.serverIdent == "" {
		n.serverIdent = DefaultServerIdent
	}
	if n.log == nil {
		n.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if n.obs == nil {
		n.obs = nopObserver{}
	}
	if n.callTimeout == 0 {
		n.callTimeout = DefaultCallTimeout
	}
	n.presenceDir = cfg.Presence
	n.offloader = cfg.Offloader
	if n.offloader == nil {
		n.offloader = NewPool(n.limits.MaxOffloadedCalls)
	}
	n.broker.topics = map[string]*topicState{}
	n.broker.relay = cfg.Relay
	n.clients.n = n

	reg := cfg.Handlers
	if reg == nil {
		reg = handler.NewRegistry()
	}
	var err error
	if n.meta, err = parseMetaAPI(cfg.MetaAPI); err != nil {
		return nil, err
	}
	n.metaRoute = &route[*topicHandler]{handler: &topicHandler{topic: presenceTopicHandler{}}, access: n.meta.accessRule()}
	n.routerRoles = newRouterRoles(n.meta.enabled)
	n.patterns = patternsAvailable(cfg.Relay)
	n.retained = cfg.Retained
	if n.retained == nil {
		mem := NewMemoryRetained(cfg.RetainedLimits).(*memRetained)
		mem.dropped = func() { n.obs.Limit(LimitRetained) }
		n.retained = mem
	}
	advertiseBrokerFeatures(n.routerRoles, n.patterns)
	if n.rpcRoutes, n.topicRoutes, err = compileAll(cfg.Routes, reg); err != nil {
		return nil, err
	}
	var bound handler.ClientManipulator = &n.clients
	if cfg.Clients != nil {
		bound = cfg.Clients
	}
	if err := reg.BindClients(bound); err != nil {
		return nil, fmt.Errorf("wamp: %w", err)
	}
	return n, nil
}

// Open registers a new WAMP v1 session for a connection and sends WELCOME
// [0, sessionId, 1, serverIdent] through p. The session is visible to
// handlers (ClientManipulator) from now until Close. It is
// OpenProtocol(p, info, ProtocolV1).
func (n *Node) Open(p Peer, info ClientInfo) *Session {
	return n.OpenProtocol(p, info, ProtocolV1)
}

// OpenProtocol registers a new session speaking proto for a connection.
// For ProtocolV1 it sends WELCOME at once. For the v2 protocols it sends
// nothing: the client speaks first with HELLO, which Handle answers with
// WELCOME or ABORT. Either way the session is visible to handlers from
// now until Close, and Close must be called however the connection ends.
func (n *Node) OpenProtocol(p Peer, info ClientInfo, proto Protocol) *Session {
	s := &Session{
		node:   n,
		peer:   p,
		proto:  proto,
		connID: info.ConnID,
	}
	if info.Headers != nil || info.Extra != nil {
		s.opened = &openedInfo{headers: info.Headers, extra: info.Extra}
	}
	if info.ConnectedAt.IsZero() {
		info.ConnectedAt = time.Now()
	}
	s.connectedAt = info.ConnectedAt.UnixNano()
	if proto.V2() {
		s.id = strconv.FormatUint(newGlobalID(), 10)
	} else {
		s.proto = ProtocolV1
		s.id = newSessionIDV1()
	}
	who := sessionIdentity(info, s.id)
	s.identity.Store(who)

	n.mu.Lock()
	if old := n.byConn[s.connID]; old != nil {
		n.log.Warn("wamp: duplicate connection id, newer session wins in lookups", "conn", s.connID, "old_session", old.id, "session", s.id)
	}
	n.seq++
	s.seq = n.seq
	n.byConn[s.connID] = s
	n.indexUser(who.UserIdentifier, s)
	n.sessionCount[s.proto]++
	n.mu.Unlock()

	if s.proto == ProtocolV1 {
		s.send("WELCOME", encodeWelcomeV1(s.id, n.serverIdent))
	}
	return s
}

func (n *Node) forget(s *Session) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.byConn[s.connID] == s {
		delete(n.byConn, s.connID)
	}
	if n.unindexUser(s.identity.Load().UserIdentifier, s) {
		n.sessionCount[s.proto]--
	}
}

// indexUser adds s to the sessions of user; n.mu must be held.
func (n *Node) indexUser(user string, s *Session) {
	n.byUser.add(user, s)
}

// unindexUser removes s from the sessions of user and reports whether it
// was there (the session was still open); n.mu must be held.
func (n *Node) unindexUser(user string, s *Session) bool {
	return n.byUser.remove(user, s)
}

// Clients returns the node's view of connected clients. It is the same
// manipulator handlers get from handler.Registry.Clients.
func (n *Node) Clients() handler.ClientManipulator { return &n.clients }

// clientIndex implements handler.ClientManipulator over the node's
// sessions.
type clientIndex struct{ n *Node }

func (c *clientIndex) GetClient(connID string) (handler.Client, bool) {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	s, ok := c.n.byConn[connID]
	if !ok {
		return nil, false
	}
	return s, true
}

func (c *clientIndex) FindByUsername(user string) (handler.Client, bool) {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	var first *Session
	for s := range c.n.byUser.of(user) {
		if first == nil || s.seq < first.seq {
			first = s
		}
	}
	if first == nil {
		return nil, false
	}
	return first, true
}

func (c *clientIndex) FindAllByUsername(user string) []handler.Client {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	out := make([]handler.Client, 0, c.n.byUser.count(user))
	for s := range c.n.byUser.of(user) {
		out = append(out, s)
	}
	return out
}

func (c *clientIndex) FindByRoles(roles []string) []handler.Client {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	var out []handler.Client
	for _, s := range c.n.byConn {
		if who := s.identity.Load(); !who.Anonymous && (accessRule{roles: roles}).allows(false, who.Roles) && len(roles) > 0 {
			out = append(out, s)
		}
	}
	return out
}

func (c *clientIndex) GetAll(anonymous bool) []handler.Client {
	c.n.mu.RLock()
	defer c.n.mu.RUnlock()
	out := make([]handler.Client, 0, len(c.n.byConn))
	for _, s := range c.n.byConn {
		if !anonymous && s.identity.Load().Anonymous {
			continue
		}
		out = append(out, s)
	}
	return out
}

// newSessionIDV1 returns 128 random bits in hex: unguessable, because clients
// use session ids of others in PUBLISH exclude/eligible lists and the
// anonymous user name is derived from it.
func newSessionIDV1() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// newGlobalID returns a random id in [1, 2^53], the WAMP v2 global scope
// (session and publication ids).
func newGlobalID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		id := binary.LittleEndian.Uint64(b[:]) & (1<<53 - 1)
		if id != 0 {
			return id
		}
	}
}
