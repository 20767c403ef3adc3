package wamp

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// RouteConfig is one route, in the shape of a GosPubSubRouterBundle route.
type RouteConfig struct {
	// Pattern is the URI pattern: "/"-separated segments, where a segment
	// is either literal text or a whole-segment placeholder "{name}", e.g.
	// "acme/channel/{room}". A placeholder matches exactly one non-empty
	// segment (unless its requirement accepts the empty string); it never
	// spans "/".
	Pattern string `yaml:"pattern"`
	// Handler is the name of the RPC or topic handler (handler.RPC.Name or
	// handler.Topic.Name) that serves the route.
	Handler string `yaml:"handler"`
	// Requirements maps a placeholder name to a Go regular expression
	// (RE2 syntax) that the whole segment must match; it is anchored for
	// you. A placeholder without a requirement matches any non-empty
	// segment.
	Requirements map[string]string `yaml:"requirements"`
	// Defaults gives placeholder values used when the placeholder is
	// absent. Trailing placeholders that all have defaults are optional in
	// the URI. Defaults for names that are not placeholders are passed to
	// the handler as extra attributes (Symfony routing behaviour).
	Defaults map[string]string `yaml:"defaults"`
	// Roles, when non-empty, admits only clients that have at least one
	// of these roles (e.g. [ROLE_ADMIN]). Anonymous clients have no roles.
	Roles []string `yaml:"roles"`
	// Anonymous set to false refuses anonymous clients. Unset or true
	// admits them (unless Roles refuses them).
	//
	// Access rules are enforced by the node before any handler runs, for
	// CALL, SUBSCRIBE and PUBLISH (not for UNSUBSCRIBE, which only undoes
	// an admitted subscription, nor for server-side pushes). A refused
	// WAMP v1 CALL gets CALLERROR [4, callId, procURI, "Access denied",
	// {"code": 403, ...}] in the bundle's shape; a refused v1 SUBSCRIBE or
	// PUBLISH, which v1 never acknowledges, gets the bundle's topic error
	// CALLERROR [4, topicURI, topicURI, "Access denied", {"code": 403,
	// ..., "event": "onSubscribe"|"onPublish"}] (what a bundle user got
	// when a topic handler refused by throwing) and is not subscribed. A
	// refused v2 request gets ERROR wamp.error.not_authorized (for PUBLISH
	// only when the publisher asked for an acknowledgement, as the spec
	// says).
	Anonymous *bool `yaml:"anonymous"`
	// Disclose is a topic route's publisher identification policy (WAMP
	// v2 advanced profile): "allow" (the default, also when empty)
	// discloses a publisher that asks with the PUBLISH option
	// disclose_me, "force" discloses every publisher and "forbid" none.
	// Disclosure puts publisher (the v2 session id), publisher_authid and
	// publisher_authrole in the EVENT details of the broadcasts the topic
	// handler makes through the TopicRef its OnPublish got. A v1
	// publisher, which cannot ask, is disclosed only under "force", and
	// without publisher, since its session id is no WAMP v2 id. RPC
	// routes refuse the option.
	Disclose string `yaml:"disclose"`
	// Presence, on a topic route, makes who is subscribed to its topics
	// visible to the clients that may subscribe to them: join and leave
	// events on the companion topic PresencePrefix+<topic> and the
	// procedure PresenceListProcedure (see presence.go). RPC routes
	// refuse the option.
	Presence bool `yaml:"presence"`
}

// Publisher identification policies of RouteConfig.Disclose.
const (
	DiscloseAllow  = "allow"
	DiscloseForce  = "force"
	DiscloseForbid = "forbid"
)

