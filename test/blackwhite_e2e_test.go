package test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// readySession reads the subscribe scenario's lines until {"ready"} and
// returns the WAMP session id it reports.
func (p *autobahnProc) readySession() uint64 {
	p.t.Helper()
	for {
		m := p.next()
		if _, ok := m["ready"]; !ok {
			continue
		}
		var id uint64
		if err := json.Unmarshal(m["session"], &id); err != nil || id == 0 {
			p.t.Fatalf("ready line without a session id: %s (%v)", m["session"], err)
		}
		return id
	}
}

// TestWAMP2AutobahnBlackWhiteListing covers the docs/wamp.md rows
// "Publisher exclusion" and "Subscriber black/white listing" with the real
// client: four autobahn-js 26 sessions (alice and bob with ROLE_USER,
// carol with ROLE_ADMIN, dave the publisher, ROLE_USER) on one relay
// topic; dave publishes with each of exclude_me, exclude/eligible by
// session id, *_authid and *_authrole, and each publication must reach
// exactly the sessions the WAMP advanced profile selects.
func TestWAMP2AutobahnBlackWhiteListing(t *testing.T) {
	autobahnNode(t)
	dir := t.TempDir()
	session := func(user, role string) string {
		return cookie(writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": user, "roles": []string{role}, "firewall": "main"}))
	}
	g := startReplica(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
`, dir)+defaultRoutesYAML(t))
	url := "ws://" + g.Addr + "/"
	const topic = "public/bw"

	names := []string{"alice", "bob", "carol"}
	roles := map[string]string{"alice": "ROLE_USER", "bob": "ROLE_USER", "carol": "ROLE_ADMIN", "dave": "ROLE_USER"}
	procs := map[string]*autobahnProc{}
	ids := map[string]uint64{}
	for _, n := range names {
		p := startAutobahn(t, "subscribe", map[string]any{"url": url, "realm": "realm1", "cookie": session(n, roles[n]),
			"subs": []map[string]any{{"topic": topic}}, "expect": "the-end", "waitMs": 15000})
		ids[n] = p.readySession()
		procs[n] = p
	}

	cases := []struct {
		text    string
		options map[string]any
		want    string // the sessions it must reach, sorted
	}{
		{"default", nil, "alice bob carol"},
		{"self", map[string]any{"exclude_me": false}, "alice bob carol dave"},
		{"exclude-session", map[string]any{"exclude": []uint64{ids["alice"]}}, "bob carol"},
		{"eligible-session", map[string]any{"eligible": []uint64{ids["bob"]}}, "bob"},
		{"exclude-authid", map[string]any{"exclude_authid": []string{"alice"}}, "bob carol"},
		{"eligible-authid", map[string]any{"eligible_authid": []string{"carol"}}, "carol"},
		{"exclude-authrole", map[string]any{"exclude_authrole": []string{"ROLE_ADMIN"}}, "alice bob"},
		{"eligible-authrole", map[string]any{"eligible_authrole": []string{"ROLE_ADMIN"}}, "carol"},
		{"eligible-authid-exclude-session", map[string]any{"eligible_authid": []string{"alice", "bob"}, "exclude": []uint64{ids["bob"]}}, "alice"},
		{"the-end", map[string]any{"exclude_me": false}, "alice bob carol dave"},
	}
	var publish []map[string]any
	for _, c := range cases {
		publish = append(publish, map[string]any{"topic": topic, "args": []string{c.text}, "options": c.options})
	}
	dave := startAutobahn(t, "subscribe", map[string]any{"url": url, "realm": "realm1", "cookie": session("dave", roles["dave"]),
		"subs": []map[string]any{{"topic": topic}}, "publish": publish, "expect": "the-end", "waitMs": 15000})
	procs["dave"] = dave

	results := map[string]patternResult{}
	for n, p := range procs {
		var r patternResult
		p.result(&r)
		if !r.GotExpected {
			t.Fatalf("%s never got the last publication: %+v", n, r.Events)
		}
		results[n] = r
	}
	if f := results["dave"].BrokerFeatures; !f["publisher_exclusion"] || !f["subscriber_blackwhite_listing"] {
		t.Errorf("WELCOME broker features %v lack publisher_exclusion or subscriber_blackwhite_listing", f)
	}
	for i, p := range results["dave"].Pubs {
		if p.Err != nil {
			t.Errorf("publish %s: %+v", cases[i].text, p.Err)
		}
	}
	for _, c := range cases {
		var got []string
		for n, r := range results {
			switch k := len(r.eventsWith(`"` + c.text + `"`)); k {
			case 0:
			case 1:
				got = append(got, n)
			default:
				t.Errorf("%s: %s got it %d times", c.text, n, k)
			}
		}
		sort.Strings(got)
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%s (options %v): reached %q, want %q", c.text, c.options, g, c.want)
		}
	}
}
