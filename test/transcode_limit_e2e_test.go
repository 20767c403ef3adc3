package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/vmihailenco/msgpack/v5"
)

// TestTranscodedSizeLimit: a wamp.2.msgpack message within
// limits.max_message_size whose JSON transcoding is over it closes the
// connection with 1009 and counts limit max_message_size; the same size
// in plain characters (no growth) is served.
func TestTranscodedSizeLimit(t *testing.T) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(wamp2Config, dir) + "limits: {max_message_size: 16384}\n"
	g := startGateway(t, cfg)
	cases := []struct {
		name    string
		payload string
		closed  bool
	}{
		{"plain 10000 bytes", strings.Repeat("a", 10000), false},
		{"10000 control bytes: 60000 in JSON", strings.Repeat("\x01", 10000), true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := ws.Dialer{Protocols: []string{"wamp.2.msgpack"}, Timeout: 5 * time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, br, hs, err := d.Dial(ctx, "ws://"+g.Addr+"/")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if hs.Protocol != "wamp.2.msgpack" {
				t.Fatalf("negotiated %q", hs.Protocol)
			}
			var rw io.ReadWriter = conn
			if br != nil {
				rw = struct {
					io.Reader
					io.Writer
				}{br, conn}
			}
			send := func(v any) {
				b, err := msgpack.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if err := wsutil.WriteClientBinary(conn, b); err != nil {
					t.Fatal(err)
				}
			}
			read := func() ([]any, error) {
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				msg, _, err := wsutil.ReadServerData(rw)
				if err != nil {
					return nil, err
				}
				var v []any
				return v, msgpack.Unmarshal(msg, &v)
			}
			send([]any{1, "realm1", map[string]any{"roles": map[string]any{"publisher": map[string]any{}}}})
			if m, err := read(); err != nil || len(m) == 0 || fmt.Sprint(m[0]) != "2" {
				t.Fatalf("want WELCOME, got %v %v", m, err)
			}
			send([]any{16, i + 1, map[string]any{"acknowledge": true}, "acme/channel/big", []any{tc.payload}})
			m, err := read()
			var ce wsutil.ClosedError
			switch {
			case tc.closed && (!errors.As(err, &ce) || ce.Code != ws.StatusMessageTooBig):
				t.Fatalf("got %v %v, want close 1009", m, err)
			case !tc.closed && (err != nil || len(m) == 0 || fmt.Sprint(m[0]) != "17"):
				t.Fatalf("got %v %v, want PUBLISHED", m, err)
			}
		})
	}
	resp, err := http.Get("http://" + g.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `wsgate_limit_exceeded_total{limit="max_message_size"} 1`) {
		t.Errorf("metrics lack limit max_message_size = 1")
	}
}
