package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	l := &logLimiter{per: map[string]*logCount{}}
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
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another message refused")
	}
	ok, s := l.allow("a", now.Add(logWindow))
	if !ok || s != 5 {
		t.Fatalf("after the window: allowed %v suppressed %d, want true 5", ok, s)
	}
	if ok, s := l.allow("a", now.Add(logWindow)); !ok || s != 0 {
		t.Fatalf("suppressed count reported twice: %v %d", ok, s)
	}
}

// Through slog: loggers derived with With share one budget, debug lines
// pass, and the line after a quiet spell says how many were dropped.
func TestRateLimitedHandler(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(newRateLimitedHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for i := 0; i < 3*logBurst; i++ {
		base.With("conn", i).Warn("session lookup failed")
		base.Debug("handshake refused")
	}
	out := buf.String()
	if n := strings.Count(out, "session lookup failed"); n != logBurst {
		t.Fatalf("%d warn lines, want %d:\n%s", n, logBurst, out)
	}
	if n := strings.Count(out, "handshake refused"); n != 3*logBurst {
		t.Fatalf("%d debug lines, want all %d", n, 3*logBurst)
	}
}
