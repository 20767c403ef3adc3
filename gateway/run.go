package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/gateway/cluster"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/gateway/upstream"
	"github.com/wsgate/wsgate/metrics"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/builtin"
	"github.com/wsgate/wsgate/wamp/handler"
)

// CheckConfig does every check `serve` does before it touches the network:
// the configuration's own validation (done by config.Load), the origin
// patterns, and the routes against the registered handlers.
func CheckConfig(cfg config.Config, handlers *handler.Registry) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, err := config.NewOriginPolicy(cfg.Origins); err != nil {
		return err
	}
	if _, err := CheckSessionDecoder(cfg.Session); err != nil {
		return err
	}
	if handlers == nil {
		handlers = handler.NewRegistry()
	}
	if err := builtin.Register(handlers); err != nil {
		return err
	}
	if err := addUpstreams(cfg.Upstreams, cfg.Routes, handlers, os.Getenv, nil); err != nil {
		return err
	}
	if err := wamp.CheckRoutes(cfg.Routes, handlers); err != nil {
		return routesError(err)
	}
	return nil
}

// upstreamHandlerPrefix starts the handler name of every upstream route.
const upstreamHandlerPrefix = "upstream."

// routesError says where a missing handler should have come from: the
// usual cause is a plugin left out of plugins: or an upstream not defined.
func routesError(err error) error {
	var u *wamp.UnknownHandlerError
	if !errors.As(err, &u) {
		return fmt.Errorf("routes: %w", err)
	}
	if name, ok := strings.CutPrefix(u.Handler, upstreamHandlerPrefix); ok {
		return fmt.Errorf("routes: %w; define upstreams.%s to forward this route to the app", err, name)
	}
	return fmt.Errorf("routes: %w; is the Go plugin that registers it listed under plugins: (e.g. plugins: [bin/plugins/acme.so] for acme.*, built by make plugins)?", err)
}

