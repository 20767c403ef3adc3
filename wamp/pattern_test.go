package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/wamp/builtin"
	"github.com/wsgate/wsgate/wamp/handler"
)

func TestParseSubscribeOptions(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    subscribeOptions
		wantErr bool
	}{
		{`{}`, subscribeOptions{match: matchExact}, false},
		{`{"match":"exact"}`, subscribeOptions{match: matchExact}, false},
		{`{"match":"prefix"}`, subscribeOptions{match: matchPrefix}, false},
		{`{"match":"wildcard","get_retained":true}`, subscribeOptions{match: matchWildcard, getRetained: true}, false},
		{`{"get_retained":false,"other":[1,2]}`, subscribeOptions{match: matchExact}, false},
		{`{"match":"regex"}`, subscribeOptions{}, true},
		{`{"match":1}`, subscribeOptions{}, true},
		{`{"get_retained":"yes"}`, subscribeOptions{}, true},
	} {
		got, err := parseSubscribeOptions(json.RawMessage(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestCheckTopicPattern(t *testing.T) {
	for _, tc := range []struct {
		match, pattern string
		ok             bool
	}{
		{matchPrefix, "user/", true},
		{matchPrefix, "", false},
		{matchWildcard, "user//inbox", true},
		{matchWildcard, "/", true},
		{matchPrefix, "a\x00b", false},
		{matchWildcard, "user/{username}", false},
		{matchWildcard, strings.Repeat("a/", maxWildcardSegments), false},
		{matchWildcard, strings.Repeat("a/", maxWildcardSegments-1) + "a", true},
	} {
		if err := checkTopicPattern(tc.match, tc.pattern); (err == nil) != tc.ok {
			t.Errorf("%s %q: err %v, want ok %v", tc.match, tc.pattern, err, tc.ok)
		}
	}
}

// The index finds exactly the patterns that match, whatever else is
// indexed, and forgets what was removed.
func TestPatternIndexMatching(t *testing.T) {
	f := newFixture(t, nil)
	b := &f.node.broker
	s := &Session{id: "s", proto: ProtocolV2JSON}
	keys := []patternKey{
		{matchPrefix, "chan/"}, {matchPrefix, "chan/a"}, {matchPrefix, "ch"}, {matchPrefix, "other/"},
		{matchWildcard, "chan/"}, {matchWildcard, "chan//x"}, {matchWildcard, "/a"}, {matchWildcard, "chan/a"},
	}
	for _, k := range keys {
		if b.addPattern(f.node, k, s) == 0 {
			t.Fatal("pattern refused")
		}
	}
	for _, tc := range []struct {
		topic string
		want  []string
	}{
		{"chan/a", []string{"prefix ch", "prefix chan/", "prefix chan/a", "wildcard chan/", "wildcard chan/a", "wildcard /a"}},
		{"chan/b", []string{"prefix ch", "prefix chan/", "wildcard chan/"}},
		{"chan/b/x", []string{"prefix ch", "prefix chan/", "wildcard chan//x"}},
		{"chan//x", []string{"prefix ch", "prefix chan/"}}, // an empty segment is no segment
		{"chan", []string{"prefix ch"}},
		{"c", nil},
		{"x/a", []string{"wildcard /a"}},
		{"other/", []string{"prefix other/"}},
	} {
		b.mu.RLock()
		ps := b.patterns.matchingPatterns(tc.topic, nil)
		b.mu.RUnlock()
		got := map[string]bool{}
		for _, p := range ps {
			got[p.key.match+" "+p.key.pattern] = true
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.topic, got, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !got[w] {
				t.Errorf("%s: got %v, want %v", tc.topic, got, tc.want)
			}
		}
	}
	for _, k := range keys {
		b.removePattern(k, s)
	}
	if b.patterns.n.Load() != 0 || len(b.patterns.prefixLens) != 0 || len(b.patterns.wild) != 0 || b.subscriptions != 0 {
		t.Fatalf("index not empty after removing everything: %d patterns", b.patterns.n.Load())
	}
}

// builtinRoutes route like the embedded default, plus a staff-only relay.
func builtinRoutes(c *NodeConfig) {
	reg := handler.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		panic(err)
	}
	c.Handlers = reg
	c.Routes = RoutesConfig{Topics: map[string]RouteConfig{
		"public": {Pattern: "public/{channel}", Handler: builtin.RelayName},
		"user":   {Pattern: "user/{username}", Handler: builtin.UserName},
		"staff":  {Pattern: "staff/{room}", Handler: builtin.RelayName, Roles: []string{"ROLE_STAFF"}},
	}}
}

func userInfo(conn, user string, roles ...string) ClientInfo {
	return ClientInfo{ConnID: conn, Identity: handler.Identity{UserIdentifier: user, Roles: roles}}
}

// eventsOf returns the EVENTs among msgs as "subID topic payload", topic
// from details.topic ("-" when absent), with retained marked.
func eventsOf(t *testing.T, msgs [][]byte) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		var e []json.RawMessage
		if err := json.Unmarshal(m, &e); err != nil || len(e) < 5 || string(e[0]) != "36" {
			continue
		}
		var d struct {
			Topic    string
			Retained bool
		}
		if err := json.Unmarshal(e[3], &d); err != nil {
			t.Fatal(err)
		}
		if d.Topic == "" {
			d.Topic = "-"
		}
		s := fmt.Sprintf("%s %s %s", e[1], d.Topic, strings.TrimSuffix(strings.TrimPrefix(string(e[4]), "["), "]"))
		if d.Retained {
			s += " retained"
		}
		out = append(out, s)
	}
	return out
}