// RoutesConfig holds the RPC and topic routes, each keyed by route name.
// The gateway's YAML configuration embeds it under `routes:`.
//
// CALL URIs are matched against RPC routes only, and SUBSCRIBE, UNSUBSCRIBE
// and PUBLISH URIs against topic routes only. When patterns overlap, the
// most specific wins segment by segment: a literal segment beats a
// placeholder with a requirement, which beats a placeholder without one;
// ties go to the route whose name sorts first. (The PHP router used
// configuration order, which a YAML map does not preserve.)
type RoutesConfig struct {
	// RPC routes, matched against CALL procedure URIs. Their handler is an
	// RPC handler; the "method" attribute selects its method.
	RPC map[string]RouteConfig `yaml:"rpc"`
	// Topics routes, matched against SUBSCRIBE/UNSUBSCRIBE/PUBLISH topic
	// URIs. Their handler is a topic handler.
	Topics map[string]RouteConfig `yaml:"topics"`
}

// maxVarNameLen bounds placeholder names, as GosPubSubRouterBundle's
// compiler does.
const maxVarNameLen = 32

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// route is one compiled route.
type route[H any] struct {
	name     string
	pattern  string
	handler  H
	defaults map[string]string
	// nvars is the number of placeholders, to size attribute maps.
	nvars int
	// access is the route's access rule.
	access accessRule
	// disclose is RouteConfig.Disclose, "" for allow.
	disclose string
	// presence is RouteConfig.Presence.
	presence bool
}

// accessRule is a compiled RouteConfig.Roles/Anonymous.
type accessRule struct {
	denyAnon bool
	roles    []string
}

// allows reports whether a client with these properties may use the route.
func (a accessRule) allows(anon bool, roles []string) bool {
	if anon && a.denyAnon {
		return false
	}
	if len(a.roles) == 0 {
		return true
	}
	for _, want := range a.roles {
		for _, have := range roles {
			if want == have {
				return true
			}
		}
	}
	return false
}

// trieNode is one segment position of the route trie.
//
// Matching precedence, at every segment: the static child with the exact
// segment text is tried first; then placeholders that have a requirement;
// then placeholders without one (which accept any non-empty segment).
// Within each group, placeholders are tried in order of the smallest route
// name that uses them. The search backtracks: if a branch cannot complete,
// the next candidate at that segment is tried. The first complete match
// wins; when several routes end at the same node, the smallest route name
// wins.
//
// The PHP router tries routes in configuration order; YAML maps have no
// order we can rely on, so this fixed specificity-then-name order replaces
// it. Name routes accordingly when two patterns overlap. The
// trie is a tree and each node is entered at most once per match, so
// matching cost is bounded by the size of the configuration, not
// exponential in the URI.
type trieNode[H any] struct {
	static map[string]*trieNode[H]
	params []*paramEdge[H]
	// ends are the routes that can finish at this node, best first, with
	// the placeholder names they leave unmatched (filled from defaults).
	ends []routeEnd[H]
}

type paramEdge[H any] struct {
	name  string
	reSrc string // requirement source; "" = any non-empty segment
	re    *regexp.Regexp
	child *trieNode[H]
}

type routeEnd[H any] struct {
	r *route[H]
	// names of the placeholders along the path, in order, so attribute
	// values can be assigned after a successful match.
	vars []string
}

// router matches URIs against compiled routes.
type router[H any] struct {
	root     *trieNode[H]
	maxDepth int
}

