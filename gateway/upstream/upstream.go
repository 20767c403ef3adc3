// Package upstream forwards WAMP calls, subscriptions and publishes to an
// HTTP application (typically the PHP app behind the gateway), so routes can
// be served by PHP code without a Go handler.
//
// An Upstream is both a handler.RPC and a handler.Topic. Every CALL,
// SUBSCRIBE and PUBLISH routed to it becomes one JSON POST to Config.URL
// (and, with Config.NotifyUnsubscribe, every unsubscribe and leave):
//
//	{"kind": "call"|"subscribe"|"publish"|"unsubscribe",
//	 "uri": "app/sum", "route": "app_rpc", "attributes": {"method": "sum"},
//	 "method": "sum",             // calls
//	 "args": [1, 2, 3],           // calls: the params of handler.RPCMethod
//	 "kwargs": {...},             // WAMP v2 ArgumentsKw, when sent
//	 "event": ..., "exclude": [..], "eligible": [..],   // publishes
//	 "caller": {"firewall": "main", "user_identifier": "alice",
//	            "roles": ["ROLE_USER"], "anonymous": false,
//	            "wamp_session_id": "...", "conn_id": "..."}}
//
// A client that leaves several of the upstream's topics at once (it
// disconnected, or its new identity lost access: handler.LeaveDisconnect,
// handler.LeaveRevoked) makes one request instead of one unsubscribe per
// topic:
//
//	{"kind": "leave", "reason": "disconnect"|"revoked",
//	 "topics": [{"uri": "chat/room1", "route": "chat", "attributes": {"room": "room1"}}, ...],
//	 "caller": {...}}
//
// # Signature
//
// Every request carries
//
//	Content-Type: application/json
//	X-Wsgate-Timestamp: <Unix seconds>
//	X-Wsgate-Request-Id: <32 lower-case hex digits, random, new for each request>
//	X-Wsgate-Signed-Headers: <the ForwardHeaders, lower case, sorted, joined by ",">
//	X-Wsgate-Signature: v2=<hex HMAC-SHA256(secret, string to sign)>
//
// plus those of the handshake headers named in Config.ForwardHeaders (e.g.
// Cookie) that the client sent, when it implements HeaderSource. The string
// to sign is "wsgate-v2\n" + timestamp + "\n" + request id + "\n" + signed
// headers + "\n", then "<name>:<value>\n" for each listed name in its order
// (value trimmed of spaces and tabs, "" when not sent), then the raw body
// (sign.go has the details). The application must
//
//   - refuse timestamps more than DefaultReplayWindow (300 s) away from its
//     clock (401);
//   - recompute the signature and compare it in constant time (401): it
//     covers the body and every listed header, so one added, dropped or
//     changed on the way fails;
//   - refuse a request id it has already accepted (409), remembering ids
//     for twice the window, in a store all its workers share: together
//     with the timestamp this stops replays;
//   - read no forwarded header that is not listed, and remember that listed
//     ones are what the websocket client sent (the signature proves the
//     gateway forwarded them, not that they are true) unless a trusted
//     proxy in front of the gateway sets them and strips the client's own;
//     the caller's identity is "caller", which the gateway read from the
//     PHP session.
//
// VerifyRequest does the first two and returns the id for the third;
// examples/php-upstream does all of it in PHP.
//
// # Replies
//
// The application answers 2xx with Content-Type application/json and a JSON
// object (see parseReply for the exact rules):
//
//	call:        {"result": <any>}  or  {"error": {"uri", "desc", "code", "details"}}
//	subscribe:   {"allow": true}    or  {"allow": false, "reason": "..."}  or  {"error": {...}}
//	publish:     {}  (broadcast as published)  or  {"event": <any>}  (rewritten)
//	             or  {"drop": true}  or  {"error": {...}}
//	unsubscribe, leave: {}  or  {"error": {...}}
//
// An "error" becomes a *handler.Error (the CALLERROR the client sees, with the
// application's URI, description, code and details). Anything else fails with
// a *handler.Error the gateway makes itself:
//
//	503 URIBusy      the upstream's (or the route's, Config.Routes)
//	                 MaxConcurrent requests are in flight
//	504 URITimeout   no complete reply within Config.Timeout (or the
//	                 route's)
//	502 URIBadGateway non-2xx status, unreachable upstream, or a reply
//	                 that is not valid for the request (too large, not JSON,
//	                 wrong fields)
//
// Each Upstream has its own concurrency limit and timeout, and each route
// may have its own within them (Config.Routes), so a slow or dead
// application on one route fails that route's calls within its timeout and
// does not hold up calls to other routes.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxConcurrent = 64
	// MinSecretBytes is the shortest secret New accepts.
	MinSecretBytes = 16
)

