// Package metrics defines wsgate's Prometheus metrics and the operations
// HTTP handler (/metrics, /healthz, /readyz). Names follow the Prometheus
// naming guide with the wsgate_ prefix; no label ever carries a user,
// session or topic value, so cardinality stays bounded.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handshake outcomes, the values of wsgate_handshakes_total's outcome label.
const (
	OutcomeAuthenticated = "authenticated"
	OutcomeAnonymous     = "anonymous"
	OutcomeForbidden     = "forbidden_origin"
	OutcomeRefusedAnon   = "anonymous_refused"
	OutcomeUnavailable   = "store_unavailable"
	OutcomeOverloaded    = "overloaded"
	OutcomeBadRequest    = "bad_request"
	OutcomeRateLimited   = "rate_limited"
	OutcomeRejectedByApp = "rejected_by_app"
)

// Gateway holds the metrics the gateway updates. A nil *Gateway is not
// valid; use New.
type Gateway struct {
	// Connections is the number of established websocket connections.
	Connections prometheus.Gauge
	// Handshakes counts finished handshakes by outcome.
	Handshakes *prometheus.CounterVec
	// AnonymousHandshakes counts handshakes whose client is anonymous
	// (admitted or refused), by reason: no_cookie, invalid_id, not_found,
	// expired, undecodable, no_token_for_firewall, not_authenticated,
	// store_unavailable (gateway.AnonymousReasons;
	// docs/troubleshooting.md has an entry for each).
	AnonymousHandshakes *prometheus.CounterVec
	// SessionLookups observes session store reads by result
	// (authenticated, anonymous, expired, not_found, invalid_id, error).
	SessionLookups *prometheus.HistogramVec
	// MessagesReceived counts websocket messages handed to the WAMP layer.
	MessagesReceived prometheus.Counter
	// MessagesSent counts websocket messages queued to clients.
	MessagesSent prometheus.Counter
	// Disconnects counts closed connections by reason.
	Disconnects *prometheus.CounterVec
	// ReceivedBytes counts websocket bytes read from clients.
	ReceivedBytes prometheus.Counter
	// SentBytes counts bytes written to clients.
	SentBytes prometheus.Counter
	// Dropped counts messages not queued to a client, by reason
	// (slow_consumer: its queue was full; closing: it was going away).
	Dropped *prometheus.CounterVec
	// WriteDuration observes one socket write of a batch.
	WriteDuration prometheus.Histogram
	// WAMPMessagesIn counts WAMP messages from clients by protocol and type.
	WAMPMessagesIn *prometheus.CounterVec
	// WAMPMessagesOut counts WAMP messages to clients by protocol and type
	// (a fan-out counts once per recipient).
	WAMPMessagesOut *prometheus.CounterVec
	// RPCDuration observes RPC handler calls by handler and outcome.
	RPCDuration *prometheus.HistogramVec
	// RoutingMisses counts URIs no route matched, by kind (rpc, topic).
	RoutingMisses *prometheus.CounterVec
	// AccessDenied counts requests refused by route access rules, by kind.
	AccessDenied *prometheus.CounterVec
	// StoreLookups observes session store calls by store, operation and
	// result (ok, not_found, expired, busy, timeout, unavailable, ...).
	StoreLookups *prometheus.HistogramVec
	// StoreCacheHits and StoreCacheMisses count client-side cache use by
	// store.
	StoreCacheHits, StoreCacheMisses *prometheus.CounterVec
	// Revalidations counts re-reads of live connections' sessions by
	// outcome (valid, invalid, error) and Revalidated the action taken on
	// invalid ones (closed, downgraded).
	Revalidations *prometheus.CounterVec

	// Pushes counts application pushes by source (http, redis).
	Pushes *prometheus.CounterVec
	// PushRequests counts push API requests and Redis push channel
	// messages by source and outcome (accepted, bad_request,
	// unauthorized, not_found, conflict, error).
	PushRequests *prometheus.CounterVec

	// UpstreamRequests observes HTTP upstream requests by upstream, route
	// (configured names; "" for a leave spanning several routes), kind
	// (call, subscribe, publish, unsubscribe, leave) and outcome (ok,
	// app_error, busy, timeout, bad_gateway, canceled).
	UpstreamRequests *prometheus.HistogramVec

	// ConnectionEvents counts connect/disconnect events sent to the app by
	// event and outcome (ok, rejected, error, timeout, dropped), and
	// ConnectionEventDuration observes the requests by event.
	ConnectionEvents        *prometheus.CounterVec
	ConnectionEventDuration *prometheus.HistogramVec

	// FanoutPublished counts broadcasts sent to the other replicas,
	// FanoutLag observes how late another replica's broadcast reached
	// this one (publish to hand-off to local subscribers), and
	// FanoutDropped counts relayed broadcasts lost, by reason.
	FanoutPublished prometheus.Counter
	FanoutLag       prometheus.Histogram
	FanoutDropped   *prometheus.CounterVec
	// FanoutLost counts broadcasts of another replica that never reached
	// this one (holes in its sequence numbers), by peer (FanoutPeer);
	// FanoutDuplicates counts the ones that came twice or out of order,
	// by peer likewise; FanoutSubscriptionUp is 1 while this replica
	// receives the other replicas' broadcasts, 0 while its subscription
	// to Redis is down.
	FanoutLost           *prometheus.CounterVec
	FanoutDuplicates     *prometheus.CounterVec
	FanoutSubscriptionUp prometheus.Gauge
	fanoutPeers          boundedLabel

	// ClientStorageLosses counts the times the Redis client storage found
	// that Redis lost this replica's registration, by cause
	// (epoch_changed, heartbeat_lost).
	ClientStorageLosses *prometheus.CounterVec

	// MemoryReleases counts the forced collections that returned free
	// heap to the operating system after a burst of connections.
	MemoryReleases prometheus.Counter
	// LimitExceeded counts every time a client or a handshake ran into
	// a configured bound, by limit: the limit's configuration key without
	// the "limits." prefix (max_header_bytes, outbound_queue_bytes, ...).
	// docs/limits.md lists each with what the client gets.
	LimitExceeded *prometheus.CounterVec
	// IdentityBestEffort counts admitted clients whose identity is partly
	// a guess, by firewall: the user identifier was picked among several
	// user properties with different values, or the token class is not
	// one Symfony ships.
	IdentityBestEffort *prometheus.CounterVec

	reg prometheus.Registerer
}

