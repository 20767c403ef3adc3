package wamp

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Most of what a session logs is caused by its client (a bad URI, a
// refused call, a failing handler), so a client, or an overloaded upstream
// that fails every call, could otherwise write thousands of lines a
// second. Each message text gets logBurst lines per logWindow across the
// node; the next line after a quiet spell says how many were suppressed.
// Metrics still count every event.
const (
	logBurst  = 10
	logWindow = time.Second
)

// logLimiter rate-limits log lines by message text. The texts are
// constants of this package, so the map stays small.
type logLimiter struct {
	mu  sync.Mutex
	per map[string]*logCount
}

type logCount struct {
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether a line with message msg may be written now and
// how many were suppressed before it.
func (l *logLimiter) allow(msg string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per == nil {
		l.per = map[string]*logCount{}
	}
	c := l.per[msg]
	if c == nil {
		c = &logCount{start: now}
		l.per[msg] = c
	}
	if now.Sub(c.start) >= logWindow {
		c.start, c.n = now, 0
	}
	if c.n >= logBurst {
		c.suppressed++
		return false, 0
	}
	c.n++
	s := c.suppressed
	c.suppressed = 0
	return true, s
}

// logAt logs msg at level for this session, within the node's rate limit.
func (s *Session) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !s.node.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := s.node.logLimit.allow(msg, time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.logger().Log(ctx, level, msg, args...)
}
