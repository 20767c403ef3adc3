package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

// revalidateBatch bounds one store call: one MGET or one WHERE IN of this
// many ids, so that no single lookup grows with the connection count.
const revalidateBatch = 500

// revalidate re-reads every connection's session every
// session.revalidate_interval. The connections are split into batches
// spread evenly over the interval, so the store sees a steady trickle, never
// a burst of every session at once. It is owned by the Server and stops at
// Shutdown.
func (s *Server) revalidate() {
	defer s.wg.Done()
	interval := s.cfg.Session.RevalidateInterval
	for {
		start := time.Now()
		var batches [][]*client
		var batch []*client
		for _, c := range s.snapshotClients() {
			if c.sessionID == "" {
				continue // no cookie: nothing to re-read
			}
			batch = append(batch, c)
			if len(batch) == revalidateBatch {
				batches, batch = append(batches, batch), nil
			}
		}
		if len(batch) > 0 {
			batches = append(batches, batch)
		}
		gap := interval
		if len(batches) > 0 {
			gap = interval / time.Duration(len(batches))
		}
		for i, b := range batches {
			if !s.sleepOrStop(time.Until(start.Add(time.Duration(i) * gap))) {
				return
			}
			s.revalidateBatch(b)
		}
		if !s.sleepOrStop(time.Until(start.Add(interval))) {
			return
		}
	}
}

// sleepOrStop waits d; false means the server is shutting down.
func (s *Server) sleepOrStop(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-s.bgStop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.bgStop:
		return false
	case <-t.C:
		return true
	}
}

func (s *Server) revalidateBatch(conns []*client) {
	ids := make([]string, 0, len(conns))
	for _, c := range conns {
		ids = append(ids, c.sessionID)
	}
	found, err := s.resolver.ResolveMany(s.baseCtx, slices.Compact(slices.Sorted(slices.Values(ids))))
	if err != nil {
		// The store is down or slow: established connections keep going,
		// as they would if the gateway had not asked.
		s.metrics.Revalidations.WithLabelValues("error").Add(float64(len(conns)))
		s.log.Warn("revalidation batch failed", "connections", len(conns), "reason", storage.Result(err), "err", err)
		return
	}
	for _, c := range conns {
		res := found[c.sessionID]
		now := res.Identity()
		was := c.identity()
		switch {
		case now.Equal(was):
			s.metrics.Revalidations.WithLabelValues("valid").Inc()
		case !now.Anonymous && now.UserIdentifier == was.UserIdentifier && now.Firewall == was.Firewall:
			// Same user, other roles (the app changed them): follow.
			s.reidentify(c, now)
			s.metrics.Revalidations.WithLabelValues("roles_changed").Inc()
		case was.Anonymous:
			// Admitted anonymous with a cookie and has since logged in:
			// an upgrade needs a new handshake (the client reconnects).
			s.metrics.Revalidations.WithLabelValues("valid").Inc()
		case s.cfg.Session.OnInvalid == "downgrade":
			s.reidentify(c, anonymous)
			s.metrics.Revalidations.WithLabelValues("downgraded").Inc()
			s.log.Debug("session ended, client downgraded to anonymous", "conn", c.id, "status", res.Status)
		default:
			c.conn.Close(closeSessionEnded, "session ended", "revalidation")
			s.metrics.Revalidations.WithLabelValues("closed").Inc()
			s.log.Debug("session ended, client closed", "conn", c.id, "status", res.Status)
		}
	}
}

// reidentify gives a live connection a new identity: its WAMP session
// (subscriptions its routes no longer allow are dropped), its client storage
// entry and its per-user count follow.
func (s *Server) reidentify(c *client, id handler.Identity) {
	var newKey, oldKey string
	var next *string
	if !id.Anonymous && s.cfg.Limits.MaxConnectionsPerUser > 0 {
		newKey = userKey(id)
		next = &newKey
	}
	if old := c.userKey.Swap(next); old != nil {
		oldKey = *old
	}
	if newKey != oldKey {
		s.releaseUser(oldKey)
		if newKey != "" {
			s.mu.Lock()
			s.userConns[newKey]++ // not refused: the user is already here
			s.mu.Unlock()
		}
	}
	c.sess.Reidentify(wamp.ClientInfo{ConnID: c.id, Identity: id})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.baseCtx), s.cfg.Session.LookupTimeout)
	defer cancel()
	entry := s.clientEntry(c)
	if err := s.clients.Remove(ctx, c.id); err != nil {
		s.log.Warn("client storage remove failed", "conn", c.id, "err", err)
	}
	if err := s.clients.Add(ctx, entry); err != nil {
		s.log.Warn("client storage add failed", "conn", c.id, "err", err)
	}
}

// watchClient indexes c by its session id and has the store watch that
// session (session.watch, with a store that can tell). It runs on the
// handshake goroutine; the store's Watch does at most one inotify_add_watch.
// since is the store's mark from before the handshake read the session.
func (s *Server) watchClient(c *client, since storage.ChangeMark) {
	n := s.resolver.Notifier()
	if n == nil || c.sessionID == "" {
		return
	}
	s.watchMu.Lock()
	s.bySession.add(c.sessionID, c)
	s.watchMu.Unlock()
	// Watch nests, so it is called once per client, outside the lock.
	// The mark taken before the handshake read the session makes a
	// change between that read and now count as one.
	n.Watch(c.sessionID, since)
}

// unwatchClient undoes watchClient when c's connection ends. It never
// waits: it runs on a transport goroutine.
func (s *Server) unwatchClient(c *client) {
	n := s.resolver.Notifier()
	if n == nil || c.sessionID == "" {
		return
	}
	s.watchMu.Lock()
	was := s.bySession.remove(c.sessionID, c)
	s.watchMu.Unlock()
	if was {
		n.Unwatch(c.sessionID)
	}
}

// watchSessions re-reads the sessions the store reports changed and treats
// their connections as a revalidation pass would (revalidateBatch: close
// 4001, downgrade, or follow new roles), at once rather than at the next
// pass. Changes arriving meanwhile coalesce in the store and are taken in
// one go after the batch, so one goroutine keeps up however often PHP
// writes. When the store may have missed changes, every watched
// connection is re-read, in batches as a pass does. It is owned by the
// Server and stops at Shutdown.
func (s *Server) watchSessions(n storage.ChangeNotifier) {
	defer s.wg.Done()
	for {
		select {
		case <-s.bgStop:
			return
		case <-n.Changes():
		}
		ids, all := n.TakeChanges()
		var conns []*client
		s.watchMu.Lock()
		if all {
			conns = s.bySession.appendAll(conns)
		} else {
			for _, id := range ids {
				conns = s.bySession.appendOf(conns, id)
			}
		}
		s.watchMu.Unlock()
		for len(conns) > 0 {
			select {
			case <-s.bgStop:
				return
			default:
			}
			b := conns[:min(len(conns), revalidateBatch)]
			conns = conns[len(b):]
			s.revalidateBatch(b)
		}
	}
}
