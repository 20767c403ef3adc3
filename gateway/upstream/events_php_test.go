package upstream

import (
	"bufio"
	"context"
	"encoding/json"
	"github.com/wsgate/wsgate/wamp/handler"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPHPEventsExample sends connection events to examples/php-upstream
// (events.php behind index.php) run by `php -S`.
func TestPHPEventsExample(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "events.jsonl")
	t.Setenv("EVENTS_LOG", logPath) // startPHPUpstream passes the environment on
	url := startPHPUpstream(t, string(testSecret)) + "events"
	ctx := context.Background()
	newPHPEvents := func(secret []byte, onErr string) *Events {
		t.Helper()
		e, err := NewEvents(EventsConfig{
			URL: url, Secret: secret, Timeout: 5 * time.Second,
			Connect: true, Disconnect: true, OnConnectError: onErr,
			ForwardHeaders: []string{"Cookie"},
		}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(context.Background()) })
		return e
	}
	e := newPHPEvents(testSecret, "")

	// Accepted, with the extra the app attaches.
	d, err := e.Connected(ctx, alice, HeaderMap{"Cookie": "PHPSESSID=abc"})
	if err != nil {
		t.Fatal(err)
	}
	var extra map[string]string
	if d.Reject || json.Unmarshal(d.Extra, &extra) != nil || extra["plan"] != "gold" || extra["greeting"] != "hello alice" {
		t.Fatalf("alice: %+v (extra %s)", d, d.Extra)
	}

	// Refused.
	banned := alice
	banned.ConnID, banned.UserIdentifier = "c-2", "banned@example.com"
	d, err = e.Connected(ctx, banned, nil)
	if err != nil || !d.Reject || d.Status != 403 || d.Reason != "banned" || d.Extra != nil {
		t.Fatalf("banned: %+v, %v", d, err)
	}

	// A wrong secret and a stale timestamp are refused with 401: errors,
	// and OnConnectError decides.
	wrong := newPHPEvents([]byte("not-the-shared-secret"), OnConnectErrorReject)
	d, err = wrong.Connected(ctx, alice, nil)
	if err == nil || !strings.Contains(err.Error(), "401") || !d.Reject || d.Status != 503 {
		t.Fatalf("wrong secret: %+v, %v", d, err)
	}
	stale := newPHPEvents(testSecret, OnConnectErrorAccept)
	stale.now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	d, err = stale.Connected(ctx, alice, nil)
	if err == nil || !strings.Contains(err.Error(), "401") || d.Reject {
		t.Fatalf("stale timestamp: %+v, %v", d, err)
	}

	// Disconnects, the extra echoed back, land in EVENTS_LOG once Close
	// has delivered the queue.
	gone := alice
	gone.Extra, gone.Reason, gone.Duration = json.RawMessage(`{"greeting":"hello alice","plan":"gold"}`), ReasonClientClose, 61500*time.Millisecond
	e.Disconnected(gone)
	anon := ConnEvent{
		ConnID:      "c-3",
		SessionID:   "wamp-sess-3",
		Identity:    handler.Identity{Anonymous: true, UserIdentifier: "anon-1"},
		Protocol:    "wamp.2.json",
		ConnectedAt: time.Now(),
		Reason:      ReasonDrain,
	}
	e.Disconnected(anon)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := e.Close(cctx); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byConn := map[string]map[string]any{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Event      string         `json:"event"`
			Connection map[string]any `json:"connection"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Event != "disconnect" {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		byConn[line.Connection["conn_id"].(string)] = line.Connection
	}
	if len(byConn) != 2 {
		t.Fatalf("%d disconnect events logged, want 2: %v", len(byConn), byConn)
	}
	c1, c3 := byConn["c-1"], byConn["c-3"]
	x, _ := json.Marshal(c1["extra"])
	if c1["reason"] != "client_close" || c1["duration_ms"] != 61500.0 || string(x) != `{"greeting":"hello alice","plan":"gold"}` ||
		c1["user_identifier"] != "alice" || c1["wamp_session_id"] != "wamp-sess-1" || c1["connected_at"] != "2024-05-01T12:00:00.123Z" {
		t.Fatalf("c-1 %v", c1)
	}
	if c3["reason"] != "drain" || c3["extra"] != nil || c3["anonymous"] != true || c3["protocol"] != "wamp.2.json" {
		t.Fatalf("c-3 %v", c3)
	}
	if roles, ok := c3["roles"].([]any); !ok || len(roles) != 0 {
		t.Fatalf("c-3 roles %v", c3["roles"])
	}
}
