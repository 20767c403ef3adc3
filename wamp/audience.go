package wamp

import (
	"encoding/json"
	"strconv"
	"unsafe"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Audience selects which of a topic's subscribers get a broadcast.
//
// A subscriber is excluded when its session id, its user identifier (a
// non-anonymous client's only: "anon-<session>" never matches) or any of
// its roles is in an Exclude list. When any Eligible list is non-empty
// the broadcast is "named": only subscribers matching at least one
// Eligible entry get it. "Named nobody" is EligibleSessions = [""], which
// no session id equals.
//
// Roles are the client's roles (handler.Identity.Roles) plus the v2
// authrole WELCOME announced when it is not one of them: "anonymous" for
// an anonymous client, "authenticated" for a user without roles, so that
// a v2 publisher's eligible_authrole means what its subscribers were told.
//
// The lists travel with the broadcast to the other replicas (Relay), and
// every node filters its own subscribers: a user or role names clients
// wherever they are connected, which session ids resolved on the
// publishing replica could not. Session ids are unique across replicas.
// An Audience is read, never modified, by the node and by relays.
type Audience struct {
	// ExcludeSessions and EligibleSessions are WAMP session ids: v1
	// strings, v2 decimal.
	ExcludeSessions, EligibleSessions []string
	// ExcludeUsers and EligibleUsers are user identifiers (v2 authid).
	ExcludeUsers, EligibleUsers []string
	// ExcludeRoles and EligibleRoles are roles (v2 authrole).
	ExcludeRoles, EligibleRoles []string
}

// named reports whether the audience restricts delivery to the
// subscribers its Eligible lists name.
func (a *Audience) named() bool {
	return len(a.EligibleSessions) > 0 || len(a.EligibleUsers) > 0 || len(a.EligibleRoles) > 0
}

// byIdentity reports whether selecting by a the subscribers needs their
// identities, not only their session ids.
func (a *Audience) byIdentity() bool {
	return len(a.ExcludeUsers) > 0 || len(a.EligibleUsers) > 0 || len(a.ExcludeRoles) > 0 || len(a.EligibleRoles) > 0
}

// audienceFilter is an Audience made ready for one fan-out: each list an
// idSet, so that filtering many subscribers against long lists stays
// linear.
type audienceFilter struct {
	// any is false when the audience selects everybody: the fan-out then
	// checks nothing per subscriber.
	any bool
	// identity is set when user or role lists are present: only then is
	// a subscriber's identity loaded.
	identity bool
	named    bool

	exSess, elSess idSet
	exUser, elUser idSet
	exRole, elRole idSet
}

// newAudienceFilter prepares a for a fan-out. It allocates only for lists
// over eight entries (see idSet).
func newAudienceFilter(a *Audience) audienceFilter {
	f := audienceFilter{identity: a.byIdentity(), named: a.named()}
	f.any = f.identity || f.named || len(a.ExcludeSessions) > 0
	if !f.any {
		return f
	}
	f.exSess, f.elSess = newIDSet(a.ExcludeSessions), newIDSet(a.EligibleSessions)
	f.exUser, f.elUser = newIDSet(a.ExcludeUsers), newIDSet(a.EligibleUsers)
	f.exRole, f.elRole = newIDSet(a.ExcludeRoles), newIDSet(a.EligibleRoles)
	return f
}

// admits reports whether the subscriber with session id id and session s
// gets the broadcast. The identity is one atomic load, no lock: a
// concurrent Reidentify is seen either before or after.
func (f *audienceFilter) admits(id string, s *Session) bool {
	if f.exSess.has(id) {
		return false
	}
	if !f.identity {
		return !f.named || f.elSess.has(id)
	}
	who := s.identity.Load()
	if identityIn(&f.exUser, &f.exRole, who) {
		return false
	}
	return !f.named || f.elSess.has(id) || identityIn(&f.elUser, &f.elRole, who)
}

// identityIn reports whether who's user identifier (not an anonymous
// client's) is in users or any of its roles in roles.
func identityIn(users, roles *idSet, who *handler.Identity) bool {
	return users.n > 0 && !who.Anonymous && users.has(who.UserIdentifier) || roles.n > 0 && hasRole(*roles, who)
}

// hasRole reports whether any of who's roles (see Audience) is in set,
// without allocating.
func hasRole(set idSet, who *handler.Identity) bool {
	for _, r := range who.Roles {
		if set.has(r) {
			return true
		}
	}
	switch {
	case who.Anonymous:
		return set.has(roleAnonymous)
	case len(who.Roles) == 0:
		return set.has(roleAuthenticated)
	}
	return false
}

// The v2 authroles of clients whose roles do not name one.
const (
	roleAnonymous     = "anonymous"
	roleAuthenticated = "authenticated"
)

// authRole is the v2 authrole WELCOME announces for who: its first role,
// "anonymous" for an anonymous client, "authenticated" for a user
// without roles.
func authRole(who *handler.Identity) string {
	switch {
	case who.Anonymous:
		return roleAnonymous
	case len(who.Roles) > 0:
		return who.Roles[0]
	}
	return roleAuthenticated
}

// idSet is a small set of strings (session ids, users, roles): linear for
// the usual handful, a map for long lists so that filtering 10k
// subscribers stays linear.
type idSet struct {
	n    int
	list []string
	m    map[string]struct{}
}

func newIDSet(ids []string) idSet {
	if len(ids) <= 8 {
		return idSet{n: len(ids), list: ids}
	}
	m := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return idSet{n: len(ids), m: m}
}

func (s idSet) has(id string) bool {
	if s.m != nil {
		_, ok := s.m[id]
		return ok
	}
	for _, x := range s.list {
		if x == id {
			return true
		}
	}
	return false
}

// published is what a client's PUBLISH asked for, kept by the TopicRef
// handed to OnPublish: the session id lists the handler got (users and
// roles expanded against this node's sessions) and the full Audience. A
// Broadcast with the very lists the handler got carries the Audience, so
// that users and roles connected to other replicas are selected there.
type published struct {
	exclude, eligible []string
	audience          Audience
}

// given reports whether exclude and eligible are the lists the handler
// got: the same backing arrays and lengths. It is an identity check, not
// a comparison of contents: a handler that builds lists of its own,
// even equal ones, targets exactly those sessions.
func (p *published) given(exclude, eligible []string) bool {
	return sameSlice(exclude, p.exclude) && sameSlice(eligible, p.eligible)
}

// sameSlice reports whether a and b are the same slice: same backing
// array and length. The handler's lists always have a backing array of
// their own (see Node.receivers), so a nil or empty list of the handler's
// never passes for them.
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// sessionIDElem reads one element of a PUBLISH exclude or eligible list as
// a session id: a string as is (a v1 id), an integer in [0, 2^53] as its
// decimal form (a v2 id, which clients write as a number). Anything else
// is not a session id.
func sessionIDElem(raw json.RawMessage) (string, bool) {
	if len(raw) > 0 && raw[0] == '"' {
		id, err := jsonString(raw, "session id")
		return id, err == nil
	}
	n, err := jsonID(raw, "session id")
	if err != nil {
		return "", false
	}
	return strconv.FormatUint(n, 10), true
}
