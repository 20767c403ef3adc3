package storage

import (
	"slices"
	"testing"
	"time"
)

// nextChange waits for the notifier's next wake-up and returns what
// TakeChanges gives; it fails the test after a generous deadline (the
// deadline is not the latency target, which the benchmark measures).
func nextChange(t *testing.T, n ChangeNotifier) (ids []string, all bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-n.Changes():
			ids, all = n.TakeChanges()
			if all || len(ids) > 0 {
				slices.Sort(ids)
				return ids, all
			}
		case <-deadline:
			t.Fatal("no change reported")
			return nil, false
		}
	}
}

// waitChangeOf waits until id is reported changed (or all are), skipping
// reports of other ids.
func waitChangeOf(t *testing.T, n ChangeNotifier, id string) (all bool) {
	t.Helper()
	for {
		ids, all := nextChange(t, n)
		if all {
			return true
		}
		if slices.Contains(ids, id) {
			return false
		}
	}
}

// drainChanges empties the pending changes (e.g. the "all" a new tracking
// connection reports).
func drainChanges(n ChangeNotifier) {
	select {
	case <-n.Changes():
	default:
	}
	n.TakeChanges()
}

func TestWatchSetCoalescesAndBounds(t *testing.T) {
	w := newWatchSet()
	w.changedID("x") // not watched: dropped
	if ids, all := w.TakeChanges(); len(ids) != 0 || all {
		t.Fatalf("unwatched change kept: %v %v", ids, all)
	}
	m := w.Mark() // after x's change: a and b have no change since
	if !w.watch("a", m) || w.watch("a", m) || !w.watch("b", m) {
		t.Fatal("watch counts")
	}
	for range 1000 {
		w.changedID("a")
		w.changedID("b")
	}
	if len(w.signal) != 1 {
		t.Fatalf("signal holds %d wake-ups", len(w.signal))
	}
	ids, all := w.TakeChanges()
	slices.Sort(ids)
	if all || !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("TakeChanges = %v %v", ids, all)
	}
	if w.unwatch("a") || !w.unwatch("a") || w.unwatch("a") {
		t.Fatal("unwatch counts")
	}
	w.changedID("b")
	w.unwatch("b") // drops b's pending change
	if ids, _ := w.TakeChanges(); len(ids) != 0 {
		t.Fatalf("change of an unwatched id kept: %v", ids)
	}
	w.watch("c", w.Mark())
	w.changedID("c")
	w.changedAll()
	if ids, all := w.TakeChanges(); !all || ids != nil {
		t.Fatalf("after changedAll: %v %v", ids, all)
	}
}

// TestWatchSince: Watch reports a change made after the caller's mark
// (between a handshake's read and its Watch), whether the id was watched
// then or not, and no change made before it; past what the watchSet
// remembers, or after changes were missed, it errs on the side of one
// more read.
func TestWatchSince(t *testing.T) {
	take := func(w *watchSet) []string {
		ids, all := w.TakeChanges()
		if all {
			return []string{"ALL"}
		}
		slices.Sort(ids)
		return ids
	}
	for _, tc := range []struct {
		name string
		run  func(w *watchSet)
		want []string
	}{
		{"change after the mark", func(w *watchSet) {
			m := w.Mark()
			w.changedID("s")
			w.watch("s", m)
		}, []string{"s"}},
		{"change before the mark", func(w *watchSet) {
			w.changedID("s")
			w.watch("s", w.Mark())
		}, nil},
		{"another id changed after the mark", func(w *watchSet) {
			m := w.Mark()
			w.changedID("other")
			w.watch("s", m)
		}, nil},
		{"a second watch of a watched id that changed after its mark", func(w *watchSet) {
			w.watch("s", w.Mark()) // the first tab
			m := w.Mark()          // the second tab reads
			w.changedID("s")
			w.TakeChanges() // the receiver took the change before the second tab watched
			w.watch("s", m)
		}, []string{"s"}},
		{"forgotten after recentChanges others", func(w *watchSet) {
			m := w.Mark()
			w.changedID("s")
			for i := range recentChanges {
				w.changedID(string(rune('a'+i%26)) + string(rune(i)))
			}
			w.watch("s", m)
			w.watch("t", w.Mark()) // nothing forgotten since: no read
		}, []string{"s"}},
		{"changes missed", func(w *watchSet) {
			m := w.Mark()
			w.changedAll()
			w.TakeChanges()
			w.watch("s", m)
			w.watch("t", w.Mark())
		}, []string{"s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWatchSet()
			tc.run(w)
			if got := take(w); !slices.Equal(got, tc.want) {
				t.Errorf("changes %v, want %v", got, tc.want)
			}
			if len(w.recent) > recentChanges || len(w.ring) > recentChanges {
				t.Errorf("recent holds %d ids, ring %d; bound %d", len(w.recent), len(w.ring), recentChanges)
			}
		})
	}
}