// WatchWAMP registers gauges read from stats at scrape time: WAMP sessions
// by protocol, topics with subscribers, and subscriptions.
func (g *Gateway) WatchWAMP(stats func() (sessions map[string]int, topics, subscriptions int)) {
	g.reg.MustRegister(&wampStats{stats: stats})
}

var (
	sessionsDesc      = prometheus.NewDesc("wsgate_wamp_sessions", "Open WAMP sessions by protocol.", []string{"protocol"}, nil)
	topicsDesc        = prometheus.NewDesc("wsgate_wamp_topics", "Topics with at least one subscriber.", nil, nil)
	subscriptionsDesc = prometheus.NewDesc("wsgate_wamp_subscriptions", "Subscriptions of sessions to topics.", nil, nil)
)

// wampStats collects the WAMP gauges in one call of the stats function, so
// one scrape takes the node's locks once.
type wampStats struct {
	stats func() (map[string]int, int, int)
}

func (w *wampStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionsDesc
	ch <- topicsDesc
	ch <- subscriptionsDesc
}

func (w *wampStats) Collect(ch chan<- prometheus.Metric) {
	sessions, topics, subs := w.stats()
	for _, p := range []string{"wamp1", "wamp2json"} {
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(sessions[p]), p)
	}
	ch <- prometheus.MustNewConstMetric(topicsDesc, prometheus.GaugeValue, float64(topics))
	ch <- prometheus.MustNewConstMetric(subscriptionsDesc, prometheus.GaugeValue, float64(subs))
}

