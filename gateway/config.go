package gateway

import (
	_ "embed"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/wamp"
)

// DefaultConfigYAML is the configuration `wsgate serve` runs with when no
// --config is given: PHP `files` sessions in Debian's default directory,
// in-memory client storage and the example routes. It doubles as the
// commented sample shipped to operators.
//
//go:embed default.yaml
var DefaultConfigYAML []byte

// Config is the whole gateway configuration. Every field is settable from
// YAML (by its `yaml` tag path) and from the environment (by EnvName of that
// path); see docs/configuration.md.
type Config struct {
	// Listen is the TCP address of the websocket listener.
	Listen string `yaml:"listen"`
	// AllowAnonymous admits clients without an authenticated session, as
	// GosWebSocketBundle does by default; false refuses them with 403.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// Origins is the browser Origin policy of the handshake.
	Origins OriginsConfig `yaml:"origins"`
	// Session says where and how the PHP sessions are read.
	Session SessionConfig `yaml:"session"`
	// ClientStorage is the registry of connected clients (the bundle's
	// client.storage).
	ClientStorage ClientStorageConfig `yaml:"client_storage"`
	// Transport selects how connections are served.
	Transport TransportConfig `yaml:"transport"`
	// Limits bounds what one client or handshake may cost.
	Limits LimitsConfig `yaml:"limits"`
	// Keepalive sends websocket pings, as the bundle's keepalive_ping.
	Keepalive KeepaliveConfig `yaml:"keepalive"`
	// Metrics is the separate listener for /metrics and health probes.
	Metrics MetricsConfig `yaml:"metrics"`
	// API is the push API the PHP app calls (publish, disconnect, clients).
	API APIConfig `yaml:"api"`
	// Push is the Redis channel the PHP app can PUBLISH pushes to.
	Push PushConfig `yaml:"push"`
	// Cluster makes several gateway replicas behave as one.
	Cluster ClusterConfig `yaml:"cluster"`
	// Events sends connect/disconnect events to the PHP app.
	Events EventsConfig `yaml:"events"`
	// Log selects log level and format.
	Log LogConfig `yaml:"log"`
	// WAMP holds protocol settings.
	WAMP WAMPConfig `yaml:"wamp"`
	// Routes maps WAMP topic and procedure URIs to handlers.
	Routes wamp.RoutesConfig `yaml:"routes"`
	// Plugins are Go plugins (.so, built with the gateway's Go version,
	// flags and wsgate version) whose Register adds handlers; relative paths
	// are taken from the working directory.
	Plugins []string `yaml:"plugins"`
	// Upstreams are HTTP endpoints of the PHP app: a route whose handler is
	// "upstream.<name>" forwards its calls, subscribes and publishes to
	// upstreams.<name> as signed JSON POSTs.
	Upstreams map[string]UpstreamConfig `yaml:"upstreams"`
}

// UpstreamConfig is one HTTP upstream (see gateway/upstream).
type UpstreamConfig struct {
	// URL is the endpoint every request is POSTed to.
	URL string `yaml:"url"`
	// Secret is the shared HMAC key (at least 16 bytes).
	Secret string `yaml:"secret"`
	// SecretEnv names an environment variable holding the secret instead,
	// so that it can come from a Kubernetes Secret.
	SecretEnv string `yaml:"secret_env"`
	// Timeout bounds one request; keep it below limits.call_timeout.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent bounds the requests in flight to this upstream.
	MaxConcurrent int `yaml:"max_concurrent"`
	// NotifyUnsubscribe also posts unsubscribes.
	NotifyUnsubscribe bool `yaml:"notify_unsubscribe"`
	// ForwardHeaders are handshake request headers (e.g. Cookie) copied
	// onto every request, so the app can see the browser's own session.
	ForwardHeaders []string `yaml:"forward_headers"`
	// Routes gives single routes of this upstream (by route name) a
	// timeout of their own and a concurrency bound within MaxConcurrent,
	// so a slow route cannot take every slot from the others.
	Routes map[string]UpstreamRouteConfig `yaml:"routes"`
}

