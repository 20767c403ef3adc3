package gateway

import (
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/phpsession"
)

// "Why is everyone anonymous?" is answered while serving: every anonymous
// handshake is counted by reason (wsgate_anonymous_handshakes_total), and
// one line per reason per anonymousLogEvery names the likely cause, so a
// misconfiguration shows up in the log within a minute without a line per
// visitor. docs/troubleshooting.md has an entry per reason.

// anonymousLogEvery is how often each reason may be logged.
const anonymousLogEvery = time.Minute

// anonymousCauses name the likely causes of each reason, for the log line.
var anonymousCauses = map[string]string{
	AnonNoCookie: "no session cookie PHP would read: the websocket is on another host or path than the app " +
		"(cookie domain/path), SameSite keeps the cookie off a cross-site websocket, or session.cookie is not the app's session name",
	AnonInvalidID: "the session cookie's value is not an id PHP accepts (quoted, spaces, characters outside [a-zA-Z0-9,-], too long): " +
		"PHP would start a new session",
	AnonNotFound: "no session under this id where the gateway looks: wrong store, files path, redis prefix or db, " +
		"table, or the app uses another session handler",
	AnonExpired: "the session is older than the store's lifetime: the user was idle, or session.files.gc_maxlifetime " +
		"(or the table's lifetime) is shorter than the app's",
	AnonUndecodable: "the session or its token did not decode: wrong session.serialize_handler, " +
		"session larger than the decoder's limit, or a token layout the decoder does not know",
	AnonNoTokenForFirewall: "the session holds no _security_<firewall> for the configured session.firewalls: the user has not " +
		"logged in, or the app stores its token under another firewall context (see session_keys)",
	AnonNotAuthenticated: "the session's token is not a logged-in one (AnonymousToken, NullToken, not authenticated, no user): " +
		"the user has not logged in",
	AnonStoreUnavailable: "the session store failed and session.on_unavailable is anonymous",
}

// anonymousLog remembers, per reason, when a line was last written and how
// many anonymous handshakes there were since. The zero value is ready.
type anonymousLog struct {
	mu  sync.Mutex // guards per
	per map[string]*anonymousCount
}

type anonymousCount struct {
	last time.Time
	n    int
}

// due counts one handshake for reason and reports whether a line is due,
// with the handshakes it covers.
func (l *anonymousLog) due(reason string, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per == nil {
		l.per = make(map[string]*anonymousCount, len(anonymousCauses))
	}
	c := l.per[reason]
	if c == nil {
		c = &anonymousCount{}
		l.per[reason] = c // reasons are the Anon* constants: bounded
	}
	c.n++
	if !c.last.IsZero() && now.Sub(c.last) < anonymousLogEvery {
		return 0, false
	}
	n := c.n
	c.last, c.n = now, 0
	return n, true
}

// noteAnonymous counts an anonymous handshake and, when its reason's line
// is due, logs the likely cause. The session id is never logged: it is a
// bearer credential.
func (s *Server) noteAnonymous(res *Resolution) {
	reason := res.AnonymousReason
	if reason == "" {
		reason = AnonUndecodable // cannot happen: every anonymous Resolution has one
	}
	s.metrics.AnonymousHandshakes.WithLabelValues(reason).Inc()
	n, ok := s.anonLog.due(reason, time.Now())
	if !ok {
		return
	}
	attrs := []any{"reason", reason, "handshakes", n, "cause", anonymousCauses[reason]}
	switch reason {
	case AnonNoCookie, AnonInvalidID:
		attrs = append(attrs, "cookie", s.cfg.Session.Cookie)
	case AnonUndecodable:
		attrs = append(attrs, "err", res.Reason, "serialize_handler", s.cfg.Session.SerializeHandler)
		for _, fw := range res.Firewalls {
			if fw.Err != nil {
				attrs = append(attrs, "firewall", fw.Firewall, "err", fw.Reason)
				break
			}
		}
	case AnonNoTokenForFirewall:
		s.resolver.SecurityKeys(res)
		read := make([]string, len(s.cfg.Session.Firewalls))
		for i, fw := range s.cfg.Session.Firewalls {
			read[i] = phpsession.SecurityKeyPrefix + fw
		}
		held := make([]string, len(res.SecurityKeys))
		for i, k := range res.SecurityKeys {
			held[i] = k.Key
			if k.Firewall != "" {
				held[i] += " (token firewall " + k.Firewall + ")"
			}
		}
		attrs = append(attrs, "keys_read", strings.Join(read, ","), "session_keys", strings.Join(held, ","))
	case AnonNotAuthenticated:
		for _, fw := range res.Firewalls {
			attrs = append(attrs, "firewall_"+fw.Firewall, fw.Reason)
		}
	}
	s.log.Info("clients are anonymous", attrs...)
}
