package wamp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wsgate/wsgate/wamp/handler"
)

// The WAMP v2 session meta API procedures the node answers itself when
// NodeConfig.MetaAPI enables them.
const (
	metaSessionCount     = "wamp.session.count"
	metaSessionList      = "wamp.session.list"
	metaSessionGet       = "wamp.session.get"
	metaCountSubscribers = "wamp.subscription.count_subscribers"
	errURINoSuchSession  = "wamp.error.no_such_session"
)

// MetaAPI access levels (NodeConfig.MetaAPI); "role:<ROLE>" is the third.
const (
	MetaAPINone          = "none"
	MetaAPIAuthenticated = "authenticated"
	metaAPIRolePrefix    = "role:"
)

// metaAccess is a compiled NodeConfig.MetaAPI.
type metaAccess struct {
	enabled bool
	// role, when not empty, is the role a caller needs; otherwise any
	// authenticated (not anonymous) caller is admitted.
	role string
}

// parseMetaAPI compiles NodeConfig.MetaAPI: "" or "none" (disabled),
// "authenticated" or "role:<ROLE>".
func parseMetaAPI(v string) (metaAccess, error) {
	switch {
	case v == "" || v == MetaAPINone:
		return metaAccess{}, nil
	case v == MetaAPIAuthenticated:
		return metaAccess{enabled: true}, nil
	case strings.HasPrefix(v, metaAPIRolePrefix) && strings.TrimSpace(v[len(metaAPIRolePrefix):]) != "":
		return metaAccess{enabled: true, role: v[len(metaAPIRolePrefix):]}, nil
	}
	return metaAccess{}, fmt.Errorf("wamp: meta_api %q is not none, authenticated nor role:<ROLE>", v)
}

// CheckMetaAPI reports whether v is a valid NodeConfig.MetaAPI, for
// configuration checks before a node is made.
func CheckMetaAPI(v string) error {
	_, err := parseMetaAPI(v)
	return err
}

// allows reports whether who may call the meta API. Anonymous clients
// never may: their roles are empty and they are not authenticated.
func (m metaAccess) allows(who *handler.Identity) bool {
	if !m.enabled || who.Anonymous {
		return false
	}
	return m.role == "" || slices.Contains(who.Roles, m.role)
}

// isMetaProcedure reports whether uri is a meta API procedure the node
// answers.
func isMetaProcedure(uri string) bool {
	switch uri {
	case metaSessionCount, metaSessionList, metaSessionGet, metaCountSubscribers,
		metaSubList, metaSubLookup, metaSubMatch, metaSubGet, metaSubListSubscribers:
		return true
	}
	return false
}

// sessionMeta is what wamp.session.get returns of a session: its WELCOME
// identity.
type sessionMeta struct {
	Session      uint64 `json:"session"`
	AuthID       string `json:"authid"`
	AuthRole     string `json:"authrole"`
	AuthMethod   string `json:"authmethod"`
	AuthProvider string `json:"authprovider"`
}

