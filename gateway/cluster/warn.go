package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// warnEvery is the least time between two warnings of one kind, so that an
// outage logs a line every few seconds, not one per message.
const warnEvery = 10 * time.Second

// warner logs at most one warning of each kind every warnEvery, with the
// number of warnings of that kind skipped since the last one: an outage
// logs a line every few seconds, not one per message.
type warner struct {
	log *slog.Logger

	mu   sync.Mutex // guards at and skip
	at   map[string]time.Time
	skip map[string]int
}

// newWarner returns a warner logging to log.
func newWarner(log *slog.Logger) *warner {
	return &warner{log: log, at: make(map[string]time.Time), skip: make(map[string]int)}
}

// warn logs msg at warning level, unless a line of this kind was logged
// less than warnEvery ago.
func (w *warner) warn(kind, msg string, args ...any) { w.logAt(slog.LevelWarn, kind, msg, args...) }

// info is warn at info level, for the good news that follows a warning
// (a subscription back), rate-limited likewise so that a flapping link
// does not flood the log.
func (w *warner) info(kind, msg string, args ...any) { w.logAt(slog.LevelInfo, kind, msg, args...) }

func (w *warner) logAt(level slog.Level, kind, msg string, args ...any) {
	w.mu.Lock()
	now := time.Now()
	if last, ok := w.at[kind]; ok && now.Sub(last) < warnEvery {
		w.skip[kind]++
		w.mu.Unlock()
		return
	}
	skipped := w.skip[kind]
	w.at[kind], w.skip[kind] = now, 0
	w.mu.Unlock()
	if skipped > 0 {
		args = append(args, "similar_warnings_skipped", skipped)
	}
	w.log.Log(context.Background(), level, msg, args...)
}
