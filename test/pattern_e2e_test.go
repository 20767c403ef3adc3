package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// patternEvent is one event client.mjs's subscribe scenario recorded.
type patternEvent struct {
	Sub      int               `json:"sub"`
	Args     []json.RawMessage `json:"args"`
	Topic    string            `json:"topic"`
	Retained bool              `json:"retained"`
}

// patternResult is the subscribe scenario's result.
type patternResult struct {
	Session        uint64          `json:"session"`
	BrokerFeatures map[string]bool `json:"brokerFeatures"`
	Subs           []wampOutcome   `json:"subs"`
	Pubs           []wampOutcome   `json:"pubs"`
	GotExpected    bool            `json:"gotExpected"`
	Events         []patternEvent  `json:"events"`
}

// eventsWith returns the events whose args hold text.
func (r patternResult) eventsWith(text string) []patternEvent {
	var out []patternEvent
	for _, e := range r.Events {
		b, _ := json.Marshal(e.Args)
		if strings.Contains(string(b), text) {
			out = append(out, e)
		}
	}
	return out
}

// describe lists events as "sub:topic:retained" for messages.
func describe(evs []patternEvent) string {
	var b []string
	for _, e := range evs {
		b = append(b, fmt.Sprintf("%d:%s:%v", e.Sub, e.Topic, e.Retained))
	}
	return strings.Join(b, " ")
}

// waitReady reads the scenario's lines until {"ready"}.
func (p *autobahnProc) waitReady() {
	p.t.Helper()
	for {
		if _, ok := p.next()["ready"]; ok {
			return
		}
	}
}

