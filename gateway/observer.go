package gateway

import (
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/metrics"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
)

// wampObserver turns the WAMP node's events into Prometheus metrics. Its
// label values are protocol labels, message type names, handler names and
// route kinds: all bounded by the code and the config, never by clients.
type wampObserver struct{ m *metrics.Gateway }

func (o wampObserver) MessageIn(p wamp.Protocol, msgType string) {
	o.m.WAMPMessagesIn.WithLabelValues(p.String(), msgType).Inc()
}

func (o wampObserver) MessagesOut(p wamp.Protocol, msgType string, n int) {
	o.m.WAMPMessagesOut.WithLabelValues(p.String(), msgType).Add(float64(n))
}

func (o wampObserver) Call(handler string, d time.Duration, failed bool) {
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	o.m.RPCDuration.WithLabelValues(handler, outcome).Observe(d.Seconds())
}

func (o wampObserver) RoutingMiss(kind string) { o.m.RoutingMisses.WithLabelValues(kind).Inc() }

func (o wampObserver) AccessDenied(kind string) { o.m.AccessDenied.WithLabelValues(kind).Inc() }

func (o wampObserver) Limit(name string) { o.m.LimitExceeded.WithLabelValues(name).Inc() }

// clientStorageObserver counts and logs the Redis client storage's
// recoveries after Redis lost its data.
type clientStorageObserver struct {
	m   *metrics.Gateway
	log *slog.Logger
}

func (o clientStorageObserver) ClientDataLost(cause string) {
	o.m.ClientStorageLosses.WithLabelValues(cause).Inc()
	o.log.Warn("client storage: Redis lost this replica's registration; re-registering, client lists answer 503 meanwhile", "cause", cause)
}

func (o clientStorageObserver) ClientRecovered(r storage.ClientRecovery) {
	o.log.Info("client storage: registration complete again", "cause", r.Cause, "entries", r.Entries,
		"incomplete_for", r.Incomplete, "replicas_waited", r.Waited, "replicas_expired", r.Expired, "replicas_given_up", r.GaveUp)
}

// transportObserver turns the transport's events into Prometheus metrics;
// its label values are the transport's constants and handshake outcomes.
type transportObserver struct{ m *metrics.Gateway }

func (o transportObserver) Handshake(outcome string) { o.m.Handshakes.WithLabelValues(outcome).Inc() }
func (o transportObserver) Limit(limit string)       { o.m.LimitExceeded.WithLabelValues(limit).Inc() }
func (o transportObserver) Read(n int)               { o.m.ReceivedBytes.Add(float64(n)) }
func (o transportObserver) MessageIn()               { o.m.MessagesReceived.Inc() }
func (o transportObserver) MessageOut()              { o.m.MessagesSent.Inc() }
func (o transportObserver) Dropped(reason string)    { o.m.Dropped.WithLabelValues(reason).Inc() }

func (o transportObserver) Wrote(n int, d time.Duration) {
	o.m.SentBytes.Add(float64(n))
	o.m.WriteDuration.Observe(d.Seconds())
}

// storeObserver exports the session stores' measurements.
type storeObserver struct{ m *metrics.Gateway }

func (o storeObserver) ObserveLookup(store, op, result string, d time.Duration) {
	o.m.StoreLookups.WithLabelValues(store, op, result).Observe(d.Seconds())
}

func (o storeObserver) ObserveCache(store string, hits, misses int) {
	if hits > 0 {
		o.m.StoreCacheHits.WithLabelValues(store).Add(float64(hits))
	}
	if misses > 0 {
		o.m.StoreCacheMisses.WithLabelValues(store).Add(float64(misses))
	}
}

// upstreamObserver exports HTTP upstream requests. Route and upstream
// names come from the config.
type upstreamObserver struct{ m *metrics.Gateway }

func (o upstreamObserver) UpstreamRequest(upstream, route, kind, outcome string, d time.Duration) {
	o.m.UpstreamRequests.WithLabelValues(upstream, route, kind, outcome).Observe(d.Seconds())
}

// eventsObserver exports connection events sent to the app.
type eventsObserver struct{ m *metrics.Gateway }

func (o eventsObserver) Event(kind, outcome string, d time.Duration) {
	o.m.ConnectionEvents.WithLabelValues(kind, outcome).Inc()
	if outcome != "dropped" {
		o.m.ConnectionEventDuration.WithLabelValues(kind).Observe(d.Seconds())
	}
}

// fanoutObserver exports the health of the Redis relay between replicas.
type fanoutObserver struct{ m *metrics.Gateway }

func (o fanoutObserver) Relayed(lag time.Duration) {
	o.m.FanoutLag.Observe(max(lag, 0).Seconds())
}

func (o fanoutObserver) Dropped(reason string) { o.m.FanoutDropped.WithLabelValues(reason).Inc() }

func (o fanoutObserver) Published(n int) { o.m.FanoutPublished.Add(float64(n)) }

func (o fanoutObserver) Lost(origin string, n uint64) {
	o.m.FanoutLost.WithLabelValues(o.m.FanoutPeer(origin)).Add(float64(n))
}

func (o fanoutObserver) Duplicate(origin string) {
	o.m.FanoutDuplicates.WithLabelValues(o.m.FanoutPeer(origin)).Inc()
}

func (o fanoutObserver) SubscriptionUp(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	o.m.FanoutSubscriptionUp.Set(v)
}
