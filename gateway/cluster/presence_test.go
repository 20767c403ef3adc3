package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// fakePresence is one replica's local presence, as the node keeps it.
type fakePresence struct {
	mu     sync.Mutex
	topics map[string]PresenceSnapshot
}

func (f *fakePresence) set(topic string, users []string, anon int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(users) == 0 && anon == 0 {
		delete(f.topics, topic)
		return
	}
	f.topics[topic] = PresenceSnapshot{Users: users, Anonymous: anon}
}

func (f *fakePresence) source() PresenceSource {
	return PresenceSource{
		Local: func(topic string, max int) PresenceSnapshot {
			f.mu.Lock()
			defer f.mu.Unlock()
			s := f.topics[topic]
			if len(s.Users) > max {
				s.Users, s.Truncated = s.Users[:max], true
			}
			return s
		},
		Topics: func() []string {
			f.mu.Lock()
			defer f.mu.Unlock()
			var out []string
			for t := range f.topics {
				out = append(out, t)
			}
			return out
		},
	}
}

func newTestPresence(t *testing.T, addr, prefix, node string, ttl time.Duration, max int) (*Presence, *fakePresence) {
	t.Helper()
	o := storage.RedisOptions{Addrs: []string{addr}}
	log := testOptions(t, &o)
	p, err := NewPresence(o, prefix, node, ttl, max, log)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePresence{topics: map[string]PresenceSnapshot{}}
	p.SetSource(f.source())
	t.Cleanup(p.Close)
	return p, f
}

// TestPresenceDirectory: two replicas' presence of a topic is listed as
// one (users once, anonymous summed, bounded with truncation); a replica
// whose last subscriber left, or that closed, no longer counts; a crashed
// replica's snapshot stops counting once expired and is deleted.
func TestPresenceDirectory(t *testing.T) {
	addr := testenv.Redis(t)
	admin := redisAdmin(t, addr)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	ctx := context.Background()
	const topic = "room/1"
	a, fa := newTestPresence(t, addr, prefix, "node-a", 30*time.Second, 3)
	b, fb := newTestPresence(t, addr, prefix, "node-b", 30*time.Second, 3)
	list := func() PresenceSnapshot {
		t.Helper()
		l, err := a.List(ctx, topic, 3)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	show := func(l PresenceSnapshot) string {
		return fmt.Sprintf("%s anon=%d trunc=%v", strings.Join(l.Users, ","), l.Anonymous, l.Truncated)
	}
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"a only", func() { fa.set(topic, []string{"alice"}, 1); a.Changed(topic) }, "alice anon=1 trunc=false"},
		{"b too, alice on both", func() { fb.set(topic, []string{"alice", "bob"}, 2); b.Changed(topic) }, "alice,bob anon=3 trunc=false"},
		{"over the bound", func() { fb.set(topic, []string{"alice", "bob", "carol", "dave"}, 2); b.Changed(topic) }, "alice,bob,carol anon=3 trunc=true"},
		{"b empties", func() { fb.set(topic, nil, 0); b.Changed(topic) }, "alice anon=1 trunc=false"},
		{"b back, then closes", func() {
			fb.set(topic, []string{"zed"}, 0)
			b.Changed(topic)
			pollFor(t, 10*time.Second, "zed listed", func() bool { return slices.Contains(list().Users, "zed") })
			fb.set(topic, nil, 0)
			b.Changed(topic)
			b.Close()
		}, "alice anon=1 trunc=false"},
	}
	for _, st := range steps {
		st.do()
		var got string
		pollFor(t, 10*time.Second, st.name, func() bool { got = show(list()); return got == st.want })
	}
	// A crashed replica: its snapshot expired a second ago.
	v, _ := json.Marshal(presenceField{Exp: time.Now().Add(-time.Second).UnixMilli(), PresenceSnapshot: PresenceSnapshot{Users: []string{"ghost"}}})
	key := prefix + "presence:" + topic
	if err := admin.Do(ctx, admin.B().Hset().Key(key).FieldValue().FieldValue("node-crashed", string(v)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got := show(list()); got != "alice anon=1 trunc=false" {
		t.Errorf("with an expired snapshot: %s", got)
	}
	if n, _ := admin.Do(ctx, admin.B().Hexists().Key(key).Field("node-crashed").Build()).AsBool(); n {
		t.Error("expired snapshot not deleted by the reader")
	}
	// The key has an expiry: it lapses once no live replica refreshes it.
	if ms, _ := admin.Do(ctx, admin.B().Pttl().Key(key).Build()).AsInt64(); ms <= 0 || ms > 30000 {
		t.Errorf("key PTTL %d ms, want within the TTL", ms)
	}
}

// TestPresenceRefresh: a replica rewrites its snapshots every TTL/3, so
// they outlive TTL while it runs; once it stops (a crash: no Close),
// they expire.
func TestPresenceRefresh(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	ctx := context.Background()
	a, fa := newTestPresence(t, addr, prefix, "node-a", 600*time.Millisecond, 10)
	reader, _ := newTestPresence(t, addr, prefix, "reader", time.Minute, 10)
	fa.set("t", []string{"alice"}, 0)
	a.Changed("t")
	pollFor(t, 10*time.Second, "listed", func() bool {
		l, err := reader.List(ctx, "t", 10)
		return err == nil && len(l.Users) == 1
	})
	time.Sleep(1500 * time.Millisecond) // more than TTL: only refreshes keep it
	if l, err := reader.List(ctx, "t", 10); err != nil || len(l.Users) != 1 {
		t.Fatalf("after 2.5 TTL of refreshes: %+v %v", l, err)
	}
	// Crash: stop the writer without it deleting anything.
	a.src.Store(nil)
	pollFor(t, 10*time.Second, "expired", func() bool {
		l, err := reader.List(ctx, "t", 10)
		return err == nil && len(l.Users) == 0
	})
}

// emitted records what the writers of several replicas announced.
type emitted struct {
	mu  sync.Mutex
	log []string
}

func (e *emitted) source(f *fakePresence, node string, watched ...string) PresenceSource {
	s := f.source()
	s.Watched = func() []string { return watched }
	s.Emit = func(topic string, joins, leaves []string, anon int) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, u := range joins {
			e.log = append(e.log, node+" join "+u)
		}
		for _, u := range leaves {
			e.log = append(e.log, node+" leave "+u)
		}
		for range anon {
			e.log = append(e.log, node+" leave anonymous")
		}
	}
	return s
}

