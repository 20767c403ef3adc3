package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp"
)

// TestPresenceAPI: GET /api/presence lists a presence topic's subscribers
// (this replica's with the memory client storage), refuses topics without
// presence and a missing topic.
func TestPresenceAPI(t *testing.T) {
	dir := t.TempDir()
	seedSession(t, dir, "alice1")
	addr, srv := startServer(t, "goroutine", func(c *config.Config) {
		c.Session.Files.Path = dir
		c.Session.Files.GCMaxLifetime = 0
		c.Routes.Topics["room"] = wamp.RouteConfig{Pattern: "room/{id}", Handler: "acme.relay", Presence: true}
	})
	api := httptest.NewServer(srv.APIHandler("0123456789abcdef-token"))
	defer api.Close()
	get := func(query string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", api.URL+"/api/presence"+query, nil)
		req.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	alice, err := dialRaw(t, addr, http.Header{"Cookie": {"PHPSESSID=alice1"}})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := dialRaw(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice.write(ws.NewTextFrame([]byte(`[5,"room/1"]`)))
	anon.write(ws.NewTextFrame([]byte(`[5,"room/1"]`)))
	want := map[string]any{"topic": "room/1", "users": []any{"alice"}, "anonymous": float64(1), "truncated": false}
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, got := get("?topic=room/1")
		if status == 200 && reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/presence: %d %v, want 200 %v", status, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		query  string
		status int
	}{{"?topic=acme/channel/news", 404}, {"?topic=nowhere", 404}, {"", 400}} {
		if status, body := get(tc.query); status != tc.status {
			t.Errorf("GET /api/presence%s: %d %v, want %d", tc.query, status, body, tc.status)
		}
	}
}
