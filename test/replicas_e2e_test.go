package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/test/testenv"
)

const replicaAPIToken = "replica-e2e-token-0123456789"

// replica is one gateway process of the three-replica test.
type replica struct {
	*gatewayProcess
	API string // push API address
}

func startReplica(t *testing.T, config string) replica {
	t.Helper()
	api := freeAddr(t)
	return replica{startGateway(t, strings.ReplaceAll(config, "%API%", api)), api}
}

// replicaOptions are what the replica tests' configs differ in.
type replicaOptions struct {
	Sessions string // the files store's directory
	Prefix   string // client storage and cluster prefix, unique per test
	Redis    string // host:port of the shared Redis
	Fanout   string // cluster.fanout: redis or redis_streams
	TTL      string // client_storage.ttl; default 30s
	Extra    string // more top-level YAML (ending in a newline)
}

// replicaConfig is the config of one replica of a test: files sessions,
// the Redis client storage and fan-out under o.Prefix, the push API on
// %API%, and the acme.relay handler on acme/relay/{room}.
func replicaConfig(o replicaOptions) string {
	if o.TTL == "" {
		o.TTL = "30s"
	}
	return fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
api: {listen: "%%API%%", token: %q}
session:
  store: files
  files: {path: %q, gc_maxlifetime: 1440}
client_storage:
  driver: redis
  ttl: %s
  check_interval: 200ms
  prefix: %q
  redis: {addrs: [%q]}
cluster: {fanout: %s, prefix: %q}
plugins: [%%ACME_PLUGIN%%]
routes:
  topics:
    relay: {pattern: "acme/relay/{room}", handler: acme.relay}
%s`, replicaAPIToken, o.Sessions, o.TTL, o.Prefix, o.Redis, o.Fanout, o.Prefix, o.Extra)
}

// apiCall sends a push API request to a replica and returns status and body.
func (r replica) apiCall(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+r.API+path, rd)
	req.Header.Set("Authorization", "Bearer "+replicaAPIToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// clientUsers lists the user identifiers GET /api/clients reports.
func (r replica) clientUsers(t *testing.T, query string) []string {
	t.Helper()
	status, body := r.apiCall(t, "GET", "/api/clients"+query, nil)
	if status != 200 {
		t.Fatalf("GET /api/clients%s: %d %s", query, status, body)
	}
	var out struct {
		Clients []struct {
			User string `json:"user_identifier"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("GET /api/clients: %v: %s", err, body)
	}
	var users []string
	for _, c := range out.Clients {
		users = append(users, c.User)
	}
	slices.Sort(users)
	return users
}