// UpstreamRouteConfig is one route's limits on its upstream.
type UpstreamRouteConfig struct {
	// Timeout replaces the upstream's timeout for this route; 0 keeps it.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrent bounds this route's requests in flight; 0: only the
	// upstream's bound applies.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// OriginsConfig is the Origin allow-list. A handshake without an Origin
// header (not a browser) is always admitted: the check exists to stop other
// sites' pages from riding the user's cookie (cross-site websocket hijacking),
// and only browsers send cookies on their own.
type OriginsConfig struct {
	// Allowed lists exact origins ("https://app.example.com") and host
	// wildcards ("*.example.com" or "https://*.example.com"). A browser
	// origin whose host equals the request's Host is always allowed.
	Allowed []string `yaml:"allowed"`
	// AllowAny turns the check off (any cross-origin page may connect).
	AllowAny bool `yaml:"allow_any"`
}

// SessionConfig selects the PHP session store and decoder.
type SessionConfig struct {
	// Cookie is the PHP session cookie name (session.name).
	Cookie string `yaml:"cookie"`
	// Store is "files", "pdo_mysql", "pdo_pgsql" or "redis".
	Store string `yaml:"store"`
	// SerializeHandler is PHP's session.serialize_handler: php,
	// php_binary, php_serialize, igbinary, or auto (detect per session).
	SerializeHandler string `yaml:"serialize_handler"`
	// UserIdentifierProperties are the properties tried, in order, on a
	// custom user entity to find its identifier.
	UserIdentifierProperties []string `yaml:"user_identifier_properties"`
	// UserIdentifierPropertiesByClass overrides them per user class (FQCN).
	UserIdentifierPropertiesByClass map[string][]string `yaml:"user_identifier_properties_by_class"`
	// Firewalls are the Symfony firewalls whose `_security_<name>` token is
	// read, in order: the first authenticated one identifies the client.
	Firewalls []string `yaml:"firewalls"`
	// LookupTimeout bounds one session read during a handshake.
	LookupTimeout time.Duration `yaml:"lookup_timeout"`
	// Files configures the PHP native files store.
	Files FilesConfig `yaml:"files"`
	// PDO configures Symfony's PdoSessionHandler table.
	PDO PDOConfig `yaml:"pdo"`
	// Redis configures the Redis session store.
	Redis RedisSessionConfig `yaml:"redis"`
	// MaxConcurrent bounds lookups in flight against the store; 0 takes the
	// store's default. For the files store it is the number of reader
	// goroutines doing the blocking file reads, and so of the OS threads
	// they can hold (default 4 per CPU, 4 to 64).
	MaxConcurrent int `yaml:"max_concurrent"`
	// OnUnavailable is what a handshake gets while the store is down or
	// slow: "refuse" (503 with the reason) or "anonymous" (admitted as an
	// anonymous client, if allow_anonymous).
	OnUnavailable string `yaml:"on_unavailable"`
	// RevalidateInterval re-reads every connection's session this often,
	// spread over the interval in batches; 0 never re-reads.
	RevalidateInterval time.Duration `yaml:"revalidate_interval"`
	// OnInvalid is what happens to a connection whose session expired, was
	// destroyed or now holds another user: "close" (close code 4001) or
	// "downgrade" (the client becomes anonymous; subscriptions its routes no
	// longer allow are dropped).
	OnInvalid string `yaml:"on_invalid"`
}

// RedisConnConfig is how to reach Redis.
type RedisConnConfig struct {
	// Addrs are host:port of the server, the Sentinels, or cluster nodes.
	Addrs []string `yaml:"addrs"`
	// Mode is standalone, sentinel or cluster.
	Mode string `yaml:"mode"`
	// MasterName is the Sentinel master set name.
	MasterName string `yaml:"master_name"`
	// Username is the ACL user.
	Username string `yaml:"username"`
	// Password is the ACL or requirepass password.
	Password string `yaml:"password"`
	// DB is the database number (0 for a cluster).
	DB int `yaml:"db"`
}

// RedisSessionConfig configures sessions in Redis.
type RedisSessionConfig struct {
	RedisConnConfig `yaml:",inline"`
	// Prefix is the key prefix: "sf_s" (Symfony's RedisSessionHandler) or
	// "PHPREDIS_SESSION:" (phpredis' session.save_handler=redis).
	Prefix string `yaml:"prefix"`
	// ClientCache serves repeated lookups from memory, invalidated by
	// Redis the moment a session changes or is deleted (logout).
	ClientCache bool `yaml:"client_cache"`
	// CacheTTL bounds how long a cached session is served.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// FilesConfig configures PHP's native `files` session handler store.
type FilesConfig struct {
	// Path is session.save_path.
	Path string `yaml:"path"`
	// GCMaxLifetime is session.gc_maxlifetime: a file not modified for this
	// long is expired, as PHP's garbage collector judges it. 0 never expires.
	GCMaxLifetime time.Duration `yaml:"gc_maxlifetime"`
}

// PDOConfig configures Symfony's PdoSessionHandler table on MySQL/MariaDB.
type PDOConfig struct {
	// DSN is a go-sql-driver/mysql DSN, e.g. "app:secret@tcp(db:3306)/app".
	DSN string `yaml:"dsn"`
	// Table is db_table.
	Table string `yaml:"table"`
	// IDColumn is db_id_col.
	IDColumn string `yaml:"id_column"`
	// DataColumn is db_data_col.
	DataColumn string `yaml:"data_column"`
	// LifetimeColumn is db_lifetime_col.
	LifetimeColumn string `yaml:"lifetime_column"`
	// TimeColumn is db_time_col.
	TimeColumn string `yaml:"time_column"`
	// MaxOpenConns bounds the connection pool.
	MaxOpenConns int `yaml:"max_open_conns"`
}

// ClientStorageConfig is the bundle's client.storage.
type ClientStorageConfig struct {
	// Driver is "memory" (this replica only) or "redis" (shared by replicas).
	Driver string `yaml:"driver"`
	// TTL is how long an entry outlives a replica that stopped refreshing it.
	TTL time.Duration `yaml:"ttl"`
	// CheckInterval is how often each replica checks (driver redis) that
	// Redis still holds its registration: after Redis lost its data (a
	// restart without persistence, a flush) every replica re-registers its
	// clients within about this, and GET /api/clients answers 503 until all
	// of them did, instead of a partial list. Every replica must use the
	// same value.
	CheckInterval time.Duration `yaml:"check_interval"`
	// Prefix namespaces the keys of shared drivers.
	Prefix string `yaml:"prefix"`
	// Redis is how to reach Redis for driver redis.
	Redis RedisConnConfig `yaml:"redis"`
}

// TransportConfig selects the I/O model.
type TransportConfig struct {
	// Mode is "epoll" (Linux: an event loop, no goroutine or buffer per idle
	// connection) or "goroutine" (portable: a goroutine per connection).
	Mode string `yaml:"mode"`
	// Workers is the number of event loop workers that read, decode and
	// dispatch messages of readable connections; 0 picks 16 per CPU. A
	// plugin handler that blocks holds one worker while it runs (upstream
	// calls do not: they run on goroutines of their own, bounded by
	// limits.max_pending_calls).
	Workers int `yaml:"workers"`
	// Writers is the number of goroutines that flush outbound queues in
	// epoll mode; 0 picks 2 per CPU.
	Writers int `yaml:"writers"`
	// PermessageDeflate accepts RFC 7692 compression from clients that
	// offer it (inflated size bounded by limits.max_message_size). The
	// gateway's own messages stay uncompressed, so a fan-out is still
	// encoded once for all subscribers.
	PermessageDeflate bool `yaml:"permessage_deflate"`
}

// Transport modes.
const (
	ModeEpoll     = transport.ModeEpoll
	ModeGoroutine = transport.ModeGoroutine
)

// LimitsConfig bounds the cost of handshakes and connections.
type LimitsConfig struct {
	// HandshakeTimeout bounds the whole upgrade, session lookup included.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxHeaderBytes bounds the handshake request (request line and
	// headers); a larger one gets 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxPendingRequests bounds the sockets whose upgrade request has not
	// fully arrived; past it the oldest of them is closed (503) to make
	// room, so silent or slow sockets cannot keep real clients out.
	MaxPendingRequests int `yaml:"max_pending_requests"`
	// MaxHandshakes bounds handshakes in progress (a complete request
	// whose session is being read); past it new ones get 503.
	MaxHandshakes int `yaml:"max_handshakes"`
	// MaxConnections bounds established connections; past it handshakes get
	// 503.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerUser bounds one authenticated user's connections on
	// this gateway; past it handshakes get 429. 0 is no limit.
	MaxConnectionsPerUser int `yaml:"max_connections_per_user"`
	// AcceptRatePerIP bounds new connections per second from one client IP
	// (a token bucket with a burst of the same size); past it they get 429.
	// 0 is no limit. Behind a proxy every client has the proxy's IP.
	AcceptRatePerIP int `yaml:"accept_rate_per_ip"`
	// MaxMessageSize bounds one incoming websocket message in bytes.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxJSONDepth bounds how deep arrays and objects nest in one WAMP
	// message; deeper closes the connection (1008).
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxURILength bounds every URI and CURIE prefix in a WAMP message, in
	// bytes; longer closes the connection (1008).
	MaxURILength int `yaml:"max_uri_length"`
	// MaxPrefixes bounds the WAMP v1 PREFIX definitions of one connection;
	// more closes it (1008).
	MaxPrefixes int `yaml:"max_prefixes"`
	// MaxSubscriptions bounds the topics one connection is subscribed to;
	// more closes it (1008).
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// OutboundQueueBytes bounds the bytes queued to one client; a client that
	// falls further behind is closed as a slow consumer.
	OutboundQueueBytes int `yaml:"outbound_queue_bytes"`
	// WriteTimeout bounds one socket write.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a connection that sent nothing for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// CallTimeout bounds one RPC or topic handler call.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// MaxPendingCallsPerConnection bounds the calls of one connection that
	// run off the event loop (upstream routes, and plugin handlers that
	// implement handler.OffloadedRPC); past it a call is answered at once
	// with a "busy" error (v1 CALLERROR code 503, v2 wsgate.error.busy).
	MaxPendingCallsPerConnection int `yaml:"max_pending_calls_per_connection"`
	// MaxPendingCalls bounds those calls on the whole gateway.
	MaxPendingCalls int `yaml:"max_pending_calls"`
	// DrainTimeout bounds the graceful shutdown.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// KeepaliveConfig is the bundle's server.keepalive_ping and
// server.keepalive_interval: pings keep proxies and NATs from dropping idle
// connections, and the pongs count as activity for limits.idle_timeout.
type KeepaliveConfig struct {
	// Ping turns the pings on.
	Ping bool `yaml:"ping"`
	// Interval is the time between two pings to a client.
	Interval time.Duration `yaml:"interval"`
}

// WAMPConfig holds protocol settings.
type WAMPConfig struct {
	// Realm is the WAMP v2 realm clients must name in HELLO; empty accepts
	// any. WAMP v1 has no realms.
	Realm string `yaml:"realm"`
}

// APIConfig configures the push API listener.
type APIConfig struct {
	// Listen is its address; empty disables it.
	Listen string `yaml:"listen"`
	// Token is the bearer token the app sends (at least 16 bytes).
	Token string `yaml:"token"`
	// TokenEnv names an environment variable holding the token instead.
	TokenEnv string `yaml:"token_env"`
}

// PushConfig is the Redis push channel: the app PUBLISHes a JSON publish
// request (as POST /api/publish takes it) and every replica delivers it to
// its own subscribers.
type PushConfig struct {
	// RedisChannel is the channel; empty disables it.
	RedisChannel string `yaml:"redis_channel"`
	// Redis is how to reach Redis.
	Redis RedisConnConfig `yaml:"redis"`
}

// ClusterConfig relays broadcasts between replicas over Redis pub/sub.
type ClusterConfig struct {
	// Fanout is "none" (each replica serves its own subscribers) or
	// "redis" (a broadcast on any replica reaches every replica's
	// subscribers; each replica listens only to topics it has subscribers
	// for). Redis needs client_storage.driver redis, so that user lookups
	// see every replica's clients too.
	Fanout string `yaml:"fanout"`
	// Prefix starts the pub/sub channel names; replicas of one deployment
	// must share it, deployments sharing a Redis must not.
	Prefix string `yaml:"prefix"`
	// QueueSize bounds the broadcasts waiting to go to Redis and the ones
	// waiting for local delivery; beyond it they are dropped and counted
	// (wsgate_fanout_dropped_total).
	QueueSize int `yaml:"queue_size"`
	// Redis is how to reach Redis; no addrs means client_storage.redis.
	// Mode cluster uses sharded pub/sub (SPUBLISH/SSUBSCRIBE).
	Redis RedisConnConfig `yaml:"redis"`
}

// EventsConfig sends connection events to the PHP app (see
// gateway/upstream Events): the bundle's client_connected and
// client_disconnected.
type EventsConfig struct {
	// URL receives both events as signed JSON POSTs; empty disables them.
	URL string `yaml:"url"`
	// Secret is the shared HMAC key (at least 16 bytes).
	Secret string `yaml:"secret"`
	// SecretEnv names an environment variable holding the secret instead.
	SecretEnv string `yaml:"secret_env"`
	// Timeout bounds one request.
	Timeout time.Duration `yaml:"timeout"`
	// Connect asks the app at each handshake, which it may refuse or
	// attach extra data to; the handshake waits for the answer.
	Connect bool `yaml:"connect"`
	// Disconnect tells the app about each ended connection, with the
	// reason, in the background.
	Disconnect bool `yaml:"disconnect"`
	// OnConnectError is what a handshake does when the app cannot answer:
	// accept (admit the client) or reject (503).
	OnConnectError string `yaml:"on_connect_error"`
	// QueueSize bounds the disconnect events waiting to be sent; beyond it
	// they are dropped and counted.
	QueueSize int `yaml:"queue_size"`
	// Workers is the number of goroutines sending disconnect events.
	Workers int `yaml:"workers"`
	// ForwardHeaders are handshake headers (e.g. Cookie) copied onto the
	// connect event.
	ForwardHeaders []string `yaml:"forward_headers"`
}

// MetricsConfig configures the operations listener.
type MetricsConfig struct {
	// Listen is the address of /metrics, /healthz and /readyz; empty
	// disables the listener.
	Listen string `yaml:"listen"`
	// Pprof also serves Go's /debug/pprof/ there, for profiling a live
	// gateway. Keep that listener private.
	Pprof bool `yaml:"pprof"`
}

// LogConfig configures log/slog output on stderr.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Session store names accepted by SessionConfig.Store.
const (
	StoreFiles    = "files"
	StorePDOMySQL = "pdo_mysql"
	StorePDOPgSQL = "pdo_pgsql"
	StoreRedis    = "redis"
)

// DefaultConfig is the configuration before any file or environment is
// applied.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:8080",
		AllowAnonymous: true,
		Session: SessionConfig{
			Cookie:           "PHPSESSID",
			Store:            StoreFiles,
			SerializeHandler: "php",
			Firewalls:        []string{"main"},
			LookupTimeout:    2 * time.Second,
			Files:            FilesConfig{Path: "/var/lib/php/sessions", GCMaxLifetime: 1440 * time.Second},
			PDO: PDOConfig{
				Table:          "sessions",
				IDColumn:       "sess_id",
				DataColumn:     "sess_data",
				LifetimeColumn: "sess_lifetime",
				TimeColumn:     "sess_time",
				MaxOpenConns:   16,
			},
			Redis:         RedisSessionConfig{RedisConnConfig: RedisConnConfig{Mode: "standalone"}, Prefix: "sf_s", CacheTTL: time.Minute},
			OnUnavailable: "refuse",
			OnInvalid:     "close",
		},
		ClientStorage: ClientStorageConfig{Driver: "memory", TTL: 900 * time.Second, CheckInterval: time.Second, Prefix: "wsgate:", Redis: RedisConnConfig{Mode: "standalone"}},
		Transport:     TransportConfig{Mode: transport.DefaultMode},
		Keepalive:     KeepaliveConfig{Ping: false, Interval: 30 * time.Second},
		Push:          PushConfig{Redis: RedisConnConfig{Mode: "standalone"}},
		Cluster:       ClusterConfig{Fanout: "none", Prefix: "wsgate:", QueueSize: 4096, Redis: RedisConnConfig{Mode: "standalone"}},
		Events: EventsConfig{
			Timeout: 2 * time.Second, Connect: true, Disconnect: true, OnConnectError: "accept",
			QueueSize: 10000, Workers: 4,
		},
		Limits: LimitsConfig{
			HandshakeTimeout:             10 * time.Second,
			MaxHeaderBytes:               16 << 10,
			MaxPendingRequests:           8192,
			MaxHandshakes:                1024,
			MaxConnections:               100000,
			MaxMessageSize:               64 << 10,
			MaxJSONDepth:                 wamp.DefaultMaxJSONDepth,
			MaxURILength:                 wamp.DefaultMaxURILength,
			MaxPrefixes:                  wamp.DefaultMaxPrefixes,
			MaxSubscriptions:             wamp.DefaultMaxSubscriptions,
			OutboundQueueBytes:           1 << 20,
			WriteTimeout:                 10 * time.Second,
			IdleTimeout:                  5 * time.Minute,
			CallTimeout:                  10 * time.Second,
			MaxPendingCallsPerConnection: 64,
			MaxPendingCalls:              10000,
			DrainTimeout:                 20 * time.Second,
		},
		Log: LogConfig{Level: "info", Format: "text"},
	}
}

// ConfigError is a configuration value that cannot be used. It names the key
// (its YAML path), the offending value and where it came from, so that an
// operator can fix it without reading code.
type ConfigError struct {
	Key    string // YAML path, e.g. "session.files.gc_maxlifetime"
	Value  string // the bad value as written, or "" when the key is unknown
	Source string // "line 12" of the file, or the environment variable
	Reason string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	b.WriteString(e.Key)
	if e.Value != "" {
		fmt.Fprintf(&b, ": %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Source != "" {
		fmt.Fprintf(&b, " (%s)", e.Source)
	}
	return b.String()
}

var (
	cookieNameRe = regexp.MustCompile(`^[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+$`)
	firewallRe   = regexp.MustCompile(`^[A-Za-z0-9_\-.]+$`)
)

// Validate checks values that are well-typed but impossible. It returns the
// first problem found as a *ConfigError.
func (c *Config) Validate() error {
	bad := func(key, value, reason string) error {
		return &ConfigError{Key: key, Value: value, Reason: reason}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen", c.Listen, "not a host:port address")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return bad("metrics.listen", c.Metrics.Listen, "not a host:port address")
		}
	}
	if c.API.Listen != "" {
		if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
			return bad("api.listen", c.API.Listen, "not a host:port address")
		}
		if c.API.Token == "" && c.API.TokenEnv == "" {
			return bad("api.token", "", "must be set (or api.token_env) when api.listen is")
		}
		if c.API.Token != "" && len(c.API.Token) < 16 {
			return bad("api.token", "", "must be at least 16 bytes") // the value is a secret: not echoed
		}
	}
	if c.Push.RedisChannel != "" {
		if err := c.Push.Redis.validate("push.redis"); err != nil {
			return err
		}
	}
	for _, o := range c.Origins.Allowed {
		if _, err := parseOriginPattern(o); err != nil {
			return bad("origins.allowed", o, err.Error())
		}
	}
	s := &c.Session
	if !cookieNameRe.MatchString(s.Cookie) {
		return bad("session.cookie", s.Cookie, "not a valid cookie name")
	}
	switch s.Store {
	case StoreFiles:
		if s.Files.Path == "" {
			return bad("session.files.path", "", "must not be empty with store files")
		}
	case StorePDOMySQL, StorePDOPgSQL:
		if s.PDO.DSN == "" {
			return bad("session.pdo.dsn", "", "must be set with store "+s.Store)
		}
	case StoreRedis:
		if err := s.Redis.RedisConnConfig.validate("session.redis"); err != nil {
			return err
		}
	default:
		return bad("session.store", s.Store, "must be one of files, pdo_mysql, pdo_pgsql, redis")
	}
	switch s.OnUnavailable {
	case "refuse", "anonymous":
	default:
		return bad("session.on_unavailable", s.OnUnavailable, "must be refuse or anonymous")
	}
	switch s.OnInvalid {
	case "close", "downgrade":
	default:
		return bad("session.on_invalid", s.OnInvalid, "must be close or downgrade")
	}
	if s.RevalidateInterval < 0 || s.RevalidateInterval > 0 && s.RevalidateInterval < time.Second {
		return bad("session.revalidate_interval", s.RevalidateInterval.String(), "must be 0 (off) or at least 1s")
	}
	if s.MaxConcurrent < 0 || s.MaxConcurrent > 1<<20 {
		return bad("session.max_concurrent", fmt.Sprint(s.MaxConcurrent), "must be between 0 and 1048576")
	}
	switch s.SerializeHandler {
	case "php", "php_binary", "php_serialize", "igbinary", "auto":
	default:
		return bad("session.serialize_handler", s.SerializeHandler, "must be one of php, php_binary, php_serialize, igbinary, auto")
	}
	if len(s.Firewalls) == 0 {
		return bad("session.firewalls", "", "must name at least one firewall")
	}
	for _, f := range s.Firewalls {
		if !firewallRe.MatchString(f) {
			return bad("session.firewalls", f, "not a firewall name")
		}
	}
	if s.Files.GCMaxLifetime < 0 {
		return bad("session.files.gc_maxlifetime", s.Files.GCMaxLifetime.String(), "must not be negative")
	}
	if s.PDO.MaxOpenConns < 1 || s.PDO.MaxOpenConns > 1024 {
		return bad("session.pdo.max_open_conns", fmt.Sprint(s.PDO.MaxOpenConns), "must be between 1 and 1024")
	}
	switch c.ClientStorage.Driver {
	case "memory":
	case "redis":
		if err := c.ClientStorage.Redis.validate("client_storage.redis"); err != nil {
			return err
		}
	default:
		return bad("client_storage.driver", c.ClientStorage.Driver, "must be memory or redis")
	}
	switch c.Cluster.Fanout {
	case "none":
	case "redis":
		if c.ClientStorage.Driver != "redis" {
			return bad("cluster.fanout", c.Cluster.Fanout, "needs client_storage.driver redis, so that replicas see each other's clients")
		}
		if len(c.Cluster.Redis.Addrs) > 0 {
			if err := c.Cluster.Redis.validate("cluster.redis"); err != nil {
				return err
			}
		}
		if c.Cluster.Prefix == "" {
			return bad("cluster.prefix", "", "must not be empty with fanout redis")
		}
	default:
		return bad("cluster.fanout", c.Cluster.Fanout, "must be none or redis")
	}
	if c.Cluster.QueueSize < 1 || c.Cluster.QueueSize > 1<<22 {
		return bad("cluster.queue_size", fmt.Sprint(c.Cluster.QueueSize), "must be between 1 and 4194304")
	}
	if e := c.Events; e.URL != "" {
		if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("events.url", e.URL, "must be an http or https URL")
		}
		if e.Secret == "" && e.SecretEnv == "" {
			return bad("events.secret", "", "set events.secret or events.secret_env")
		}
		switch e.OnConnectError {
		case "accept", "reject":
		default:
			return bad("events.on_connect_error", e.OnConnectError, "must be accept or reject")
		}
		if e.QueueSize < 1 || e.QueueSize > 1<<22 {
			return bad("events.queue_size", fmt.Sprint(e.QueueSize), "must be between 1 and 4194304")
		}
		if e.Workers < 1 || e.Workers > 1024 {
			return bad("events.workers", fmt.Sprint(e.Workers), "must be between 1 and 1024")
		}
		if e.Timeout <= 0 {
			return bad("events.timeout", e.Timeout.String(), "must be positive")
		}
	}
	durations := []struct {
		key string
		d   time.Duration
	}{
		{"session.lookup_timeout", s.LookupTimeout},
		{"client_storage.ttl", c.ClientStorage.TTL},
		{"client_storage.check_interval", c.ClientStorage.CheckInterval},
		{"limits.handshake_timeout", c.Limits.HandshakeTimeout},
		{"limits.write_timeout", c.Limits.WriteTimeout},
		{"limits.idle_timeout", c.Limits.IdleTimeout},
		{"limits.call_timeout", c.Limits.CallTimeout},
		{"limits.drain_timeout", c.Limits.DrainTimeout},
		{"keepalive.interval", c.Keepalive.Interval},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return bad(d.key, d.d.String(), "must be positive")
		}
	}
	ints := []struct {
		key      string
		v        int
		min, max int
	}{
		{"limits.max_handshakes", c.Limits.MaxHandshakes, 1, 1 << 20},
		{"limits.max_pending_requests", c.Limits.MaxPendingRequests, 1, 1 << 22},
		{"limits.max_json_depth", c.Limits.MaxJSONDepth, 2, 10000},
		{"limits.max_uri_length", c.Limits.MaxURILength, 16, 1 << 16},
		{"limits.max_prefixes", c.Limits.MaxPrefixes, 1, 1 << 16},
		{"limits.max_subscriptions", c.Limits.MaxSubscriptions, 1, 1 << 20},
		{"limits.max_header_bytes", c.Limits.MaxHeaderBytes, 1024, 1 << 20},
		{"limits.max_connections", c.Limits.MaxConnections, 1, 1 << 24},
		{"limits.max_message_size", c.Limits.MaxMessageSize, 64, 64 << 20},
		{"limits.outbound_queue_bytes", c.Limits.OutboundQueueBytes, 1024, 1 << 30},
		{"limits.max_connections_per_user", c.Limits.MaxConnectionsPerUser, 0, 1 << 20},
		{"limits.accept_rate_per_ip", c.Limits.AcceptRatePerIP, 0, 1 << 20},
		{"limits.max_pending_calls_per_connection", c.Limits.MaxPendingCallsPerConnection, 1, 1 << 16},
		{"limits.max_pending_calls", c.Limits.MaxPendingCalls, 1, 1 << 24},
	}
	for _, i := range ints {
		if i.v < i.min || i.v > i.max {
			return bad(i.key, fmt.Sprint(i.v), fmt.Sprintf("must be between %d and %d", i.min, i.max))
		}
	}
	switch c.Transport.Mode {
	case ModeGoroutine:
	case ModeEpoll:
		if !transport.EpollSupported {
			return bad("transport.mode", c.Transport.Mode, "epoll needs Linux; use goroutine")
		}
	default:
		return bad("transport.mode", c.Transport.Mode, "must be epoll or goroutine")
	}
	if c.Transport.Workers < 0 || c.Transport.Workers > 65536 {
		return bad("transport.workers", fmt.Sprint(c.Transport.Workers), "must be between 0 and 65536")
	}
	if c.Transport.Writers < 0 || c.Transport.Writers > 4096 {
		return bad("transport.writers", fmt.Sprint(c.Transport.Writers), "must be between 0 and 4096")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", c.Log.Level, "must be one of debug, info, warn, error")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", c.Log.Format, "must be text or json")
	}
	return nil
}

func (r *RedisConnConfig) validate(key string) error {
	if len(r.Addrs) == 0 {
		return &ConfigError{Key: key + ".addrs", Reason: "must list at least one host:port"}
	}
	for _, a := range r.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return &ConfigError{Key: key + ".addrs", Value: a, Reason: "not a host:port address"}
		}
	}
	switch r.Mode {
	case "standalone", "cluster":
	case "sentinel":
		if r.MasterName == "" {
			return &ConfigError{Key: key + ".master_name", Reason: "must be set with mode sentinel"}
		}
	default:
		return &ConfigError{Key: key + ".mode", Value: r.Mode, Reason: "must be standalone, sentinel or cluster"}
	}
	if r.DB < 0 || r.DB > 15 || r.DB != 0 && r.Mode == "cluster" {
		return &ConfigError{Key: key + ".db", Value: fmt.Sprint(r.DB), Reason: "must be 0 to 15, and 0 for a cluster"}
	}
	return nil
}
