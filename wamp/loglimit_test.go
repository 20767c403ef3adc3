package wamp

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	now := time.Unix(1700000000, 0)
	for i := 0; i < logBurst; i++ {
		if ok, s := l.allow("a", now); !ok || s != 0 {
			t.Fatalf("line %d: allowed %v suppressed %d", i, ok, s)
		}
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.allow("a", now.Add(time.Millisecond)); ok {
			t.Fatal("line past the burst allowed")
		}
	}
	// Another message has its own budget.
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another message refused")
	}
	// The next window lets lines through again and reports the gap.
	ok, s := l.allow("a", now.Add(logWindow))
	if !ok || s != 5 {
		t.Fatalf("after the window: allowed %v suppressed %d, want true 5", ok, s)
	}
	if ok, s := l.allow("a", now.Add(logWindow)); !ok || s != 0 {
		t.Fatalf("suppressed count reported twice: %v %d", ok, s)
	}
}
