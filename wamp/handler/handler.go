// Package handler is the SDK that RPC and topic handler authors import.
//
// It is deliberately the only wsgate package a handler (or, later, a Go
// plugin) needs: the protocol engine in package wamp depends on it, never
// the other way round, so a plugin built against this package keeps working
// while the gateway internals change.
//
// The model mirrors GosWebSocketBundle so PHP handlers port one to one:
//
//   - An RPC handler (the bundle's RpcInterface) has a Name used as the
//     `handler` of rpc routes and a set of methods; the route placeholder
//     `method` selects the method, as in the bundle.
//   - A Topic handler (the bundle's TopicInterface) has a Name used as the
//     `handler` of topic routes and receives subscribe, unsubscribe and
//     publish callbacks with a TopicRef it can Broadcast on (Ratchet's
//     Topic::broadcast).
//   - A ClientManipulator (the bundle's ClientManipulator) looks up
//     connected clients.
//
// # Registration
//
// A plugin exports a function of this shape and the binary calls it once at
// start-up, before the wamp node is built:
//
//	func Register(r *handler.Registry) error {
//		clients := r.Clients() // usable as soon as the node is running
//		if err := r.AddRPC(&myRPC{clients: clients}); err != nil {
//			return err
//		}
//		return r.AddTopic(&myTopic{clients: clients})
//	}
//
// Registry.Clients returns a ClientManipulator at once, even though the node
// that answers it is created later: the node binds itself to the registry
// when it is built (Registry.BindClients). This lets plugins capture the
// manipulator at registration time instead of needing a second hook.
//
// # Concurrency
//
// Handler methods are called concurrently for different clients, but in
// order for one client: its messages are handled one at a time. Two
// exceptions, both opt-in: the calls of an OffloadedRPC run concurrently
// (results carry their call ids), and the topic callbacks of an
// OffloadedTopic run in order among themselves, off the connection's
// reader, possibly while a handler that is not offloaded handles the same
// client's next message. The unsubscribes a disconnect leaves run after the
// connection is gone, off the gateway's socket workers. Handlers must be
// safe for concurrent use and should honour ctx, which is cancelled when
// the call times out, the client goes away or (WAMP v2) the caller cancels
// the call.
//
// A handler that is not offloaded runs on the gateway's socket workers,
// which serve every connection: it must not wait on I/O (a database, an
// HTTP service). Implement OffloadedRPC / OffloadedTopic for that.
//
// # Progressive results and canceling
//
// A WAMP v2 caller may ask for progressive results (CALL option
// receive_progress). The method sends them with Progress, as often as it
// likes, before it returns its final result, and stops when ctx ends:
//
//	func Countdown(ctx context.Context, c handler.Client, req handler.Request, params json.RawMessage) (any, error) {
//		for i := 3; i > 0; i-- {
//			if err := handler.Progress(ctx, i); err != nil {
//				return nil, err // the call was canceled or has ended
//			}
//			select {
//			case <-time.After(time.Second):
//			case <-ctx.Done():
//				return nil, ctx.Err() // canceled, timed out or the client left
//			}
//		}
//		return "liftoff", nil
//	}
//
// Progress does nothing when the caller did not ask (a WAMP v1 client, or
// a v2 CALL without receive_progress), so a method need not check;
// WantsProgress tells it when producing progress is costly. Each progress
// goes to the client through the connection's outbound queue like any
// other message, so a client that does not read them is disconnected as a
// slow consumer rather than buffered without bound. A caller's CANCEL
// cancels ctx, as the call timeout and the client leaving do: a method
// that honours ctx (an HTTP request made with it, a select on ctx.Done())
// stops there. Such a method should be an OffloadedRPC: one that runs on
// the socket workers holds the connection's reader, so its CANCEL is read
// only once it has returned.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Identity is who a client is: what the gateway read from the Symfony
// security token in its PHP session, or anonymous. It is one value type
// for all of wsgate: the gateway makes it once per handshake (and again
// when revalidation finds the session changed) and the client handlers
// see, the client storage, connection events and the HTTP upstream all
// carry it. Roles is shared by every copy: treat it as read-only.
type Identity struct {
	// UserIdentifier is the Symfony user identifier (username). An
	// anonymous client is "anon-<SessionID>" once its WAMP session is
	// open, as GosWebSocketBundle names them, and "" before that (the
	// app's connect event).
	UserIdentifier string
	// Roles are the token's role names, e.g. "ROLE_USER"; none when
	// anonymous.
	Roles []string
	// Firewall is the Symfony firewall (security context) whose token
	// identified the client; "" when anonymous.
	Firewall string
	// TokenClass is that token's PHP class, e.g.
	// Symfony\Component\Security\Core\Authentication\Token\UsernamePasswordToken.
	TokenClass string
	// Impersonator is the user identifier of who switched to this user
	// (Symfony's switch_user), "" when nobody impersonates.
	Impersonator string
	// Anonymous is true for a client without an authenticated user.
	Anonymous bool
}