func (e *emitted) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.log
	e.log = nil
	return out
}

// TestPresenceEventsClusterWide: each change of a topic's cluster-wide
// presence is announced exactly once, by the replica whose write made it:
// a user with sessions on two replicas joins once and leaves with its
// last; a crashed replica's users (and anonymous sessions) leave once its
// snapshot expired, announced by a replica that only watches the topic.
func TestPresenceEventsClusterWide(t *testing.T) {
	addr := testenv.Redis(t)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	const topic = "room/1"
	ev := &emitted{}
	mk := func(node string, ttl time.Duration, watched ...string) (*Presence, *fakePresence) {
		p, f := newTestPresence(t, addr, prefix, node, ttl, 100)
		p.SetSource(ev.source(f, node, watched...))
		return p, f
	}
	a, fa := mk("a", 30*time.Second)
	b, fb := mk("b", 30*time.Second)
	// w has nobody on the topic, only watchers; short TTL so that its
	// refresh (every TTL/3) notices the crash soon.
	_, _ = mk("w", 900*time.Millisecond, topic)
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"alice on a", func() { fa.set(topic, []string{"alice"}, 0); a.Changed(topic) }, "a join alice"},
		{"alice on b too, bob on b", func() { fb.set(topic, []string{"alice", "bob"}, 0); b.Changed(topic) }, "b join bob"},
		{"alice leaves a", func() { fa.set(topic, nil, 0); a.Changed(topic) }, ""},
		{"alice leaves b", func() { fb.set(topic, []string{"bob"}, 1); b.Changed(topic) }, "b leave alice"},
	}
	for _, st := range steps {
		st.do()
		var got []string
		if st.want == "" {
			// Nothing is announced: shown by a later change arriving alone.
			fa.set("marker", []string{"m"}, 0)
			a.Changed("marker")
			pollFor(t, 10*time.Second, st.name, func() bool { got = append(got, ev.take()...); return len(got) > 0 })
			if strings.Join(got, "|") != "a join m" {
				t.Fatalf("%s: announced %q, want nothing", st.name, got)
			}
			fa.set("marker", nil, 0)
			a.Changed("marker")
			pollFor(t, 10*time.Second, "marker gone", func() bool { return len(ev.take()) > 0 })
			continue
		}
		pollFor(t, 10*time.Second, st.name, func() bool { got = append(got, ev.take()...); return len(got) > 0 })
		if strings.Join(got, "|") != st.want {
			t.Fatalf("%s: announced %q, want %q", st.name, got, st.want)
		}
	}
	// b crashes with bob and an anonymous session: w announces them once
	// b's snapshot is older than b's TTL (30s: made to expire by hand).
	b.src.Store(nil)
	ctx := context.Background()
	admin := redisAdmin(t, addr)
	v, _ := json.Marshal(presenceField{Exp: time.Now().Add(-time.Second).UnixMilli(), PresenceSnapshot: PresenceSnapshot{Users: []string{"bob"}, Anonymous: 1}})
	if err := admin.Do(ctx, admin.B().Hset().Key(prefix+"presence:"+topic).FieldValue().FieldValue("b", string(v)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var got []string
	pollFor(t, 10*time.Second, "crashed replica's users leave", func() bool { got = append(got, ev.take()...); return len(got) >= 2 })
	time.Sleep(700 * time.Millisecond) // a second refresh of w must not announce them again
	got = append(got, ev.take()...)
	if strings.Join(got, "|") != "w leave bob|w leave anonymous" {
		t.Fatalf("after the crash: %q, want w leave bob, w leave anonymous, once", got)
	}
}