// metaCallV2 answers a CALL of a meta API procedure from this node's
// state only (each replica answers for its own sessions and
// subscribers), or refuses it with wamp.error.not_authorized.
func (s *Session) metaCallV2(m messageV2) {
	if !s.node.meta.allows(s.identity.Load()) {
		s.node.obs.AccessDenied("rpc")
		s.sendErrorV2(v2Call, m.reqID, errURINotAuthorized, "Access denied", nil)
		return
	}
	var args []json.RawMessage
	if m.args != nil {
		if err := json.Unmarshal(m.args, &args); err != nil {
			s.sendErrorV2(v2Call, m.reqID, errURIInvalidArgument, "invalid arguments", nil)
			return
		}
	}
	var (
		out      any
		errURI   string
		errorMsg string
	)
	if o, uri, msg, ok := s.node.metaSubCall(m.uri, args); ok {
		out, errURI, errorMsg = o, uri, msg
	}
	switch m.uri {
	case metaSessionCount, metaSessionList:
		filter, ok := metaRoleFilter(args)
		if !ok {
			errURI, errorMsg = errURIInvalidArgument, "filter_authroles must be a list of strings"
			break
		}
		ids := s.node.metaSessions(filter)
		if m.uri == metaSessionCount {
			out = len(ids)
		} else {
			out = ids
		}
	case metaSessionGet:
		id, ok := metaIDArg(args)
		if !ok {
			errURI, errorMsg = errURIInvalidArgument, "the session id must be an integer"
			break
		}
		if d, found := s.node.metaSession(id); found {
			out = d
		} else {
			errURI, errorMsg = errURINoSuchSession, "no such session"
		}
	case metaCountSubscribers:
		id, ok := metaIDArg(args)
		if !ok {
			errURI, errorMsg = errURIInvalidArgument, "the subscription id must be an integer"
			break
		}
		if n, found := s.node.broker.countByID(id); found {
			out = n
		} else {
			errURI, errorMsg = errURINoSuchSubscription, "no such subscription"
		}
	}
	if errURI != "" {
		s.sendErrorV2(v2Call, m.reqID, errURI, errorMsg, nil)
		return
	}
	b, err := appendJSON(nil, out)
	if err != nil { // ints, id lists and a struct of strings always encode
		s.sendErrorV2(v2Call, m.reqID, errURIRuntime, "RPC Error", []byte(`{"code":500}`))
		return
	}
	s.send("RESULT", encodeResultV2(m.reqID, b))
}

// metaRoleFilter reads the optional filter_authroles argument of
// wamp.session.count and wamp.session.list; nil means no filter.
func metaRoleFilter(args []json.RawMessage) ([]string, bool) {
	if len(args) == 0 || string(args[0]) == "null" {
		return nil, true
	}
	var roles []string
	if err := json.Unmarshal(args[0], &roles); err != nil || roles == nil {
		return nil, false
	}
	return roles, true
}

// metaIDArg reads the single WAMP id argument of wamp.session.get and
// wamp.subscription.count_subscribers.
func metaIDArg(args []json.RawMessage) (uint64, bool) {
	if len(args) != 1 {
		return 0, false
	}
	id, err := jsonID(args[0], "id")
	return id, err == nil && id != 0
}

// metaSessions returns the ids of this node's WAMP v2 sessions that have
// joined (WELCOME sent), in no particular order; with roles not nil, only
// those having one of roles (as eligible_authrole selects them). WAMP v1
// sessions have no integer id and are left out.
func (n *Node) metaSessions(roles []string) []uint64 {
	filter := newIDSet(roles)
	ids := []uint64{}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for s := range n.byUser.all() {
		if !s.proto.V2() || !s.welcomed.Load() {
			continue
		}
		if roles != nil && !hasRole(filter, s.identity.Load()) {
			continue
		}
		ids = append(ids, s.v2ID())
	}
	return ids
}

// metaSession returns the details of this node's joined WAMP v2 session
// with id id.
func (n *Node) metaSession(id uint64) (sessionMeta, bool) {
	sid := strconv.FormatUint(id, 10) // a v2 session's id is its decimal form
	n.mu.RLock()
	defer n.mu.RUnlock()
	for s := range n.byUser.all() {
		if s.id != sid || !s.proto.V2() || !s.welcomed.Load() {
			continue
		}
		who := s.identity.Load()
		return sessionMeta{Session: id, AuthID: who.UserIdentifier, AuthRole: authRole(who),
			AuthMethod: "cookie", AuthProvider: "symfony"}, true
	}
	return sessionMeta{}, false
}

// countByID returns how many of this node's sessions (v1 and v2) are
// subscribed to the topic whose v2 subscription id is id.
func (b *broker) countByID(id uint64) (int, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, t := range b.topics {
		if t.subID == id {
			return len(t.subscribers), true
		}
	}
	return 0, false
}
