package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/storage"
)

// controlNode is one Control under test with the users it was told to
// disconnect.
type controlNode struct {
	*Control
	mu    sync.Mutex
	users []string
}

func (n *controlNode) disconnected() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.users)
}

// newControlNode starts a Control closed (and checked to close in time)
// when the test ends.
func newControlNode(t testing.TB, o ControlOptions) *controlNode {
	t.Helper()
	n := &controlNode{}
	o.OnDisconnect = func(user string) {
		n.mu.Lock()
		n.users = append(n.users, user)
		n.mu.Unlock()
	}
	o.Logger = testOptions(t, &o.Redis)
	c, err := NewControl(o)
	if err != nil {
		t.Fatalf("NewControl: %v", err)
	}
	n.Control = c
	closeAtEnd(t, c.Close)
	return n
}

// waitControlSubscribed waits until Redis counts n subscribers of both the
// control channel and the legacy one.
func waitControlSubscribed(t testing.TB, env fanoutEnv, prefix string, n int64) {
	t.Helper()
	pollFor(t, 10*time.Second, "control channels subscribed", func() bool {
		return env.numsub(t, prefix+"control") == n && env.numsub(t, legacyControlChannel(prefix)) == n
	})
}

// TestControlDisconnect: what A sends reaches B and C once each (the
// bridged legacy copy they also get is skipped), never A itself, and
// Redis carries it on the control channel, not on a fan-out channel.
func TestControlDisconnect(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) { testControlDisconnect(t, standaloneFanoutEnv(t, m.sharded)) })
	}
}

func testControlDisconnect(t *testing.T, env fanoutEnv) {
	prefix := uniqueName(t, "wsgate_t_") + ":"
	mk := func(node string) *controlNode {
		return newControlNode(t, ControlOptions{Redis: env.redis, Prefix: prefix, NodeID: node})
	}
	a, b, c := mk("node-a"), mk("node-b"), mk("node-c")
	waitControlSubscribed(t, env, prefix, 3)

	if err := a.Disconnect(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	if err := b.Disconnect(context.Background(), "carol"); err != nil {
		t.Fatal(err)
	}
	// Every node takes 2 messages per command (control and legacy
	// channel), its own echoes included: 4 each.
	pollFor(t, 10*time.Second, "every message taken", func() bool {
		return a.received.Load() == 4 && b.received.Load() == 4 && c.received.Load() == 4
	})
	for _, tc := range []struct {
		n    *controlNode
		name string
		want []string
	}{{a, "A", []string{"carol"}}, {b, "B", []string{"bob"}}, {c, "C", []string{"bob", "carol"}}} {
		if got := tc.n.disconnected(); !slices.Equal(got, tc.want) {
			t.Errorf("%s disconnected %q; want %q", tc.name, got, tc.want)
		}
	}
}

// TestControlIgnoresWhatIsNotACommand: malformed, foreign-version,
// unknown, incomplete and own commands on the control channel are
// dropped; a good one after them is carried out.
func TestControlIgnoresWhatIsNotACommand(t *testing.T) {
	env := standaloneFanoutEnv(t, false)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	b := newControlNode(t, ControlOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-b"})
	waitControlSubscribed(t, env, prefix, 1)
	bad := []string{
		`not json`,
		`["disconnect","bob"]`,
		`{"v":2,"op":"disconnect","origin":"node-a","username":"bob"}`,
		`{"op":"disconnect","origin":"node-a","username":"bob"}`,
		`{"v":1,"op":"disconnect","username":"bob"}`,
		`{"v":1,"op":"disconnect","origin":"node-b","username":"bob"}`,
		`{"v":1,"op":"disconnect","origin":"node-a"}`,
		`{"v":1,"op":"reboot","origin":"node-a","username":"bob"}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"` + strings.Repeat("b", controlMaxBytes) + `"}`,
	}
	for _, msg := range bad {
		env.publishRaw(t, prefix+"control", []byte(msg))
	}
	env.publishRaw(t, prefix+"control", []byte(`{"v":1,"op":"disconnect","origin":"node-a","username":"dave","added_later":true}`))
	pollFor(t, 10*time.Second, "every message taken", func() bool { return b.received.Load() == int64(len(bad)+1) })
	if got := b.disconnected(); !slices.Equal(got, []string{"dave"}) {
		t.Fatalf("disconnected %q; want only dave", got)
	}
	// What receivers would drop is not sent: Redis is up, yet these fail.
	for _, user := range []string{"", strings.Repeat("u", controlMaxBytes)} {
		if err := b.Disconnect(context.Background(), user); err == nil {
			t.Errorf("Disconnect of a user of %d bytes succeeded", len(user))
		}
	}
}

// TestControlPreviousRelease: a replica of the previous release sends a
// disconnect as a fan-out envelope on its control topic; this release
// carries it out. And what this release sends there is what the previous
// release's receiver (storage.RedisFanout's onMessage, then
// gateway.deliverRelayed at commit 8e6ce97, replayed below) carries out.
func TestControlPreviousRelease(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			b := newControlNode(t, ControlOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-b"})
			waitControlSubscribed(t, env, prefix, 1)

			// The old replica listens as it did: on the fan-out channel of
			// its control topic.
			var (
				mu  sync.Mutex
				old []string
			)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			_, opt, err := redisClient(env.redis)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				defer close(done)
				receive(ctx, opt, m.sharded, []string{prefix + "fanout:" + "\x00wsgate-control"}, func(channel string, data []byte) {
					if user, ok := previousReleaseReceive(t, prefix, "old-node", channel, data); ok {
						mu.Lock()
						old = append(old, user)
						mu.Unlock()
					}
				}, nil)
			}()
			t.Cleanup(func() { cancel(); <-done })
			pollFor(t, 10*time.Second, "the old replica subscribed", func() bool {
				return env.numsub(t, legacyControlChannel(prefix)) == 2
			})

			if err := b.Disconnect(context.Background(), "erin"); err != nil {
				t.Fatal(err)
			}
			pollFor(t, 10*time.Second, "the old replica hears it", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(old) == 1
			})
			if old[0] != "erin" {
				t.Fatalf("the old replica disconnects %q; want erin", old[0])
			}

			// The old replica sends, exactly as it did.
			legacy := mustEncodeFanout(t, FanoutMessage{Origin: "old-node", SentAt: time.Now(), Payload: []byte(`{"op":"disconnect","username":"frank"}`)})
			env.publishRaw(t, legacyControlChannel(prefix), legacy)
			pollFor(t, 10*time.Second, "B carries out the old replica's command", func() bool {
				return slices.Contains(b.disconnected(), "frank")
			})
			// B took its own two echoes and the old replica's command; the
			// bridged copy of erin was its own, so nothing but frank.
			pollFor(t, 10*time.Second, "B took every message", func() bool { return b.received.Load() == 3 })
			if got := b.disconnected(); !slices.Equal(got, []string{"frank"}) {
				t.Fatalf("B disconnected %q; want only frank", got)
			}
		})
	}
}