// Equal reports whether two identities are the same user with the same
// roles, firewall, token class and impersonator.
func (id Identity) Equal(o Identity) bool {
	if id.UserIdentifier != o.UserIdentifier || id.Firewall != o.Firewall || id.Anonymous != o.Anonymous ||
		id.TokenClass != o.TokenClass || id.Impersonator != o.Impersonator || len(id.Roles) != len(o.Roles) {
		return false
	}
	for i := range id.Roles {
		if id.Roles[i] != o.Roles[i] {
			return false
		}
	}
	return true
}

// Client is one connected websocket client as handlers see it. ConnID and
// SessionID never change; the Identity may change while the client stays
// connected, when the gateway re-reads the PHP session and finds it
// expired, logged out or holding another user (the client is then
// downgraded to anonymous or takes the new user). A Client may be kept and
// read from any goroutine; each method returns the current value: read
// Identity once when several of its parts must agree.
type Client interface {
	// ConnID is the gateway connection id, unique across gateway replicas.
	// It plays the role of Ratchet's $conn->resourceId.
	ConnID() string
	// SessionID is the WAMP session id sent in WELCOME (for a WAMP v2
	// client, the decimal form of its integer id). It is what clients put
	// in PUBLISH exclude/eligible lists and what TopicRef.Broadcast
	// filters on.
	SessionID() string
	// Identity is who the client is now, all at once.
	Identity() Identity
	// UserIdentifier is Identity().UserIdentifier: the Symfony username,
	// or "anon-<SessionID>" for an anonymous client, exactly as
	// GosWebSocketBundle names anonymous clients.
	UserIdentifier() string
	// Anonymous is Identity().Anonymous.
	Anonymous() bool
	// Roles are Identity().Roles, e.g. "ROLE_USER"; the returned slice is
	// a copy.
	Roles() []string
	// Firewall is Identity().Firewall.
	Firewall() string
	// Extra is what the PHP app attached to the connection when it
	// accepted the gateway's connect event (a JSON object, e.g.
	// {"plan":"gold"}), or nil when connect events are off or it attached
	// nothing. It is fixed for the life of the connection; do not modify
	// the returned bytes.
	Extra() json.RawMessage
}

// Request describes the route that matched a URI, like the bundle's
// WampRequest.
type Request struct {
	// Route is the route name from the routing configuration.
	Route string
	// URI is the full matched URI (after CURIE expansion).
	URI string
	// Attributes holds placeholder values from the URI plus route defaults.
	// For RPC routes the "method" attribute names the method to call.
	//
	// Attributes is read-only: the gateway shares one map between every
	// subscription to a topic (and with the requests it hands handlers for
	// it), so a write would be seen by, and race with, other clients'
	// callbacks. A handler that needs a changed set copies it first
	// (maps.Clone).
	Attributes map[string]string
	// Kwargs is the WAMP v2 ArgumentsKw dictionary of a CALL or PUBLISH
	// as sent (a JSON object), or nil: always nil for WAMP v1 clients,
	// which have no keyword arguments. See RPCMethod and Topic.OnPublish
	// for how v2 positional arguments are mapped.
	Kwargs json.RawMessage
}

// Error is an error a handler returns to control the CALLERROR sent to the
// client. Any other error is reported as code 500 with err.Error() as the
// description, which is what the bundle does with an exception's message.
type Error struct {
	// URI is the error URI of the CALLERROR. Empty means the called
	// procedure (or topic) URI, which is what the bundle sends.
	URI string
	// Desc is the developer-oriented description.
	Desc string
	// Code is put in the bundle-shaped details object ({"code": Code, ...})
	// when Details is nil. Zero means 500.
	Code int
	// Details, when non-nil, is sent verbatim as the CALLERROR details
	// instead of the bundle-shaped object. It must be JSON-encodable.
	Details any
}