// New creates the gateway metrics and registers them, with the Go runtime
// and process collectors, on reg.
func New(reg prometheus.Registerer) *Gateway {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := &Gateway{reg: reg}
	f := registering{reg}
	g.Connections = f.gauge("wsgate_connections",
		"Established websocket connections.")
	g.Handshakes = f.counterVec("wsgate_handshakes_total",
		"Websocket handshakes by outcome.", "outcome")
	g.AnonymousHandshakes = f.counterVec("wsgate_anonymous_handshakes_total",
		"Handshakes of clients found anonymous (admitted or refused), by reason.", "reason")
	g.SessionLookups = f.histogramVec("wsgate_session_lookup_duration_seconds",
		"Time to read and decode a PHP session, by result.",
		[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "result")
	g.MessagesReceived = f.counter("wsgate_messages_received_total",
		"Websocket messages received from clients.")
	g.MessagesSent = f.counter("wsgate_messages_sent_total",
		"Websocket messages queued to clients.")
	g.Disconnects = f.counterVec("wsgate_disconnects_total",
		"Closed websocket connections by reason.", "reason")
	g.ReceivedBytes = f.counter("wsgate_received_bytes_total",
		"Bytes read from websocket clients.")
	g.SentBytes = f.counter("wsgate_sent_bytes_total",
		"Bytes written to websocket clients.")
	g.Dropped = f.counterVec("wsgate_dropped_messages_total",
		"Messages not queued to a client, by reason.", "reason")
	g.WriteDuration = f.histogram("wsgate_write_duration_seconds",
		"Duration of one socket write of queued frames.",
		[]float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05})
	g.WAMPMessagesIn = f.counterVec("wsgate_wamp_messages_received_total",
		"WAMP messages received from clients, by protocol and message type.", "protocol", "type")
	g.WAMPMessagesOut = f.counterVec("wsgate_wamp_messages_sent_total",
		"WAMP messages sent to clients, by protocol and message type.", "protocol", "type")
	g.RPCDuration = f.histogramVec("wsgate_rpc_duration_seconds",
		"RPC handler call duration, by handler and outcome.",
		prometheus.ExponentialBuckets(0.00005, 4, 10), "handler", "outcome")
	g.RoutingMisses = f.counterVec("wsgate_routing_misses_total",
		"URIs no route matched, by kind.", "kind")
	g.AccessDenied = f.counterVec("wsgate_access_denied_total",
		"Requests refused by route access rules, by kind.", "kind")
	g.StoreLookups = f.histogramVec("wsgate_session_store_lookup_duration_seconds",
		"Session store calls by store, operation and result.",
		[]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "store", "op", "result")
	g.StoreCacheHits = f.counterVec("wsgate_session_store_cache_hits_total",
		"Session lookups served from the client-side cache, by store.", "store")
	g.StoreCacheMisses = f.counterVec("wsgate_session_store_cache_misses_total",
		"Session lookups the client-side cache sent to the server, by store.", "store")
	g.Revalidations = f.counterVec("wsgate_session_revalidations_total",
		"Re-reads of live connections' sessions, by outcome (valid, closed, downgraded, error).", "outcome")
	g.Pushes = f.counterVec("wsgate_pushes_total",
		"Application pushes received, by source.", "source")
	g.PushRequests = f.counterVec("wsgate_push_requests_total",
		"Push API requests and Redis push channel messages, by source and outcome.", "source", "outcome")
	g.UpstreamRequests = f.histogramVec("wsgate_upstream_request_duration_seconds",
		"HTTP upstream requests to the application, by upstream, route, kind and outcome.",
		[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "upstream", "route", "kind", "outcome")
	g.ConnectionEvents = f.counterVec("wsgate_connection_events_total",
		"Connection events sent to the application, by event and outcome.", "event", "outcome")
	g.ConnectionEventDuration = f.histogramVec("wsgate_connection_event_duration_seconds",
		"Duration of connection event requests to the application, by event.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "event")
	g.FanoutPublished = f.counter("wsgate_fanout_published_total",
		"Broadcasts sent to the other replicas over Redis.")
	g.FanoutLag = f.histogram("wsgate_fanout_lag_seconds",
		"Delay from another replica's publish to local delivery.",
		[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1})
	g.FanoutDropped = f.counterVec("wsgate_fanout_dropped_total",
		"Broadcasts between replicas lost, by reason.", "reason")
	g.FanoutLost = f.counterVec("wsgate_fanout_lost_total",
		"Broadcasts of another replica that never reached this one (gaps in its sequence numbers), by peer NodeID.", "peer")
	g.FanoutDuplicates = f.counterVec("wsgate_fanout_duplicates_total",
		"Broadcasts of another replica that arrived twice or out of order (delivered all the same), by peer NodeID.", "peer")
	g.FanoutSubscriptionUp = f.gauge("wsgate_fanout_subscription_up",
		"1 while this replica receives the other replicas' broadcasts, 0 while its Redis subscription is down.")
	g.fanoutPeers = boundedLabel{max: MaxFanoutPeers, seen: make(map[string]struct{})}
	g.ClientStorageLosses = f.counterVec("wsgate_client_storage_losses_total",
		"Times Redis lost this replica's client registration (restart without persistence, flush), by cause.", "cause")
	g.LimitExceeded = f.counterVec("wsgate_limit_exceeded_total",
		"Times a client or handshake hit a configured bound, by limit (the limits.* key).", "limit")
	g.MemoryReleases = f.counter("wsgate_memory_releases_total",
		"Times the gateway returned its free heap to the operating system after a burst of connections (transport.release_memory).")
	g.IdentityBestEffort = f.counterVec("wsgate_identity_best_effort_total",
		"Admitted clients whose identity is partly a guess (ambiguous user identifier property, or a token class Symfony does not ship), by firewall.", "firewall")
	return g
}

// registering makes collectors and registers each on reg as it is made,
// so that a metric cannot be created and then left out of the registry.
// Help strings and label names are as Prometheus shows them.
type registering struct{ reg prometheus.Registerer }

func (f registering) gauge(name, help string) prometheus.Gauge {
	m := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(m)
	return m
}

func (f registering) counter(name, help string) prometheus.Counter {
	m := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(m)
	return m
}

func (f registering) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	m := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(m)
	return m
}

func (f registering) histogram(name, help string, buckets []float64) prometheus.Histogram {
	m := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(m)
	return m
}

func (f registering) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	m := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(m)
	return m
}

// MaxFanoutPeers bounds the distinct peer labels of the fan-out metrics:
// NodeIDs change at every restart of a replica whose id is not configured,
// so a long-lived replica would otherwise grow a series per restart.
const MaxFanoutPeers = 64

// FanoutPeer returns the peer label for the replica node: node itself
// for the first MaxFanoutPeers distinct ones, "other" after that.
func (g *Gateway) FanoutPeer(node string) string { return g.fanoutPeers.label(node) }

// boundedLabel hands out at most max distinct label values, then "other".
type boundedLabel struct {
	max  int
	mu   sync.Mutex          // guards seen
	seen map[string]struct{} // the values handed out, at most max
}

func (b *boundedLabel) label(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max {
		return "other"
	}
	b.seen[v] = struct{}{}
	return v
}

// Handler serves /metrics from g, /healthz (the process answers) and
// /readyz (ready returns nil: stores reachable and not draining), and with
// withPprof Go's /debug/pprof/ profiles.
func Handler(g prometheus.Gatherer, ready func() error, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
