package wamp

import (
	"context"
	"log/slog"
)

// logAt logs msg at level for this session. Most session lines are caused
// by the client, one per message: the gateway bounds them with a
// rate-limiting slog handler (gateway/loglimit.go), which is why message
// texts here are constants and the variable parts are attributes.
func (s *Session) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !s.node.log.Enabled(ctx, level) {
		return
	}
	s.logger().Log(ctx, level, msg, args...)
}
