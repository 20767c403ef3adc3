package wamp

import (
	"reflect"
	"strings"
	"testing"
)

// compileTest builds a router whose handler is the route's Handler string.
func compileTest(t *testing.T, routes map[string]RouteConfig) *router[string] {
	t.Helper()
	rt, err := compileRoutes("topic", routes, func(name string) (string, bool) { return name, true })
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestRouterMatch(t *testing.T) {
	rt := compileTest(t, map[string]RouteConfig{
		// Requirements: a constrained placeholder is tried before an
		// unconstrained one even when its route name sorts later.
		"room_num": {Pattern: "chat/{room}", Handler: "h", Requirements: map[string]string{"room": `\d+`}},
		"room_any": {Pattern: "chat/{name}", Handler: "h"},
		"a_any":    {Pattern: "ord/{w}", Handler: "h"},
		// Static beats placeholder regardless of route names.
		"aaa_param":  {Pattern: "news/{id}", Handler: "h"},
		"zzz_static": {Pattern: "news/latest", Handler: "h"},
		// Backtracking: the static branch dead-ends, the placeholder
		// branch matches.
		"deep_static": {Pattern: "x/fixed/end", Handler: "h"},
		"deep_param":  {Pattern: "x/{a}/other", Handler: "h"},
		// Defaults make trailing placeholders optional.
		"opt": {Pattern: "list/{page}/{size}", Handler: "h", Defaults: map[string]string{"page": "1", "size": "10", "extra": "e"}},
		// A default before a static segment does not make it optional.
		"mid": {Pattern: "mid/{a}/tail", Handler: "h", Defaults: map[string]string{"a": "x"}},
		// Only the trailing run with defaults is optional.
		"part": {Pattern: "part/{a}/{b}", Handler: "h", Defaults: map[string]string{"b": "B"}},
		// A lone optional placeholder still needs its segment.
		"lone": {Pattern: "{only}", Handler: "h", Defaults: map[string]string{"only": "d"}, Requirements: map[string]string{"only": "z+"}},
		// Same position, different requirements: tried by route name.
		"ord_a": {Pattern: "ord/{v}", Handler: "h", Requirements: map[string]string{"v": `[a-z]+`}},
		"ord_b": {Pattern: "ord/{v}", Handler: "h", Requirements: map[string]string{"v": `[a-c]+`}},
		"ord_c": {Pattern: "ord/{v}", Handler: "h", Requirements: map[string]string{"v": `\d+`}},
		// Two routes with identical patterns: the smaller name wins.
		"same_1": {Pattern: "same/{p}", Handler: "h"},
		"same_2": {Pattern: "same/{p}", Handler: "h"},
		// Requirement accepting the empty segment.
		"emptyok": {Pattern: "e/{x}/end", Handler: "h", Requirements: map[string]string{"x": `a*`}},
		// Full-URL style URIs and anchoring of requirements.
		"url":  {Pattern: "http://example.com/simple", Handler: "h"},
		"anch": {Pattern: "anch/{v}", Handler: "h", Requirements: map[string]string{"v": `ab|cd`}},
	})
	cases := []struct {
		uri   string
		route string // "" = no match
		attrs map[string]string
	}{
		{"chat/42", "room_num", map[string]string{"room": "42"}},
		{"chat/lobby", "room_any", map[string]string{"name": "lobby"}},
		{"chat/", "", nil},
		{"chat", "", nil},
		{"chat/1/2", "", nil},
		{"news/latest", "zzz_static", map[string]string{}},
		{"news/7", "aaa_param", map[string]string{"id": "7"}},
		{"x/fixed/other", "deep_param", map[string]string{"a": "fixed"}},
		{"x/fixed/end", "deep_static", map[string]string{}},
		{"list/3/50", "opt", map[string]string{"page": "3", "size": "50", "extra": "e"}},
		{"list/3", "opt", map[string]string{"page": "3", "size": "10", "extra": "e"}},
		{"list", "opt", map[string]string{"page": "1", "size": "10", "extra": "e"}},
		{"list/", "", nil},
		{"mid/tail", "", nil},
		{"mid/q/tail", "mid", map[string]string{"a": "q"}},
		{"part/1", "part", map[string]string{"a": "1", "b": "B"}},
		{"part", "", nil},
		{"zzz", "lone", map[string]string{"only": "zzz"}},
		{"", "", nil},
		{"ord/abc", "ord_a", map[string]string{"v": "abc"}},
		{"ord/123", "ord_c", map[string]string{"v": "123"}},
		{"ord/ABC", "a_any", map[string]string{"w": "ABC"}},
		{"same/x", "same_1", map[string]string{"p": "x"}},
		{"e//end", "emptyok", map[string]string{"x": ""}},
		{"e/aa/end", "emptyok", map[string]string{"x": "aa"}},
		{"e/b/end", "", nil},
		{"http://example.com/simple", "url", map[string]string{}},
		{"http://example.com/simple/", "", nil},
		{"anch/ab", "anch", map[string]string{"v": "ab"}},
		{"anch/abcd", "", nil},
		{"anch/xab", "", nil},
		{"a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r", "", nil},
		{strings.Repeat("/", 100), "", nil},
	}
	for _, tc := range cases {
		r, attrs, ok := rt.match(tc.uri)
		if tc.route == "" {
			if ok {
				t.Errorf("%q matched %q, want no match", tc.uri, r.name)
			}
			continue
		}
		if !ok {
			t.Errorf("%q: no match, want %q", tc.uri, tc.route)
			continue
		}
		if r.name != tc.route {
			t.Errorf("%q matched %q, want %q", tc.uri, r.name, tc.route)
		}
		if !reflect.DeepEqual(attrs, tc.attrs) {
			t.Errorf("%q attrs %v, want %v", tc.uri, attrs, tc.attrs)
		}
	}
}

func TestRouterEmpty(t *testing.T) {
	rt := compileTest(t, nil)
	if _, _, ok := rt.match("a"); ok {
		t.Error("empty router matched")
	}
	var nilRT *router[string]
	if _, _, ok := nilRT.match("a"); ok {
		t.Error("nil router matched")
	}
}

// The precedence must not depend on map iteration order.
func TestRouterDeterministic(t *testing.T) {
	routes := map[string]RouteConfig{}
	for _, n := range []string{"r3", "r1", "r2", "r5", "r4"} {
		routes[n] = RouteConfig{Pattern: "p/{x}", Handler: "h"}
	}
	for i := 0; i < 50; i++ {
		rt := compileTest(t, routes)
		if r, _, _ := rt.match("p/v"); r.name != "r1" {
			t.Fatalf("iteration %d: matched %q", i, r.name)
		}
	}
}
