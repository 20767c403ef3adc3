package wamp

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/wamp/handler"
)

// metaFixture is a node with the meta API set to metaAPI and these
// sessions: joined v2 admin, user and anonymous clients, a v1 client and
// a v2 client that has not sent HELLO. user and the v1 client subscribe
// to chan/a.
type metaFixture struct {
	f                *fixture
	admin, user, ano *Session
	ap, up, anp      *fakePeer
	subID            string
}

func newMetaFixture(t *testing.T, metaAPI string) *metaFixture {
	t.Helper()
	m := &metaFixture{f: newFixture(t, func(c *NodeConfig) { c.MetaAPI = metaAPI })}
	m.admin, m.ap = m.f.openV2(t, ClientInfo{ConnID: "admin", Identity: handler.Identity{UserIdentifier: "root", Roles: []string{"ROLE_ADMIN"}}})
	m.user, m.up = m.f.openV2(t, ClientInfo{ConnID: "user", Identity: handler.Identity{UserIdentifier: "jdoe", Roles: []string{"ROLE_USER"}}})
	m.ano, m.anp = m.f.openV2(t, ClientInfo{ConnID: "anon", Identity: handler.Identity{Anonymous: true}})
	v1, _ := m.f.open(t, "v1")
	m.f.node.OpenProtocol(&fakePeer{}, ClientInfo{ConnID: "nohello", Identity: handler.Identity{UserIdentifier: "late"}}, ProtocolV2JSON)
	if err := m.user.Handle(context.Background(), []byte(`[32,1,{},"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	if err := v1.Handle(context.Background(), []byte(`[5,"chan/a"]`)); err != nil {
		t.Fatal(err)
	}
	m.f.settle(t)
	var sub []json.RawMessage
	for _, msg := range m.up.take() {
		if strings.HasPrefix(string(msg), "[33,") {
			_ = json.Unmarshal(msg, &sub)
		}
	}
	if len(sub) != 3 {
		t.Fatal("no SUBSCRIBED")
	}
	m.subID = string(sub[2])
	return m
}

// call sends CALL request 7 of proc with args from s and returns the one
// reply.
func metaCall(t *testing.T, s *Session, p *fakePeer, proc, args string) []byte {
	t.Helper()
	msg := `[48,7,{},"` + proc + `"`
	if args != "" {
		msg += "," + args
	}
	if err := s.Handle(context.Background(), []byte(msg+"]")); err != nil {
		t.Fatal(err)
	}
	got := p.take()
	if len(got) != 1 {
		t.Fatalf("%s: got %q, want one reply", proc, got)
	}
	return got[0]
}

func TestMetaAPI(t *testing.T) {
	m := newMetaFixture(t, "role:ROLE_ADMIN")
	ids := func(ss ...*Session) string {
		var out []uint64
		for _, s := range ss {
			out = append(out, s.v2ID())
		}
		slices.Sort(out)
		b, _ := json.Marshal(out)
		return string(b)
	}
	cases := []struct {
		name, proc, args string
		want             string
	}{
		{"count", metaSessionCount, "", `[50,7,{},[3]]`},
		{"count, empty filter", metaSessionCount, `[[]]`, `[50,7,{},[0]]`},
		{"count, role filter", metaSessionCount, `[["ROLE_USER"]]`, `[50,7,{},[1]]`},
		{"count, implicit authrole", metaSessionCount, `[["anonymous","ROLE_ADMIN"]]`, `[50,7,{},[2]]`},
		{"count, bad filter", metaSessionCount, `["ROLE_USER"]`, `[8,48,7,{},"wamp.error.invalid_argument",["filter_authroles must be a list of strings"]]`},
		{"list", metaSessionList, "", `[50,7,{},[` + ids(m.admin, m.user, m.ano) + `]]`},
		{"list, role filter", metaSessionList, `[["ROLE_USER"]]`, `[50,7,{},[` + ids(m.user) + `]]`},
		{"get", metaSessionGet, `[` + m.user.ID() + `]`, `[50,7,{},[{"session":` + m.user.ID() + `,"authid":"jdoe","authrole":"ROLE_USER","authmethod":"cookie","authprovider":"symfony"}]]`},
		{"get anonymous", metaSessionGet, `[` + m.ano.ID() + `]`, `[50,7,{},[{"session":` + m.ano.ID() + `,"authid":"anon-` + m.ano.ID() + `","authrole":"anonymous","authmethod":"cookie","authprovider":"symfony"}]]`},
		{"get unknown", metaSessionGet, `[12345]`, `[8,48,7,{},"wamp.error.no_such_session",["no such session"]]`},
		{"get no id", metaSessionGet, "", `[8,48,7,{},"wamp.error.invalid_argument",["the session id must be an integer"]]`},
		{"get string id", metaSessionGet, `["12"]`, `[8,48,7,{},"wamp.error.invalid_argument",["the session id must be an integer"]]`},
		{"count subscribers", metaCountSubscribers, `[` + m.subID + `]`, `[50,7,{},[2]]`},
		{"count subscribers unknown", metaCountSubscribers, `[999999]`, `[8,48,7,{},"wamp.error.no_such_subscription",["no such subscription"]]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := metaCall(t, m.admin, m.ap, tc.proc, tc.args)
			if tc.proc == metaSessionList {
				got = sortedListResult(t, got)
			}
			if !jsonEqual(t, got, tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// sortedListResult sorts the id list of a wamp.session.list RESULT, whose
// order is unspecified.
func sortedListResult(t *testing.T, msg []byte) []byte {
	t.Helper()
	var r []json.RawMessage
	var args [][]uint64
	if json.Unmarshal(msg, &r) != nil || len(r) != 4 || json.Unmarshal(r[3], &args) != nil || len(args) != 1 {
		return msg
	}
	slices.Sort(args[0])
	b, _ := json.Marshal(args)
	return []byte(`[50,` + string(r[1]) + `,{},` + string(b) + `]`)
}

// The meta API is refused to callers its setting does not admit, and is
// no procedure at all when disabled (a route could then serve the URI).
func TestMetaAPIAccess(t *testing.T) {
	denied := `[8,48,7,{},"wamp.error.not_authorized",["Access denied"]]`
	noProc := `[8,48,7,{},"wamp.error.no_such_procedure",["Unable to find route for \"wamp.session.count\""]]`
	cases := []struct {
		setting string
		who     func(*metaFixture) (*Session, *fakePeer)
		want    string
	}{
		{"role:ROLE_ADMIN", func(m *metaFixture) (*Session, *fakePeer) { return m.user, m.up }, denied},
		{"role:ROLE_ADMIN", func(m *metaFixture) (*Session, *fakePeer) { return m.ano, m.anp }, denied},
		{"authenticated", func(m *metaFixture) (*Session, *fakePeer) { return m.user, m.up }, `[50,7,{},[3]]`},
		{"authenticated", func(m *metaFixture) (*Session, *fakePeer) { return m.ano, m.anp }, denied},
		{"", func(m *metaFixture) (*Session, *fakePeer) { return m.admin, m.ap }, noProc},
		{"none", func(m *metaFixture) (*Session, *fakePeer) { return m.admin, m.ap }, noProc},
	}
	for i, tc := range cases {
		t.Run(strconv.Itoa(i)+" "+tc.setting, func(t *testing.T) {
			m := newMetaFixture(t, tc.setting)
			s, p := tc.who(m)
			got := metaCall(t, s, p, metaSessionCount, "")
			if !jsonEqual(t, got, tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// WELCOME announces session_meta_api exactly when the meta API is on.
func TestMetaAPIWelcome(t *testing.T) {
	for _, tc := range []struct {
		setting string
		want    bool
	}{{"", false}, {"none", false}, {"authenticated", true}, {"role:ROLE_ADMIN", true}} {
		f := newFixture(t, func(c *NodeConfig) { c.MetaAPI = tc.setting })
		p := &fakePeer{}
		s := f.node.OpenProtocol(p, ClientInfo{ConnID: "c"}, ProtocolV2JSON)
		if err := s.Handle(context.Background(), []byte(`[1,"r",{}]`)); err != nil {
			t.Fatal(err)
		}
		var w []json.RawMessage
		var d struct {
			Roles map[string]struct{ Features map[string]bool }
		}
		msgs := p.take()
		if len(msgs) != 1 || json.Unmarshal(msgs[0], &w) != nil || len(w) != 3 || json.Unmarshal(w[2], &d) != nil {
			t.Fatalf("WELCOME %q", msgs)
		}
		for _, role := range []string{"broker", "dealer"} {
			if got := d.Roles[role].Features["session_meta_api"]; got != tc.want {
				t.Errorf("meta_api %q: %s session_meta_api %v, want %v", tc.setting, role, got, tc.want)
			}
		}
		if got := d.Roles["broker"].Features["subscription_meta_api"]; got != tc.want {
			t.Errorf("meta_api %q: broker subscription_meta_api %v, want %v", tc.setting, got, tc.want)
		}
	}
}

func TestMetaAPISetting(t *testing.T) {
	for _, v := range []string{"all", "role:", "role: ", "Authenticated"} {
		if CheckMetaAPI(v) == nil {
			t.Errorf("meta_api %q accepted", v)
		}
		_, err := NewNode(NodeConfig{MetaAPI: v})
		if err == nil || !strings.Contains(err.Error(), "meta_api") {
			t.Errorf("NewNode with meta_api %q: %v", v, err)
		}
	}
}
