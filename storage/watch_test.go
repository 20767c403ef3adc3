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
	if !w.watch("a") || w.watch("a") || !w.watch("b") {
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
	w.watch("c")
	w.changedID("c")
	w.changedAll()
	if ids, all := w.TakeChanges(); !all || ids != nil {
		t.Fatalf("after changedAll: %v %v", ids, all)
	}
}
