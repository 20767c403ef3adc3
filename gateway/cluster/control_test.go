package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// controlNode is one Control under test with the users it was told to
// disconnect, and the time before which each one's connections were to go.
type controlNode struct {
	*Control
	mu     sync.Mutex
	users  []string
	before []time.Time
}

func (n *controlNode) disconnected() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.users)
}

func (n *controlNode) befores() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.before)
}

// newControlNode starts a Control closed (and checked to close in time)
// when the test ends.
func newControlNode(t testing.TB, o ControlOptions) *controlNode {
	t.Helper()
	return newControlNodeAt(t, o, time.Now())
}

// newControlNodeAt is newControlNode for a replica that started at start.
// A Logger in o is kept (tests reading the log set one).
func newControlNodeAt(t testing.TB, o ControlOptions, start time.Time) *controlNode {
	t.Helper()
	n := &controlNode{}
	o.OnDisconnect = func(user string, before time.Time) {
		n.mu.Lock()
		n.users = append(n.users, user)
		n.before = append(n.before, before)
		n.mu.Unlock()
	}
	logger := testOptions(t, &o.Redis)
	if o.Logger == nil {
		o.Logger = logger
	}
	c, err := newControlAt(o, start)
	if err != nil {
		t.Fatalf("NewControl: %v", err)
	}
	n.Control = c
	closeAtEnd(t, c.Close)
	return n
}

// waitControlSubscribed waits until Redis counts n subscribers of the
// previous release's control channel. The stream needs no wait: a Control
// reads it from its start, whenever it gets there.
func waitControlSubscribed(t testing.TB, env fanoutEnv, prefix string, n int64) {
	t.Helper()
	pollFor(t, 10*time.Second, "legacy control channel subscribed", func() bool {
		return env.numsub(t, legacyControlChannel(prefix)) == n
	})
}

// xaddRaw writes an entry of the given field and value to the control
// stream of prefix, as a foreign writer might.
func xaddRaw(t testing.TB, admin rueidis.Client, prefix, field, value string) {
	t.Helper()
	cmd := admin.B().Xadd().Key(prefix+"control-stream").Id("*").FieldValue().FieldValue(field, value).Build()
	if err := admin.Do(context.Background(), cmd).Error(); err != nil {
		t.Fatalf("XADD: %v", err)
	}
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

	sent := time.Now()
	if err := a.Disconnect(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	if err := b.Disconnect(context.Background(), "carol"); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	// Every node takes 2 messages per command (stream entry and legacy
	// channel), its own included: 4 each.
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
		// The connections to close are those established by the time the
		// command was sent (to the millisecond), give or take the slack.
		for _, before := range tc.n.befores() {
			if before.Before(sent.Add(controlClockSlack-time.Millisecond)) || before.After(done.Add(controlClockSlack)) {
				t.Errorf("%s: before %v; want between %v and %v plus %v", tc.name, before, sent, done, controlClockSlack)
			}
		}
	}
}

