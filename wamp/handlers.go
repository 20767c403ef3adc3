package wamp

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/wsgate/wsgate/wamp/handler"
)

// rpcHandler is an RPC handler with its methods resolved once at start-up.
type rpcHandler struct {
	rpc     handler.RPC
	offload bool // handler.OffloadedRPC: calls run on their own goroutine
	methods map[string]handler.RPCMethod
	folded  map[string]handler.RPCMethod // lower-cased name -> method
	dynamic handler.RPCMethod            // handler.DynamicRPC's Call, or nil
}

// newRPCHandler resolves h's methods, refusing a nil method and names
// that differ only in case.
func newRPCHandler(h handler.RPC) (*rpcHandler, error) {
	rh := &rpcHandler{rpc: h, methods: map[string]handler.RPCMethod{}, folded: map[string]handler.RPCMethod{}}
	if o, ok := h.(handler.OffloadedRPC); ok {
		rh.offload = o.Offload()
	}
	names := make([]string, 0)
	for name, m := range h.Methods() {
		if m == nil {
			return nil, fmt.Errorf("wamp: RPC handler %q: method %q is nil", h.Name(), name)
		}
		rh.methods[name] = m
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, name := range names {
		low := strings.ToLower(name)
		if other, dup := seen[low]; dup {
			return nil, fmt.Errorf("wamp: RPC handler %q: methods %q and %q differ only in case, which PHP-style method lookup cannot tell apart", h.Name(), other, name)
		}
		seen[low] = name
		rh.folded[low] = rh.methods[name]
	}
	if d, ok := h.(handler.DynamicRPC); ok {
		rh.dynamic = d.Call
	}
	return rh, nil
}

// lookup finds the method for a route's "method" attribute: exact name
// first, then the bundle's rule (snake_case to camelCase, then PHP's
// case-insensitive method_exists).
func (rh *rpcHandler) lookup(method string) (handler.RPCMethod, bool) {
	if method != "" {
		if m, ok := rh.methods[method]; ok {
			return m, true
		}
		if m, ok := rh.folded[strings.ToLower(camelCase(method))]; ok {
			return m, true
		}
	}
	if rh.dynamic != nil {
		return rh.dynamic, true
	}
	return nil, false
}

// camelCase converts "_x" to "X" as the bundle's toCamelCase does.
func camelCase(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z' {
			b.WriteByte(s[i+1] - 'a' + 'A')
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// topicHandler is a topic handler with what the node asks of it once, at
// start-up.
type topicHandler struct {
	topic   handler.Topic
	offload bool                        // handler.OffloadedTopic: callbacks run on the session's lane
	batch   handler.BatchUnsubscriber   // nil unless implemented
	authz   handler.SubscribeAuthorizer // nil unless implemented
	// companion serves the presence companion topics of this handler's
	// topics: nothing to do on subscribe, publishing refused, the same
	// SubscribeAuthorizer (a client that may not subscribe to a topic may
	// not see its presence). One per handler, shared by its routes.
	companion *topicHandler
}

// newTopicHandler asks h once what it opts into.
func newTopicHandler(h handler.Topic) *topicHandler {
	th := &topicHandler{topic: h}
	if o, ok := h.(handler.OffloadedTopic); ok {
		th.offload = o.Offload()
	}
	th.batch, _ = h.(handler.BatchUnsubscriber)
	th.authz, _ = h.(handler.SubscribeAuthorizer)
	th.companion = &topicHandler{topic: presenceTopicHandler{}, authz: th.authz}
	return th
}

// CheckRoutes reports the error NewNode would give for these routes and
// handlers, without building a node or binding the registry, so a config
// check can run before (or instead of) serving with the same registry.
func CheckRoutes(routes RoutesConfig, handlers *handler.Registry) error {
	if handlers == nil {
		handlers = handler.NewRegistry()
	}
	_, _, err := compileAll(routes, handlers)
	return err
}

// compileAll compiles the RPC and topic routes against the registry's
// handlers.
func compileAll(routes RoutesConfig, reg *handler.Registry) (*router[*rpcHandler], *router[*topicHandler], error) {
	rpcs := map[string]*rpcHandler{}
	for _, name := range reg.RPCNames() {
		h, _ := reg.RPC(name)
		rh, err := newRPCHandler(h)
		if err != nil {
			return nil, nil, err
		}
		rpcs[name] = rh
	}
	rpcRoutes, err := compileRoutes("rpc", routes.RPC, func(name string) (*rpcHandler, bool) {
		h, ok := rpcs[name]
		return h, ok
	})
	if err != nil {
		return nil, nil, withKnown(err, reg.RPCNames())
	}
	if err := checkRoutes("rpc", routes.RPC, func(name string) any { h, _ := reg.RPC(name); return h }); err != nil {
		return nil, nil, err
	}
	topics := map[string]*topicHandler{}
	for _, name := range reg.TopicNames() {
		h, _ := reg.Topic(name)
		topics[name] = newTopicHandler(h)
	}
	topicRoutes, err := compileRoutes("topic", routes.Topics, func(name string) (*topicHandler, bool) {
		h, ok := topics[name]
		return h, ok
	})
	if err != nil {
		return nil, nil, withKnown(err, reg.TopicNames())
	}
	if err := checkRoutes("topic", routes.Topics, func(name string) any { h, _ := reg.Topic(name); return h }); err != nil {
		return nil, nil, err
	}
	return rpcRoutes, topicRoutes, nil
}

// checkRoutes lets every handler implementing handler.RouteChecker refuse
// the routes (already compiled, so their patterns parse) that name it, in
// route name order; the error names the route.
func checkRoutes(kind string, routes map[string]RouteConfig, lookup func(string) any) error {
	for _, name := range slices.Sorted(maps.Keys(routes)) {
		rc := routes[name]
		rcheck, ok := lookup(rc.Handler).(handler.RouteChecker)
		if !ok {
			continue
		}
		segs, err := parsePattern(rc.Pattern)
		if err != nil {
			return fmt.Errorf("wamp: %s route %q: %w", kind, name, err)
		}
		var vars []string
		for _, sg := range segs {
			if sg.param != "" {
				vars = append(vars, sg.param)
			}
		}
		r := handler.Route{Name: name, Pattern: rc.Pattern, Placeholders: vars, Defaults: maps.Clone(rc.Defaults)}
		if err := rcheck.CheckRoute(r); err != nil {
			return fmt.Errorf("wamp: %s route %q (handler %s): %w", kind, name, rc.Handler, err)
		}
	}
	return nil
}

// UnknownHandlerError is a route naming a handler nobody registered,
// typically a plugin missing from the configuration or a misspelling.
type UnknownHandlerError struct {
	Kind    string   // "rpc" or "topic"
	Route   string   // the route's name
	Handler string   // the handler it names
	Known   []string // the handlers of that kind that are registered
}

func (e *UnknownHandlerError) Error() string {
	known := "none are registered"
	if len(e.Known) > 0 {
		known = "registered: " + strings.Join(e.Known, ", ")
	}
	return fmt.Sprintf("wamp: %s route %q: unknown %s handler %q (%s)", e.Kind, e.Route, e.Kind, e.Handler, known)
}

// withKnown adds the registered handler names to an UnknownHandlerError.
func withKnown(err error, known []string) error {
	var u *UnknownHandlerError
	if errors.As(err, &u) {
		u.Known = known
	}
	return err
}
