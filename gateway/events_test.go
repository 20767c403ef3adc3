package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/gateway/upstream"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

const eventsSecret = "events-secret-0123456789"

// recordedEvent is what the fake app saw of one event.
type recordedEvent struct {
	Event      string `json:"event"`
	Connection struct {
		ConnID      string          `json:"conn_id"`
		WAMPID      string          `json:"wamp_session_id"`
		User        string          `json:"user_identifier"`
		Anonymous   bool            `json:"anonymous"`
		Protocol    string          `json:"protocol"`
		RemoteAddr  string          `json:"remote_addr"`
		Extra       json.RawMessage `json:"extra"`
		Reason      string          `json:"reason"`
		ConnectedAt string          `json:"connected_at"`
	} `json:"connection"`
	Mode string // X-Test-Mode header forwarded from the handshake
}

// eventsApp is a fake PHP app: it checks the signature, refuses
// connections whose handshake carried "X-Test-Mode: reject", and attaches
// {"plan":"gold"} to the others.
func eventsApp(t *testing.T) (string, chan recordedEvent) {
	t.Helper()
	got := make(chan recordedEvent, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := upstream.VerifyRequest([]byte(eventsSecret), r, body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev recordedEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ev.Mode = r.Header.Get("X-Test-Mode")
		got <- ev
		w.Header().Set("Content-Type", "application/json")
		switch {
		case ev.Event == "connect" && ev.Mode == "reject":
			io.WriteString(w, `{"accept":false,"status":403,"reason":"banned"}`)
		case ev.Event == "connect":
			io.WriteString(w, `{"accept":true,"extra":{"plan":"gold"}}`)
		default:
			io.WriteString(w, `{}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

// extraRPC answers "extra/get" with what the app attached to the caller.
type extraRPC struct{}

func (extraRPC) Name() string { return "test.extra" }
func (extraRPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{
		"get": func(_ context.Context, c handler.Client, _ handler.Request, _ json.RawMessage) (any, error) {
			return map[string]json.RawMessage{"extra": c.Extra()}, nil
		},
	}
}

func nextEvent(t *testing.T, got chan recordedEvent) recordedEvent {
	t.Helper()
	select {
	case ev := <-got:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event reached the app")
		return recordedEvent{}
	}
}

// The app hears of every connection: it can refuse one before the upgrade,
// attach data that handlers and the client storage see, and gets a
// disconnect event with the reason, drain included.
func TestConnectionEvents(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		url, got := eventsApp(t)
		reg := handler.NewRegistry()
		if err := reg.AddRPC(extraRPC{}); err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.Transport.Mode = mode
		cfg.Listen = "127.0.0.1:0"
		cfg.Session.Files.Path = t.TempDir()
		cfg.Routes.RPC = map[string]wamp.RouteConfig{"extra": {Pattern: "extra/{method}", Handler: "test.extra"}}
		cfg.Events.URL = url
		cfg.Events.Secret = eventsSecret
		cfg.Events.ForwardHeaders = []string{"X-Test-Mode"}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		srv, err := New(cfg, Options{Handlers: reg})
		if err != nil {
			t.Fatal(err)
		}
		addr := serveServer(t, srv, cfg.Listen)

		// Refused by the app: its status answers the handshake.
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"X-Test-Mode": {"reject"}}), Protocols: []string{"wamp"}, Timeout: 5 * time.Second}
		_, _, _, err = d.Dial(context.Background(), "ws://"+addr+"/")
		var se ws.StatusError
		if !errors.As(err, &se) || se != 403 {
			t.Fatalf("refused connection: %v, want 403", err)
		}
		if ev := nextEvent(t, got); ev.Event != "connect" || ev.Mode != "reject" || !ev.Connection.Anonymous {
			t.Fatalf("first event %+v", ev)
		}

		// Accepted with extra data, seen by a handler and the storage.
		c, err := dialRaw(t, addr, http.Header{"X-Test-Mode": {"accept"}})
		if err != nil {
			t.Fatal(err)
		}
		conn := nextEvent(t, got)
		if conn.Event != "connect" || conn.Connection.ConnID == "" || conn.Connection.Protocol != "wamp" ||
			!strings.HasPrefix(conn.Connection.RemoteAddr, "127.0.0.1:") {
			t.Fatalf("connect event %+v", conn)
		}
		c.write(ws.NewTextFrame([]byte(`[2,"c1","extra/get"]`)))
		if f := c.readFrame(); !bytes.Equal(f.Payload, []byte(`[3,"c1",{"extra":{"plan":"gold"}}]`)) {
			t.Fatalf("handler saw %s", f.Payload)
		}
		entries, err := srv.clients.GetAll(context.Background(), true)
		if err != nil || len(entries) != 1 || string(entries[0].Extra) != `{"plan":"gold"}` || entries[0].ConnID != conn.Connection.ConnID {
			t.Fatalf("client storage %+v %v", entries, err)
		}

		// The client leaves: the disconnect event has its reason and extra.
		c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
		c.expectClose()
		disc := nextEvent(t, got)
		if disc.Event != "disconnect" || disc.Connection.ConnID != conn.Connection.ConnID || disc.Connection.Reason != "client_close" ||
			string(disc.Connection.Extra) != `{"plan":"gold"}` || disc.Connection.WAMPID == "" {
			t.Fatalf("disconnect event %+v", disc)
		}
		if disc.Connection.ConnectedAt == "" || disc.Connection.ConnectedAt != conn.Connection.ConnectedAt {
			t.Fatalf("connected_at %q in the disconnect event, %q in the connect event", disc.Connection.ConnectedAt, conn.Connection.ConnectedAt)
		}

		// Drain: the event is sent before Shutdown returns.
		if _, err := dialRaw(t, addr, nil); err != nil {
			t.Fatal(err)
		}
		nextEvent(t, got) // its connect
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			if ev.Event != "disconnect" || ev.Connection.Reason != "drain" {
				t.Fatalf("event after drain %+v", ev)
			}
		default:
			t.Fatal("Shutdown returned before the drained connection's disconnect event was sent")
		}
	})
}

// serveServer serves srv on a new listener; the test's cleanup shuts it
// down unless the test did.
func serveServer(t *testing.T, srv *Server, listen string) string {
	t.Helper()
	ln, err := netListen(listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// A connection the app accepted but that never went live, because the
// gateway began to drain while the app was deciding, still gets its
// disconnect event: the app's connect/disconnect pairs stay whole.
func TestConnectionEventsAbandonedHandshake(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		var srv *Server
		got := make(chan recordedEvent, 8)
		shutdownDone := make(chan error, 1)
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			var ev recordedEvent
			if err := json.Unmarshal(body, &ev); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			got <- ev
			if ev.Event == "connect" {
				// Drain starts while the handshake waits for this answer.
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					shutdownDone <- srv.Shutdown(ctx)
				}()
				for deadline := time.Now().Add(10 * time.Second); !srv.isDraining(); {
					if time.Now().After(deadline) {
						t.Error("Shutdown did not start draining")
						break
					}
					time.Sleep(time.Millisecond)
				}
				io.WriteString(w, `{"accept":true}`)
				return
			}
			io.WriteString(w, `{}`)
		}))
		defer app.Close()
		cfg := config.Default()
		cfg.Transport.Mode = mode
		cfg.Listen = "127.0.0.1:0"
		cfg.Session.Files.Path = t.TempDir()
		cfg.Events.URL = app.URL
		cfg.Events.Secret = eventsSecret
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		var err error
		if srv, err = New(cfg, Options{}); err != nil {
			t.Fatal(err)
		}
		ln, err := netListen(cfg.Listen)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()

		// The client gets no WAMP session; whatever it sees is fine.
		d := ws.Dialer{Protocols: []string{"wamp"}, Timeout: 10 * time.Second}
		if nc, _, _, err := d.Dial(context.Background(), "ws://"+ln.Addr().String()+"/"); err == nil {
			nc.Close()
		}
		if err := <-shutdownDone; err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Fatalf("serve: %v", err)
		}
		conn := nextEvent(t, got)
		disc := nextEvent(t, got)
		if conn.Event != "connect" || disc.Event != "disconnect" || disc.Connection.ConnID != conn.Connection.ConnID ||
			disc.Connection.Reason != "drain" || disc.Connection.ConnectedAt != conn.Connection.ConnectedAt {
			t.Fatalf("events %+v then %+v", conn, disc)
		}
	})
}
