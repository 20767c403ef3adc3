package config

import (
	"time"

	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
)

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
	// flags and wsgate version) whose Register adds handlers; a relative
	// path in a config file is taken from the file's directory, one from
	// WSGATE_PLUGINS from the working directory.
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
	// Store is "files", "pdo_mysql", "pdo_pgsql", "redis" or "memcached".
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
	// Empty with SymfonySecurityYAML: the firewall contexts of that file.
	Firewalls []string `yaml:"firewalls"`
	// SymfonySecurityYAML is the path of the app's config/packages/security.yaml,
	// read once at start (never written): its firewalls (and their
	// contexts) are the default of Firewalls, and each entity provider's
	// `property` says which property of its user class is the identifier,
	// so neither has to be guessed. "" reads nothing.
	SymfonySecurityYAML string `yaml:"symfony_security_yaml"`
	// LookupTimeout bounds one session read during a handshake.
	LookupTimeout time.Duration `yaml:"lookup_timeout"`
	// Files configures the PHP native files store.
	Files FilesConfig `yaml:"files"`
	// PDO configures Symfony's PdoSessionHandler table.
	PDO PDOConfig `yaml:"pdo"`
	// Redis configures the Redis session store.
	Redis RedisSessionConfig `yaml:"redis"`
	// Memcached configures the memcached session store.
	Memcached MemcachedSessionConfig `yaml:"memcached"`
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
	// Watch re-reads a connection's session the moment the store says it
	// changed, where the store can tell (Redis: CLIENT TRACKING
	// invalidations; files: inotify, Linux), so that a logout closes or
	// downgrades the connection at once. SQL stores cannot tell: use
	// RevalidateInterval there (as for Memcached).
	Watch bool `yaml:"watch"`
	// OnInvalid is what happens to a connection whose session expired, was
	// destroyed or now holds another user: "close" (close code 4001) or
	// "downgrade" (the client becomes anonymous; subscriptions its routes no
	// longer allow are dropped).
	OnInvalid string `yaml:"on_invalid"`
}

// RedisConnConfig is how to reach Redis.
type RedisConnConfig struct {
	// DSN is the connection as Symfony writes it (redis://[user:]pass@host:6379/0,
	// redis:?host[a:26379]&host[b:26379]&redis_sentinel=mymaster,
	// redis:?host[a:6379]&redis_cluster=1); Load turns it into the fields
	// below, which must then be left unset (see dsn.go).
	DSN string `yaml:"dsn"`
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
	// TLS connects with TLS (Symfony's rediss://), checking the server's
	// certificate against the system's roots.
	TLS bool `yaml:"tls"`
}

