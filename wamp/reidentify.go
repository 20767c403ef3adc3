package wamp

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Reidentify replaces the client's identity, e.g. after revalidation found
// that the PHP session expired, was destroyed (logout) or now holds
// another user. info is read as by Open: no UserIdentifier, or Anonymous,
// makes the client "anon-<WAMP session id>" again; info.ConnID is ignored
// (the connection stays the same).
//
// From the moment Reidentify returns, UserIdentifier, Anonymous, Roles and
// Firewall report the new identity, the ClientManipulator (GetClient,
// FindByUsername, FindAllByUsername, FindByRoles, GetAll) and v2 PUBLISH
// exclude_authid/eligible_authid resolve it, and route access rules are
// checked against it.
//
// Subscriptions whose route's access rules (RouteConfig.Roles,
// RouteConfig.Anonymous), or whose topic handler's
// handler.SubscribeAuthorizer, the new identity no longer passes are
// revoked at once: the client gets no further EVENT on them. For each, the topic
// handler's OnUnsubscribe runs as on UNSUBSCRIBE (the Client it gets
// already carries the new identity), and a WAMP v2 client gets the
// router-initiated UNSUBSCRIBED [35, 0, {"subscription": id, "reason":
// "wamp.error.not_authorized"}] it also gets when OnSubscribe refuses. A
// WAMP v1 client is not told: v1 has no message for it, so it simply stops
// receiving events (the bundle had no revocation at all). Nothing else is
// sent to the client either way: neither protocol can announce a new
// identity, so a v2 client keeps the authid of its WELCOME.
//
// OnUnsubscribe callbacks run on the calling goroutine, except while a
// Handle call is in flight: handler callbacks for one client never run
// concurrently, so they then run on the reader when its Handle call
// returns (a v2 UNSUBSCRIBED for a subscription whose SUBSCRIBE is still
// being handled waits as well, so that it follows SUBSCRIBED). Reidentify
// therefore never waits for a handler, but may run OnUnsubscribe
// callbacks, each bounded by NodeConfig.CallTimeout.
//
// Reidentify returns the number of subscriptions revoked. It may be called
// from any goroutine, concurrently with Handle, Close and broadcasts. After
// Close it only changes what the identity accessors report and returns 0.
func (s *Session) Reidentify(info ClientInfo) int {
	who := sessionIdentity(info, s.id)
	n := s.node
	s.mu.Lock()
	n.mu.Lock()
	if n.unindexUser(s.identity.Load().UserIdentifier, s) {
		n.indexUser(who.UserIdentifier, s)
	}
	s.identity.Store(who)
	n.mu.Unlock()
	if s.closing {
		// cleanup unsubscribes whatever is left.
		s.mu.Unlock()
		return 0
	}
	revoked, unsubscribed := s.revokeLocked(who)
	s.representLocked() // presence.go
	s.mu.Unlock()
	for _, msg := range unsubscribed {
		s.send("UNSUBSCRIBED", msg)
	}
	if revoked > 0 {
		s.logAt(slog.LevelInfo, "wamp: subscriptions revoked after identity change", "revoked", revoked, "anonymous", who.Anonymous)
		s.runDeferred()
	}
	return revoked
}

// revokeLocked takes the subscriptions whose access rule (or handler's
// SubscribeAuthorizer) who does not pass, in URI order, and queues them for announceRevoked. It returns how
// many it took and, for a v2 client, the UNSUBSCRIBED to send at once:
// those of subscriptions whose SUBSCRIBED is not out yet are sent later,
// by announceLeave. s.mu must be held.
func (s *Session) revokeLocked(who *handler.Identity) (int, [][]byte) {
	var gone []*subscription
	for sub := range s.subs.all() {
		if !sub.route.access.allows(who.Anonymous, who.Roles) || !sub.mayKeep(who) {
			gone = append(gone, sub)
		}
	}
	slices.SortFunc(gone, func(a, b *subscription) int { return strings.Compare(a.uri, b.uri) })
	var unsubscribed [][]byte
	for _, sub := range gone {
		uri := sub.uri
		s.removeSub(uri, sub)
		l := leaving{uri: uri, sub: sub}
		if s.proto.V2() {
			if sub.subscribing {
				l.owesUnsubscribed = true // after SUBSCRIBED, which may not be out yet
			} else {
				unsubscribed = append(unsubscribed, encodeRevokedV2(sub.subID, errURINotAuthorized))
			}
		}
		m := s.moreFields()
		m.revoked = append(m.revoked, l)
	}
	return len(gone), unsubscribed
}

// announceRevoked completes subscriptions Reidentify revoked: the v2
// UNSUBSCRIBED it could not send yet, then the handlers' unsubscribes
// (announceLeave, reason handler.LeaveRevoked). It runs with cb held; an offloaded
// handler hears of it on the session's lane, after its callbacks still
// queued there.
func (s *Session) announceRevoked(revoked []leaving) {
	var inline, offloaded []leaving
	for _, l := range revoked {
		if l.sub.handler().offload {
			offloaded = append(offloaded, l)
		} else {
			inline = append(inline, l)
		}
	}
	if len(inline) > 0 {
		s.announceLeave(handler.LeaveRevoked, inline)
	}
	if len(offloaded) > 0 {
		s.enqueueLane(true, func() { s.announceLeave(handler.LeaveRevoked, offloaded) })
	}
}
