package config

import (
	_ "embed"
	"time"

	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/wamp"
)

// DefaultYAML is the configuration `wsgate serve` runs with when no
// --config is given: PHP `files` sessions in Debian's default directory,
// in-memory client storage and no routes. It doubles as the commented
// sample shipped to operators (the Dockerfile copies default.yaml).
//
//go:embed default.yaml
var DefaultYAML []byte

// Default is the configuration before any file or environment is
// applied.
func Default() Config {
	return Config{
		Listen:         "127.0.0.1:8080",
		AllowAnonymous: true,
		Session: SessionConfig{
			Cookie:           "PHPSESSID",
			Store:            StoreFiles,
			SerializeHandler: "php",
			Firewalls:        []string{"main"},
			LookupTimeout:    2 * time.Second,
			Watch:            true,
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
			Memcached:     MemcachedSessionConfig{Prefix: "sf2s"},
			OnUnavailable: "refuse",
			OnInvalid:     "close",
		},
		ClientStorage: ClientStorageConfig{Driver: "memory", TTL: 900 * time.Second, CheckInterval: time.Second, Prefix: "wsgate:", Redis: RedisConnConfig{Mode: "standalone"}},
		Transport:     TransportConfig{Mode: transport.DefaultMode, ReleaseMemory: true},
		Keepalive:     KeepaliveConfig{Ping: false, Interval: 30 * time.Second},
		Push:          PushConfig{Redis: RedisConnConfig{Mode: "standalone"}},
		Cluster:       ClusterConfig{Fanout: "none", Prefix: "wsgate:", QueueSize: 4096, StreamRetention: 5 * time.Minute, StreamMaxLen: 100000, Redis: RedisConnConfig{Mode: "standalone"}},
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
			MaxPatterns:                  wamp.DefaultMaxPatterns,
			OutboundQueueBytes:           1 << 20,
			WriteTimeout:                 10 * time.Second,
			IdleTimeout:                  5 * time.Minute,
			CallTimeout:                  10 * time.Second,
			MaxPendingCallsPerConnection: 64,
			MaxPendingCalls:              10000,
			DrainTimeout:                 20 * time.Second,
		},
		Log: LogConfig{Level: "info", Format: "text"},
		WAMP: WAMPConfig{
			RetainedMaxTopics: wamp.DefaultRetainedMaxTopics,
			RetainedMaxBytes:  wamp.DefaultRetainedMaxBytes,
			RetainedTTL:       24 * time.Hour,
		},
	}
}