// Run serves the gateway until ctx is cancelled, then drains it within
// limits.drain_timeout. It owns the websocket accept loop and the metrics
// listener and stops both before it returns.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
		opts.Logger = log
	}
	reg := prometheus.NewRegistry()
	opts.Metrics = reg
	srv, err := New(cfg, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Shutdown(context.Background())
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.Session.LookupTimeout)
	if err := srv.resolver.Ping(pingCtx); err != nil {
		// Not fatal: the store may come up after us. Handshakes answer 503
		// and /readyz says why until it does.
		log.Warn("session store not reachable yet", "store", cfg.Session.Store, "err", err)
	}
	cancel()

	var addrs listenerAddrs // for the start block
	var ops *http.Server
	opsErr := make(chan error, 2) // metrics and API listeners
	if cfg.Metrics.Listen != "" {
		ops = &http.Server{
			Addr:              cfg.Metrics.Listen,
			Handler:           metrics.Handler(reg, srv.Ready, cfg.Metrics.Pprof),
			ReadHeaderTimeout: 5 * time.Second,
		}
		mln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			ln.Close()
			srv.Shutdown(context.Background())
			return fmt.Errorf("listen metrics %s: %w", cfg.Metrics.Listen, err)
		}
		go func() { opsErr <- ops.Serve(mln) }()
		addrs.Metrics = mln.Addr().String()
	}

	var api *http.Server
	if cfg.API.Listen != "" {
		token := cfg.API.Token
		if cfg.API.TokenEnv != "" {
			token = os.Getenv(cfg.API.TokenEnv)
		}
		if len(token) < 16 {
			ln.Close()
			srv.Shutdown(context.Background())
			return &config.Error{Key: "api.token_env", Value: cfg.API.TokenEnv, Reason: "names an unset variable or a token under 16 bytes"}
		}
		aln, err := net.Listen("tcp", cfg.API.Listen)
		if err != nil {
			ln.Close()
			srv.Shutdown(context.Background())
			return fmt.Errorf("listen api %s: %w", cfg.API.Listen, err)
		}
		api = &http.Server{Handler: srv.APIHandler(token), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		go func() { opsErr <- api.Serve(aln) }()
		addrs.API = aln.Addr().String()
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	addrs.WS = ln.Addr().String()
	logStart(log, cfg, srv.handlers, addrs, srv.resolver.Firewalls())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("draining", "timeout", cfg.Limits.DrainTimeout)
	case runErr = <-serveErr:
		log.Error("websocket listener failed", "err", runErr)
	case err := <-opsErr:
		runErr = fmt.Errorf("metrics or API listener: %w", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.Limits.DrainTimeout)
	defer dcancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	if ops != nil {
		ops.Shutdown(dctx)
	}
	if api != nil {
		api.Shutdown(dctx)
	}
	if runErr == nil {
		if err := <-serveErr; err != nil && !errors.Is(err, net.ErrClosed) {
			runErr = err
		}
	}
	log.Info("stopped")
	return runErr
}

// addUpstreams registers one handler per configured upstream, named
// "upstream.<name>" for routes to refer to. All upstreams share one
// keep-alive pool. routes are the gateway's, against which the upstreams'
// per-route limits are checked.
func addUpstreams(ups map[string]config.UpstreamConfig, routes wamp.RoutesConfig, reg *handler.Registry, getenv func(string) string, obs upstream.RequestObserver) error {
	if len(ups) == 0 {
		return nil
	}
	names := make([]string, 0, len(ups))
	total := 0
	for name, u := range ups {
		names = append(names, name)
		if u.MaxConcurrent > 0 {
			total += u.MaxConcurrent
		} else {
			total += upstream.DefaultMaxConcurrent
		}
	}
	sort.Strings(names)
	client := &http.Client{
		Transport:     upstream.NewTransport(total),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, name := range names {
		u := ups[name]
		key := "upstreams." + name
		secret := u.Secret
		if u.SecretEnv != "" {
			secret = getenv(u.SecretEnv)
			if secret == "" {
				return &config.Error{Key: key + ".secret_env", Value: u.SecretEnv, Reason: "names an empty or unset variable"}
			}
		}
		var limits map[string]upstream.RouteLimits
		for route, rl := range u.Routes {
			rc, ok := routes.RPC[route]
			if !ok {
				rc, ok = routes.Topics[route]
			}
			if !ok || rc.Handler != upstreamHandlerPrefix+name {
				return &config.Error{Key: key + ".routes", Value: route, Reason: "names no route whose handler is " + upstreamHandlerPrefix + name}
			}
			if limits == nil {
				limits = map[string]upstream.RouteLimits{}
			}
			limits[route] = upstream.RouteLimits{Timeout: rl.Timeout, MaxConcurrent: rl.MaxConcurrent}
		}
		up, err := upstream.New(upstreamHandlerPrefix+name, upstream.Config{
			URL: u.URL, Secret: []byte(secret), Timeout: u.Timeout, MaxConcurrent: u.MaxConcurrent,
			NotifyUnsubscribe: u.NotifyUnsubscribe, ForwardHeaders: u.ForwardHeaders, Observer: obs,
			Routes: limits,
		}, client)
		if err != nil {
			return config.Nest(key, err)
		}
		if err := reg.AddRPC(up); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if err := reg.AddTopic(up); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// keptHeaders is the set of handshake headers (canonical names) that some
// upstream or the connect event forwards; the handshake keeps only these,
// nil when none.
func keptHeaders(ups map[string]config.UpstreamConfig, ev config.EventsConfig) map[string]bool {
	var keep map[string]bool
	add := func(names []string) {
		for _, h := range names {
			if keep == nil {
				keep = map[string]bool{}
			}
			keep[textproto.CanonicalMIMEHeaderKey(h)] = true
		}
	}
	for _, u := range ups {
		add(u.ForwardHeaders)
	}
	if ev.URL != "" && ev.Connect {
		add(ev.ForwardHeaders)
	}
	return keep
}

// newEvents builds the connection events client from the config.
func newEvents(c config.EventsConfig, getenv func(string) string, obs upstream.EventsObserver, log *slog.Logger) (*upstream.Events, error) {
	secret := c.Secret
	if c.SecretEnv != "" {
		if secret = getenv(c.SecretEnv); secret == "" {
			return nil, &config.Error{Key: "events.secret_env", Value: c.SecretEnv, Reason: "names an empty or unset variable"}
		}
	}
	ev, err := upstream.NewEvents(upstream.EventsConfig{
		URL: c.URL, Secret: []byte(secret), Timeout: c.Timeout, Connect: c.Connect, Disconnect: c.Disconnect,
		OnConnectError: c.OnConnectError, QueueSize: c.QueueSize, Workers: c.Workers, ForwardHeaders: c.ForwardHeaders,
	}, obs, log)
	if err != nil {
		return nil, config.Nest("events", err)
	}
	return ev, nil
}

// clusterRedis is the Redis of the replicas' links: cluster.redis, or the
// client storage's when it names no address.
func (s *Server) clusterRedis() storage.RedisOptions {
	r := s.cfg.Cluster.Redis
	if len(r.Addrs) == 0 {
		r = s.cfg.ClientStorage.Redis
	}
	return r.Options()
}

// newFanout connects the Redis relay of cluster.fanout, the node's Relay:
// broadcasts from other replicas go to the node (deliverRelayed).
func (s *Server) newFanout() (*cluster.Fanout, error) {
	c := s.cfg.Cluster
	mode := cluster.FanoutPubSub
	if c.Fanout == "redis_streams" {
		mode = cluster.FanoutStreams
	}
	f, err := cluster.NewFanout(cluster.FanoutOptions{
		Redis:           s.clusterRedis(),
		Prefix:          c.Prefix,
		NodeID:          s.nodeID,
		Mode:            mode,
		StreamRetention: c.StreamRetention,
		StreamMaxLen:    c.StreamMaxLen,
		QueueSize:       c.QueueSize,
		Deliver:         s.deliverRelayed,
		Observer:        fanoutObserver{s.metrics},
		Logger:          s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.fanout %s: %w", c.Fanout, err)
	}
	return f, nil
}

// newRetained makes the Redis store of WAMP retained events, shared by
// the replicas of cluster.fanout (keys <prefix>retained:<topic>); what it
// cannot retain is counted with the fan-out's drops, by reason.
func (s *Server) newRetained() (*cluster.Retained, error) {
	r, err := cluster.NewRetained(cluster.RetainedOptions{
		Redis:     s.clusterRedis(),
		Prefix:    s.cfg.Cluster.Prefix,
		TTL:       s.cfg.WAMP.RetainedTTL,
		MaxTopics: s.cfg.WAMP.RetainedMaxTopics,
		Dropped: func(reason string) {
			s.metrics.FanoutDropped.WithLabelValues(reason).Inc()
		},
		Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.fanout redis: %w", err)
	}
	return r, nil
}

// deliverRelayed hands what other replicas broadcast to this node; it runs
// on the fan-out's delivery goroutine.
func (s *Server) deliverRelayed(m cluster.FanoutMessage) {
	if _, err := s.node.DeliverRelayedDetails(m.Topic, m.Payload, wamp.Audience(m.Audience), m.Details); err != nil {
		s.log.Warn("cluster: dropping a relayed broadcast", "err", err)
	}
}

// fanoutRelay is the Fanout as the node's wamp.Relay: the audience
// (session, user and role lists) travels in the envelope, and every
// replica selects its own subscribers by it.
type fanoutRelay struct{ *cluster.Fanout }

// Publish relays a broadcast made on this node to the other replicas.
func (r fanoutRelay) Publish(topic string, payload []byte, a wamp.Audience) {
	r.Fanout.Publish(topic, payload, cluster.Audience(a))
}

// PublishDetails relays a broadcast whose publisher is disclosed: the
// other replicas' EVENTs carry details too (wamp.DisclosingRelay).
func (r fanoutRelay) PublishDetails(topic string, payload []byte, a wamp.Audience, details []byte) {
	r.Fanout.PublishDetails(topic, payload, cluster.Audience(a), details)
}

// newControl connects the control stream of cluster.fanout, on which
// POST /api/disconnect reaches the other replicas and theirs reach this one.
func (s *Server) newControl() (*cluster.Control, error) {
	ctl, err := cluster.NewControl(cluster.ControlOptions{
		Redis:  s.clusterRedis(),
		Prefix: s.cfg.Cluster.Prefix,
		NodeID: s.nodeID,
		OnDisconnect: func(user string, before time.Time) {
			s.closeUserConnections(user, before)
		},
		// The copy for replicas of the previous release is a fan-out
		// broadcast on its control topic: lost, it is counted as one.
		OnLegacyFailure: func(error) {
			s.metrics.FanoutDropped.WithLabelValues("control_legacy_publish_failed").Inc()
		},
		Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster.fanout redis: %w", err)
	}
	return ctl, nil
}