// Error URIs of the failures the gateway reports itself. The application's
// own errors carry the URI it chose.
const (
	URIBusy       = "wsgate.error.upstream_busy"
	URITimeout    = "wsgate.error.upstream_timeout"
	URIBadGateway = "wsgate.error.upstream_bad_gateway"
)

// Config configures one upstream route.
type Config struct {
	// URL is the http or https endpoint every request is POSTed to.
	URL string
	// Secret is the shared HMAC-SHA256 key, at least MinSecretBytes long.
	Secret []byte
	// Timeout bounds a whole request, from waiting for a free slot to the
	// end of the reply body. Zero means DefaultTimeout. It should be below
	// the gateway's limits.call_timeout, which otherwise cuts the call
	// first (also reported as a 504 here).
	Timeout time.Duration
	// MaxConcurrent is the number of requests this upstream may have in
	// flight at once. Zero means DefaultMaxConcurrent.
	MaxConcurrent int
	// QueueWait is how long a request waits for a free slot when
	// MaxConcurrent are in flight before failing with 503 "upstream busy".
	// Zero waits as long as the request's timeout allows, so that a burst
	// queues (bounded by the gateway's limits.max_pending_calls) instead of
	// being refused: refusals that clients retry at once cost the gateway
	// more than the calls they replace. Negative means no wait at all.
	QueueWait time.Duration
	// MaxReplyBytes caps the reply body. Zero means DefaultMaxReplyBytes.
	MaxReplyBytes int64
	// ForwardHeaders names handshake request headers (e.g. "Cookie") copied
	// onto every request when the client implements HeaderSource, and
	// covered by the signature (at most MaxSignedHeaders). Framing and
	// signature headers (Host, Content-*, Connection, X-Wsgate-*, …)
	// cannot be forwarded. The values are what the client sent: never
	// forward an identity header (X-Forwarded-User) unless a proxy in front
	// of the gateway sets it and strips the client's.
	ForwardHeaders []string
	// Methods, when set, are the RPC method names Methods reports, each
	// forwarded by Call. It makes the upstream usable by a wamp node that
	// only knows fixed method maps; with DynamicRPC support in the node it
	// can stay empty and every method is forwarded.
	Methods []string
	// NotifyUnsubscribe makes OnUnsubscribe POST kind "unsubscribe" and
	// OnUnsubscribeBatch kind "leave" (within Timeout, counted against
	// MaxConcurrent, dropped when busy). By default both do nothing:
	// unsubscribes come in bursts when clients disconnect, and most
	// applications need not know.
	NotifyUnsubscribe bool
	// Observer, when set, hears about every request for metrics.
	Observer RequestObserver
	// Routes overrides Timeout and adds a concurrency limit for the
	// requests of single gateway routes (by route name), so that one slow
	// route (a report) cannot take every slot of the upstream from the
	// others (chat). A request takes its route's slot, then one of the
	// upstream's; both waits share QueueWait.
	Routes map[string]RouteLimits
}

// RouteLimits are the limits of one route's requests to an upstream.
type RouteLimits struct {
	// Timeout replaces Config.Timeout for the route; zero keeps it.
	Timeout time.Duration
	// MaxConcurrent bounds the route's requests in flight; zero means only
	// the upstream's MaxConcurrent applies.
	MaxConcurrent int
}

// routeLimits is RouteLimits resolved: slots is nil without a route bound.
type routeLimits struct {
	timeout time.Duration
	slots   chan struct{}
}