// Error implements error.
func (e *Error) Error() string {
	if e.URI != "" {
		return fmt.Sprintf("wamp call error %s: %s", e.URI, e.Desc)
	}
	return "wamp call error: " + e.Desc
}

// RPCMethod implements one remote procedure. params is the JSON array (or
// object) of arguments following Ratchet's rule: a CALL with exactly one
// argument that is an array or object passes that argument, otherwise the
// list of all arguments is passed.
//
// WAMP v2 CALLs apply the same rule to their positional Arguments list;
// a v2 CALL with no positional arguments but a non-empty ArgumentsKw
// passes that dictionary as params. The dictionary is also in
// req.Kwargs.
//
// The result is JSON-encoded into the CALLRESULT. As in the bundle, a
// result that does not encode to a JSON array or object is wrapped in a
// one-element array, and a nil (or false) result is reported as a
// CALLERROR "RPC Error" with code 500. A v2 client gets RESULT with the
// result as the single positional argument (autobahn resolves the call's
// promise with it), and ERROR wamp.error.runtime_error for nil or false.
type RPCMethod func(ctx context.Context, c Client, req Request, params json.RawMessage) (any, error)

// OffloadedRPC is implemented by an RPC handler whose methods wait on I/O
// (an HTTP upstream, a database, another service). The node then runs each
// of its calls on a goroutine of its own instead of the connection's
// reader, so a slow or dead backend never holds up that connection's other
// messages or, in the gateway's epoll mode, the shared socket workers that
// serve every connection. Offloaded calls are bounded per client and per
// node; beyond either bound the call fails at once with code 503. Results
// of a client's offloaded calls may arrive in any order, which WAMP allows:
// each carries its call id.
type OffloadedRPC interface {
	RPC
	// Offload reports whether calls should be offloaded; it is asked once,
	// when the node is built.
	Offload() bool
}

// OffloadedTopic is implemented by a topic handler whose callbacks wait on
// I/O (an HTTP upstream, a database). The node then runs its OnSubscribe,
// OnUnsubscribe and OnPublish off the connection's reader, so a slow
// backend never holds the gateway's socket workers. For one client, an
// offloaded handler's topic callbacks still run one at a time and in the
// order the client sent its messages; they may overlap with callbacks of
// handlers that are not offloaded. They count against the same bounds as
// offloaded calls (per client and per node); past them a SUBSCRIBE or
// PUBLISH is refused at once with code 503 (WAMP v2: wsgate.error.busy). An
// unsubscribe is never refused: it follows a subscription that was taken,
// so the handler always hears of it.
type OffloadedTopic interface {
	Topic
	// Offload reports whether callbacks should be offloaded; it is asked
	// once, when the node is built.
	Offload() bool
}

// Reasons a client leaves several topics at once, given to
// BatchUnsubscriber.
const (
	// LeaveDisconnect: the connection ended.
	LeaveDisconnect = "disconnect"
	// LeaveRevoked: the client's identity changed (its PHP session ended
	// or holds another user) and the routes no longer allow it.
	LeaveRevoked = "revoked"
)

// Subscription is one topic a client was subscribed to, as a
// BatchUnsubscriber gets it.
type Subscription struct {
	// Topic is the topic; it stays usable for broadcasts.
	Topic TopicRef
	// Request is what the route matched when the client subscribed.
	Request Request
}

// BatchUnsubscriber is implemented by a topic handler that wants to hear
// of a client leaving several of its topics at once (a disconnect, or an
// identity change that revoked access) in one callback instead of one
// OnUnsubscribe per topic, e.g. to tell a backend in one request. When it is
// implemented the node calls OnUnsubscribeBatch, and not OnUnsubscribe, for
// those; a client's own UNSUBSCRIBE still goes to OnUnsubscribe. subs is
// never empty and holds only topics routed to this handler, sorted by URI.
type BatchUnsubscriber interface {
	Topic
	OnUnsubscribeBatch(ctx context.Context, c Client, reason string, subs []Subscription) error
}

