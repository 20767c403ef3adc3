package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestReplicasUserListsClusterWide runs three gateway processes over one
// Redis and publishes from one replica with the WAMP v2 user-list options
// (eligible_authid, exclude_authid, eligible_authrole, exclude_authrole)
// naming users connected to the others: each replica must filter its own
// subscribers by the lists, as one gateway would. A v1 client's PUBLISH
// naming a v2 session id as a JSON number reaches that session and does
// not close the publisher.
func TestReplicasUserListsClusterWide(t *testing.T) {
	redisAddr := testenv.Redis(t)
	testenv.PHP(t)
	prefix := "wsgate-ul-" + randomSuffix(t) + ":"
	dir := t.TempDir()
	session := func(user string, roles ...string) string {
		s := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": user, "roles": roles, "firewall": "main"})
		return cookie(s)
	}
	config := replicaConfig(replicaOptions{Sessions: dir, Prefix: prefix, Redis: redisAddr, Fanout: "redis"})
	g := []replica{startReplica(t, config), startReplica(t, config), startReplica(t, config)}
	const topic = "acme/relay/lists"

	type member struct {
		name string
		c    *wsRaw
	}
	dialV2As := func(r replica, user string, roles ...string) member {
		c, err := dialV2(t, r.Addr, rawDialOpts{Header: "Cookie: " + session(user, roles...) + "\r\n"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.nc.Close() })
		return member{name: user, c: c}
	}
	// alice on replica 0, bob (an admin) on 1, carol on 2; the publisher,
	// dave, on 1 as well.
	alice := dialV2As(g[0], "alice", "ROLE_USER")
	bob := dialV2As(g[1], "bob", "ROLE_USER", "ROLE_ADMIN")
	carol := dialV2As(g[2], "carol", "ROLE_USER")
	dave := dialV2As(g[1], "dave", "ROLE_USER")
	subs := []member{alice, bob, carol}
	for i, m := range subs {
		m.c.sendJSON(32, i+1, map[string]any{}, topic)
		if got := m.c.nextMsg(10 * time.Second); msgType(got) != 33 {
			t.Fatalf("%s: want SUBSCRIBED, got %s", m.name, msgString(got))
		}
	}
	// Until a broadcast from replica 1 reaches every replica, their
	// subscriptions may not be in place yet.
	warm := 0
	eventually(t, 15*time.Second, "every replica relays", func() bool {
		warm++
		dave.c.sendJSON(16, 1000+warm, map[string]any{}, topic, []any{"warm"})
		for _, m := range subs {
			if _, err := m.c.tryNext(300 * time.Millisecond); err != nil {
				return false
			}
		}
		return true
	})
	// Drain what the warm-up left.
	for _, m := range subs {
		for {
			if _, err := m.c.tryNext(300 * time.Millisecond); err != nil {
				break
			}
		}
	}

	// Each case publishes a marker from dave and checks who got it: the
	// next message of each subscriber is either that marker or, for those
	// who must not get it, the "fence" published right after to everybody.
	publish := func(marker string, opts map[string]any) {
		t.Helper()
		dave.c.sendJSON(16, 1, opts, topic, []any{marker})
		dave.c.sendJSON(16, 2, map[string]any{}, topic, []any{"fence"})
	}
	expectWho := func(marker string, want ...string) {
		t.Helper()
		for _, m := range subs {
			got := m.c.nextMsg(10 * time.Second)
			should := strings.Contains(strings.Join(want, ","), m.name)
			has := bytes.Contains([]byte(msgString(got)), []byte(marker))
			if should != has {
				t.Errorf("%s: %s: got %s (should receive: %v)", marker, m.name, msgString(got), should)
			}
			if has {
				// The fence comes next.
				if f := m.c.nextMsg(10 * time.Second); !bytes.Contains([]byte(msgString(f)), []byte("fence")) {
					t.Errorf("%s: %s: want the fence, got %s", marker, m.name, msgString(f))
				}
			}
		}
	}
	cases := []struct {
		marker string
		opts   map[string]any
		want   []string
	}{
		{"eligible-alice", map[string]any{"eligible_authid": []string{"alice"}}, []string{"alice"}},
		{"exclude-alice", map[string]any{"exclude_authid": []string{"alice"}}, []string{"bob", "carol"}},
		{"eligible-admins", map[string]any{"eligible_authrole": []string{"ROLE_ADMIN"}}, []string{"bob"}},
		{"exclude-admins", map[string]any{"exclude_authrole": []string{"ROLE_ADMIN"}}, []string{"alice", "carol"}},
		{"eligible-nobody-online", map[string]any{"eligible_authid": []string{"zed"}}, nil},
		{"eligible-carol-exclude-role", map[string]any{"eligible_authid": []string{"carol", "bob"}, "exclude_authrole": []string{"ROLE_ADMIN"}}, []string{"carol"}},
	}
	for _, c := range cases {
		publish(c.marker, c.opts)
		expectWho(c.marker, c.want...)
	}

	t.Run("v1 eligible list with a v2 session id as a number", func(t *testing.T) {
		// carol's session id, from the shared client storage.
		status, body := g[0].apiCall(t, "GET", "/api/clients?username=carol", nil)
		if status != 200 {
			t.Fatalf("GET /api/clients: %d %s", status, body)
		}
		var out struct {
			Clients []struct {
				ID string `json:"wamp_session_id"`
			} `json:"clients"`
		}
		if err := json.Unmarshal(body, &out); err != nil || len(out.Clients) != 1 {
			t.Fatalf("carol's entry: %v %s", err, body)
		}
		num := out.Clients[0].ID // decimal: written into the JSON as a number
		v1 := mustV1(t, g[0].Addr)
		defer v1.nc.Close()
		v1.mustWrite(clientText([]byte(fmt.Sprintf(`[7,%q,"v1-to-carol",[],[%s]]`, topic, num))))
		got := carol.c.nextMsg(10 * time.Second)
		if !bytes.Contains([]byte(msgString(got)), []byte("v1-to-carol")) {
			t.Fatalf("carol: want the v1 publish, got %s", msgString(got))
		}
		// The publisher is still open: a publish from it still arrives.
		v1.sendJSON(7, topic, "still-open")
		if got := carol.c.nextMsg(10 * time.Second); !bytes.Contains([]byte(msgString(got)), []byte("still-open")) {
			t.Fatalf("carol: want still-open, got %s", msgString(got))
		}
	})
}
