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

	// LimitExceeded counts every time a client or a handshake ran into
	// a configured bound, by limit: the limit's configuration key without
	// the "limits." prefix (max_header_bytes, outbound_queue_bytes, ...).
	// docs/limits.md lists each with what the client gets.
	LimitExceeded *prometheus.CounterVec

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
	g := &Gateway{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsgate_connections",
			Help: "Established websocket connections.",
		}),
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_handshakes_total",
			Help: "Websocket handshakes by outcome.",
		}, []string{"outcome"}),
		SessionLookups: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsgate_session_lookup_duration_seconds",
			Help:    "Time to read and decode a PHP session, by result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsgate_messages_received_total",
			Help: "Websocket messages received from clients.",
		}),
		MessagesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsgate_messages_sent_total",
			Help: "Websocket messages queued to clients.",
		}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgate_disconnects_total",
			Help: "Closed websocket connections by reason.",
		}, []string{"reason"}),
	}
	g.ReceivedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsgate_received_bytes_total",
		Help: "Bytes read from websocket clients.",
	})
	g.SentBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsgate_sent_bytes_total",
		Help: "Bytes written to websocket clients.",
	})
	g.Dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_dropped_messages_total",
		Help: "Messages not queued to a client, by reason.",
	}, []string{"reason"})
	g.WriteDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "wsgate_write_duration_seconds",
		Help:    "Duration of one socket write of queued frames.",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
	})
	g.WAMPMessagesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_wamp_messages_received_total",
		Help: "WAMP messages received from clients, by protocol and message type.",
	}, []string{"protocol", "type"})
	g.WAMPMessagesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_wamp_messages_sent_total",
		Help: "WAMP messages sent to clients, by protocol and message type.",
	}, []string{"protocol", "type"})
	g.RPCDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "wsgate_rpc_duration_seconds",
		Help:    "RPC handler call duration, by handler and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
	}, []string{"handler", "outcome"})
	g.RoutingMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_routing_misses_total",
		Help: "URIs no route matched, by kind.",
	}, []string{"kind"})
	g.AccessDenied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_access_denied_total",
		Help: "Requests refused by route access rules, by kind.",
	}, []string{"kind"})
	g.StoreLookups = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "wsgate_session_store_lookup_duration_seconds",
		Help:    "Session store calls by store, operation and result.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"store", "op", "result"})
	g.StoreCacheHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_session_store_cache_hits_total",
		Help: "Session lookups served from the client-side cache, by store.",
	}, []string{"store"})
	g.StoreCacheMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_session_store_cache_misses_total",
		Help: "Session lookups the client-side cache sent to the server, by store.",
	}, []string{"store"})
	g.Revalidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_session_revalidations_total",
		Help: "Re-reads of live connections' sessions, by outcome (valid, closed, downgraded, error).",
	}, []string{"outcome"})
	g.Pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_pushes_total",
		Help: "Application pushes received, by source.",
	}, []string{"source"})
	g.PushRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_push_requests_total",
		Help: "Push API requests and Redis push channel messages, by source and outcome.",
	}, []string{"source", "outcome"})
	g.UpstreamRequests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "wsgate_upstream_request_duration_seconds",
		Help:    "HTTP upstream requests to the application, by upstream, route, kind and outcome.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"upstream", "route", "kind", "outcome"})
	g.ConnectionEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_connection_events_total",
		Help: "Connection events sent to the application, by event and outcome.",
	}, []string{"event", "outcome"})
	g.ConnectionEventDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "wsgate_connection_event_duration_seconds",
		Help:    "Duration of connection event requests to the application, by event.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"event"})
	g.FanoutPublished = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wsgate_fanout_published_total",
		Help: "Broadcasts sent to the other replicas over Redis.",
	})
	g.FanoutLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "wsgate_fanout_lag_seconds",
		Help:    "Delay from another replica's publish to local delivery.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	g.FanoutDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_fanout_dropped_total",
		Help: "Broadcasts between replicas lost, by reason.",
	}, []string{"reason"})
	g.FanoutLost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_fanout_lost_total",
		Help: "Broadcasts of another replica that never reached this one (gaps in its sequence numbers), by peer NodeID.",
	}, []string{"peer"})
	g.FanoutDuplicates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_fanout_duplicates_total",
		Help: "Broadcasts of another replica that arrived twice or out of order (delivered all the same), by peer NodeID.",
	}, []string{"peer"})
	g.FanoutSubscriptionUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "wsgate_fanout_subscription_up",
		Help: "1 while this replica receives the other replicas' broadcasts, 0 while its Redis subscription is down.",
	})
	g.fanoutPeers = boundedLabel{max: MaxFanoutPeers, seen: make(map[string]struct{})}
	g.ClientStorageLosses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_client_storage_losses_total",
		Help: "Times Redis lost this replica's client registration (restart without persistence, flush), by cause.",
	}, []string{"cause"})
	g.LimitExceeded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgate_limit_exceeded_total",
		Help: "Times a client or handshake hit a configured bound, by limit (the limits.* key).",
	}, []string{"limit"})
	g.reg = reg
	reg.MustRegister(g.LimitExceeded, g.ClientStorageLosses, g.PushRequests, g.UpstreamRequests, g.ConnectionEvents, g.ConnectionEventDuration,
		g.FanoutPublished, g.FanoutLag, g.FanoutDropped, g.FanoutLost, g.FanoutDuplicates, g.FanoutSubscriptionUp,
		g.Connections, g.Handshakes, g.SessionLookups, g.MessagesReceived, g.MessagesSent, g.Disconnects,
		g.ReceivedBytes, g.SentBytes, g.Dropped, g.WriteDuration,
		g.WAMPMessagesIn, g.WAMPMessagesOut, g.RPCDuration, g.RoutingMisses, g.AccessDenied,
		g.StoreLookups, g.StoreCacheHits, g.StoreCacheMisses, g.Revalidations, g.Pushes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return g
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
	mu   sync.Mutex
	seen map[string]struct{}
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
