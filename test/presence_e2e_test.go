package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestPresenceAcrossReplicas runs two replicas sharing Redis (client
// storage and fan-out) with presence on acme/relay/{room} and
// wamp.meta_api on. bob (a WAMP v1 raw client) on replica B watches the
// presence of a room and subscribes to it; carol (autobahn-js 26) on B
// subscribes too; bob opens and closes a second tab on replica A; alice
// (autobahn-js 26) on replica A watches it, lists it, subscribes and
// publishes with disclose_me. Checked: bob sees each user join once
// (cluster-wide: his second tab on A makes no event) and alice leave, in
// the documented v1 shape; alice's
// list names all three (cluster-wide); carol on the other replica gets
// alice's event with publisher, publisher_authid and publisher_authrole;
// alice sees the subscription meta event of her own subscription and is
// refused the presence of a room she may not subscribe to.
func TestPresenceAcrossReplicas(t *testing.T) {
	autobahnNode(t)
	redisAddr := testenv.Redis(t)
	testenv.PHP(t)
	rdb, prefix := redisTestPrefix(t, redisAddr)
	dir := t.TempDir()
	session := func(user string) string {
		s := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": user, "roles": []string{"ROLE_USER"}, "firewall": "main"})
		return cookie(s)
	}
	alice, bob, carol := session("alice"), session("bob"), session("carol")
	config := replicaConfig(replicaOptions{Sessions: dir, Prefix: prefix, Redis: redisAddr, Fanout: "redis", TTL: "3s",
		Extra: "wamp: {meta_api: authenticated}\n"})
	config = strings.Replace(config, `relay: {pattern: "acme/relay/{room}", handler: acme.relay}`,
		`relay: {pattern: "acme/relay/{room}", handler: acme.relay, presence: true}
    staff: {pattern: "acme/staff/{room}", handler: acme.relay, presence: true, roles: [ROLE_ADMIN]}`, 1)
	a, b := startReplica(t, config), startReplica(t, config)
	const topic = "acme/relay/presence"
	const companion = "wsgate.presence/" + topic

	bv1, err := dialWAMP(t, b.Addr, dialOptions{Cookie: bob})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bv1.close)
	// nextPresence returns bob's next presence event, skipping the
	// room's own events.
	nextPresence := func() string {
		t.Helper()
		for {
			m := bv1.next()
			if len(m) == 3 && string(m[0]) == "8" && string(m[1]) == `"`+companion+`"` {
				return string(m[2])
			}
		}
	}
	bv1.send(5, companion)
	bv1.send(5, topic)
	assertJSON(t, "bob's own join", json.RawMessage(nextPresence()), `{"event":"join","topic":"`+topic+`","user":"bob"}`)

	cv2 := startAutobahn(t, "listen", map[string]any{"url": "ws://" + b.Addr + "/", "realm": "realm1", "cookie": carol,
		"topic": topic, "expect": "disclosed by alice"})
	if ready := cv2.next(); string(ready["ready"]) != "true" {
		t.Fatalf("want ready, got %v", ready)
	}
	assertJSON(t, "carol's join", json.RawMessage(nextPresence()), `{"event":"join","topic":"`+topic+`","user":"carol"}`)

	// bob opens a second tab on the other replica and closes it: bob is
	// present cluster-wide all along, so nobody hears of it (the next
	// events bob's watcher gets are alice's).
	bobTab, err := dialWAMP(t, a.Addr, dialOptions{Cookie: bob})
	if err != nil {
		t.Fatal(err)
	}
	bobTab.send(5, topic)
	eventually(t, 10*time.Second, "bob's second tab in A's snapshot", func() bool {
		v, _ := rdb.Do(context.Background(), rdb.B().Hlen().Key(prefix+"presence:"+topic).Build()).AsInt64()
		return v == 2
	})
	bobTab.close()

	av2 := startAutobahn(t, "presence", map[string]any{"url": "ws://" + a.Addr + "/", "realm": "realm1", "cookie": alice,
		"topic": topic, "user": "alice", "deniedTopic": "acme/staff/room", "expectUsers": []string{"alice", "bob", "carol"},
		"publish": "disclosed by alice"})
	ready := av2.next()
	if string(ready["ready"]) != "true" {
		t.Fatalf("want ready, got %v", ready)
	}
	var aliceSession uint64
	_ = json.Unmarshal(ready["session"], &aliceSession)
	// alice's join crossed replicas through the fan-out.
	assertJSON(t, "alice's join on the other replica", json.RawMessage(nextPresence()), `{"event":"join","topic":"`+topic+`","user":"alice"}`)

	// v1 lists too, and sees every replica's subscribers.
	var list []json.RawMessage
	eventually(t, 10*time.Second, "v1 list names alice, bob and carol", func() bool {
		bv1.send(2, "p1", "wsgate.presence.list", topic)
		for {
			list = bv1.next()
			if string(list[0]) == "3" || string(list[0]) == "4" {
				break
			}
		}
		return len(list) == 3 && jsonSame(list[2], `{"topic":"`+topic+`","users":["alice","bob","carol"],"anonymous":0,"truncated":false}`)
	})

	// The app lists it through the HTTP API of either replica.
	for _, tc := range []struct {
		query  string
		status int
		want   string
	}{
		{"?topic=" + url.QueryEscape(topic), 200, `{"topic":"` + topic + `","users":["alice","bob","carol"],"anonymous":0,"truncated":false}`},
		{"?topic=acme%2Fnowhere", 404, `{"error":"no presence for this topic"}`},
		{"", 400, `{"error":"topic is required"}`},
	} {
		status, body := a.apiCall(t, "GET", "/api/presence"+tc.query, nil)
		if status != tc.status || !jsonSame(body, tc.want) {
			t.Errorf("GET /api/presence%s: %d %s, want %d %s", tc.query, status, body, tc.status, tc.want)
		}
	}

	fmt.Fprintln(av2.stdin, "leave")
	assertJSON(t, "alice's leave on the other replica", json.RawMessage(nextPresence()), `{"event":"leave","topic":"`+topic+`","user":"alice"}`)

	var ar struct {
		Session         uint64            `json:"session"`
		SubscriptionID  uint64            `json:"subscriptionId"`
		PresenceEvents  []json.RawMessage `json:"presenceEvents"`
		MetaEvents      [][]uint64        `json:"metaEvents"`
		MetaSub         wampOutcome       `json:"metaSub"`
		DeniedCompanion wampOutcome       `json:"deniedCompanion"`
		DeniedList      wampOutcome       `json:"deniedList"`
		List            wampOutcome       `json:"list"`
		PubAck          wampOutcome       `json:"pubAck"`
		SawOwnJoin      bool              `json:"sawOwnJoin"`
		SawOwnLeave     bool              `json:"sawOwnLeave"`
	}
	av2.result(&ar)
	if !ar.SawOwnJoin || !ar.SawOwnLeave {
		t.Errorf("alice's presence events %s: want her own join and leave", ar.PresenceEvents)
	}
	assertJSON(t, "alice's list (autobahn, cluster-wide)", ar.List.OK, `{"topic":"`+topic+`","users":["alice","bob","carol"],"anonymous":0,"truncated":false}`)
	if ar.MetaSub.Err != nil || ar.PubAck.Err != nil {
		t.Errorf("meta subscribe %+v, publish %+v", ar.MetaSub, ar.PubAck)
	}
	if got := ar.DeniedCompanion.errURI(); got != "wamp.error.not_authorized" {
		t.Errorf("presence of a room alice may not subscribe to: %q, want wamp.error.not_authorized", got)
	}
	if got := ar.DeniedList.errURI(); got != "wamp.error.not_authorized" {
		t.Errorf("list of a room alice may not subscribe to: %q, want wamp.error.not_authorized", got)
	}
	sawMeta := false
	for _, e := range ar.MetaEvents {
		if len(e) == 2 && e[0] == ar.Session && e[1] == ar.SubscriptionID {
			sawMeta = true
		}
	}
	if !sawMeta {
		t.Errorf("meta events %v: want on_subscribe [%d, %d]", ar.MetaEvents, ar.Session, ar.SubscriptionID)
	}

	fmt.Fprintln(cv2.stdin, "leave")
	var cr struct {
		Events []struct {
			Args      []json.RawMessage `json:"args"`
			Publisher uint64            `json:"publisher"`
			AuthID    string            `json:"publisher_authid"`
			AuthRole  string            `json:"publisher_authrole"`
		} `json:"events"`
		GotExpected bool `json:"gotExpected"`
	}
	cv2.result(&cr)
	if !cr.GotExpected {
		t.Fatalf("carol did not get alice's publication: %+v", cr.Events)
	}
	for _, e := range cr.Events {
		if len(e.Args) == 1 && jsonSame(e.Args[0], `{"msg":"disclosed by alice"}`) {
			if e.Publisher != aliceSession || e.AuthID != "alice" || e.AuthRole != "ROLE_USER" {
				t.Errorf("event from the other replica: publisher %d %q %q, want %d alice ROLE_USER", e.Publisher, e.AuthID, e.AuthRole, aliceSession)
			}
		}
	}

	// Only bob is left, on B; A lists him from B's snapshot. B crashes
	// (SIGKILL: it deletes nothing): bob drops out of A's list once B's
	// snapshot is older than client_storage.ttl (3s here).
	presenceOnA := func() string {
		status, body := a.apiCall(t, "GET", "/api/presence?topic="+url.QueryEscape(topic), nil)
		if status != 200 {
			t.Fatalf("GET /api/presence: %d %s", status, body)
		}
		var l struct {
			Users []string `json:"users"`
		}
		_ = json.Unmarshal(body, &l)
		return strings.Join(l.Users, ",")
	}
	eventually(t, 10*time.Second, "A lists bob alone", func() bool { return presenceOnA() == "bob" })
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "bob gone from A's list after B crashed", func() bool { return presenceOnA() == "" })
}