// subscribedID subscribes and returns the subscription id from SUBSCRIBED.
func subscribedID(t *testing.T, s *Session, p *fakePeer, req int, opts, uri string) string {
	t.Helper()
	if err := s.Handle(context.Background(), []byte(fmt.Sprintf(`[32,%d,%s,%q]`, req, opts, uri))); err != nil {
		t.Fatal(err)
	}
	msgs := p.take()
	var e []json.RawMessage
	if len(msgs) == 0 || json.Unmarshal(msgs[0], &e) != nil || string(e[0]) != "33" {
		t.Fatalf("SUBSCRIBE %s %s: got %q", opts, uri, msgs)
	}
	return string(e[2])
}

// The hard rule: a pattern subscription delivers only the topics its
// client could subscribe to directly, by the route's access rules and the
// handler's SubscribeAuthorizer, under the identity of the moment.
func TestPatternSubscriptionAccess(t *testing.T) {
	f := newFixture(t, builtinRoutes)
	alice, ap := f.openV2(t, userInfo("a", "alice", "ROLE_USER"))
	anon, np := f.openV2(t, ClientInfo{ConnID: "n"})
	staff, sp := f.openV2(t, userInfo("s", "sam", "ROLE_STAFF"))
	aPrefix := subscribedID(t, alice, ap, 1, `{"match":"prefix"}`, "user/")
	aWild := subscribedID(t, alice, ap, 2, `{"match":"wildcard"}`, "/")
	nPrefix := subscribedID(t, anon, np, 1, `{"match":"prefix"}`, "user/")
	nWild := subscribedID(t, anon, np, 2, `{"match":"wildcard"}`, "/")
	sWild := subscribedID(t, staff, sp, 1, `{"match":"wildcard"}`, "/")
	if aPrefix == aWild || aPrefix == nWild || aPrefix != nPrefix || aWild != nWild || aWild != sWild {
		t.Fatalf("subscription ids: alice %s %s, anon %s %s, staff %s: a pattern's id is shared, patterns differ", aPrefix, aWild, nPrefix, nWild, sWild)
	}
	again := subscribedID(t, alice, ap, 3, `{"match":"prefix"}`, "user/")
	if again != aPrefix {
		t.Fatalf("repeated SUBSCRIBE got %s, want %s", again, aPrefix)
	}
	push := func(topic, ev string) {
		if _, err := f.node.BroadcastTo(topic, json.RawMessage(ev), Audience{}, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		topic, ev              string
		alice, anon, staffGets []string
	}{
		{"user/alice", `1`, []string{aPrefix + " user/alice 1", aWild + " user/alice 1"}, nil, nil},
		{"user/bob", `2`, nil, nil, nil},
		{"public/chat", `3`, []string{aWild + " public/chat 3"}, []string{nWild + " public/chat 3"}, []string{sWild + " public/chat 3"}},
		{"staff/room", `4`, nil, nil, []string{sWild + " staff/room 4"}},
		{"nowhere/x", `5`, nil, nil, nil}, // no route: nobody could subscribe
		{"user/alice/x", `6`, nil, nil, nil},
	} {
		push(tc.topic, tc.ev)
		for _, c := range []struct {
			name string
			p    *fakePeer
			want []string
		}{{"alice", ap, tc.alice}, {"anon", np, tc.anon}, {"staff", sp, tc.staffGets}} {
			if got := eventsOf(t, c.p.take()); strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("%s to %s: got %q, want %q", tc.topic, c.name, got, c.want)
			}
		}
	}
	// A new identity: the cached decisions go with the old one.
	alice.Reidentify(userInfo("a", "bob", "ROLE_USER"))
	push("user/alice", `7`)
	push("user/bob", `8`)
	if got := eventsOf(t, ap.take()); strings.Join(got, "|") != aPrefix+" user/bob 8|"+aWild+" user/bob 8" {
		t.Errorf("after Reidentify: got %q", got)
	}
	alice.Reidentify(ClientInfo{ConnID: "a"})
	push("user/bob", `9`)
	if got := eventsOf(t, ap.take()); len(got) != 0 {
		t.Errorf("anonymous after logout got %q", got)
	}
	// UNSUBSCRIBE of a pattern subscription.
	runSteps(t, alice, ap, []step{
		{in: `[34,9,` + aPrefix + `]`, want: []string{`[35,9]`}},
		{in: `[34,10,` + aPrefix + `]`, want: []string{`[8,34,10,{},"wamp.error.no_such_subscription",["no such subscription"]]`}},
	}, nil)
	for _, s := range []*Session{alice, anon, staff} {
		s.Close()
	}
	f.settle(t)
	if f.node.broker.patterns.n.Load() != 0 || f.node.broker.subscriptions != 0 {
		t.Fatalf("patterns left after Close: %d, subscriptions %d", f.node.broker.patterns.n.Load(), f.node.broker.subscriptions)
	}
}