// RequestObserver hears how each upstream request ended. route is the
// gateway route name ("" for a leave whose topics have different routes),
// kind the request kind (call, subscribe, publish, unsubscribe, leave) and
// outcome one of the Outcome* constants: all bounded by
// the configuration, never by clients. It must be cheap and safe for
// concurrent use.
type RequestObserver interface {
	UpstreamRequest(upstream, route, kind, outcome string, d time.Duration)
}

// Request outcomes reported to a RequestObserver.
const (
	OutcomeOK         = "ok"          // the app answered a result or accepted
	OutcomeAppError   = "app_error"   // the app answered an error of its own
	OutcomeBusy       = "busy"        // no concurrency slot within QueueWait
	OutcomeTimeout    = "timeout"     // no complete reply within Timeout
	OutcomeBadGateway = "bad_gateway" // unreachable, non-2xx or invalid reply
	OutcomeCanceled   = "canceled"    // the client went away or canceled the call first
)

// HeaderSource is implemented by a handler.Client that can report the
// headers of its websocket handshake request. ForwardHeaders are read
// through it; a client that does not implement it forwards none.
type HeaderSource interface {
	// HandshakeHeader returns the value of the named header of the
	// upgrade request (canonical or not), "" when absent. Several
	// values are joined as net/http would send them ("; " for Cookie,
	// ", " otherwise).
	HandshakeHeader(name string) string
}

// Upstream forwards one route's WAMP traffic to an HTTP application. It
// implements handler.RPC and handler.Topic and is safe for concurrent use.
type Upstream struct {
	name    string
	url     string
	signer  *signer
	timeout time.Duration
	wait    time.Duration
	max     int64
	methods []string
	notify  bool
	client  *http.Client
	slots   chan struct{}
	routes  map[string]routeLimits
	now     func() time.Time
	obs     RequestObserver
}

var (
	_ handler.RPC               = (*Upstream)(nil)
	_ handler.OffloadedRPC      = (*Upstream)(nil)
	_ handler.Topic             = (*Upstream)(nil)
	_ handler.OffloadedTopic    = (*Upstream)(nil)
	_ handler.BatchUnsubscriber = (*Upstream)(nil)
)

// Offload implements handler.OffloadedRPC and handler.OffloadedTopic: a
// call, subscribe, publish, unsubscribe or leave waits on the network, up
// to Timeout, and must not hold the connection's reader (or a transport
// worker) meanwhile.
func (u *Upstream) Offload() bool { return true }

// forbiddenForward are headers the request itself owns.
var forbiddenForward = map[string]bool{
	"Host": true, "Content-Type": true, "Content-Length": true, "Content-Encoding": true,
	"Transfer-Encoding": true, "Connection": true, "Keep-Alive": true, "Upgrade": true,
	"Te": true, "Trailer": true, "Expect": true, "Proxy-Connection": true, "Accept": true,
	"User-Agent": true,
}

// New builds the upstream named name (its Name as RPC and topic handler)
// from c. client sends the requests; nil means a client of its own built on
// NewTransport(MaxConcurrent) that does not follow redirects. Pass one shared
// client (and transport) when several upstreams reach the same application,
// so they share one keep-alive pool. A bad field is a *config.Error naming
// it (as `upstreams:` spells it) and its value, wrapped with the name.
func New(name string, c Config, client *http.Client) (*Upstream, error) {
	if name == "" {
		return nil, errors.New("upstream: name is empty")
	}
	u, sg, routes, err := c.resolve()
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", name, err)
	}
	if client == nil {
		client = newClient(c.MaxConcurrent)
	}
	return &Upstream{
		name:    name,
		url:     u.String(),
		signer:  sg,
		timeout: c.Timeout,
		wait:    c.QueueWait, // 0 waits until the request's deadline, < 0 not at all
		max:     c.MaxReplyBytes,
		methods: append([]string(nil), c.Methods...),
		notify:  c.NotifyUnsubscribe,
		client:  client,
		slots:   make(chan struct{}, c.MaxConcurrent),
		routes:  routes,
		now:     time.Now,
		obs:     c.Observer,
	}, nil
}