// previousReleaseReceive is what a replica of the previous release did with
// a message on its fan-out channel of the control topic: decode the
// envelope (ignoring its own), then the JSON command, and disconnect the
// user. It returns the user, or false for its own message, which it
// ignored; anything else it would ignore fails the test.
func previousReleaseReceive(t testing.TB, prefix, self, channel string, data []byte) (string, bool) {
	topic, ok := strings.CutPrefix(channel, prefix+"fanout:")
	if !ok || topic != "\x00wsgate-control" {
		t.Errorf("message on %q", channel)
		return "", false
	}
	m, own, err := decodeFanoutExcept(data, self)
	if own {
		return "", false
	}
	if err != nil {
		t.Errorf("old replica cannot decode: %v", err)
		return "", false
	}
	var c struct {
		Op       string `json:"op"`
		Username string `json:"username,omitempty"`
	}
	if err := json.Unmarshal(m.Payload, &c); err != nil || c.Op != "disconnect" || c.Username == "" {
		t.Errorf("old replica ignores %s: %v", m.Payload, err)
		return "", false
	}
	return c.Username, true
}

// TestControlRedisDown: with Redis not answering, Disconnect fails within
// the lookup timeout instead of pretending the command went out.
func TestControlRedisDown(t *testing.T) {
	c := newControlNode(t, ControlOptions{
		Redis:  storage.RedisOptions{Addrs: []string{blackhole(t)}, LookupTimeout: 300 * time.Millisecond},
		NodeID: "n",
	})
	for range 2 { // the second finds the failed dial remembered, or dials again
		if err := c.Disconnect(context.Background(), "bob"); err == nil {
			t.Fatal("Disconnect succeeded with Redis hung")
		}
	}

}

// controlGoroutines returns the stacks of live goroutines running control
// code: the receivers NewControl starts.
func controlGoroutines() []string { return goroutinesRunning("cluster.NewControl") }

// TestControlClose: Close ends the receivers and is idempotent; Disconnect
// fails after it.
func TestControlClose(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			o := env.redis
			o.LookupTimeout = 5 * time.Second
			c, err := NewControl(ControlOptions{Redis: o, Prefix: prefix, NodeID: "n", OnDisconnect: func(string) {}})
			if err != nil {
				t.Fatal(err)
			}
			waitControlSubscribed(t, env, prefix, 1)
			if err := c.Disconnect(context.Background(), "bob"); err != nil {
				t.Fatal(err)
			}
			if len(controlGoroutines()) == 0 {
				t.Fatal("no receiver found while running: the check below would prove nothing")
			}
			for range 2 {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Disconnect(context.Background(), "bob"); !errors.Is(err, errClosed) {
				t.Fatalf("Disconnect after Close: %v", err)
			}
			pollFor(t, 5*time.Second, "receivers gone", func() bool { return len(controlGoroutines()) == 0 })
			pollFor(t, 10*time.Second, "unsubscribed in Redis", func() bool {
				return env.numsub(t, prefix+"control") == 0 && env.numsub(t, legacyControlChannel(prefix)) == 0
			})
		})
	}
}

func TestNewControlRejectsBadOptions(t *testing.T) {
	ok := ControlOptions{Redis: storage.RedisOptions{Addrs: []string{"127.0.0.1:6379"}}, NodeID: "n", OnDisconnect: func(string) {}}
	cases := []struct {
		name  string
		edit  func(o *ControlOptions)
		field string
	}{
		{"no address", func(o *ControlOptions) { o.Redis.Addrs = nil }, "Redis"},
		{"no node id", func(o *ControlOptions) { o.NodeID = "" }, "NodeID"},
		{"long node id", func(o *ControlOptions) { o.NodeID = strings.Repeat("n", 256) }, "NodeID"},
		{"no handler", func(o *ControlOptions) { o.OnDisconnect = nil }, "OnDisconnect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			c, err := NewControl(o)
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("error %q does not name %s", err, tc.field)
			}
		})
	}
}
