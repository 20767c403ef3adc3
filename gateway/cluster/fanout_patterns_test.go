package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

func TestPatternGlob(t *testing.T) {
	for _, tc := range []struct {
		match, pattern, glob string
		yes, no              []string
	}{
		{"prefix", "user/", `user/*`, []string{"user/a", "user/a/b", "user/"}, []string{"use", "xuser/a"}},
		{"prefix", "a*b?[c]\\", `a\*b\?\[c\]\\*`, []string{"a*b?[c]\\x"}, []string{"aXb?[c]\\x", "a*bX[c]\\"}},
		{"wildcard", "user//inbox", `user/*/inbox`, []string{"user/a/inbox", "user/a/b/inbox"}, []string{"user/a/outbox", "users/a/inbox"}},
		{"wildcard", "/", `*/*`, []string{"a/b", "/"}, []string{"ab"}},
		{"wildcard", "a/*/", `a/\*/*`, []string{"a/*/x"}, []string{"a/b/x"}},
	} {
		g := patternGlob(tc.match, tc.pattern)
		if g != tc.glob {
			t.Errorf("%s %q: glob %q, want %q", tc.match, tc.pattern, g, tc.glob)
		}
		for _, s := range tc.yes {
			if !globMatch(g, s) {
				t.Errorf("%q should match %q", g, s)
			}
		}
		for _, s := range tc.no {
			if globMatch(g, s) {
				t.Errorf("%q should not match %q", g, s)
			}
		}
	}
}

// FuzzGlobMatch: globMatch agrees with a plain reading of the globs
// patternGlob makes: a prefix glob matches exactly the strings with that
// prefix, and never panics.
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{{"user/", "user/alice"}, {"a*", "a*b"}, {"[x]", "[x]y"}, {"\\", "\\"}, {"", "x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, prefix, s string) {
		if got, want := globMatch(patternGlob("prefix", prefix), s), strings.HasPrefix(s, prefix); got != want {
			t.Fatalf("prefix %q on %q: %v, want %v", prefix, s, got, want)
		}
		_ = globMatch(patternGlob("wildcard", prefix), s)
	})
}

// Across replicas in pub/sub and streams mode: a replica watching only a
// pattern gets the topics it covers, once each, even when it also watches
// the topic exactly and two patterns cover it; not the others. Sharded
// pub/sub says it carries no patterns.
func TestFanoutPatterns(t *testing.T) {
	for _, mode := range []string{FanoutPubSub, FanoutStreams} {
		t.Run(mode, func(t *testing.T) {
			addr := testenv.Redis(t)
			prefix := uniqueName(t, "wsgate_t_") + ":"
			mk := func(node string) *fanoutNode {
				return newFanoutNode(t, FanoutOptions{Redis: storage.RedisOptions{Addrs: []string{addr}}, Prefix: prefix, NodeID: node, Mode: mode})
			}
			a, b := mk("node-a"), mk("node-b")
			if !b.Patterns() {
				t.Fatal("Patterns false")
			}
			b.WatchPattern("prefix", "user/")
			b.WatchPattern("wildcard", "user//x")
			b.WatchPattern("wildcard", "user//x") // same glob, counted
			b.Watch("user/alice")
			if mode == FanoutPubSub {
				pollFor(t, 10*time.Second, "psubscribe", func() bool { return b.PatternsWatched() == 2 && b.Watching() == 1 })
			} // streams: the reader reads every entry from its start, and looks at what is watched as it reads
			for i, topic := range []string{"user/alice", "user/bob", "public/x", "user/bob/x", "other/y"} {
				a.Publish(topic, []byte(fmt.Sprint(i)), Audience{})
			}
			b.Watch("end/marker")
			a.Publish("end/marker", []byte("9"), Audience{})
			pollFor(t, 10*time.Second, "marker", func() bool { return b.rec.has("end/marker", "9") })
			var got []string
			for _, m := range b.rec.all() {
				got = append(got, m.Topic+"="+string(m.Payload))
			}
			want := "user/alice=0 user/bob=1 user/bob/x=3 end/marker=9"
			if strings.Join(got, " ") != want {
				t.Errorf("delivered %q, want %q", strings.Join(got, " "), want)
			}
			b.obs.mu.Lock()
			dups := b.obs.dups
			b.obs.mu.Unlock()
			if dups != 0 || b.obs.lostTotal() != 0 {
				t.Errorf("copies counted: dups %d lost %d", dups, b.obs.lostTotal())
			}
			// Unwatching: one of the two wildcard watchers leaves, the
			// glob stays; then all go.
			b.UnwatchPattern("wildcard", "user//x")
			b.UnwatchPattern("prefix", "user/")
			if mode == FanoutPubSub {
				pollFor(t, 10*time.Second, "punsubscribe", func() bool { return b.PatternsWatched() == 1 })
			}
			b.UnwatchPattern("wildcard", "user//x")
			if mode == FanoutPubSub {
				pollFor(t, 10*time.Second, "punsubscribe all", func() bool { return b.PatternsWatched() == 0 })
			}
		})
	}
	t.Run("sharded", func(t *testing.T) {
		env := standaloneFanoutEnv(t, true)
		n := newFanoutNode(t, FanoutOptions{Redis: env.redis, Prefix: uniqueName(t, "wsgate_t_") + ":", NodeID: "n"})
		if n.Patterns() {
			t.Error("sharded pub/sub claims patterns")
		}
	})
}

// Retained events in Redis: written by one replica, read by another;
// the oldest evicted past MaxTopics; an event too big not kept.
func TestRetainedRedis(t *testing.T) {
	addr := testenv.Redis(t)
	admin := redisAdmin(t, addr)
	prefix := uniqueName(t, "wsgate_t_") + ":"
	drops := make(chan string, 16)
	mk := func() *Retained {
		o := RetainedOptions{Redis: storage.RedisOptions{Addrs: []string{addr}}, Prefix: prefix, MaxTopics: 2, MaxEventBytes: 8, TTL: time.Minute,
			Dropped: func(r string) { drops <- r }}
		o.Logger = testOptions(t, &o.Redis)
		r, err := NewRetained(o)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, r.Close)
		return r
	}
	w, r := mk(), mk()
	ctx := context.Background()
	t.Cleanup(func() {
		keys, _ := admin.Do(ctx, admin.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		for _, k := range keys {
			admin.Do(ctx, admin.B().Del().Key(k).Build())
		}
	})
	read := func(topic string) string {
		p, ok, err := r.Retained(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "-"
		}
		return string(p)
	}
	w.Retain("t/1", []byte(`1`))
	pollFor(t, 10*time.Second, "written", func() bool { return read("t/1") == "1" })
	w.Retain("t/1", []byte(`11`))
	w.Retain("t/2", []byte(`2`))
	w.Retain("t/big", []byte(`123456789`))
	if d := <-drops; d != RetainedDropTooBig {
		t.Errorf("drop %q", d)
	}
	w.Retain("t/3", []byte(`3`))
	pollFor(t, 10*time.Second, "evicted", func() bool { return read("t/3") == "3" && read("t/1") == "-" })
	if got := read("t/2") + read("t/big"); got != "2-" {
		t.Errorf("t/2 and t/big: %q", got)
	}
	if d := <-drops; d != RetainedDropEvicted {
		t.Errorf("drop %q", d)
	}
	ttl, err := admin.Do(ctx, admin.B().Pttl().Key(prefix+"retained:t/3").Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > time.Minute.Milliseconds() {
		t.Errorf("TTL %d %v", ttl, err)
	}
}
