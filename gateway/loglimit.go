package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Most of what the gateway logs is caused from outside, one line per
// event: a refused call, a failing handler, a session store that is down
// during a reconnect storm. Without a bound, a client or an outage writes
// thousands of lines a second and the logging costs more than the work.
// rateLimitedHandler lets each message text through logBurst times per
// logWindow, process-wide; the next line after a suppressed spell carries
// "suppressed": the count. Debug lines are not limited (they are off in
// production and wanted in full when on). Metrics still count everything.
const (
	logBurst  = 10
	logWindow = time.Second
	// logMaxKeys bounds the limiter's table; message texts are constants,
	// so this is only a guard against a caller that formats into them.
	logMaxKeys = 4096
)

type rateLimitedHandler struct {
	next  slog.Handler
	state *logLimiter
}

type logLimiter struct {
	mu  sync.Mutex
	per map[string]*logCount
}

type logCount struct {
	start      time.Time
	n          int
	suppressed int
}

func newRateLimitedHandler(next slog.Handler) slog.Handler {
	if _, ok := next.(*rateLimitedHandler); ok {
		return next
	}
	return &rateLimitedHandler{next: next, state: &logLimiter{per: map[string]*logCount{}}}
}

func (h *rateLimitedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *rateLimitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo {
		return h.next.Handle(ctx, r)
	}
	ok, suppressed := h.state.allow(r.Message, r.Time)
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateLimitedHandler{next: h.next.WithAttrs(as), state: h.state}
}

func (h *rateLimitedHandler) WithGroup(name string) slog.Handler {
	return &rateLimitedHandler{next: h.next.WithGroup(name), state: h.state}
}

// allow reports whether a line with message msg may be written at now and
// how many were suppressed before it.
func (l *logLimiter) allow(msg string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.per[msg]
	if c == nil {
		if len(l.per) >= logMaxKeys {
			clear(l.per)
		}
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