// A client's publish reaches pattern subscribers with the publish's
// audience, its publisher disclosure and details.topic, and one
// publication id shared with the exact subscribers.
func TestPatternSubscriptionPublish(t *testing.T) {
	f := newFixture(t, builtinRoutes)
	pub, pp := f.openV2(t, userInfo("p", "pete"))
	sub, sp := f.openV2(t, userInfo("s", "sue"))
	exact := subscribedID(t, sub, sp, 1, `{}`, "public/x")
	wild := subscribedID(t, sub, sp, 2, `{"match":"wildcard"}`, "public/")
	_ = subscribedID(t, pub, pp, 1, `{"match":"prefix"}`, "public/")
	if err := pub.Handle(context.Background(), []byte(`[16,1,{"disclose_me":true},"public/x",["hi"]]`)); err != nil {
		t.Fatal(err)
	}
	if got := pp.take(); len(got) != 0 {
		t.Errorf("publisher excluded by default, got %q", got)
	}
	msgs := sp.take()
	if len(msgs) != 2 {
		t.Fatalf("want an EVENT per subscription, got %q", msgs)
	}
	var e1, e2 []json.RawMessage
	_ = json.Unmarshal(msgs[0], &e1)
	_ = json.Unmarshal(msgs[1], &e2)
	if string(e1[1]) != exact || string(e2[1]) != wild || string(e1[2]) != string(e2[2]) {
		t.Errorf("EVENTs %s %s: want subscriptions %s then %s, one publication id", msgs[0], msgs[1], exact, wild)
	}
	if !jsonEqual(t, e2[3], `{"topic":"public/x","publisher":`+pub.ID()+`,"publisher_authid":"pete","publisher_authrole":"authenticated"}`) {
		t.Errorf("pattern EVENT details %s", e2[3])
	}
	// eligible_authid names someone else: the pattern subscriber is left out.
	if err := pub.Handle(context.Background(), []byte(`[16,2,{"eligible_authid":["zed"]},"public/x",["hi"]]`)); err != nil {
		t.Fatal(err)
	}
	if got := sp.take(); len(got) != 0 {
		t.Errorf("eligible_authid ignored by a pattern subscription: %q", got)
	}
}