// RPC is an RPC handler: the bundle's RpcInterface.
type RPC interface {
	// Name is the handler name that rpc routes refer to, e.g. "acme.rpc".
	Name() string
	// Methods maps method names to implementations. It is read once when
	// the node is built. A CALL's "method" attribute is looked up exactly
	// first, then, like the bundle (snake_case converted to camelCase, and
	// PHP's case-insensitive method_exists), case-insensitively in camel
	// case: "get_user" finds "getUser".
	Methods() map[string]RPCMethod
}

// DynamicRPC is an RPC handler that also answers methods it does not list
// in Methods, such as a handler forwarding every call to the PHP app: when
// no listed method matches a CALL (or the route has no {method}
// placeholder), Call gets it, with the requested name in req.Attributes.
type DynamicRPC interface {
	RPC
	Call(ctx context.Context, c Client, req Request, params json.RawMessage) (any, error)
}

// Topic is a topic handler: the bundle's TopicInterface. The gateway keeps
// the subscriber list; the handler decides what to broadcast.
type Topic interface {
	// Name is the handler name that topic routes refer to, e.g.
	// "acme.topic".
	Name() string
	// OnSubscribe is called after c was added to the topic, so a broadcast
	// from here reaches c too (as in Ratchet). Returning an error sends a
	// CALLERROR to c and undoes the subscription.
	OnSubscribe(ctx context.Context, c Client, t TopicRef, req Request) error
	// OnUnsubscribe is called after c was removed from the topic, whether
	// the client unsubscribed or disconnected.
	OnUnsubscribe(ctx context.Context, c Client, t TopicRef, req Request) error
	// OnPublish is called for a client's PUBLISH. The gateway does not
	// forward the event by itself: the handler broadcasts what it wants.
	// exclude and eligible are WAMP session ids as sent by the client
	// (exclude holds c's own session id when the client set excludeMe).
	//
	// For a WAMP v2 PUBLISH, event is the single positional argument when
	// there is exactly one, the ArgumentsKw dictionary when there are no
	// positional arguments, null when there is neither, and the list of
	// positional arguments otherwise; req.Kwargs has the dictionary.
	// exclude holds the v2 "exclude" session ids, the sessions on this
	// replica of the "exclude_authid" users and "exclude_authrole" roles
	// and, unless the publisher set exclude_me to false (v2's default is
	// true), the publisher. eligible holds the "eligible" session ids and
	// the sessions on this replica of the "eligible_authid" users and
	// "eligible_authrole" roles; when the publisher named someone but
	// nobody here, eligible is [""], which matches no session, so that a
	// Broadcast with it reaches nobody rather than everyone.
	//
	// Users and roles may be connected to other replicas: t.Broadcast
	// with the very exclude and eligible slices given here (not copies)
	// sends the publish's whole selection, users and roles included, and
	// every replica picks its own subscribers. Lists the handler builds
	// itself select exactly the sessions they name.
	OnPublish(ctx context.Context, c Client, t TopicRef, req Request, event json.RawMessage, exclude, eligible []string) error
}

// TopicRef is a topic as handlers see it: Ratchet's Topic. A TopicRef stays
// valid after the call returns; it always refers to the topic's current
// subscribers.
type TopicRef interface {
	// ID is the topic URI.
	ID() string
	// Broadcast sends EVENT [8, ID, event] to the current subscribers,
	// skipping session ids in exclude and, when eligible is non-empty, any
	// session id not in eligible (Ratchet's Topic::broadcast); given the
	// lists OnPublish got, it selects as the publisher asked (see
	// Topic.OnPublish). WAMP v2
	// subscribers get EVENT [36, subscriptionId, publicationId, {},
	// [event]]. The event is encoded once per protocol, not per
	// subscriber; an error means it could not be JSON-encoded. Delivery
	// is asynchronous: a slow client is disconnected by the gateway
	// rather than slowing the broadcast.
	Broadcast(event any, exclude, eligible []string) error
	// Count is the number of subscribers at this moment.
	Count() int
}