// eventually polls cond every 50ms until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestThreeReplicasBehaveAsOne runs three gateway processes sharing one
// Redis (client storage and fan-out) with clients on each: client
// publishes, application pushes, user-directed pushes and disconnects
// cross replicas, and killing one replica leaves the others serving, its
// clients gone from the storage after the TTL and its subscriptions gone
// from Redis.
func TestThreeReplicasBehaveAsOne(t *testing.T) {
	redisAddr := testenv.Redis(t)
	testenv.PHP(t)
	rdb, prefix := redisTestPrefix(t, redisAddr)

	dir := t.TempDir()
	session := func(user string) string {
		s := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": user, "roles": []string{"ROLE_USER"}, "firewall": "main"})
		return cookie(s)
	}
	alice, bob, carol, dave := session("alice"), session("bob"), session("carol"), session("dave")

	config := replicaConfig(replicaOptions{Sessions: dir, Prefix: prefix, Redis: redisAddr, Fanout: "redis", TTL: "3s", Extra: "log: {level: debug}\n"})
	g := []replica{startReplica(t, config), startReplica(t, config), startReplica(t, config)}

	dial := func(r replica, cookie string) *wampV1Client {
		c, err := dialWAMP(t, r.Addr, dialOptions{Cookie: cookie})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.close)
		return c
	}
	const topic = "acme/relay/lobby"
	a, b, c, d := dial(g[0], alice), dial(g[1], bob), dial(g[2], carol), dial(g[1], dave)
	for _, cl := range []*wampV1Client{a, b, c, d} {
		cl.send(5, topic)
	}
	// Subscribing in Redis follows the first local subscriber
	// asynchronously: wait until every replica listens on the topic's
	// channel. (Disconnects travel on the command stream, which every
	// replica reads from its own start: nothing to wait for.)
	channel := prefix + "fanout:" + topic
	numsubOf := func(channel string) int64 {
		m, err := rdb.Do(context.Background(), rdb.B().PubsubNumsub().Channel(channel).Build()).ToArray()
		if err != nil || len(m) != 2 {
			return -1
		}
		n, _ := m[1].AsInt64()
		return n
	}
	numsub := func() int64 { return numsubOf(channel) }
	eventually(t, 10*time.Second, "three replicas subscribed to the topic's channel", func() bool {
		return numsub() == 3
	})

	expect := func(cl *wampV1Client, who, want string) {
		t.Helper()
		m := cl.next()
		assertMsg(t, m, want)
		if t.Failed() {
			t.Fatalf("%s got %s, want %s", who, m, want)
		}
	}

	t.Run("client publish reaches every replica", func(t *testing.T) {
		a.send(7, topic, "hello")
		for who, cl := range map[string]*wampV1Client{"alice": a, "bob": b, "carol": c, "dave": d} {
			expect(cl, who, `[8,"acme/relay/lobby",{"msg":"hello"}]`)
		}
	})

	t.Run("exclude and eligible name sessions on other replicas", func(t *testing.T) {
		// bob excludes carol (on another replica) and himself.
		b.send(7, topic, "not for carol", []string{c.SessionID, b.SessionID})
		expect(a, "alice", `[8,"acme/relay/lobby",{"msg":"not for carol"}]`)
		expect(d, "dave", `[8,"acme/relay/lobby",{"msg":"not for carol"}]`)
		// Eligible: only carol, on replica 2, from alice on replica 0.
		a.send(7, topic, "carol only", []string{}, []string{c.SessionID})
		expect(c, "carol", `[8,"acme/relay/lobby",{"msg":"carol only"}]`)
	})

	t.Run("push API on one replica reaches all", func(t *testing.T) {
		if status, body := g[1].apiCall(t, "POST", "/api/publish", map[string]any{"topic": topic, "payload": map[string]int{"n": 1}}); status != 202 {
			t.Fatalf("publish: %d %s", status, body)
		}
		for who, cl := range map[string]*wampV1Client{"alice": a, "bob": b, "carol": c, "dave": d} {
			expect(cl, who, `[8,"acme/relay/lobby",{"msg":{"n":1}}]`)
		}
	})

	t.Run("user-directed push finds users on other replicas", func(t *testing.T) {
		// carol is on replica 2; the push enters at replica 0. Eligible
		// users pass through the payload as is (no handler).
		if status, body := g[0].apiCall(t, "POST", "/api/publish", map[string]any{"topic": topic, "payload": "for carol", "eligible_users": []string{"carol"}}); status != 202 {
			t.Fatalf("publish: %d %s", status, body)
		}
		expect(c, "carol", `[8,"acme/relay/lobby","for carol"]`)
		// The others did not get it: their next event is the next push.
		if status, body := g[0].apiCall(t, "POST", "/api/publish", map[string]any{"topic": topic, "payload": "all", "excluded_users": []string{"carol"}}); status != 202 {
			t.Fatalf("publish: %d %s", status, body)
		}
		for who, cl := range map[string]*wampV1Client{"alice": a, "bob": b, "dave": d} {
			expect(cl, who, `[8,"acme/relay/lobby","all"]`)
		}
	})

	t.Run("client storage is shared", func(t *testing.T) {
		for i, r := range g {
			if got := r.clientUsers(t, ""); !slices.Equal(got, []string{"alice", "bob", "carol", "dave"}) {
				t.Errorf("replica %d sees clients %v", i, got)
			}
		}
	})

	t.Run("disconnect on one replica closes the user on another", func(t *testing.T) {
		// bob is on replica 1 only: replica 0 closes none itself, and
		// hands the command to Redis.
		status, body := g[0].apiCall(t, "POST", "/api/disconnect", map[string]string{"username": "bob"})
		if status != 200 || !bytes.Contains(body, []byte(`"disconnected":0`)) || !bytes.Contains(body, []byte(`"relayed":true`)) {
			t.Fatalf("disconnect: %d %s", status, body)
		}
		if code := b.expectClose(); code != ws.StatusCode(4002) {
			t.Fatalf("bob closed with %d, want 4002", code)
		}
		eventually(t, 10*time.Second, "bob gone from the client storage", func() bool {
			return !slices.Contains(g[2].clientUsers(t, ""), "bob")
		})
	})

	t.Run("killing a replica leaves the others unaffected", func(t *testing.T) {
		if err := g[2].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the dead replica's subscription gone from Redis", func() bool { return numsub() == 2 })
		a.send(7, topic, "after the crash")
		expect(a, "alice", `[8,"acme/relay/lobby",{"msg":"after the crash"}]`)
		expect(d, "dave", `[8,"acme/relay/lobby",{"msg":"after the crash"}]`)
		// A crashed replica removes nothing: its clients lapse by TTL.
		eventually(t, 20*time.Second, "carol's entry lapsed after the client storage TTL", func() bool {
			return !slices.Contains(g[0].clientUsers(t, ""), "carol")
		})
		if got := g[1].clientUsers(t, ""); !slices.Equal(got, []string{"alice", "dave"}) {
			t.Errorf("after the crash replica 1 sees %v, want [alice dave]", got)
		}
	})
}