// Options are the storage package's connection options for r; the
// callers add what is theirs (key prefix, caching, timeouts).
func (r RedisConnConfig) Options() storage.RedisOptions {
	return storage.RedisOptions{Addrs: r.Addrs, Mode: r.Mode, MasterName: r.MasterName, Username: r.Username, Password: r.Password, DB: r.DB, TLS: r.TLS}
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

// MemcachedSessionConfig configures sessions in memcached.
type MemcachedSessionConfig struct {
	// Addrs is the memcached server's host:port: exactly one, since PHP's
	// client spreads keys over several servers by a hashing wsgate does not
	// reproduce.
	Addrs []string `yaml:"addrs"`
	// DSN is the app's own memcached DSN (memcached://host:port, as
	// Symfony's cache and session components take it), in place of
	// Addrs.
	DSN string `yaml:"dsn"`
	// Prefix is the key prefix: "sf2s" (Symfony's MemcachedSessionHandler)
	// or "memc.sess.key." (php-memcached's session.save_handler=memcached).
	Prefix string `yaml:"prefix"`
}

// FilesConfig configures PHP's native `files` session handler store.
type FilesConfig struct {
	// Path is session.save_path: a directory, or "N;/path" or
	// "N;MODE;/path" for PHP's N levels of one-character directories.
	Path string `yaml:"path"`
	// GCMaxLifetime is session.gc_maxlifetime: a file not modified for this
	// long is expired, as PHP's garbage collector judges it. 0 never expires.
	GCMaxLifetime time.Duration `yaml:"gc_maxlifetime"`
}

// PDOConfig configures Symfony's PdoSessionHandler table on MySQL/MariaDB
// or PostgreSQL.
type PDOConfig struct {
	// DSN is the database: a PDO DSN as PdoSessionHandler takes it
	// ("mysql:host=db;dbname=app", "pgsql:host=db;dbname=app"), a Doctrine
	// URL ("mysql://app:secret@db:3306/app?serverVersion=8.0"), or the Go
	// driver's own DSN ("app:secret@tcp(db:3306)/app", "postgres://…").
	// Load leaves the Go driver's DSN here (see dsn.go).
	DSN string `yaml:"dsn"`
	// DBUsername is PdoSessionHandler's db_username, for a PDO DSN.
	DBUsername string `yaml:"db_username"`
	// DBPassword is PdoSessionHandler's db_password, for a PDO DSN.
	DBPassword string `yaml:"db_password"`
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
	// ReleaseMemory returns the heap's free pages to the operating system
	// once a burst of new connections has ended (one forced collection
	// per burst): without it an idle gateway's RSS stays near twice what
	// its connections hold.
	ReleaseMemory bool `yaml:"release_memory"`
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
	// MaxPatterns bounds the distinct patterns of WAMP v2 pattern-based
	// subscriptions on this gateway (wamp.Limits.MaxPatterns); a new one
	// past it is refused (ERROR wsgate.error.too_many_patterns).
	MaxPatterns int `yaml:"max_patterns"`
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
	// MetaAPI enables the WAMP v2 session meta API (wamp.session.count,
	// .list, .get, wamp.subscription.count_subscribers), answered per
	// replica: "none" (default), "authenticated" or "role:<ROLE>" (see
	// wamp.NodeConfig.MetaAPI).
	MetaAPI string `yaml:"meta_api"`
	// RetainedMaxTopics bounds the topics with a retained event (WAMP v2
	// event retention), in memory or in Redis; past it the oldest
	// retained is dropped.
	RetainedMaxTopics int `yaml:"retained_max_topics"`
	// RetainedMaxBytes bounds the bytes of retained events kept in memory
	// (without a Redis fan-out); past it the oldest are dropped. An event
	// over 64 KiB is never retained.
	RetainedMaxBytes int `yaml:"retained_max_bytes"`
	// RetainedTTL is how long Redis keeps a retained event after its last
	// publish (with a Redis fan-out).
	RetainedTTL time.Duration `yaml:"retained_ttl"`
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

// ClusterConfig relays broadcasts and commands between replicas over
// Redis.
type ClusterConfig struct {
	// Fanout is "none" (each replica serves its own subscribers), "redis"
	// (a broadcast on any replica reaches every replica's subscribers over
	// Redis pub/sub; each replica listens only to topics it has
	// subscribers for; what a replica misses while cut off is lost, and
	// counted) or "redis_streams" (the same through one Redis Stream that
	// every replica reads: a replica cut off for less than
	// StreamRetention replays what it missed). Both need
	// client_storage.driver redis, so that user lookups see every
	// replica's clients too.
	Fanout string `yaml:"fanout"`
	// StreamRetention is how long the redis_streams fan-out keeps a
	// message for replicas that were cut off (trimmed by age on each
	// write).
	StreamRetention time.Duration `yaml:"stream_retention"`
	// StreamMaxLen caps the redis_streams fan-out's stream, whatever the
	// retention: under a burst, the oldest go first.
	StreamMaxLen int64 `yaml:"stream_max_len"`
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
	// StoreMemcached is Symfony's MemcachedSessionHandler or php-memcached's
	// own session handler.
	StoreMemcached = "memcached"
)