// PushableTopic is implemented by topic handlers that accept pushes from
// the application (the bundle's PushableTopicInterface). The gateway calls
// OnPush when something pushes to a URI routed to the handler (see
// wamp.Node.Push); the handler broadcasts what it wants, typically with
// t.Broadcast. provider names the push source (e.g. "http", "redis").
// Topic handlers that do not implement it refuse pushes.
type PushableTopic interface {
	Topic
	OnPush(ctx context.Context, t TopicRef, req Request, payload json.RawMessage, provider string) error
}

// SubscribeAuthorizer is implemented by a topic handler that decides who
// may subscribe from the client's identity and the matched route, such as
// a per-user channel admitting only the user its URI names. The node asks
// it together with the route's access rules (RouteConfig.Roles and
// Anonymous in package wamp), before the client is added to the topic, so
// a refused client never sees an event of it: a WAMP v1 client gets the
// bundle's topic CALLERROR "Access denied" (code 403), a v2 client ERROR
// wamp.error.not_authorized. It is asked again when the client's identity
// changes (a logout, another user): a subscription it no longer allows is
// revoked like one the access rules no longer allow. Refusing in
// OnSubscribe instead would leave the client subscribed, and reachable by
// broadcasts, until OnSubscribe returns, and never be re-checked.
//
// MaySubscribe runs under the session's lock, on any goroutine: it must
// be fast, must not block and must not call back into the gateway.
type SubscribeAuthorizer interface {
	Topic
	MaySubscribe(who Identity, req Request) bool
}

// Route is a route as a RouteChecker sees it.
type Route struct {
	// Name is the route's name in the routing configuration.
	Name string
	// Pattern is its URI pattern, e.g. "user/{username}".
	Pattern string
	// Placeholders are the names of the pattern's placeholders, in order.
	Placeholders []string
	// Defaults are the route's default attributes.
	Defaults map[string]string
}

// RouteChecker is implemented by a handler that only makes sense on routes
// of a certain shape (a per-user channel needs a {username} placeholder).
// The node calls CheckRoute for every route naming the handler when it is
// built, and refuses to start with the error, so a misconfiguration is
// reported at start and not as clients that are silently refused.
type RouteChecker interface {
	CheckRoute(r Route) error
}

// PeriodicTopic is implemented by topic handlers that want a timer per
// topic (the bundle's TopicPeriodicTimerInterface). When a topic routed to
// the handler gets its first subscriber, the node starts one goroutine for
// it that calls OnTick every Period, and stops it when the topic has no
// subscribers left; ctx is cancelled then. OnTick calls for one topic never
// overlap; a tick that runs late is skipped, not queued. A Period of zero
// or less disables the timer.
type PeriodicTopic interface {
	Topic
	Period() time.Duration
	OnTick(ctx context.Context, t TopicRef)
}

// ClientManipulator looks up connected clients, like the bundle's
// ClientManipulator, WAMP v1 and v2 alike. With the in-memory client
// storage it sees this gateway process's clients and never waits; with
// client_storage.driver redis, GetClient (for a connection of another
// replica), FindByUsername, FindAllByUsername, FindByRoles and GetAll see
// every replica's clients and are a round trip to Redis (bounded by session.lookup_timeout, falling back to this
// replica's clients when Redis does not answer) — call them from an
// OffloadedRPC or OffloadedTopic then, not from a handler that runs on the
// socket workers. Unlike the bundle's, the lookups are not limited to one
// topic's subscribers: pass the session ids found to TopicRef.Broadcast as
// eligible to reach only those that subscribed. Slices are in no
// particular order.
type ClientManipulator interface {
	// GetClient returns the client with the given gateway connection id.
	GetClient(connID string) (Client, bool)
	// FindByUsername returns the oldest connection of the given user
	// identifier (the bundle's findByUsername, which returns the first
	// match), or false when the user has none.
	FindByUsername(user string) (Client, bool)
	// FindAllByUsername returns every connection of the given user
	// identifier (the bundle's findAllByUsername).
	FindAllByUsername(user string) []Client
	// FindByRoles returns the authenticated clients that have at least
	// one of roles (the bundle's findByRoles).
	FindByRoles(roles []string) []Client
	// GetAll returns authenticated clients, plus anonymous ones when
	// anonymous is true (the bundle's getAll($topic, $anonymous)).
	GetAll(anonymous bool) []Client
}

