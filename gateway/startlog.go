package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/builtin"
	"github.com/wsgate/wsgate/wamp/handler"
)

// listenerAddrs are the addresses the gateway bound ("" when a listener is
// off).
type listenerAddrs struct {
	WS, Metrics, API string
}

// logStart writes the start block: one record ("wsgate serving") saying
// everything the configuration made of the gateway (listeners, session
// store, client storage, fan-out, plugins, handlers, routes), so that one
// log line answers "what does this replica serve, and from where?".
// Secrets (DSN passwords, tokens) are never part of it. It then warns
// about a configuration that can serve nothing (servesNothing).
func logStart(log *slog.Logger, cfg config.Config, reg *handler.Registry, addrs listenerAddrs, firewalls []string) {
	log.LogAttrs(context.Background(), slog.LevelInfo, "wsgate serving", startAttrs(cfg, reg, addrs, firewalls)...)
	if why := servesNothing(cfg); why != "" {
		log.Warn("this configuration serves nothing: " + why)
	}
}

// startAttrs are the start block's attributes, in the order a reader
// wants them.
func startAttrs(cfg config.Config, reg *handler.Registry, addrs listenerAddrs, firewalls []string) []slog.Attr {
	return []slog.Attr{
		slog.String("version", Version),
		slog.Group("listen",
			slog.String("ws", addrs.WS),
			slog.String("metrics", orOff(addrs.Metrics)),
			slog.String("api", orOff(addrs.API))),
		slog.Group("session_store",
			slog.String("driver", cfg.Session.Store),
			slog.String("location", sessionLocation(cfg.Session)),
			slog.Any("firewalls", firewalls)),
		slog.Group("client_storage",
			slog.String("driver", cfg.ClientStorage.Driver),
			slog.String("location", clientStorageLocation(cfg.ClientStorage))),
		slog.Group("fanout",
			slog.String("mode", cfg.Cluster.Fanout),
			slog.String("location", fanoutLocation(cfg))),
		slog.String("push_channel", pushLocation(cfg.Push)),
		slog.Any("plugins", orNone(cfg.Plugins)),
		slog.Group("handlers", handlerAttrs(reg)...),
		slog.Group("routes",
			slog.Any("rpc", routeLines(cfg.Routes.RPC)),
			slog.Any("topic", routeLines(cfg.Routes.Topics))),
	}
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

func orNone(s []string) []string {
	if len(s) == 0 {
		return []string{}
	}
	return s
}

// sessionLocation is where the session store reads, without secrets:
// the files directory (save_path), the PDO server, database and table,
// the Redis or memcached servers and key prefix.
func sessionLocation(c config.SessionConfig) string {
	switch c.Store {
	case config.StoreFiles:
		return c.Files.Path
	case config.StorePDOMySQL, config.StorePDOPgSQL:
		addr, db := c.PDO.Server(c.Store)
		return fmt.Sprintf("server %s, database %s, table %s", orDriverDefault(addr), orDriverDefault(db), c.PDO.Table)
	case config.StoreRedis:
		return fmt.Sprintf("%s db %d, prefix %q", strings.Join(c.Redis.Addrs, ","), c.Redis.DB, c.Redis.Prefix)
	case config.StoreMemcached:
		return fmt.Sprintf("%s, prefix %q", strings.Join(c.Memcached.Addrs, ","), c.Memcached.Prefix)
	}
	return ""
}

func orDriverDefault(s string) string {
	if s == "" {
		return "(driver default)"
	}
	return s
}

func redisLocation(r config.RedisConnConfig) string {
	return fmt.Sprintf("%s db %d", strings.Join(r.Addrs, ","), r.DB)
}

func clientStorageLocation(c config.ClientStorageConfig) string {
	if c.Driver != "redis" {
		return "this process"
	}
	return fmt.Sprintf("%s, prefix %q", redisLocation(c.Redis), c.Prefix)
}

func fanoutLocation(cfg config.Config) string {
	c := cfg.Cluster
	if c.Fanout == "" || c.Fanout == "none" {
		return "none: each replica serves its own subscribers"
	}
	r := c.Redis
	if len(r.Addrs) == 0 {
		r = cfg.ClientStorage.Redis
	}
	return fmt.Sprintf("%s, prefix %q", redisLocation(r), c.Prefix)
}

func pushLocation(p config.PushConfig) string {
	if p.RedisChannel == "" {
		return "off"
	}
	return fmt.Sprintf("%q on %s", p.RedisChannel, redisLocation(p.Redis))
}

// handlerAttrs lists the registered handlers by origin: built-in
// (wamp/builtin), upstream (upstreams:) and plugin (anything else; the
// registry only ever holds these three).
func handlerAttrs(reg *handler.Registry) []any {
	builtins := map[string]bool{}
	for _, t := range builtin.Topics() {
		builtins[t.Name()] = true
	}
	set := map[string]map[string]bool{"builtin": {}, "upstream": {}, "plugin": {}}
	if reg != nil {
		for _, name := range append(reg.RPCNames(), reg.TopicNames()...) {
			switch {
			case builtins[name]:
				set["builtin"][name] = true
			case strings.HasPrefix(name, upstreamHandlerPrefix):
				set["upstream"][name] = true
			default:
				set["plugin"][name] = true
			}
		}
	}
	var out []any
	for _, origin := range []string{"builtin", "plugin", "upstream"} {
		out = append(out, slog.Any(origin, orNone(slices.Sorted(maps.Keys(set[origin])))))
	}
	return out
}

// routeLines are the routes in name order, one string each:
// "name: pattern → handler" and the access and routing options given.
func routeLines(routes map[string]wamp.RouteConfig) []string {
	out := []string{}
	for _, name := range slices.Sorted(maps.Keys(routes)) {
		rc := routes[name]
		line := fmt.Sprintf("%s: %s → %s", name, rc.Pattern, rc.Handler)
		var opts []string
		if rc.Anonymous != nil && !*rc.Anonymous {
			opts = append(opts, "anonymous: false")
		}
		if len(rc.Roles) > 0 {
			opts = append(opts, "roles: "+strings.Join(rc.Roles, ","))
		}
		if len(rc.Requirements) > 0 {
			opts = append(opts, "requirements: "+strings.Join(slices.Sorted(maps.Keys(rc.Requirements)), ","))
		}
		if len(rc.Defaults) > 0 {
			opts = append(opts, "defaults: "+strings.Join(slices.Sorted(maps.Keys(rc.Defaults)), ","))
		}
		if rc.Disclose != "" {
			opts = append(opts, "disclose: "+rc.Disclose)
		}
		if len(opts) > 0 {
			line += " (" + strings.Join(opts, "; ") + ")"
		}
		out = append(out, line)
	}
	return out
}

// servesNothing says why cfg can deliver nothing to any client, "" when
// it can: no routes at all (every CALL gets 404, SUBSCRIBE and PUBLISH are
// ignored), or only wsgate.push topics with no way for the app to push
// (neither api.listen nor push.redis_channel).
func servesNothing(cfg config.Config) string {
	if len(cfg.Routes.RPC)+len(cfg.Routes.Topics) == 0 {
		return "no routes configured: every CALL gets 404 and SUBSCRIBE/PUBLISH are ignored; add routes: (docs/configuration.md, e.g. handler wsgate.relay)"
	}
	if len(cfg.Routes.RPC) > 0 || cfg.API.Listen != "" || cfg.Push.RedisChannel != "" {
		return ""
	}
	for _, rc := range cfg.Routes.Topics {
		if rc.Handler != builtin.PushName {
			return ""
		}
	}
	return "every route is a wsgate.push topic, which only the app publishes to, and neither api.listen nor push.redis_channel is set, so the app cannot; set one, or route to wsgate.relay"
}