// compileRoutes builds a router. lookup resolves a handler name; kind is
// "rpc" or "topic" for error messages.
func compileRoutes[H any](kind string, routes map[string]RouteConfig, lookup func(string) (H, bool)) (*router[H], error) {
	rt := &router[H]{root: &trieNode[H]{}}
	names := make([]string, 0, len(routes))
	for n := range routes {
		names = append(names, n)
	}
	// Insertion in name order makes edge order, and so precedence, a
	// function of route names only, not of map iteration.
	sort.Strings(names)
	for _, name := range names {
		rc := routes[name]
		if err := rt.add(kind, name, rc, lookup); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

type segSpec struct {
	static string
	param  string // placeholder name when non-empty
}

func parsePattern(pattern string) ([]segSpec, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	parts := strings.Split(pattern, "/")
	out := make([]segSpec, len(parts))
	seen := map[string]bool{}
	for i, p := range parts {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") && len(p) >= 2 {
			name := p[1 : len(p)-1]
			if !varNameRE.MatchString(name) {
				return nil, fmt.Errorf("placeholder %q: name must be letters, digits and _ and not start with a digit", p)
			}
			if len(name) > maxVarNameLen {
				return nil, fmt.Errorf("placeholder %q: name longer than %d characters", p, maxVarNameLen)
			}
			if seen[name] {
				return nil, fmt.Errorf("placeholder {%s} used more than once", name)
			}
			seen[name] = true
			out[i] = segSpec{param: name}
			continue
		}
		if strings.ContainsAny(p, "{}") {
			// Mixed segments like "user-{id}" are legal in the PHP router
			// but not supported here: one placeholder per whole segment is
			// what lets us match with a trie instead of a regex per route.
			return nil, fmt.Errorf("segment %q: placeholders must be whole segments ({name} between slashes)", p)
		}
		out[i] = segSpec{static: p}
	}
	return out, nil
}

func (rt *router[H]) add(kind, name string, rc RouteConfig, lookup func(string) (H, bool)) error {
	r, segs, reqs, err := compileRoute(kind, name, rc, lookup)
	if err != nil {
		return err
	}
	first := firstOptional(segs, rc.Defaults)
	n := rt.root
	var path []string
	for i, s := range segs {
		if i >= first {
			n.addEnd(r, path)
		}
		if s.param == "" {
			n = n.staticChild(s.static)
			continue
		}
		n = n.paramChild(s.param, rc.Requirements[s.param], reqs[s.param])
		path = append(path, s.param)
	}
	n.addEnd(r, path)
	r.nvars = len(path)
	if len(segs) > rt.maxDepth {
		rt.maxDepth = len(segs)
	}
	return nil
}

// compileRoute checks one route and compiles its pattern, requirements
// and access rule; the error names the route.
func compileRoute[H any](kind, name string, rc RouteConfig, lookup func(string) (H, bool)) (*route[H], []segSpec, map[string]*regexp.Regexp, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("wamp: %s route %q: %s", kind, name, fmt.Sprintf(format, a...))
	}
	if rc.Handler == "" {
		return nil, nil, nil, fail("no handler")
	}
	h, ok := lookup(rc.Handler)
	if !ok {
		return nil, nil, nil, &UnknownHandlerError{Kind: kind, Route: name, Handler: rc.Handler}
	}
	segs, err := parsePattern(rc.Pattern)
	if err != nil {
		return nil, nil, nil, fail("pattern %q: %v", rc.Pattern, err)
	}
	vars := map[string]bool{}
	for _, s := range segs {
		if s.param != "" {
			vars[s.param] = true
		}
	}
	reqs := map[string]*regexp.Regexp{}
	for v, src := range rc.Requirements {
		if !vars[v] {
			return nil, nil, nil, fail("requirement for %q, which is not a placeholder in pattern %q", v, rc.Pattern)
		}
		re, err := regexp.Compile(`^(?:` + src + `)$`)
		if err != nil {
			return nil, nil, nil, fail("requirement for {%s}: bad regexp %q: %v", v, src, err)
		}
		reqs[v] = re
	}
	r := &route[H]{name: name, pattern: rc.Pattern, handler: h, defaults: rc.Defaults}
	r.access.denyAnon = rc.Anonymous != nil && !*rc.Anonymous
	for _, role := range rc.Roles {
		if strings.TrimSpace(role) == "" {
			return nil, nil, nil, fail("empty role in roles")
		}
		r.access.roles = append(r.access.roles, role)
	}
	switch rc.Disclose {
	case "", DiscloseAllow:
	case DiscloseForce, DiscloseForbid:
		if kind != "topic" {
			return nil, nil, nil, fail("disclose applies to topic routes only")
		}
		r.disclose = rc.Disclose
	default:
		return nil, nil, nil, fail("disclose %q is not allow, force nor forbid", rc.Disclose)
	}
	if rc.Presence && kind != "topic" {
		return nil, nil, nil, fail("presence applies to topic routes only")
	}
	r.presence = rc.Presence
	return r, segs, reqs, nil
}

