package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/builtin"
	"github.com/wsgate/wsgate/wamp/handler"
)

// pluginRPC stands for a handler a plugin registered.
type pluginRPC struct{}

func (pluginRPC) Name() string                          { return "acme.rpc" }
func (pluginRPC) Methods() map[string]handler.RPCMethod { return nil }

// TestStartBlock: one record lists the listeners, the stores without
// their secrets, the plugins, the handlers by origin and the routes with
// their options.
func TestStartBlock(t *testing.T) {
	const yaml = `
session:
  store: pdo_pgsql
  pdo: {dsn: "pgsql:host=pg.local;port=5433;dbname=app", db_username: app, db_password: s3cretpw, table: sessions}
client_storage:
  driver: redis
  prefix: "gw:"
  redis: {addrs: ["redis.local:6379"], password: r3dispw, db: 2}
cluster: {fanout: redis, prefix: "gw-cluster:"}
api: {listen: "127.0.0.1:0", token_env: WSGATE_TEST_TOKEN}
plugins: [/opt/wsgate/acme.so]
upstreams:
  app: {url: "http://app.local/ws", secret: upstr3amsecret-long-enough}
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc, anonymous: false, roles: [ROLE_USER]}
    app_rpc: {pattern: "app/{method}", handler: upstream.app}
  topics:
    public: {pattern: "public/{channel}", handler: wsgate.relay, requirements: {channel: "[a-z]+"}}
`
	cfg, err := config.Parse([]byte(yaml), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := handler.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := reg.AddRPC(pluginRPC{}); err != nil {
		t.Fatal(err)
	}
	if err := addUpstreams(cfg.Upstreams, cfg.Routes, reg, func(string) string { return "" }, nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	logStart(log, cfg, reg, listenerAddrs{WS: "127.0.0.1:8080", Metrics: "127.0.0.1:9090"}, []string{"main"})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one record (no warning: this config serves), got %d:\n%s", len(lines), buf.String())
	}
	for _, secret := range []string{"s3cretpw", "r3dispw", "upstr3amsecret-long-enough"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("the start block leaks %q: %s", secret, buf.String())
		}
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want any
	}{
		{"msg", "wsgate serving"},
		{"listen.ws", "127.0.0.1:8080"},
		{"listen.metrics", "127.0.0.1:9090"},
		{"listen.api", "off"},
		{"session_store.driver", "pdo_pgsql"},
		{"session_store.location", "server pg.local:5433, database app, table sessions"},
		{"session_store.firewalls", []any{"main"}},
		{"client_storage.driver", "redis"},
		{"client_storage.location", `redis.local:6379 db 2, prefix "gw:"`},
		{"fanout.mode", "redis"},
		{"fanout.location", `redis.local:6379 db 2, prefix "gw-cluster:"`},
		{"push_channel", "off"},
		{"plugins", []any{"/opt/wsgate/acme.so"}},
		{"handlers.builtin", []any{"wsgate.push", "wsgate.relay", "wsgate.user"}},
		{"handlers.plugin", []any{"acme.rpc"}},
		{"handlers.upstream", []any{"upstream.app"}},
		{"routes.rpc", []any{
			"acme_rpc: sample/{method} → acme.rpc (anonymous: false; roles: ROLE_USER)",
			"app_rpc: app/{method} → upstream.app",
		}},
		{"routes.topic", []any{"public: public/{channel} → wsgate.relay (requirements: channel)"}},
	} {
		var v any = rec
		for _, k := range strings.Split(tc.path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if !reflect.DeepEqual(v, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.path, v, tc.want)
		}
	}

	// The text format keeps it one line too.
	buf.Reset()
	logStart(slog.New(slog.NewTextHandler(&buf, nil)), cfg, reg, listenerAddrs{WS: "127.0.0.1:8080"}, nil)
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), `routes.rpc="[acme_rpc: sample/{method} → acme.rpc`) {
		t.Errorf("text: %d lines: %s", n, buf.String())
	}
}

// TestServesNothing: the warning comes for a config with no routes, or
// with only wsgate.push topics and no way for the app to push; not
// otherwise.
func TestServesNothing(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no routes", "routes: {}\n", "no routes configured"},
		{"push only, no push source", "routes: {topics: {n: {pattern: \"n/{u}\", handler: wsgate.push}}}\n", "every route is a wsgate.push topic"},
		{"push only, with the API", "api: {listen: \"127.0.0.1:0\", token_env: T}\nroutes: {topics: {n: {pattern: \"n/{u}\", handler: wsgate.push}}}\n", ""},
		{"push only, with the Redis channel", "push: {redis_channel: c, redis: {addrs: [\"127.0.0.1:6379\"]}}\nroutes: {topics: {n: {pattern: \"n/{u}\", handler: wsgate.push}}}\n", ""},
		{"a relay topic", "routes: {topics: {p: {pattern: \"p/{c}\", handler: wsgate.relay}}}\n", ""},
		{"an empty file", "", "no routes configured"},
		{"the embedded default", string(config.DefaultYAML), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), "t.yaml", nil)
			if err != nil {
				t.Fatal(err)
			}
			got := servesNothing(cfg)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("servesNothing = %q, want %q", got, tc.want)
			}
			var buf bytes.Buffer
			logStart(slog.New(slog.NewTextHandler(&buf, nil)), cfg, nil, listenerAddrs{WS: "x"}, nil)
			if warned := strings.Contains(buf.String(), "level=WARN"); warned != (tc.want != "") {
				t.Errorf("warned %v: %s", warned, buf.String())
			}
		})
	}
}