// Registry collects the handlers that routes can name. Build one, let every
// plugin Register into it, then hand it to the wamp node, which binds to it
// and freezes it.
type Registry struct {
	mu     sync.Mutex
	rpcs   map[string]RPC
	topics map[string]Topic
	bound  ClientManipulator
	fwd    forwardingClients
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{rpcs: map[string]RPC{}, topics: map[string]Topic{}}
	r.fwd.r = r
	return r
}

// ErrFrozen is returned when adding handlers to a registry a node is
// already using: the node resolved its routes when it was built, so a late
// handler would silently never be called.
var ErrFrozen = errors.New("handler registry is already in use by a node")

// AddRPC registers an RPC handler. Names must be non-empty and unique among
// RPC handlers.
func (r *Registry) AddRPC(h RPC) error {
	if h == nil {
		return errors.New("handler: AddRPC(nil)")
	}
	return addHandler(r, r.rpcs, "RPC", h.Name(), h)
}

// AddTopic registers a topic handler. Names must be non-empty and unique
// among topic handlers.
func (r *Registry) AddTopic(h Topic) error {
	if h == nil {
		return errors.New("handler: AddTopic(nil)")
	}
	return addHandler(r, r.topics, "topic", h.Name(), h)
}

// addHandler registers h under name in handlers, one of r's maps (AddRPC and
// AddTopic follow the same rules for their own kind of handler): refused
// once a node uses r, for an empty name, or for a name already taken;
// kind names the handler kind in the errors.
func addHandler[H any](r *Registry, handlers map[string]H, kind, name string, h H) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound != nil {
		return fmt.Errorf("handler: add %s %q: %w", kind, name, ErrFrozen)
	}
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("handler: %s handler with empty name", kind)
	}
	if _, dup := handlers[name]; dup {
		return fmt.Errorf("handler: %s handler %q registered twice", kind, name)
	}
	handlers[name] = h
	return nil
}

// RPC returns the RPC handler registered under name.
func (r *Registry) RPC(name string) (RPC, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.rpcs[name]
	return h, ok
}

// Topic returns the topic handler registered under name.
func (r *Registry) Topic(name string) (Topic, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.topics[name]
	return h, ok
}

// RPCNames lists the registered RPC handler names, sorted.
func (r *Registry) RPCNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedKeys(r.rpcs)
}

// TopicNames lists the registered topic handler names, sorted.
func (r *Registry) TopicNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedKeys(r.topics)
}

// Clients returns the client manipulator handlers should use. It may be
// called before the node exists (typically in a plugin's Register); until a
// node binds, it finds no clients.
func (r *Registry) Clients() ClientManipulator { return &r.fwd }

// BindClients is called by the node that serves this registry, once. It
// makes Clients answer from m and freezes the registry (AddRPC and AddTopic
// then fail with ErrFrozen). Binding twice is an error so that one registry
// cannot be shared by two nodes by accident.
func (r *Registry) BindClients(m ClientManipulator) error {
	if m == nil {
		return errors.New("handler: BindClients(nil)")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound != nil {
		return errors.New("handler: registry already bound to a node")
	}
	r.bound = m
	return nil
}

func (r *Registry) boundClients() ClientManipulator {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bound
}

// forwardingClients is the ClientManipulator handed out by Registry.Clients:
// it forwards to whatever the node bound, so plugins can capture it before
// the node exists.
type forwardingClients struct{ r *Registry }

func (f *forwardingClients) GetClient(connID string) (Client, bool) {
	if m := f.r.boundClients(); m != nil {
		return m.GetClient(connID)
	}
	return nil, false
}

func (f *forwardingClients) FindByUsername(user string) (Client, bool) {
	if m := f.r.boundClients(); m != nil {
		return m.FindByUsername(user)
	}
	return nil, false
}

func (f *forwardingClients) FindAllByUsername(user string) []Client {
	if m := f.r.boundClients(); m != nil {
		return m.FindAllByUsername(user)
	}
	return nil
}

func (f *forwardingClients) FindByRoles(roles []string) []Client {
	if m := f.r.boundClients(); m != nil {
		return m.FindByRoles(roles)
	}
	return nil
}

func (f *forwardingClients) GetAll(anonymous bool) []Client {
	if m := f.r.boundClients(); m != nil {
		return m.GetAll(anonymous)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