// waitEvent reads the scenario's {"event"} lines (opts.stream) until one
// holds text, and reports whether one came within d.
func (p *autobahnProc) waitEvent(text string, d time.Duration) bool {
	p.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				p.t.Fatal("autobahn client exited without a result")
			}
			if e, bad := m["error"]; bad {
				p.t.Fatalf("autobahn client failed: %s", e)
			}
			if ev, ok := m["event"]; ok && strings.Contains(string(ev), text) {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

// TestWAMP2AutobahnPatternsAndRetention runs autobahn-js 26 against the
// embedded default's routes (public/{channel}: wsgate.relay,
// user/{username}: wsgate.user): prefix and wildcard subscriptions get the
// topics they match with details.topic, never another user's channel
// that a pattern covers; a retained client publish and a retained push
// come at once to a get_retained subscriber, marked retained.
func TestWAMP2AutobahnPatternsAndRetention(t *testing.T) {
	autobahnNode(t)
	testenv.PHP(t)
	dir := t.TempDir()
	session := func(user string) string {
		return cookie(writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": user, "roles": []string{"ROLE_USER"}, "firewall": "main"}))
	}
	alice, bob := session("alice"), session("bob")
	g := startReplica(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
api: {listen: "%%API%%", token: %q}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
`, replicaAPIToken, dir)+defaultRoutesYAML(t))
	url := "ws://" + g.Addr + "/"
	push := func(topic string, payload any, retain bool) {
		t.Helper()
		if status, body := g.apiCall(t, "POST", "/api/publish", map[string]any{"topic": topic, "payload": payload, "retain": retain}); status != 202 {
			t.Fatalf("POST /api/publish %s: %d %s", topic, status, body)
		}
	}

	// Retained before anyone subscribes: a client publish and a push.
	var pubr patternResult
	startAutobahn(t, "subscribe", map[string]any{"url": url, "realm": "realm1", "cookie": bob, "publish": []map[string]any{
		{"topic": "public/news", "args": []string{"retained-news"}, "options": map[string]any{"retain": true}},
		{"topic": "public/other", "args": []string{"not-retained"}},
	}}).result(&pubr)
	for i, p := range pubr.Pubs {
		if p.Err != nil {
			t.Fatalf("publish %d: %+v", i, p.Err)
		}
	}
	push("user/alice", map[string]string{"n": "retained-alice"}, true)

	subs := []map[string]any{
		{"topic": "user/", "match": "prefix"},                         // 0
		{"topic": "public/", "match": "wildcard"},                     // 1
		{"topic": "user/", "match": "wildcard"},                       // 2
		{"topic": "user/alice", "get_retained": true},                 // 3
		{"topic": "public/news", "get_retained": true},                // 4
		{"topic": "public/other", "get_retained": true},               // 5
		{"topic": "user/", "match": "prefix", "get_retained": true},   // 6: same as 0
		{"topic": "public/x", "match": "regex"},                       // 7: refused
		{"topic": "user/bob", "get_retained": true, "match": "exact"}, // 8: refused
	}
	p := startAutobahn(t, "subscribe", map[string]any{"url": url, "realm": "realm1", "cookie": alice, "subs": subs, "expect": "the-end", "waitMs": 10000})
	p.waitReady()
	push("user/bob", map[string]string{"n": "forbidden-bob"}, false)
	push("user/alice", map[string]string{"n": "mine"}, false)
	push("public/lobby", map[string]string{"n": "lobby"}, false)
	push("public/lobby", map[string]string{"n": "the-end"}, false)
	var r patternResult
	p.result(&r)

	for _, f := range []string{"pattern_based_subscription", "event_retention"} {
		if !r.BrokerFeatures[f] {
			t.Errorf("WELCOME broker features %v lack %s", r.BrokerFeatures, f)
		}
	}
	for i, s := range r.Subs[:7] {
		if s.Err != nil {
			t.Errorf("subscription %d (%v): %+v", i, subs[i], s.Err)
		}
	}
	if got := r.Subs[7].errURI(); got != "wamp.error.invalid_argument" {
		t.Errorf("match regex: %q", got)
	}
	if got := r.Subs[8].errURI(); got != "wamp.error.not_authorized" {
		t.Errorf("user/bob: %q", got)
	}
	if !r.GotExpected {
		t.Fatalf("the last push never came: %+v", r.Events)
	}
	if evs := r.eventsWith("forbidden-bob"); len(evs) != 0 {
		t.Errorf("another user's channel reached alice through a pattern: %s", describe(evs))
	}
	if evs := r.eventsWith("not-retained"); len(evs) != 0 {
		t.Errorf("a publish without retain was retained: %s", describe(evs))
	}
	// autobahn hands one Subscription object per SUBSCRIBE; the two on
	// "user/" prefix share the router's subscription, so each event
	// comes to both handlers (index 0 and 6).
	for _, tc := range []struct{ text, want string }{
		{"retained-news", "4:public/news:true"},
		{"retained-alice", "3:user/alice:true"},
		{"mine", "0:user/alice:false 6:user/alice:false 2:user/alice:false 3:user/alice:false"},
		{"lobby", "1:public/lobby:false"},
	} {
		if got := describe(r.eventsWith(tc.text)); !sameWords(got, tc.want) {
			t.Errorf("%s: events %q, want %q", tc.text, got, tc.want)
		}
	}
}

// sameWords reports whether a and b hold the same space-separated words,
// in any order (events of one publication to several subscriptions).
func sameWords(a, b string) bool {
	wa, wb := strings.Fields(a), strings.Fields(b)
	if len(wa) != len(wb) {
		return false
	}
	count := map[string]int{}
	for _, w := range wa {
		count[w]++
	}
	for _, w := range wb {
		count[w]--
		if count[w] < 0 {
			return false
		}
	}
	return true
}

// TestReplicasPatternsAndRetention: two replicas sharing Redis, with
// the pub/sub fan-out and with the streams one. Alice's pattern
// subscriptions on replica A get what is pushed and published on replica
// B for the topics they cover (PSUBSCRIBE; the stream reader's filter),
// not bob's channel; an event retained through B is what a get_retained
// subscriber on A gets (the Redis key).
func TestReplicasPatternsAndRetention(t *testing.T) {
	for _, fanout := range []string{"redis", "redis_streams"} {
		t.Run(fanout, func(t *testing.T) { replicasPatternsAndRetention(t, fanout) })
	}
}

func replicasPatternsAndRetention(t *testing.T, fanout string) {
	autobahnNode(t)
	redisAddr := testenv.Redis(t)
	testenv.PHP(t)
	rdb, prefix := redisTestPrefix(t, redisAddr)
	dir := t.TempDir()
	session := func(user string) string {
		return cookie(writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": user, "roles": []string{"ROLE_USER"}, "firewall": "main"}))
	}
	alice, bob := session("alice"), session("bob")
	// Extra goes on under routes.topics: the built-in handlers' routes.
	config := replicaConfig(replicaOptions{Sessions: dir, Prefix: prefix, Redis: redisAddr, Fanout: fanout,
		Extra: "    public: {pattern: \"public/{channel}\", handler: wsgate.relay}\n    user: {pattern: \"user/{username}\", handler: wsgate.user}\n"})
	a, b := startReplica(t, config), startReplica(t, config)
	pushB := func(topic string, payload any, retain bool) {
		t.Helper()
		if status, body := b.apiCall(t, "POST", "/api/publish", map[string]any{"topic": topic, "payload": payload, "retain": retain}); status != 202 {
			t.Fatalf("POST /api/publish %s: %d %s", topic, status, body)
		}
	}

	// Retained through B, in Redis before anyone asks.
	pushB("user/alice", map[string]string{"n": "retained-across"}, true)
	eventually(t, 10*time.Second, "the retained key in Redis", func() bool {
		n, err := rdb.Do(context.Background(), rdb.B().Exists().Key(prefix+"retained:user/alice").Build()).AsInt64()
		return err == nil && n == 1
	})

	p := startAutobahn(t, "subscribe", map[string]any{"url": "ws://" + a.Addr + "/", "realm": "realm1", "cookie": alice, "stream": true,
		"subs": []map[string]any{
			{"topic": "user/", "match": "prefix"},         // 0
			{"topic": "public/", "match": "wildcard"},     // 1
			{"topic": "user/alice", "get_retained": true}, // 2
		}, "expect": "the-end", "expectCount": 2, "waitMs": 20000})
	p.waitReady()
	// A's PSUBSCRIBE follows the first pattern subscriber asynchronously:
	// push probes through B until one arrives.
	probed := false
	for i := 0; i < 100 && !probed; i++ {
		pushB("user/alice", map[string]any{"n": "probe"}, false)
		probed = p.waitEvent("probe", 200*time.Millisecond)
	}
	if !probed {
		t.Fatal("no push through replica B reached the pattern subscriber on A")
	}
	pushB("user/bob", map[string]string{"n": "forbidden-bob"}, false)
	var pubr patternResult
	startAutobahn(t, "subscribe", map[string]any{"url": "ws://" + b.Addr + "/", "realm": "realm1", "cookie": bob, "publish": []map[string]any{
		{"topic": "public/lobby", "args": []string{"bob-publishes"}},
	}}).result(&pubr)
	if len(pubr.Pubs) != 1 || pubr.Pubs[0].Err != nil {
		t.Fatalf("bob's publish: %+v", pubr.Pubs)
	}
	pushB("user/alice", map[string]string{"n": "the-end"}, false)
	var r patternResult
	p.result(&r)
	if !r.GotExpected {
		t.Fatalf("the last push never came: %+v", r.Events)
	}
	if evs := r.eventsWith("forbidden-bob"); len(evs) != 0 {
		t.Errorf("bob's channel reached alice through a pattern across replicas: %s", describe(evs))
	}
	for _, tc := range []struct{ text, want string }{
		{"retained-across", "2:user/alice:true"},
		{"bob-publishes", "1:public/lobby:false"},
		{"the-end", "0:user/alice:false 2:user/alice:false"},
	} {
		if got := describe(r.eventsWith(tc.text)); !sameWords(got, tc.want) {
			t.Errorf("%s: events %q, want %q", tc.text, got, tc.want)
		}
	}
}

// TestShardedFanoutRefusesPatterns: with the fan-out in sharded pub/sub
// (cluster.redis mode cluster; a single Redis 7 serves it as a one-node
// cluster), which has no pattern subscribe, WELCOME does not announce
// pattern_based_subscription and a pattern SUBSCRIBE is refused with
// wamp.error.invalid_argument, while exact subscriptions and retention
// work.
func TestShardedFanoutRefusesPatterns(t *testing.T) {
	autobahnNode(t)
	redisAddr := testenv.Redis(t)
	testenv.PHP(t)
	rdb, prefix := redisTestPrefix(t, redisAddr)
	dir := t.TempDir()
	alice := cookie(writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"}))
	config := replicaConfig(replicaOptions{Sessions: dir, Prefix: prefix, Redis: redisAddr, Fanout: "redis",
		Extra: "    user: {pattern: \"user/{username}\", handler: wsgate.user}\n"})
	config = strings.Replace(config, "cluster: {fanout: redis, prefix: "+fmt.Sprintf("%q", prefix)+"}",
		"cluster: {fanout: redis, prefix: "+fmt.Sprintf("%q", prefix)+", redis: {mode: cluster, addrs: ["+fmt.Sprintf("%q", redisAddr)+"]}}", 1)
	if !strings.Contains(config, "mode: cluster") {
		t.Fatalf("config not rewritten:\n%s", config)
	}
	g := startReplica(t, config)
	if status, body := g.apiCall(t, "POST", "/api/publish", map[string]any{"topic": "user/alice", "payload": "kept", "retain": true}); status != 202 {
		t.Fatalf("push: %d %s", status, body)
	}
	eventually(t, 10*time.Second, "the retained key in Redis", func() bool {
		n, err := rdb.Do(context.Background(), rdb.B().Exists().Key(prefix+"retained:user/alice").Build()).AsInt64()
		return err == nil && n == 1
	})
	var r patternResult
	startAutobahn(t, "subscribe", map[string]any{"url": "ws://" + g.Addr + "/", "realm": "realm1", "cookie": alice,
		"subs": []map[string]any{
			{"topic": "user/", "match": "prefix"},
			{"topic": "user/alice", "get_retained": true},
		}, "expect": "kept"}).result(&r)
	if r.BrokerFeatures["pattern_based_subscription"] || !r.BrokerFeatures["event_retention"] {
		t.Errorf("WELCOME broker features %v", r.BrokerFeatures)
	}
	if got := r.Subs[0].errURI(); got != "wamp.error.invalid_argument" {
		t.Errorf("pattern SUBSCRIBE: %q, want wamp.error.invalid_argument", got)
	}
	if got := describe(r.eventsWith("kept")); got != "1:user/alice:true" {
		t.Errorf("retained: %q", got)
	}
}