// Pattern subscriptions count against max_subscriptions; distinct
// patterns against max_patterns, node-wide, which refuses without closing.
func TestPatternLimits(t *testing.T) {
	f := newFixture(t, func(c *NodeConfig) {
		builtinRoutes(c)
		c.Limits.MaxSubscriptions = 3
		c.Limits.MaxPatterns = 2
	})
	obs := &countingObserver{}
	f.node.obs = obs
	a, ap := f.openV2(t, userInfo("a", "alice"))
	b, bp := f.openV2(t, userInfo("b", "bob"))
	subscribedID(t, a, ap, 1, `{"match":"prefix"}`, "p1")
	subscribedID(t, a, ap, 2, `{"match":"prefix"}`, "p2")
	subscribedID(t, b, bp, 1, `{"match":"prefix"}`, "p1") // not a new pattern
	runSteps(t, b, bp, []step{{in: `[32,2,{"match":"prefix"},"p3"]`, want: []string{`[8,32,2,{},"wsgate.error.too_many_patterns",["too many distinct patterns on this node"]]`}}}, nil)
	if obs.limits[LimitPatterns] != 1 {
		t.Errorf("limit counted %v", obs.limits)
	}
	subscribedID(t, a, ap, 3, `{}`, "public/a")
	err := a.Handle(context.Background(), []byte(`[32,4,{"match":"wildcard"},"p2/"]`))
	if le := (*LimitError)(nil); !errorsAs(err, &le) || le.Limit != LimitSubscriptions {
		t.Fatalf("4th subscription: %v, want max_subscriptions", err)
	}
}

// A Relay that cannot carry patterns makes the node refuse them and not
// announce the feature.
func TestPatternsNeedPatternRelay(t *testing.T) {
	hub := &memHub{}
	r := hub.join()
	f := newFixture(t, func(c *NodeConfig) { builtinRoutes(c); c.Relay = r })
	r.node = f.node
	if f.node.patterns {
		t.Fatal("patterns served over a relay that cannot carry them")
	}
	feats := f.node.routerRoles["broker"].(map[string]any)["features"].(map[string]bool)
	if feats["pattern_based_subscription"] || !feats["event_retention"] {
		t.Errorf("features %v", feats)
	}
	s, p := f.openV2(t, userInfo("a", "alice"))
	runSteps(t, s, p, []step{{in: `[32,1,{"match":"prefix"},"public/"]`, want: []string{`[8,32,1,{},"wamp.error.invalid_argument",["pattern-based subscriptions are not available with this cluster fan-out"]]`}}}, nil)
}

// patternRelay is a memRelay that carries patterns: it delivers every
// publish to every other node that watches any pattern (the node filters).
type patternRelay struct {
	*memRelay
	patterns int
}

func (r *patternRelay) Patterns() bool { return true }

func (r *patternRelay) WatchPattern(string, string) {
	r.mu.Lock()
	r.patterns++
	r.mu.Unlock()
}

func (r *patternRelay) UnwatchPattern(string, string) {
	r.mu.Lock()
	r.patterns--
	r.mu.Unlock()
}

