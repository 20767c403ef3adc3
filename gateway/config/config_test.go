package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedDefaultIsValid(t *testing.T) {
	cfg, err := Parse(DefaultYAML, "embedded", nil)
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if cfg.Session.Cookie != def.Session.Cookie || cfg.Session.Store != StoreFiles ||
		cfg.Session.Files.Path != "/var/lib/php/sessions" || cfg.Session.Files.GCMaxLifetime != 1440*time.Second {
		t.Fatalf("embedded default disagrees with DefaultConfig: %+v", cfg.Session)
	}
	// The embedded default serves the built-in handlers only (plugins
	// are not built by default, so routing to theirs would fail to
	// start): public/{channel} relays, user/{username} is a user's own
	// channel. A configuration file starts from Default(), which has no
	// routes, so existing files do not gain these topics.
	want := map[string][2]string{
		"public": {"public/{channel}", "wsgate.relay"},
		"user":   {"user/{username}", "wsgate.user"},
	}
	if len(cfg.Routes.RPC) != 0 || len(cfg.Routes.Topics) != len(want) || len(cfg.Plugins) != 0 {
		t.Fatalf("embedded default routes %+v plugins %v: want the two built-in topic routes", cfg.Routes, cfg.Plugins)
	}
	for name, pw := range want {
		if r := cfg.Routes.Topics[name]; r.Pattern != pw[0] || r.Handler != pw[1] || len(r.Roles) != 0 || r.Anonymous != nil {
			t.Errorf("embedded default route %s = %+v, want pattern %s handler %s, no access rule", name, r, pw[0], pw[1])
		}
	}
	if len(def.Routes.Topics)+len(def.Routes.RPC) != 0 {
		t.Errorf("Default() routes %+v: want none, so that a configuration file serves only its own", def.Routes)
	}
	c, d := cfg.Cluster, def.Cluster
	if c.Fanout != d.Fanout || c.Prefix != d.Prefix || c.QueueSize != d.QueueSize || c.Redis.Mode != d.Redis.Mode ||
		cfg.Events.Timeout != def.Events.Timeout || cfg.Events.Connect != def.Events.Connect ||
		cfg.Events.QueueSize != def.Events.QueueSize || cfg.Events.OnConnectError != def.Events.OnConnectError {
		t.Fatalf("embedded default cluster/events disagree with DefaultConfig: %+v %+v", cfg.Cluster, cfg.Events)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		env   []string
		check func(t *testing.T, c Config)
	}{
		{"empty file keeps defaults", "", nil, func(t *testing.T, c Config) {
			if c.Session.Cookie != "PHPSESSID" || !c.AllowAnonymous {
				t.Errorf("%+v", c.Session)
			}
		}},
		{"null value keeps default", "session:\n  cookie:\n", nil, func(t *testing.T, c Config) {
			if c.Session.Cookie != "PHPSESSID" {
				t.Errorf("cookie %q", c.Session.Cookie)
			}
		}},
		{"duration as seconds and as string", "client_storage: {ttl: 60}\nlimits: {idle_timeout: 90s}\n", nil, func(t *testing.T, c Config) {
			if c.ClientStorage.TTL != time.Minute || c.Limits.IdleTimeout != 90*time.Second {
				t.Errorf("ttl %v idle %v", c.ClientStorage.TTL, c.Limits.IdleTimeout)
			}
		}},
		{"security.yaml without firewalls: the file's", "session: {symfony_security_yaml: /app/security.yaml}\n", nil, func(t *testing.T, c Config) {
			if c.Session.SymfonySecurityYAML != "/app/security.yaml" || c.Session.Firewalls != nil {
				t.Errorf("yaml %q firewalls %q", c.Session.SymfonySecurityYAML, c.Session.Firewalls)
			}
		}},
		{"security.yaml from the environment, firewalls empty", "session: {firewalls: []}\n", []string{"WSGATE_SESSION_SYMFONY_SECURITY_YAML=/app/s.yaml"}, func(t *testing.T, c Config) {
			if c.Session.SymfonySecurityYAML != "/app/s.yaml" || len(c.Session.Firewalls) != 0 {
				t.Errorf("yaml %q firewalls %q", c.Session.SymfonySecurityYAML, c.Session.Firewalls)
			}
		}},
		{"security.yaml with explicit firewalls: those", "session: {symfony_security_yaml: /app/s.yaml, firewalls: [main]}\n", nil, func(t *testing.T, c Config) {
			if strings.Join(c.Session.Firewalls, "|") != "main" {
				t.Errorf("firewalls %q", c.Session.Firewalls)
			}
		}},
		{"env overrides file", "session: {cookie: A}\n", []string{"WSGATE_SESSION_COOKIE=B", "OTHER=1"}, func(t *testing.T, c Config) {
			if c.Session.Cookie != "B" {
				t.Errorf("cookie %q", c.Session.Cookie)
			}
		}},
		{"env list comma separated", "", []string{"WSGATE_ORIGINS_ALLOWED=https://a.example.com, *.b.example.com"}, func(t *testing.T, c Config) {
			if strings.Join(c.Origins.Allowed, "|") != "https://a.example.com|*.b.example.com" {
				t.Errorf("%q", c.Origins.Allowed)
			}
		}},
		{"env list yaml", "", []string{"WSGATE_SESSION_FIREWALLS=[main, admin]"}, func(t *testing.T, c Config) {
			if strings.Join(c.Session.Firewalls, "|") != "main|admin" {
				t.Errorf("%q", c.Session.Firewalls)
			}
		}},
		{"env bool and int", "", []string{"WSGATE_ALLOW_ANONYMOUS=false", "WSGATE_LIMITS_MAX_CONNECTIONS=500"}, func(t *testing.T, c Config) {
			if c.AllowAnonymous || c.Limits.MaxConnections != 500 {
				t.Errorf("anon %v max %d", c.AllowAnonymous, c.Limits.MaxConnections)
			}
		}},
		{"env string stays literal", "", []string{"WSGATE_SESSION_PDO_DSN=yes"}, func(t *testing.T, c Config) {
			if c.Session.PDO.DSN != "yes" {
				t.Errorf("dsn %q", c.Session.PDO.DSN)
			}
		}},
		{"env routes as JSON", "", []string{`WSGATE_ROUTES={"rpc":{"r":{"pattern":"x/{method}","handler":"h"}}}`}, func(t *testing.T, c Config) {
			if c.Routes.RPC["r"].Pattern != "x/{method}" || c.Routes.RPC["r"].Handler != "h" {
				t.Errorf("%+v", c.Routes)
			}
		}},
		{"env nested key into missing section", "listen: \"127.0.0.1:1\"\n", []string{"WSGATE_SESSION_FILES_PATH=/srv/sess"}, func(t *testing.T, c Config) {
			if c.Session.Files.Path != "/srv/sess" || c.Listen != "127.0.0.1:1" {
				t.Errorf("%+v", c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "test.yaml", tc.env)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		yaml     string
		env      []string
		key, val string
		inMsg    string
	}{
		{"unknown top key", "listn: x\n", nil, "listn", "", "line 1"},
		{"unknown nested key", "session:\n  files:\n    pth: /x\n", nil, "session.files.pth", "", "line 3"},
		{"duplicate key", "listen: a\nlisten: b\n", nil, "listen", "", "twice"},
		{"string where mapping", "session: files\n", nil, "session", "files", "mapping"},
		{"mapping where string", "listen: {a: b}\n", nil, "listen", "", "single value"},
		{"list where string", "session:\n  cookie: [a]\n", nil, "session.cookie", "", "single value"},
		{"bad bool", "allow_anonymous: maybe\n", nil, "allow_anonymous", "maybe", "boolean"},
		{"quoted bool", "allow_anonymous: \"true\"\n", nil, "allow_anonymous", "true", "boolean"},
		{"bad int", "limits: {max_connections: many}\n", nil, "limits.max_connections", "many", "integer"},
		{"huge int", "limits: {max_connections: 99999999999999999999999}\n", nil, "limits.max_connections", "99999999999999999999999", "integer"},
		{"bad duration", "limits: {write_timeout: 5 parsecs}\n", nil, "limits.write_timeout", "5 parsecs", "duration"},
		{"negative duration", "limits: {write_timeout: -5s}\n", nil, "limits.write_timeout", "-5s", "positive"},
		{"zero ints", "limits: {max_handshakes: 0}\n", nil, "limits.max_handshakes", "0", "between"},
		{"bad store", "session: {store: mongo}\n", nil, "session.store", "mongo", "files, pdo_mysql"},
		{"pdo without dsn", "session: {store: pdo_mysql}\n", nil, "session.pdo.dsn", "", "must be set"},
		{"bad cookie name", "session: {cookie: \"a b\"}\n", nil, "session.cookie", "a b", "cookie name"},
		{"files levels not a number", "session: {files: {path: \"x;/tmp/s\"}}\n", nil, "session.files.path", "x;/tmp/s", "save_path"},
		{"cookie name PHP renames", "session: {cookie: \"my.sess\"}\n", nil, "session.cookie", "my.sess", "PHP renames"},
		{"all-digit cookie name", "session: {cookie: \"123\"}\n", nil, "session.cookie", "123", "all-digit"},
		{"no firewall", "session: {firewalls: []}\n", nil, "session.firewalls", "", "at least one"},
		{"bad listen", "listen: nowhere\n", nil, "listen", "nowhere", "host:port"},
		{"bad origin", "origins: {allowed: [\"ftp://x\"]}\n", nil, "origins.allowed", "ftp://x", "scheme"},
		{"alias", "listen: &x \"127.0.0.1:1\"\n", nil, "listen", "", "anchors"},
		{"bad log level", "log: {level: loud}\n", nil, "log.level", "loud", "debug"},
		{"env unknown", "", []string{"WSGATE_LISTN=x"}, "WSGATE_LISTN", "", "unknown variable"},
		{"env unknown beside a named secret", "upstreams: {app: {url: \"http://app/\", secret_env: WSGATE_UPSTREAM_SECRET}}\n", []string{"WSGATE_UPSTREAM_SECRET=0123456789abcdef", "WSGATE_UPSTREAM_SECRT=x"}, "WSGATE_UPSTREAM_SECRT", "", "no *_env key names it"},
		{"env bad bool", "", []string{"WSGATE_ALLOW_ANONYMOUS=perhaps"}, "allow_anonymous", "perhaps", "from WSGATE_ALLOW_ANONYMOUS"},
		{"env bad yaml", "", []string{"WSGATE_ROUTES={rpc: [}"}, "routes", "{rpc: [}", "YAML"},
		{"env routes wrong shape", "", []string{"WSGATE_ROUTES=[1,2]"}, "routes", "", "mapping"},
		{"fanout without shared storage", "cluster: {fanout: redis}\n", nil, "cluster.fanout", "redis", "client_storage.driver redis"},
		{"bad fanout", "cluster: {fanout: nats}\n", nil, "cluster.fanout", "nats", "none, redis or redis_streams"},
		{"streams retention too long", "client_storage: {driver: redis, redis: {addrs: [\"h:1\"]}}\ncluster: {fanout: redis_streams, stream_retention: 48h}\n", nil, "cluster.stream_retention", "48h0m0s", "between"},
		{"streams max len too small", "client_storage: {driver: redis, redis: {addrs: [\"h:1\"]}}\ncluster: {fanout: redis_streams, stream_max_len: 10}\n", nil, "cluster.stream_max_len", "10", "between"},
		{"streams without shared storage", "cluster: {fanout: redis_streams}\n", nil, "cluster.fanout", "redis_streams", "client_storage.driver redis"},
		{"bad fanout redis", "client_storage: {driver: redis, redis: {addrs: [\"127.0.0.1:6379\"]}}\ncluster: {fanout: redis, redis: {addrs: [nowhere]}}\n", nil, "cluster.redis.addrs", "nowhere", "host:port"},
		{"fanout queue", "cluster: {queue_size: 0}\n", nil, "cluster.queue_size", "0", "between"},
		{"events bad url", "events: {url: \"ftp://app\", secret: 0123456789abcdef}\n", nil, "events.url", "ftp://app", "http or https"},
		{"events no secret", "events: {url: \"http://app/\"}\n", nil, "events.secret", "", "secret_env"},
		{"events on error", "events: {url: \"http://app/\", secret: 0123456789abcdef, on_connect_error: maybe}\n", nil, "events.on_connect_error", "maybe", "accept or reject"},
		// One case per section check beyond the above, so that each
		// section's Validate is held to its key, value and reason.
		{"bad metrics listen", "metrics: {listen: nowhere}\n", nil, "metrics.listen", "nowhere", "host:port"},
		{"bad api listen", "api: {listen: nowhere, token: 0123456789abcdef}\n", nil, "api.listen", "nowhere", "host:port"},
		{"api without token", "api: {listen: \"127.0.0.1:1\"}\n", nil, "api.token", "", "api.token_env"},
		{"api short token not echoed", "api: {listen: \"127.0.0.1:1\", token: short}\n", nil, "api.token", "", "at least 16 bytes"},
		{"push without redis", "push: {redis_channel: c}\n", nil, "push.redis.addrs", "", "at least one"},
		{"redis bad mode", "push: {redis_channel: c, redis: {addrs: [\"h:1\"], mode: ring}}\n", nil, "push.redis.mode", "ring", "must be standalone, sentinel or cluster"},
		{"sentinel without master", "session: {store: redis, redis: {addrs: [\"h:1\"], mode: sentinel}}\n", nil, "session.redis.master_name", "", "mode sentinel"},
		{"redis db on cluster", "client_storage: {driver: redis, redis: {addrs: [\"h:1\"], mode: cluster, db: 1}}\n", nil, "client_storage.redis.db", "1", "0 for a cluster"},
		{"redis db too big", "session: {store: redis, redis: {addrs: [\"h:1\"], db: 16}}\n", nil, "session.redis.db", "16", "0 to 15"},
		{"memcached without addrs", "session: {store: memcached}\n", nil, "session.memcached.addrs", "[]", "exactly one"},
		{"memcached two addrs", "session: {store: memcached, memcached: {addrs: [\"a:1\", \"b:1\"]}}\n", nil, "session.memcached.addrs", "[a:1 b:1]", "exactly one"},
		{"memcached bad addr", "session: {store: memcached, memcached: {addrs: [nowhere]}}\n", nil, "session.memcached.addrs", "nowhere", "host:port"},
		{"memcached bad prefix", "session: {store: memcached, memcached: {addrs: [\"a:1\"], prefix: \"a b\"}}\n", nil, "session.memcached.prefix", "a b", "without spaces"},
		{"files without path", "session: {files: {path: \"\"}}\n", nil, "session.files.path", "", "store files"},
		{"bad on_unavailable", "session: {on_unavailable: wait}\n", nil, "session.on_unavailable", "wait", "must be refuse or anonymous"},
		{"bad on_invalid", "session: {on_invalid: keep}\n", nil, "session.on_invalid", "keep", "must be close or downgrade"},
		{"revalidate too often", "session: {revalidate_interval: 500ms}\n", nil, "session.revalidate_interval", "500ms", "at least 1s"},
		{"session max_concurrent", "session: {max_concurrent: -1}\n", nil, "session.max_concurrent", "-1", "between 0 and 1048576"},
		{"bad serialize handler", "session: {serialize_handler: json}\n", nil, "session.serialize_handler", "json", "must be one of php, php_binary, php_serialize, igbinary, auto"},
		{"bad firewall", "session: {firewalls: [\"a b\"]}\n", nil, "session.firewalls", "a b", "not a firewall name"},
		{"negative gc_maxlifetime", "session: {files: {gc_maxlifetime: -1}}\n", nil, "session.files.gc_maxlifetime", "-1s", "must not be negative"},
		{"pdo pool", "session: {pdo: {max_open_conns: 1025}}\n", nil, "session.pdo.max_open_conns", "1025", "between 1 and 1024"},
		{"zero lookup timeout", "session: {lookup_timeout: 0s}\n", nil, "session.lookup_timeout", "0s", "must be positive"},
		{"bad client storage", "client_storage: {driver: disk}\n", nil, "client_storage.driver", "disk", "must be memory or redis"},
		{"client storage ttl", "client_storage: {ttl: 0}\n", nil, "client_storage.ttl", "0s", "must be positive"},
		{"fanout without prefix", "client_storage: {driver: redis, redis: {addrs: [\"h:1\"]}}\ncluster: {fanout: redis, prefix: \"\"}\n", nil, "cluster.prefix", "", "Redis fan-out"},
		{"events queue", "events: {url: \"http://app/\", secret: 0123456789abcdef, queue_size: 4194305}\n", nil, "events.queue_size", "4194305", "between 1 and 4194304"},
		{"events workers", "events: {url: \"http://app/\", secret: 0123456789abcdef, workers: 0}\n", nil, "events.workers", "0", "between 1 and 1024"},
		{"events timeout", "events: {url: \"http://app/\", secret: 0123456789abcdef, timeout: -1s}\n", nil, "events.timeout", "-1s", "must be positive"},
		{"limits int above", "limits: {max_json_depth: 10001}\n", nil, "limits.max_json_depth", "10001", "between 2 and 10000"},
		{"keepalive interval", "keepalive: {interval: 0s}\n", nil, "keepalive.interval", "0s", "must be positive"},
		{"bad transport mode", "transport: {mode: kqueue}\n", nil, "transport.mode", "kqueue", "must be epoll or goroutine"},
		{"transport workers", "transport: {workers: 65537}\n", nil, "transport.workers", "65537", "between 0 and 65536"},
		{"transport writers", "transport: {writers: -1}\n", nil, "transport.writers", "-1", "between 0 and 4096"},
		{"bad log format", "log: {format: xml}\n", nil, "log.format", "xml", "must be text or json"},
		{"bad meta api", "wamp: {meta_api: everyone}\n", nil, "wamp.meta_api", "everyone", "must be none, authenticated or role:<ROLE>"},
		{"meta api empty role", "wamp: {meta_api: \"role:\"}\n", nil, "wamp.meta_api", "role:", "must be none, authenticated or role:<ROLE>"},
	} {
		t.Run(tc.name, func(t *testing.T) { expectConfigError(t, tc.yaml, tc.env, tc.key, tc.val, tc.inMsg) })
	}
}

// expectConfigError parses yaml with env and checks that it fails with a
// *Error naming key and val whose text holds inMsg; it returns the error.
func expectConfigError(t *testing.T, yaml string, env []string, key, val, inMsg string) error {
	t.Helper()
	_, err := Parse([]byte(yaml), "test.yaml", env)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *Error", err)
	}
	if ce.Key != key || ce.Value != val {
		t.Errorf("key %q value %q, want key %q value %q (%v)", ce.Key, ce.Value, key, val, err)
	}
	if !strings.Contains(err.Error(), inMsg) {
		t.Errorf("%q lacks %q", err, inMsg)
	}
	return err
}

// A variable with our prefix is not a typo when a *_env key names it:
// WSGATE_UPSTREAM_SECRET is what the PHP example and the docs use.
func TestParseConfigSecretVariablesWithPrefix(t *testing.T) {
	yaml := `
api: {listen: "127.0.0.1:9091", token_env: WSGATE_PUSH_TOKEN}
events: {url: "http://app/events", secret_env: WSGATE_EVENTS_KEY}
upstreams: {app: {url: "http://app/", secret_env: WSGATE_UPSTREAM_SECRET}}
`
	env := []string{"WSGATE_PUSH_TOKEN=a", "WSGATE_EVENTS_KEY=b", "WSGATE_UPSTREAM_SECRET=c"}
	cfg, err := Parse([]byte(yaml), "test.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstreams["app"].SecretEnv != "WSGATE_UPSTREAM_SECRET" || cfg.API.TokenEnv != "WSGATE_PUSH_TOKEN" || cfg.Events.SecretEnv != "WSGATE_EVENTS_KEY" {
		t.Fatalf("got %+v %+v %+v", cfg.Upstreams, cfg.API, cfg.Events)
	}
	// The same variables without the keys that name them are typos.
	if _, err := Parse(nil, "test.yaml", env); err == nil || !strings.Contains(err.Error(), "WSGATE_EVENTS_KEY") {
		t.Fatalf("got %v, want WSGATE_EVENTS_KEY refused", err)
	}
}

func TestParseConfigNotYAML(t *testing.T) {
	if _, err := Parse([]byte("a: [\n"), "x.yaml", nil); err == nil || !strings.Contains(err.Error(), "x.yaml") {
		t.Fatalf("got %v", err)
	}
	if _, err := Parse([]byte("a: 1\n---\nb: 2\n"), "x.yaml", nil); err == nil {
		t.Fatal("two documents accepted")
	}
}

// Every environment variable name must be unique, or one key would shadow
// another.
func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Keys() {
		if prev, dup := seen[k.Env]; dup {
			t.Errorf("%s and %s share %s", prev, k.Path, k.Env)
		}
		seen[k.Env] = k.Path
	}
}

// docs/configuration.md must list every key, so the reference cannot drift
// from the struct.
func TestConfigurationDocListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(doc), "`"+k.Path+"`") || !strings.Contains(string(doc), k.Env) {
			t.Errorf("docs/configuration.md lacks %s / %s", k.Path, k.Env)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(string(DefaultYAML), "")
	f.Add("session: {store: pdo_mysql, pdo: {dsn: x}}\n", "WSGATE_SESSION_COOKIE=A")
	f.Add("a: &x [1]\nb: *x\n", "")
	f.Add("routes: {rpc: {r: {pattern: 'a/{b}', requirements: {b: '\\d+'}}}}", "WSGATE_ROUTES={}")
	f.Add("limits: {max_connections: 0x10}", "WSGATE_LIMITS_IDLE_TIMEOUT=1")
	f.Fuzz(func(t *testing.T, yaml, env string) {
		cfg, err := Parse([]byte(yaml), "fuzz", strings.Split(env, "\n"))
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("accepted config fails validation: %v", verr)
			}
		}
	})
}

func TestRouteAccessRulesParse(t *testing.T) {
	c, err := Parse([]byte("routes:\n  topics:\n    t: {pattern: \"p/{x}\", handler: h, anonymous: false, roles: [ROLE_ADMIN]}\n    u: {pattern: \"u/{x}\", handler: h}\n"), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Routes.Topics["t"].Anonymous; a == nil || *a {
		t.Errorf("anonymous: %v", a)
	}
	if c.Routes.Topics["u"].Anonymous != nil {
		t.Error("anonymous set though not given")
	}
	if _, err := Parse([]byte("routes:\n  topics:\n    t: {anonymous: nope}\n"), "t.yaml", nil); err == nil || !strings.Contains(err.Error(), "routes.topics.t.anonymous") {
		t.Errorf("bad anonymous: %v", err)
	}
}