// TestControlIgnoresWhatIsNotACommand: malformed, foreign-version,
// unknown, incomplete and own commands in the stream, and entries without
// a command, are skipped; a good one after them is carried out.
func TestControlIgnoresWhatIsNotACommand(t *testing.T) {
	admin := redisAdmin(t, testenv.Redis(t))
	env := standaloneFanoutEnv(t, false)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	b := newControlNode(t, ControlOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-b"})
	bad := []string{
		`not json`,
		`["disconnect","bob"]`,
		`{"v":2,"op":"disconnect","origin":"node-a","username":"bob","at":1}`,
		`{"op":"disconnect","origin":"node-a","username":"bob","at":1}`,
		`{"v":1,"op":"disconnect","username":"bob","at":1}`,
		`{"v":1,"op":"disconnect","origin":"node-b","username":"bob","at":1}`,
		`{"v":1,"op":"disconnect","origin":"node-a","at":1}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"bob"}`,
		`{"v":1,"op":"reboot","origin":"node-a","username":"bob","at":1}`,
		`{"v":1,"op":"disconnect","origin":"node-a","username":"` + strings.Repeat("b", controlMaxBytes) + `","at":1}`,
	}
	for _, msg := range bad {
		xaddRaw(t, admin, prefix, controlField, msg)
	}
	xaddRaw(t, admin, prefix, "other", `{"v":1,"op":"disconnect","origin":"node-a","username":"bob","at":1}`)
	xaddRaw(t, admin, prefix, controlField, `{"v":1,"op":"disconnect","origin":"node-a","username":"dave","at":1000,"added_later":true}`)
	pollFor(t, 10*time.Second, "every entry taken", func() bool { return b.received.Load() == int64(len(bad)+2) })
	if got := b.disconnected(); !slices.Equal(got, []string{"dave"}) {
		t.Fatalf("disconnected %q; want only dave", got)
	}
	if got, want := b.befores()[0], time.UnixMilli(1000).Add(controlClockSlack); !got.Equal(want) {
		t.Errorf("dave's connections before %v; want %v", got, want)
	}
	// What receivers would drop is not sent: Redis is up, yet these fail,
	// and not as an outage (retrying would not help).
	for _, user := range []string{"", strings.Repeat("u", controlMaxBytes)} {
		if err := b.Disconnect(context.Background(), user); err == nil || errors.Is(err, ErrControlUnavailable) {
			t.Errorf("Disconnect of a user of %d bytes: %v", len(user), err)
		}
	}
}

// TestControlReadsFromItsStart: commands written after a replica started
// but before it first read the stream are carried out (its link may take
// a while), in batches of controlReadCount, in order.
func TestControlReadsFromItsStart(t *testing.T) {
	env := standaloneFanoutEnv(t, false)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	start := time.Now()
	a := newControlNode(t, ControlOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-a"})
	const n = 2*controlReadCount + 10
	var want []string
	for i := range n {
		user := fmt.Sprint("user", i)
		want = append(want, user)
		if err := a.Disconnect(context.Background(), user); err != nil {
			t.Fatal(err)
		}
	}
	// B started before these commands; its reader gets there only now.
	b := newControlNodeAt(t, ControlOptions{Redis: env.redis, Prefix: prefix, NodeID: "node-b"}, start)
	pollFor(t, 10*time.Second, "B carries out every command", func() bool { return len(b.disconnected()) == n })
	if got := b.disconnected(); !slices.Equal(got, want) {
		t.Fatalf("B disconnected %q...; want %q...", got[:3], want[:3])
	}
}

// TestControlLinkCut: a command written while a replica's link to Redis
// was cut is carried out when the link is back; the replica logs the loss
// and the recovery once each.
func TestControlLinkCut(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	proxy := testenv.StartProxy(t, addr)
	a := newControlNode(t, ControlOptions{Redis: storage.RedisOptions{Addrs: []string{addr}}, Prefix: prefix, NodeID: "node-a"})
	rec := &recordHandler{}
	b := newControlNode(t, ControlOptions{
		Redis:  storage.RedisOptions{Addrs: []string{proxy.Addr()}, LookupTimeout: 500 * time.Millisecond},
		Prefix: prefix, NodeID: "node-b", Logger: slog.New(rec),
	})
	pollFor(t, 10*time.Second, "B reads the stream", b.linked.Load)
	if err := a.Disconnect(context.Background(), "before-cut"); err != nil {
		t.Fatal(err)
	}
	pollFor(t, 10*time.Second, "B carries out the first command", func() bool { return len(b.disconnected()) == 1 })

	proxy.Cut()
	pollFor(t, 10*time.Second, "B notices the cut", func() bool { return !b.linked.Load() })
	if err := a.Disconnect(context.Background(), "during-cut"); err != nil {
		t.Fatal(err)
	}
	// B keeps probing meanwhile, and fails.
	time.Sleep(3 * controlProbe)
	if got := b.disconnected(); len(got) != 1 {
		t.Fatalf("B disconnected %q through a cut link", got)
	}
	proxy.Restore()
	pollFor(t, 10*time.Second, "B carries out what was sent during the cut", func() bool { return len(b.disconnected()) == 2 })
	if got := b.disconnected(); !slices.Equal(got, []string{"before-cut", "during-cut"}) {
		t.Fatalf("B disconnected %q", got)
	}
	if lost, restored := rec.count("link to Redis lost"), rec.count("link to Redis restored"); lost != 1 || restored != 1 {
		t.Fatalf("logged the loss %d times and the recovery %d times; want once each", lost, restored)
	}
}

// recordHandler is a slog.Handler keeping the messages logged.
type recordHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// count returns how many messages logged contain s.
func (h *recordHandler) count(s string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
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

// TestControlLegacyFailureIsNotFatal: a disconnect Redis took on the
// stream succeeds even when its copy for the previous release could not be
// published (here a Redis user without PUBLISH); OnLegacyFailure hears it.
func TestControlLegacyFailureIsNotFatal(t *testing.T) {
	addr := testenv.Redis(t)
	admin := redisAdmin(t, addr)
	user := uniqueName(t, "wsgate_t_nopub_")
	ctx := context.Background()
	if err := admin.Do(ctx, admin.B().Arbitrary("ACL", "SETUSER", user, "on", "nopass", "~*", "&*", "+@all", "-publish", "-spublish").Build()).Error(); err != nil {
		t.Skipf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { admin.Do(ctx, admin.B().Arbitrary("ACL", "DELUSER", user).Build()) })
	prefix := uniqueName(t, "wsgate_t_") + ":"
	var failures atomic.Int64
	a := newControlNode(t, ControlOptions{
		Redis:  storage.RedisOptions{Addrs: []string{addr}, Username: user},
		Prefix: prefix, NodeID: "node-a",
		OnLegacyFailure: func(error) { failures.Add(1) },
	})
	b := newControlNode(t, ControlOptions{Redis: storage.RedisOptions{Addrs: []string{addr}}, Prefix: prefix, NodeID: "node-b"})
	if err := a.Disconnect(ctx, "bob"); err != nil {
		t.Fatalf("Disconnect failed over the legacy copy: %v", err)
	}
	if failures.Load() != 1 {
		t.Fatalf("OnLegacyFailure called %d times; want 1", failures.Load())
	}
	pollFor(t, 10*time.Second, "B carries out the command", func() bool { return slices.Equal(b.disconnected(), []string{"bob"}) })
}

// cutProxyAddr is an address that accepts connections and closes them at
// once, as a Redis that went away looks.
func cutProxyAddr(t testing.TB) string {
	p := testenv.StartProxy(t, testenv.Redis(t))
	p.Cut()
	return p.Addr()
}

// TestControlRedisDown: with Redis hung or gone, Disconnect fails within
// the lookup timeout, as ErrControlUnavailable, instead of pretending the
// command went out.
func TestControlRedisDown(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct{ name, addr string }{
		{"hung", blackhole(t)},
		{"gone", cutProxyAddr(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newControlNode(t, ControlOptions{
				Redis:  storage.RedisOptions{Addrs: []string{tc.addr}, LookupTimeout: timeout},
				NodeID: "n",
			})
			for range 2 { // the second finds the failed dial remembered, or dials again
				began := time.Now()
				err := c.Disconnect(context.Background(), "bob")
				if !errors.Is(err, ErrControlUnavailable) {
					t.Fatalf("Disconnect with Redis %s: %v", tc.name, err)
				}
				if took := time.Since(began); took > 2*timeout {
					t.Fatalf("Disconnect took %v; lookup timeout %v", took, timeout)
				}
			}
		})
	}
}

// controlGoroutines returns the stacks of live goroutines running control
// code: the receivers NewControl starts (in newControlAt).
func controlGoroutines() []string { return goroutinesRunning("cluster.newControlAt") }

// TestControlClose: Close ends the receivers and is idempotent; Disconnect
// fails after it.
func TestControlClose(t *testing.T) {
	for _, m := range fanoutModes {
		t.Run(m.name, func(t *testing.T) {
			env := standaloneFanoutEnv(t, m.sharded)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			o := env.redis
			o.LookupTimeout = 5 * time.Second
			c, err := NewControl(ControlOptions{Redis: o, Prefix: prefix, NodeID: "n", OnDisconnect: func(string, time.Time) {}})
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
			if err := c.Disconnect(context.Background(), "bob"); !errors.Is(err, errClosed) || !errors.Is(err, ErrControlUnavailable) {
				t.Fatalf("Disconnect after Close: %v", err)
			}
			pollFor(t, 5*time.Second, "receivers gone", func() bool { return len(controlGoroutines()) == 0 })
			pollFor(t, 10*time.Second, "unsubscribed in Redis", func() bool {
				return env.numsub(t, legacyControlChannel(prefix)) == 0
			})
		})
	}
}

func TestNewControlRejectsBadOptions(t *testing.T) {
	ok := ControlOptions{Redis: storage.RedisOptions{Addrs: []string{"127.0.0.1:6379"}}, NodeID: "n", OnDisconnect: func(string, time.Time) {}}
	cases := []struct {
		name  string
		edit  func(o *ControlOptions)
		field string
	}{
		{"no address", func(o *ControlOptions) { o.Redis.Addrs = nil }, "Redis"},
		{"no node id", func(o *ControlOptions) { o.NodeID = "" }, "NodeID"},
		{"long node id", func(o *ControlOptions) { o.NodeID = strings.Repeat("n", 256) }, "NodeID"},
		{"no handler", func(o *ControlOptions) { o.OnDisconnect = nil }, "OnDisconnect"},
		{"negative retention", func(o *ControlOptions) { o.Retention = -time.Second }, "Retention"},
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