// Across nodes: an event published on one node reaches a pattern
// subscriber on another, still filtered by that subscriber's access.
func TestPatternAcrossRelay(t *testing.T) {
	hub := &memHub{}
	r1, r2 := &patternRelay{memRelay: hub.join()}, &patternRelay{memRelay: hub.join()}
	f1 := newFixture(t, func(c *NodeConfig) { builtinRoutes(c); c.Relay = r1 })
	f2 := newFixture(t, func(c *NodeConfig) { builtinRoutes(c); c.Relay = r2 })
	r1.node, r2.node = f1.node, f2.node
	s, p := f2.openV2(t, userInfo("a", "alice"))
	id := subscribedID(t, s, p, 1, `{"match":"prefix"}`, "user/")
	if r2.patterns != 1 {
		t.Fatalf("WatchPattern calls %d", r2.patterns)
	}
	// memRelay delivers only to watchers of the exact topic: make node 2
	// watch it the way a PSUBSCRIBE would bring it.
	r2.Watch("user/alice")
	r2.Watch("user/bob")
	for _, topic := range []string{"user/bob", "user/alice"} {
		if _, err := f1.node.Topic(topic).(topicRef).n.BroadcastTo(topic, "x", Audience{}, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := eventsOf(t, p.take()); len(got) != 1 || got[0] != id+` user/alice "x"` {
		t.Errorf("relayed to a pattern subscriber: %q", got)
	}
	s.Close()
	f2.settle(t)
	if r2.patterns != 0 {
		t.Errorf("UnwatchPattern not called: %d", r2.patterns)
	}
}

// FuzzSubscribeOptions: the SUBSCRIBE options parser and the pattern check
// never panic, and what they accept has a known policy.
func FuzzSubscribeOptions(f *testing.F) {
	for _, s := range []string{`{}`, `{"match":"prefix"}`, `{"match":"wildcard","get_retained":true}`, `{"match":null}`, `{"match":"x"}`, `[]`, `{"get_retained":1}`} {
		f.Add(s, "user//x")
	}
	f.Fuzz(func(t *testing.T, opts, pattern string) {
		o, err := parseSubscribeOptions(json.RawMessage(opts))
		if err != nil {
			return
		}
		switch o.match {
		case matchExact, matchPrefix, matchWildcard:
		default:
			t.Fatalf("accepted match %q", o.match)
		}
		if checkTopicPattern(o.match, pattern) == nil && (pattern == "" || strings.ContainsAny(pattern, "\x00{}")) {
			t.Fatalf("accepted pattern %q", pattern)
		}
	})
}

// countingObserver counts Limit calls by name.
type countingObserver struct {
	nopObserver
	mu     sync.Mutex
	limits map[string]int
}

func (o *countingObserver) Limit(name string) {
	o.mu.Lock()
	if o.limits == nil {
		o.limits = map[string]int{}
	}
	o.limits[name]++
	o.mu.Unlock()
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// BenchmarkPatternFanout10k is one broadcast on user/alice with 10,000
// v2 sessions each holding a prefix subscription user/ and a wildcard one
// user/ (alice's own and 9,999 other users, who are refused by
// wsgate.user's rule from the cached decision), beside 1,000 other
// patterns that do not match: the index, the access cache and one encode
// per pattern.
func BenchmarkPatternFanout10k(b *testing.B) {
	f := newFixture(b, builtinRoutes)
	for i := 0; i < 10000; i++ {
		user := "u" + strconv.Itoa(i)
		if i == 0 {
			user = "alice"
		}
		s := f.node.OpenProtocol(nopPeer{}, userInfo("c"+strconv.Itoa(i), user), ProtocolV2JSON)
		for _, k := range []patternKey{{matchPrefix, "user/"}, {matchWildcard, "user/"}} {
			if _, err := s.addPatternSub(k); err != nil {
				b.Fatal(err)
			}
		}
		if i < 1000 {
			if _, err := s.addPatternSub(patternKey{matchWildcard, "public//" + strconv.Itoa(i)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	ref := f.node.Topic("user/alice")
	event := map[string]string{"msg": "hello"}
	b.ReportAllocs()
	for b.Loop() {
		if err := ref.Broadcast(event, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// msgpack and CBOR pattern subscribers get the same EVENT, transcoded,
// under the same access rule.
func TestPatternBinarySubscribers(t *testing.T) {
	for _, p := range binaryProtocols {
		t.Run(p.String(), func(t *testing.T) {
			f := newFixture(t, builtinRoutes)
			s, peer := openBinary(t, f, p, "a") // user u-a
			got := handleBinary(t, s, peer, `[32,1,{"match":"prefix"},"user/"]`)
			if len(got) != 1 || !strings.HasPrefix(got[0], "[33,1,") {
				t.Fatalf("SUBSCRIBE: %q", got)
			}
			subID := strings.TrimSuffix(strings.TrimPrefix(got[0], "[33,1,"), "]")
			for _, topic := range []string{"user/u-b", "user/u-a"} {
				if _, err := f.node.BroadcastTo(topic, topic, Audience{}, false); err != nil {
					t.Fatal(err)
				}
			}
			got = takeJSON(t, p, peer)
			if len(got) != 1 {
				t.Fatalf("events %q, want user/u-a's only", got)
			}
			var e []json.RawMessage
			if err := json.Unmarshal([]byte(got[0]), &e); err != nil || len(e) != 5 || string(e[1]) != subID || !jsonEqual(t, e[3], `{"topic":"user/u-a"}`) || !jsonEqual(t, e[4], `["user/u-a"]`) {
				t.Errorf("EVENT %s", got[0])
			}
		})
	}
}