// resolve checks New's copy of the config and applies its defaults.
func (c *Config) resolve() (*url.URL, *signer, map[string]routeLimits, error) {
	u, sg, err := newEndpoint(c.URL, c.Secret, c.ForwardHeaders)
	if err != nil {
		return nil, nil, nil, err
	}
	err = config.First(
		config.OrDefault("timeout", &c.Timeout, DefaultTimeout, 0),
		config.OrDefault("max_concurrent", &c.MaxConcurrent, DefaultMaxConcurrent, 0),
		config.OrDefault("max_reply_bytes", &c.MaxReplyBytes, DefaultMaxReplyBytes, 0),
	)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, m := range c.Methods {
		if m == "" {
			return nil, nil, nil, &config.Error{Key: "methods", Reason: "empty method name"}
		}
	}
	routes, err := c.routeLimits()
	if err != nil {
		return nil, nil, nil, err
	}
	return u, sg, routes, nil
}

// routeLimits resolves Routes: a route's zero timeout is the upstream's
// (resolve has set it), a zero bound leaves only the upstream's.
func (c *Config) routeLimits() (map[string]routeLimits, error) {
	routes := make(map[string]routeLimits, len(c.Routes))
	for route, rl := range c.Routes {
		key := "routes." + route
		lim := routeLimits{timeout: rl.Timeout}
		err := config.First(
			config.OrDefault(key+".timeout", &lim.timeout, c.Timeout, 0),
			config.NotNegative(key+".max_concurrent", rl.MaxConcurrent),
		)
		if err != nil {
			return nil, err
		}
		if rl.MaxConcurrent > 0 {
			lim.slots = make(chan struct{}, rl.MaxConcurrent)
		}
		routes[route] = lim
	}
	return routes, nil
}

