package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
)

var (
	cookieNameRe = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+$`)
	firewallRe   = regexp.MustCompile(`^[A-Za-z0-9_\-.]+$`)
)

// Validate checks values that are well-typed but impossible, one section
// after the other, and returns the first problem found as an *Error. It
// does not change c: defaults are Default's and the loader's business.
// Upstreams and routes are checked against the handlers by the gateway's
// CheckConfig, which needs the registry.
func (c *Config) Validate() error {
	if err := hostPort("listen", c.Listen); err != nil {
		return err
	}
	for _, section := range []func() error{
		c.Metrics.Validate,
		c.API.Validate,
		c.Push.Validate,
		c.Origins.Validate,
		c.Session.Validate,
		c.ClientStorage.Validate,
		c.validateFanoutStorage,
		c.Cluster.Validate,
		c.Events.Validate,
		c.Limits.Validate,
		c.Keepalive.Validate,
		c.Transport.Validate,
		c.Log.Validate,
		c.WAMP.Validate,
	} {
		if err := section(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks wamp.meta_api and the retained event bounds.
func (w *WAMPConfig) Validate() error {
	if err := wamp.CheckMetaAPI(w.MetaAPI); err != nil {
		return &Error{Key: "wamp.meta_api", Value: w.MetaAPI, Reason: "must be none, authenticated or role:<ROLE>"}
	}
	return First(
		Between("wamp.retained_max_topics", w.RetainedMaxTopics, 1, 1<<24),
		Between("wamp.retained_max_bytes", w.RetainedMaxBytes, 1<<10, 1<<30),
		Positive("wamp.retained_ttl", w.RetainedTTL),
	)
}

// hostPort returns an *Error unless v is a host:port address.
func hostPort(key, v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return &Error{Key: key, Value: v, Reason: "not a host:port address"}
	}
	return nil
}

// Validate checks metrics.listen, when set.
func (m *MetricsConfig) Validate() error {
	if m.Listen == "" {
		return nil
	}
	return hostPort("metrics.listen", m.Listen)
}

// Validate checks the push API's listener and token, when it listens. The
// token is a secret: an error about it never carries its value.
func (a *APIConfig) Validate() error {
	if a.Listen == "" {
		return nil
	}
	if err := hostPort("api.listen", a.Listen); err != nil {
		return err
	}
	if a.Token == "" && a.TokenEnv == "" {
		return &Error{Key: "api.token", Reason: "must be set (or api.token_env) when api.listen is"}
	}
	if a.Token != "" && len(a.Token) < 16 {
		return &Error{Key: "api.token", Reason: "must be at least 16 bytes"}
	}
	return nil
}

// Validate checks push.redis when a push channel is set.
func (p *PushConfig) Validate() error {
	if p.RedisChannel == "" {
		return nil
	}
	return p.Redis.Validate("push.redis")
}

// Validate checks every origins.allowed pattern by compiling the policy
// the handshake will use.
func (o *OriginsConfig) Validate() error {
	_, err := NewOriginPolicy(*o)
	return err
}

// Validate checks the session section: the cookie name, the store and its
// own settings, the policies, the decoder and the firewalls.
func (s *SessionConfig) Validate() error {
	var revalidate error
	if s.RevalidateInterval < 0 || s.RevalidateInterval > 0 && s.RevalidateInterval < time.Second {
		revalidate = &Error{Key: "session.revalidate_interval", Value: s.RevalidateInterval.String(), Reason: "must be 0 (off) or at least 1s"}
	}
	var cookie error
	switch {
	case !cookieNameRe.MatchString(s.Cookie):
		cookie = &Error{Key: "session.cookie", Value: s.Cookie, Reason: "not a valid cookie name"}
	case strings.ContainsAny(s.Cookie, ". ["):
		// PHP turns '.' and ' ' of a cookie name into '_' and '[' into an
		// array, so its session module never finds such a cookie, nor
		// does the gateway, which reads cookies as PHP does.
		cookie = &Error{Key: "session.cookie", Value: s.Cookie, Reason: "PHP renames cookie names holding '.', ' ' or '[', so no session cookie can match it"}
	case strings.Trim(s.Cookie, "0123456789") == "":
		cookie = &Error{Key: "session.cookie", Value: s.Cookie, Reason: "PHP refuses an all-digit session.name"}
	}
	return First(
		cookie,
		s.validateStore(),
		OneOf("session.on_unavailable", s.OnUnavailable, "refuse", "anonymous"),
		OneOf("session.on_invalid", s.OnInvalid, "close", "downgrade"),
		revalidate,
		Between("session.max_concurrent", s.MaxConcurrent, 0, 1<<20),
		OneOf("session.serialize_handler", s.SerializeHandler, "php", "php_binary", "php_serialize", "igbinary", "auto"),
		s.validateFirewalls(),
		NotNegative("session.files.gc_maxlifetime", s.Files.GCMaxLifetime),
		Between("session.pdo.max_open_conns", s.PDO.MaxOpenConns, 1, 1024),
		Positive("session.lookup_timeout", s.LookupTimeout),
	)
}

// validateStore checks session.store and what that store needs.
func (s *SessionConfig) validateStore() error {
	if err := OneOf("session.store", s.Store, StoreFiles, StorePDOMySQL, StorePDOPgSQL, StoreRedis, StoreMemcached); err != nil {
		return err
	}
	switch s.Store {
	case StoreFiles:
		if s.Files.Path == "" {
			return &Error{Key: "session.files.path", Reason: "must not be empty with store files"}
		}
		if _, _, err := storage.ParseSavePath(s.Files.Path); err != nil {
			return &Error{Key: "session.files.path", Value: s.Files.Path, Reason: "not a PHP session.save_path (dir, N;dir or N;MODE;dir): " + err.Error()}
		}
	case StorePDOMySQL, StorePDOPgSQL:
		if s.PDO.DSN == "" {
			return &Error{Key: "session.pdo.dsn", Reason: "must be set with store " + s.Store}
		}
	case StoreRedis:
		return s.Redis.RedisConnConfig.Validate("session.redis")
	case StoreMemcached:
		return s.Memcached.Validate()
	}
	return nil
}

// Validate checks session.memcached: one host:port, and a prefix that can
// start a memcached key (no spaces or control characters, under 250 bytes).
func (m *MemcachedSessionConfig) Validate() error {
	if len(m.Addrs) != 1 {
		return &Error{Key: "session.memcached.addrs", Value: fmt.Sprint(m.Addrs), Reason: "must list exactly one host:port"}
	}
	if err := hostPort("session.memcached.addrs", m.Addrs[0]); err != nil {
		return err
	}
	bad := len(m.Prefix) >= 250
	for i := 0; i < len(m.Prefix); i++ {
		bad = bad || m.Prefix[i] <= ' ' || m.Prefix[i] == 0x7f
	}
	if bad {
		return &Error{Key: "session.memcached.prefix", Value: m.Prefix, Reason: "must be under 250 bytes, without spaces or control characters"}
	}
	return nil
}

func (s *SessionConfig) validateFirewalls() error {
	if len(s.Firewalls) == 0 && s.SymfonySecurityYAML == "" {
		return &Error{Key: "session.firewalls", Reason: "must name at least one firewall (or set session.symfony_security_yaml to take the app's)"}
	}
	for _, f := range s.Firewalls {
		if !firewallRe.MatchString(f) {
			return &Error{Key: "session.firewalls", Value: f, Reason: "not a firewall name"}
		}
	}
	return nil
}

// Validate checks the client storage driver, its Redis and its periods.
func (c *ClientStorageConfig) Validate() error {
	if err := OneOf("client_storage.driver", c.Driver, "memory", "redis"); err != nil {
		return err
	}
	if c.Driver == "redis" {
		if err := c.Redis.Validate("client_storage.redis"); err != nil {
			return err
		}
	}
	return First(
		Positive("client_storage.ttl", c.TTL),
		Positive("client_storage.check_interval", c.CheckInterval),
	)
}

// validateFanoutStorage is the one check across sections: a Redis fan-out
// needs the shared client storage, or user lookups would see this
// replica's clients only.
func (c *Config) validateFanoutStorage() error {
	if c.Cluster.Relayed() && c.ClientStorage.Driver != "redis" {
		return &Error{Key: "cluster.fanout", Value: c.Cluster.Fanout, Reason: "needs client_storage.driver redis, so that replicas see each other's clients"}
	}
	return nil
}

// Validate checks the fan-out, its Redis (when it has addresses of its
// own), its prefix and its queue.
func (c *ClusterConfig) Validate() error {
	if err := OneOf("cluster.fanout", c.Fanout, "none", "redis", "redis_streams"); err != nil {
		return err
	}
	if c.Relayed() {
		if len(c.Redis.Addrs) > 0 {
			if err := c.Redis.Validate("cluster.redis"); err != nil {
				return err
			}
		}
		if c.Prefix == "" {
			return &Error{Key: "cluster.prefix", Reason: "must not be empty with a Redis fan-out"}
		}
	}
	if c.Fanout == "redis_streams" {
		if err := Between("cluster.stream_retention", c.StreamRetention, time.Second, 24*time.Hour); err != nil {
			return err
		}
		if err := Between("cluster.stream_max_len", c.StreamMaxLen, 1000, 100_000_000); err != nil {
			return err
		}
	}
	return Between("cluster.queue_size", c.QueueSize, 1, 1<<22)
}

// Relayed reports whether replicas are linked over Redis (fanout redis or
// redis_streams): broadcasts and commands cross between them.
func (c *ClusterConfig) Relayed() bool { return c.Fanout == "redis" || c.Fanout == "redis_streams" }

// Validate checks the connection events, when events.url is set. The
// bounds are those gateway/upstream's NewEvents enforces, so that a
// config that passes here also builds.
func (e *EventsConfig) Validate() error {
	if e.URL == "" {
		return nil
	}
	if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &Error{Key: "events.url", Value: e.URL, Reason: "must be an http or https URL"}
	}
	if e.Secret == "" && e.SecretEnv == "" {
		return &Error{Key: "events.secret", Reason: "set events.secret or events.secret_env"}
	}
	return First(
		OneOf("events.on_connect_error", e.OnConnectError, "accept", "reject"),
		Between("events.queue_size", e.QueueSize, 1, MaxEventsQueueSize),
		Between("events.workers", e.Workers, 1, MaxEventsWorkers),
		Positive("events.timeout", e.Timeout),
	)
}

// Bounds of events.queue_size and events.workers, shared with
// gateway/upstream's NewEvents: each queued event is held in memory and
// each worker is a goroutine.
const (
	MaxEventsQueueSize = 1 << 22
	MaxEventsWorkers   = 1024
)

// Validate checks every limit: the timeouts are positive, the counts and
// sizes within the bounds below.
func (l *LimitsConfig) Validate() error {
	err := First(
		Positive("limits.handshake_timeout", l.HandshakeTimeout),
		Positive("limits.write_timeout", l.WriteTimeout),
		Positive("limits.idle_timeout", l.IdleTimeout),
		Positive("limits.call_timeout", l.CallTimeout),
		Positive("limits.drain_timeout", l.DrainTimeout),
	)
	if err != nil {
		return err
	}
	return First(
		Between("limits.max_handshakes", l.MaxHandshakes, 1, 1<<20),
		Between("limits.max_pending_requests", l.MaxPendingRequests, 1, 1<<22),
		Between("limits.max_json_depth", l.MaxJSONDepth, 2, 10000),
		Between("limits.max_uri_length", l.MaxURILength, 16, 1<<16),
		Between("limits.max_prefixes", l.MaxPrefixes, 1, 1<<16),
		Between("limits.max_subscriptions", l.MaxSubscriptions, 1, 1<<20),
		Between("limits.max_patterns", l.MaxPatterns, 1, 1<<20),
		Between("limits.max_header_bytes", l.MaxHeaderBytes, 1024, 1<<20),
		Between("limits.max_connections", l.MaxConnections, 1, 1<<24),
		Between("limits.max_message_size", l.MaxMessageSize, 64, 64<<20),
		Between("limits.outbound_queue_bytes", l.OutboundQueueBytes, 1024, 1<<30),
		Between("limits.max_connections_per_user", l.MaxConnectionsPerUser, 0, 1<<20),
		Between("limits.accept_rate_per_ip", l.AcceptRatePerIP, 0, 1<<20),
		Between("limits.max_pending_calls_per_connection", l.MaxPendingCallsPerConnection, 1, 1<<16),
		Between("limits.max_pending_calls", l.MaxPendingCalls, 1, 1<<24),
	)
}

// Validate checks keepalive.interval, whether or not pings are on.
func (k *KeepaliveConfig) Validate() error {
	return Positive("keepalive.interval", k.Interval)
}

// Validate checks the transport mode (epoll only where it exists) and
// the worker counts (0 picks the transport's default).
func (t *TransportConfig) Validate() error {
	if err := OneOf("transport.mode", t.Mode, ModeEpoll, ModeGoroutine); err != nil {
		return err
	}
	if t.Mode == ModeEpoll && !transport.EpollSupported {
		return &Error{Key: "transport.mode", Value: t.Mode, Reason: "epoll needs Linux; use goroutine"}
	}
	return First(
		Between("transport.workers", t.Workers, 0, 65536),
		Between("transport.writers", t.Writers, 0, 4096),
	)
}

// Validate checks the log level and format.
func (l *LogConfig) Validate() error {
	return First(
		OneOf("log.level", l.Level, "debug", "info", "warn", "error"),
		OneOf("log.format", l.Format, "text", "json"),
	)
}

// Validate checks one way to reach Redis; key is where it sits in the
// configuration ("session.redis", "cluster.redis", ...), so that errors
// name the full path.
func (r *RedisConnConfig) Validate(key string) error {
	if len(r.Addrs) == 0 {
		return &Error{Key: key + ".addrs", Reason: "must list at least one host:port"}
	}
	for _, a := range r.Addrs {
		if strings.HasPrefix(a, "/") {
			if r.Mode != "" && r.Mode != "standalone" {
				return &Error{Key: key + ".addrs", Value: a, Reason: "a Unix socket is for mode standalone only"}
			}
			continue // a standalone server's Unix socket
		}
		if err := hostPort(key+".addrs", a); err != nil {
			return err
		}
	}
	if err := OneOf(key+".mode", r.Mode, "standalone", "sentinel", "cluster"); err != nil {
		return err
	}
	if r.Mode == "sentinel" && r.MasterName == "" {
		return &Error{Key: key + ".master_name", Reason: "must be set with mode sentinel"}
	}
	if r.DB < 0 || r.DB > 15 || r.DB != 0 && r.Mode == "cluster" {
		return &Error{Key: key + ".db", Value: fmt.Sprint(r.DB), Reason: "must be 0 to 15, and 0 for a cluster"}
	}
	return nil
}