// firstOptional returns the index of the first optional segment: the start
// of the trailing run of placeholders that all have defaults, but never 0,
// so that the empty URI never matches.
func firstOptional(segs []segSpec, defaults map[string]string) int {
	first := len(segs)
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i].param == "" {
			break
		}
		if _, ok := defaults[segs[i].param]; !ok {
			break
		}
		first = i
	}
	return max(first, 1)
}

// staticChild returns the child for the literal segment seg, made if need
// be.
func (n *trieNode[H]) staticChild(seg string) *trieNode[H] {
	if n.static == nil {
		n.static = map[string]*trieNode[H]{}
	}
	c := n.static[seg]
	if c == nil {
		c = &trieNode[H]{}
		n.static[seg] = c
	}
	return c
}

// paramChild returns the child for placeholder name with requirement re
// (source src; nil and "" for none), made if need be. Constrained edges go
// before unconstrained ones; within each group, insertion (= route name)
// order is kept.
func (n *trieNode[H]) paramChild(name, src string, re *regexp.Regexp) *trieNode[H] {
	if re == nil {
		src = ""
	}
	for _, e := range n.params {
		if e.name == name && e.reSrc == src {
			return e.child
		}
	}
	edge := &paramEdge[H]{name: name, reSrc: src, re: re, child: &trieNode[H]{}}
	at := len(n.params)
	if re != nil {
		for i, e := range n.params {
			if e.re == nil {
				at = i
				break
			}
		}
	}
	n.params = slices.Insert(n.params, at, edge)
	return edge.child
}

func (n *trieNode[H]) addEnd(r *route[H], path []string) {
	// Routes are added in name order, so appending keeps ends sorted.
	n.ends = append(n.ends, routeEnd[H]{r: r, vars: append([]string(nil), path...)})
}

// match finds the route for uri. It returns the route and the placeholder
// attributes merged with the route's defaults.
func (rt *router[H]) match(uri string) (*route[H], map[string]string, bool) {
	if rt == nil {
		return nil, nil, false
	}
	// Split without allocating for typical URIs.
	var buf [16]string
	segs := buf[:0]
	start := 0
	for i := 0; i < len(uri); i++ {
		if uri[i] == '/' {
			segs = append(segs, uri[start:i])
			start = i + 1
			if len(segs) > rt.maxDepth {
				return nil, nil, false
			}
		}
	}
	segs = append(segs, uri[start:])
	if len(segs) > rt.maxDepth {
		return nil, nil, false
	}
	var valsBuf [16]string
	end, vals := rt.root.find(segs, valsBuf[:0])
	if end == nil {
		return nil, nil, false
	}
	attrs := make(map[string]string, len(end.vars)+len(end.r.defaults))
	for k, v := range end.r.defaults {
		attrs[k] = v
	}
	for i, name := range end.vars {
		attrs[name] = vals[i]
	}
	return end.r, attrs, true
}

// find walks the trie depth-first; vals collects placeholder values along
// the current path.
func (n *trieNode[H]) find(segs []string, vals []string) (*routeEnd[H], []string) {
	if len(segs) == 0 {
		if len(n.ends) > 0 {
			return &n.ends[0], vals
		}
		return nil, nil
	}
	seg := segs[0]
	if c := n.static[seg]; c != nil {
		if e, v := c.find(segs[1:], vals); e != nil {
			return e, v
		}
	}
	for _, p := range n.params {
		if p.re == nil {
			if seg == "" {
				continue
			}
		} else if !p.re.MatchString(seg) {
			continue
		}
		if e, v := p.child.find(segs[1:], append(vals, seg)); e != nil {
			return e, v
		}
	}
	return nil, nil
}