// NewTransport returns a keep-alive transport for upstream requests that
// keeps up to maxIdlePerHost idle connections per host (size it to the sum
// of the MaxConcurrent of the upstreams sharing it). Proxy settings come from
// the environment, as for http.DefaultTransport.
func NewTransport(maxIdlePerHost int) *http.Transport {
	if maxIdlePerHost <= 0 {
		maxIdlePerHost = DefaultMaxConcurrent
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = maxIdlePerHost
	if t.MaxIdleConns < maxIdlePerHost {
		t.MaxIdleConns = maxIdlePerHost
	}
	t.IdleConnTimeout = 90 * time.Second
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Name is the handler name routes refer to, as RPC and as topic handler.
func (u *Upstream) Name() string { return u.name }

// Methods maps each of Config.Methods to Call. Without Config.Methods it is
// empty, and a CALL reaches the upstream only through a node that forwards
// methods it does not find to Call (the proposed optional interface
// handler.DynamicRPC, which Upstream's Call already satisfies).
func (u *Upstream) Methods() map[string]handler.RPCMethod {
	m := make(map[string]handler.RPCMethod, len(u.methods))
	for _, name := range u.methods {
		m[name] = u.Call
	}
	return m
}

// Call forwards a CALL (kind "call") and returns the application's
// "result", or its "error" as a *handler.Error. It has the shape of a
// handler.RPCMethod for any method name.
func (u *Upstream) Call(ctx context.Context, c handler.Client, req handler.Request, params json.RawMessage) (any, error) {
	body := u.body(KindCall, c, req)
	body.Method = req.Attributes["method"]
	body.Args = params
	r, err := u.do(ctx, c, body.out())
	if err != nil {
		return nil, err
	}
	return r.Result, nil
}

// OnSubscribe asks the application whether c may subscribe (kind
// "subscribe"). {"allow": false} refuses with a 403 *handler.Error whose
// description is the reply's "reason"; the gateway then undoes the
// subscription.
func (u *Upstream) OnSubscribe(ctx context.Context, c handler.Client, _ handler.TopicRef, req handler.Request) error {
	r, err := u.do(ctx, c, u.body(KindSubscribe, c, req).out())
	if err != nil {
		return err
	}
	if !*r.Allow {
		desc := r.Reason
		if desc == "" {
			desc = "subscription refused"
		}
		return &handler.Error{Code: 403, Desc: desc}
	}
	return nil
}

// OnUnsubscribe does nothing unless Config.NotifyUnsubscribe is set; then it
// POSTs kind "unsubscribe" and waits for the reply, whose "error" (or a
// failure) is returned for the gateway to log. The subscription is gone
// either way.
func (u *Upstream) OnUnsubscribe(ctx context.Context, c handler.Client, _ handler.TopicRef, req handler.Request) error {
	if !u.notify {
		return nil
	}
	_, err := u.do(ctx, c, u.body(KindUnsubscribe, c, req).out())
	return err
}

// OnUnsubscribeBatch implements handler.BatchUnsubscriber: the node calls
// it once when c leaves several of this upstream's topics at once (reason
// handler.LeaveDisconnect or handler.LeaveRevoked), instead of one
// OnUnsubscribe per topic. Unless Config.NotifyUnsubscribe is set it does
// nothing; then it POSTs one request of kind "leave" listing the topics,
// which takes one slot within Timeout like any request (the route's limits
// apply when every topic has the same route, only the upstream's
// otherwise) and, like an unsubscribe, is not retried: when busy it is
// dropped with the busy error. The reply is {} or {"error": ...}; a
// failure is returned for the gateway to count and log. The subscriptions
// are gone either way. c is the client as it is now: after a revocation,
// with its new identity.
func (u *Upstream) OnUnsubscribeBatch(ctx context.Context, c handler.Client, reason string, subs []handler.Subscription) error {
	if !u.notify || len(subs) == 0 {
		return nil
	}
	b := &leaveBody{Kind: KindLeave, Reason: reason, Topics: make([]leaveTopic, len(subs)), Caller: callerOf(c)}
	route := subs[0].Request.Route
	for i, s := range subs {
		b.Topics[i] = leaveTopic{URI: s.Request.URI, Route: s.Request.Route, Attributes: attributes(s.Request)}
		if s.Request.Route != route {
			route = ""
		}
	}
	_, err := u.do(ctx, c, outgoing{kind: KindLeave, route: route, body: b})
	return err
}

// OnPublish forwards a PUBLISH (kind "publish") and broadcasts what the
// application decides: the event as published for {}, the reply's "event"
// for a rewrite, nothing for {"drop": true}. exclude and eligible are passed
// to the application and used for the broadcast unchanged.
func (u *Upstream) OnPublish(ctx context.Context, c handler.Client, t handler.TopicRef, req handler.Request, event json.RawMessage, exclude, eligible []string) error {
	body := u.body(KindPublish, c, req)
	body.Event = event
	if len(event) == 0 {
		body.Event = json.RawMessage("null")
	}
	body.Exclude = exclude
	body.Eligible = eligible
	r, err := u.do(ctx, c, body.out())
	if err != nil {
		return err
	}
	if r.Drop {
		return nil
	}
	out := body.Event
	if r.hasEvent {
		out = r.Event
	}
	return t.Broadcast(out, exclude, eligible)
}

// requestBody is the JSON POSTed to the application.
type requestBody struct {
	Kind       string            `json:"kind"`
	URI        string            `json:"uri"`
	Route      string            `json:"route"`
	Attributes map[string]string `json:"attributes"`
	Method     string            `json:"method,omitempty"`
	Args       json.RawMessage   `json:"args,omitempty"`
	Kwargs     json.RawMessage   `json:"kwargs,omitempty"`
	Event      json.RawMessage   `json:"event,omitempty"`
	Exclude    []string          `json:"exclude,omitempty"`
	Eligible   []string          `json:"eligible,omitempty"`
	Caller     caller            `json:"caller"`
}

// caller describes the WAMP client on whose behalf the request is made.
type caller struct {
	Firewall       string   `json:"firewall"`
	UserIdentifier string   `json:"user_identifier"`
	Roles          []string `json:"roles"`
	Anonymous      bool     `json:"anonymous"`
	WAMPSessionID  string   `json:"wamp_session_id"`
	ConnID         string   `json:"conn_id"`
	// Extra is what the app attached on the connect event; omitted when
	// it attached nothing, so apps without connect events see no change.
	Extra json.RawMessage `json:"extra,omitempty"`
}

func (u *Upstream) body(kind string, c handler.Client, req handler.Request) *requestBody {
	return &requestBody{
		Kind:       kind,
		URI:        req.URI,
		Route:      req.Route,
		Attributes: attributes(req),
		Kwargs:     req.Kwargs,
		Caller:     callerOf(c),
	}
}

// out is the request to send for b.
func (b *requestBody) out() outgoing {
	return outgoing{kind: b.Kind, route: b.Route, body: b}
}

// outgoing is one request to send: its kind (which reply rules apply) and
// route (whose limits apply, and the observer's label) beside the value
// encoded as the JSON body.
type outgoing struct {
	kind  string
	route string
	body  any
}

// attributes are req's, {} rather than null when there are none.
func attributes(req handler.Request) map[string]string {
	if req.Attributes == nil {
		return map[string]string{}
	}
	return req.Attributes
}

// callerOf is c as the app sees it in "caller": its identity read once,
// so that revalidation cannot change it halfway.
func callerOf(c handler.Client) caller {
	id := c.Identity()
	roles := id.Roles
	if roles == nil {
		roles = []string{}
	}
	return caller{
		Firewall:       id.Firewall,
		UserIdentifier: id.UserIdentifier,
		Roles:          roles,
		Anonymous:      id.Anonymous,
		WAMPSessionID:  c.SessionID(),
		ConnID:         c.ConnID(),
		Extra:          c.Extra(),
	}
}

// leaveBody is the JSON of kind "leave": one client left several topics.
type leaveBody struct {
	Kind   string       `json:"kind"`
	Reason string       `json:"reason"`
	Topics []leaveTopic `json:"topics"`
	Caller caller       `json:"caller"`
}

// leaveTopic is one topic of a leave, as its subscribe named it.
type leaveTopic struct {
	URI        string            `json:"uri"`
	Route      string            `json:"route"`
	Attributes map[string]string `json:"attributes"`
}

// gatewayError is an error the gateway reports for the upstream.
func gatewayError(code int, uri, desc string) *handler.Error {
	return &handler.Error{Code: code, URI: uri, Desc: desc}
}

// acquire takes a slot of slots (the upstream's or a route's). When none
// is free it waits for one until ctx ends or, with a positive QueueWait,
// until *wait fires, starting that timer if no earlier acquire of the same
// request did: the fast path makes no timer.
func (u *Upstream) acquire(ctx context.Context, slots chan struct{}, wait **time.Timer) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	if u.wait < 0 {
		return gatewayError(503, URIBusy, "upstream busy")
	}
	if u.wait == 0 {
		select {
		case slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if *wait == nil {
		*wait = time.NewTimer(u.wait)
	}
	select {
	case slots <- struct{}{}:
		return nil
	case <-(*wait).C:
		return gatewayError(503, URIBusy, "upstream busy")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquireAll takes the route's slot, when it has a bound, and then the
// upstream's, within one QueueWait; releaseAll gives them back.
func (u *Upstream) acquireAll(ctx context.Context, route chan struct{}) error {
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	if route != nil {
		if err := u.acquire(ctx, route, &wait); err != nil {
			return err
		}
	}
	if err := u.acquire(ctx, u.slots, &wait); err != nil {
		if route != nil {
			<-route
		}
		return err
	}
	return nil
}

func (u *Upstream) releaseAll(route chan struct{}) {
	<-u.slots
	if route != nil {
		<-route
	}
}

// do sends one request and returns its checked reply; an application
// "error" is returned as a *handler.Error. It reports the outcome to the
// observer.
func (u *Upstream) do(parent context.Context, c handler.Client, o outgoing) (*reply, error) {
	if u.obs == nil {
		return u.send(parent, c, o)
	}
	start := time.Now()
	r, err := u.send(parent, c, o)
	u.obs.UpstreamRequest(u.name, o.route, o.kind, outcome(err), time.Since(start))
	return r, err
}

// outcome classifies the result of send for the observer.
func outcome(err error) string {
	var he *handler.Error
	switch {
	case err == nil:
		return OutcomeOK
	case errors.As(err, &he):
		switch he.URI {
		case URIBusy:
			return OutcomeBusy
		case URITimeout:
			return OutcomeTimeout
		case URIBadGateway:
			return OutcomeBadGateway
		}
		return OutcomeAppError
	case errors.Is(err, context.Canceled), errors.Is(err, handler.ErrCallEnded):
		return OutcomeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	default:
		return OutcomeBadGateway
	}
}

// send is do without the observer.
func (u *Upstream) send(parent context.Context, c handler.Client, o outgoing) (*reply, error) {
	payload, err := json.Marshal(o.body)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: encode request: %w", u.name, err)
	}
	timeout, routeSlots := u.timeout, chan struct{}(nil)
	if lim, ok := u.routes[o.route]; ok {
		timeout, routeSlots = lim.timeout, lim.slots
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	if err := u.acquireAll(ctx, routeSlots); err != nil {
		if errors.Is(parent.Err(), context.Canceled) {
			return nil, parent.Err()
		}
		if ctx.Err() != nil { // the whole timeout went by without a slot
			return nil, gatewayError(503, URIBusy, "upstream busy")
		}
		return nil, err
	}
	defer u.releaseAll(routeSlots)

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if o.kind == KindCall && handler.WantsProgress(parent) {
		req.Header.Set("Accept", "application/json, "+contentTypeNDJSON) // stream.go
	} else {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "wsgate-upstream")
	var hs HeaderSource
	if h, ok := c.(HeaderSource); ok {
		hs = h
	}
	u.signer.sign(req.Header, hs, u.now(), payload)
	resp, err := u.client.Do(req)
	if err != nil {
		if e := u.ctxError(parent, ctx, nil); e != nil {
			return nil, e
		}
		return nil, gatewayError(502, URIBadGateway, "upstream unreachable")
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Read a little so the connection can be reused.
		_, _ = readReply(resp.Body, 4<<10)
		if e := u.ctxError(parent, ctx, nil); e != nil {
			return nil, e
		}
		return nil, gatewayError(502, URIBadGateway, "upstream answered "+resp.Status)
	}
	if o.kind == KindCall && isNDJSON(resp.Header.Get("Content-Type")) {
		return u.streamReply(parent, ctx, resp.Body)
	}
	data, err := readReply(resp.Body, u.max)
	if err != nil {
		if e := u.ctxError(parent, ctx, nil); e != nil {
			return nil, e
		}
		if errors.Is(err, errReplyTooLarge) {
			return nil, gatewayError(502, URIBadGateway, fmt.Sprintf("upstream reply larger than %d bytes", u.max))
		}
		return nil, gatewayError(502, URIBadGateway, "upstream reply cut short")
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, gatewayError(502, URIBadGateway, "upstream reply is not application/json")
		}
	}
	r, err := parseReply(o.kind, data)
	if err != nil {
		msg := err.Error()
		if len(msg) > 200 { // field names come from the reply
			msg = strings.ToValidUTF8(msg[:200], "") + "…"
		}
		return nil, gatewayError(502, URIBadGateway, "invalid upstream reply: "+msg)
	}
	if r.Error != nil {
		return nil, r.Error.handlerError()
	}
	return r, nil
}

// ctxError maps the end of ctx (the request's context, derived from parent)
// to the error to report, or nil when ctx is still live: the timeout (ours
// or the gateway's call timeout) is a 504; a cancelled parent (the client
// went away) is returned as is, nobody reads it. fallback is returned when
// ctx is live.
func (u *Upstream) ctxError(parent, ctx context.Context, fallback error) error {
	switch {
	case ctx.Err() == nil:
		return fallback
	case errors.Is(parent.Err(), context.Canceled):
		return parent.Err()
	default:
		return gatewayError(504, URITimeout, "upstream timeout")
	}
}
