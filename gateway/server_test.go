package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/wsgate/wsgate/examples/acme"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/gateway/transport"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

// startServer runs an in-process gateway on a files store in a temp dir
// (empty: every client is anonymous) and returns its address.
func startServer(t *testing.T, mode string, mutate func(*config.Config)) (string, *Server) {
	t.Helper()
	cfg := config.Default()
	cfg.Transport.Mode = mode
	cfg.Listen = "127.0.0.1:0"
	cfg.Session.Files.Path = t.TempDir()
	cfg.Routes.RPC = map[string]wamp.RouteConfig{"acme_rpc": {Pattern: "sample/{method}", Handler: "acme.rpc"}}
	cfg.Routes.Topics = map[string]wamp.RouteConfig{"acme_topic": {Pattern: "acme/channel/{room}", Handler: "acme.topic"}}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := handler.NewRegistry()
	if err := acme.Register(reg); err != nil {
		t.Fatal(err)
	}
	return serveConfig(t, cfg, reg)
}

// startServerWith is startServer with the caller's handlers.
func startServerWith(t *testing.T, mode string, reg *handler.Registry, mutate func(*config.Config)) (string, *Server) {
	t.Helper()
	cfg := config.Default()
	cfg.Transport.Mode = mode
	cfg.Listen = "127.0.0.1:0"
	cfg.Session.Files.Path = t.TempDir()
	mutate(&cfg)
	return serveConfig(t, cfg, reg)
}

func serveConfig(t *testing.T, cfg config.Config, reg *handler.Registry) (string, *Server) {
	t.Helper()
	return serveConfigLog(t, cfg, reg, slog.New(slog.DiscardHandler))
}

// serveConfigLog is serveConfig logging to log.
func serveConfigLog(t *testing.T, cfg config.Config, reg *handler.Registry, log *slog.Logger) (string, *Server) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Options{Logger: log, Handlers: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), srv
}

// forEachMode runs f once per transport mode this platform has: both
// modes must pass the same tests.
func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	modes := []string{config.ModeGoroutine}
	if transport.EpollSupported {
		modes = append(modes, config.ModeEpoll)
	}
	for _, m := range modes {
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

// clientFrame encodes a masked client frame.
func clientFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	var b bytes.Buffer
	f := ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), payload...)))
	if err := ws.WriteFrame(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// deflateMessage compresses msg as RFC 7692 says a message is sent: a
// flushed deflate stream without its 4-byte sync tail.
func deflateMessage(t testing.TB, msg []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write(msg)
	w.Flush()
	out := b.Bytes()
	if !bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}) {
		t.Fatalf("flush did not end in the sync tail")
	}
	return out[:len(out)-4]
}

// compressedFrame is clientFrame with RSV1 set: a compressed message.
func compressedFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	f := clientFrame(t, fin, op, payload)
	f[0] |= 0x40
	return f
}

// rawClient is a websocket client that writes frames by hand, to test the
// server's RFC 6455 behaviour.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string, header http.Header) (*rawClient, error) {
	t.Helper()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(header), Protocols: []string{"wamp"}, Timeout: 5 * time.Second}
	nc, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	}
	c := &rawClient{t: t, nc: nc, br: br}
	if f := c.readFrame(); f.Header.OpCode != ws.OpText || !bytes.HasPrefix(f.Payload, []byte("[0,")) {
		t.Fatalf("want WELCOME, got %v %q", f.Header.OpCode, f.Payload)
	}
	return c, nil
}

func (c *rawClient) write(f ws.Frame) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteFrame(c.nc, ws.MaskFrameInPlace(f)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) readFrame() ws.Frame {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ws.ReadFrame(c.br)
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// expectClose reads frames until a close frame and returns its code; the
// server must then close the TCP connection.
func (c *rawClient) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.br.ReadByte(); err != io.EOF {
				c.t.Errorf("after close frame: want EOF, got %v", err)
			}
			return code
		}
	}
}

func TestConnFraming(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, func(c *config.Config) { c.Limits.MaxMessageSize = 1024 })
		call := []byte(`[2,"c1","sample/sum",[1,2]]`)
		anonResult := `[3,"c1",{"error":true,"msg":"You must be authenticated to use this function."}]`

		t.Run("ping gets pong with the same payload", func(t *testing.T) {
			c, err := dialRaw(t, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.write(ws.NewPingFrame([]byte("hi")))
			if f := c.readFrame(); f.Header.OpCode != ws.OpPong || string(f.Payload) != "hi" {
				t.Fatalf("got %v %q", f.Header.OpCode, f.Payload)
			}
		})
		t.Run("fragmented message with a ping between fragments", func(t *testing.T) {
			c, err := dialRaw(t, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.write(ws.Frame{Header: ws.Header{OpCode: ws.OpText, Length: 10}, Payload: call[:10]})
			c.write(ws.NewPingFrame(nil))
			rest := call[10:]
			c.write(ws.Frame{Header: ws.Header{OpCode: ws.OpContinuation, Fin: true, Length: int64(len(rest))}, Payload: rest})
			if f := c.readFrame(); f.Header.OpCode != ws.OpPong {
				t.Fatalf("want pong first, got %v", f.Header.OpCode)
			}
			if f := c.readFrame(); string(f.Payload) != anonResult {
				t.Fatalf("got %q", f.Payload)
			}
		})
		t.Run("client close is echoed", func(t *testing.T) {
			c, err := dialRaw(t, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))
			if code := c.expectClose(); code != ws.StatusNormalClosure {
				t.Fatalf("code %d", code)
			}
		})
		for _, tc := range []struct {
			name  string
			frame ws.Frame
			want  ws.StatusCode
		}{
			{"binary is unsupported", ws.NewBinaryFrame([]byte("[2]")), ws.StatusUnsupportedData},
			{"too big", ws.NewTextFrame(bytes.Repeat([]byte("a"), 2000)), ws.StatusMessageTooBig},
			{"invalid UTF-8", ws.NewTextFrame([]byte("[2,\"\xff\"]")), ws.StatusInvalidFramePayloadData},
			{"malformed WAMP", ws.NewTextFrame([]byte("{}")), ws.StatusInvalidFramePayloadData},
			{"continuation without start", ws.Frame{Header: ws.Header{OpCode: ws.OpContinuation, Fin: true, Length: 1}, Payload: []byte("x")}, ws.StatusProtocolError},
			{"reserved opcode", ws.Frame{Header: ws.Header{OpCode: 0x3, Fin: true}}, ws.StatusProtocolError},
			{"bad close code", ws.NewCloseFrame([]byte{0x03, 0xe7}), ws.StatusProtocolError}, // 999
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, err := dialRaw(t, addr, nil)
				if err != nil {
					t.Fatal(err)
				}
				c.write(tc.frame)
				if code := c.expectClose(); code != tc.want {
					t.Fatalf("close code %d, want %d", code, tc.want)
				}
			})
		}
		t.Run("unmasked client frame is a protocol error", func(t *testing.T) {
			c, err := dialRaw(t, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			ws.WriteFrame(c.nc, ws.NewTextFrame(call))
			if code := c.expectClose(); code != ws.StatusProtocolError {
				t.Fatalf("close code %d", code)
			}
		})
	})
}

// TestBinarySubprotocol: wamp.2.msgpack and wamp.2.cbor sessions speak
// binary frames both ways, and a text frame closes them with 1003 as a
// binary frame closes the text protocols.
func TestBinarySubprotocol(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, nil)
		for proto, codec := range map[string]struct {
			marshal   func(any) ([]byte, error)
			unmarshal func([]byte, any) error
		}{
			"wamp.2.msgpack": {msgpack.Marshal, msgpack.Unmarshal},
			"wamp.2.cbor":    {cbor.Marshal, cbor.Unmarshal},
		} {
			t.Run(proto, func(t *testing.T) {
				d := ws.Dialer{Protocols: []string{"mqtt", proto}, Timeout: 5 * time.Second}
				nc, br, hs, err := d.Dial(context.Background(), "ws://"+addr+"/")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { nc.Close() })
				if hs.Protocol != proto {
					t.Fatalf("subprotocol %q, want %q", hs.Protocol, proto)
				}
				if br == nil {
					br = bufio.NewReader(nc)
				}
				c := &rawClient{t: t, nc: nc, br: br}
				hello, err := codec.marshal([]any{1, "realm1", map[string]any{"roles": map[string]any{"subscriber": map[string]any{}}}})
				if err != nil {
					t.Fatal(err)
				}
				c.write(ws.NewBinaryFrame(hello))
				f := c.readFrame()
				var welcome []any
				if f.Header.OpCode != ws.OpBinary || codec.unmarshal(f.Payload, &welcome) != nil || len(welcome) != 3 || fmt.Sprint(welcome[0]) != "2" {
					t.Fatalf("want a binary WELCOME, got %v %x", f.Header.OpCode, f.Payload)
				}
				c.write(ws.NewTextFrame([]byte(`[32,1,{},"chan/a"]`)))
				if code := c.expectClose(); code != ws.StatusUnsupportedData {
					t.Fatalf("text frame: close code %d, want 1003", code)
				}
			})
		}
	})
}

func TestHandshakeRefusals(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, func(c *config.Config) {
			c.AllowAnonymous = false
			c.Origins.Allowed = []string{"https://app.example.com"}
		})
		for _, tc := range []struct {
			name   string
			header http.Header
			protos []string
			want   int
		}{
			{"anonymous refused", http.Header{"Origin": {"https://app.example.com"}}, []string{"wamp"}, 403},
			{"foreign origin", http.Header{"Origin": {"https://evil.example.org"}}, []string{"wamp"}, 403},
			{"unknown session is anonymous", http.Header{"Cookie": {"PHPSESSID=abcdef0123456789"}}, []string{"wamp"}, 403},
			{"impossible session id", http.Header{"Cookie": {"PHPSESSID=../../etc/passwd"}}, []string{"wamp"}, 403},
			{"other subprotocol only", nil, []string{"wamp.2.ubjson", "mqtt"}, 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(tc.header), Protocols: tc.protos, Timeout: 5 * time.Second}
				nc, _, _, err := d.Dial(context.Background(), "ws://"+addr+"/")
				if nc != nil {
					nc.Close()
				}
				var se ws.StatusError
				if !errors.As(err, &se) || int(se) != tc.want {
					t.Fatalf("got %v, want HTTP %d", err, tc.want)
				}
			})
		}
	})
}

func TestHandshakeTimeout(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, func(c *config.Config) { c.Limits.HandshakeTimeout = 300 * time.Millisecond })
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")) // and never finish
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(nc); err != nil {
			t.Fatalf("server should close a stalled handshake, got %v", err)
		}
	})
}

func TestSlowConsumerIsClosed(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, srv := startServer(t, mode, func(c *config.Config) { c.Limits.OutboundQueueBytes = 4096 })
		c, err := dialRaw(t, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.write(ws.NewTextFrame([]byte(`[5,"acme/channel/flood"]`)))
		c.readFrame() // own join event
		// Stop reading and flood the topic from the server side until the
		// client's queue overflows; the kernel buffers absorb the first part.
		topic := srv.node.Topic("acme/channel/flood")
		big := strings.Repeat("x", 1000)
		deadline := time.Now().Add(10 * time.Second)
		for topic.Count() > 0 && time.Now().Before(deadline) {
			topic.Broadcast(big, nil, nil)
		}
		if topic.Count() != 0 {
			t.Fatal("slow consumer still subscribed after 10s of flooding")
		}
		// The client finds, after the events that made it through, close 1008.
		if code := c.expectClose(); code != ws.StatusPolicyViolation {
			t.Fatalf("close code %d, want 1008", code)
		}
	})
}

func TestShutdownClosesClientsWith1001(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, srv := startServer(t, mode, nil)
		c, err := dialRaw(t, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Ready(); err != nil {
			t.Fatalf("ready before drain: %v", err)
		}
		go srv.Shutdown(context.Background())
		if code := c.expectClose(); code != ws.StatusGoingAway {
			t.Fatalf("close code %d", code)
		}
		if srv.Ready() == nil {
			t.Fatal("ready while draining")
		}
	})
}

// A publish reaches every subscriber with the bytes encoded once.
func TestPublishFanOut(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, nil)
		var clients []*rawClient
		for i := 0; i < 3; i++ {
			c, err := dialRaw(t, addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.write(ws.NewTextFrame([]byte(`[5,"acme/channel/r1"]`)))
			for _, prev := range append(clients, c) {
				prev.readFrame() // join events
			}
			clients = append(clients, c)
		}
		clients[0].write(ws.NewTextFrame([]byte(`[7,"acme/channel/r1",{"x":1}]`)))
		for i, c := range clients {
			f := c.readFrame()
			var m []json.RawMessage
			if err := json.Unmarshal(f.Payload, &m); err != nil || string(m[0]) != "8" || string(m[2]) != `{"msg":{"x":1}}` {
				t.Fatalf("client %d got %q", i, f.Payload)
			}
		}
	})
}

// With a single worker, a client that sends half a frame or half a
// handshake must not hold it: others are still served.
func TestEpollHalfFrameDoesNotPinWorker(t *testing.T) {
	if !transport.EpollSupported {
		t.Skip("epoll mode needs Linux")
	}
	addr, _ := startServer(t, config.ModeEpoll, func(c *config.Config) { c.Transport.Workers = 1 })
	stalled, err := dialRaw(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := clientFrame(t, true, ws.OpText, []byte(`[2,"c1","sample/sum",[1,2]]`))
	stalled.nc.Write(frame[:7]) // header and a bit of payload, then silence
	half, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgr"))
	time.Sleep(50 * time.Millisecond)

	c, err := dialRaw(t, addr, nil)
	if err != nil {
		t.Fatalf("a second client could not connect past a stalled one: %v", err)
	}
	c.write(ws.NewTextFrame([]byte(`[2,"c2","sample/sum",[3]]`)))
	if f := c.readFrame(); !bytes.HasPrefix(f.Payload, []byte(`[3,"c2"`)) {
		t.Fatalf("got %q", f.Payload)
	}
	// The stalled client finishes its frame and is answered in turn.
	stalled.nc.Write(frame[7:])
	if f := stalled.readFrame(); !bytes.HasPrefix(f.Payload, []byte(`[3,"c1"`)) {
		t.Fatalf("stalled client got %q", f.Payload)
	}
}

// In epoll mode an idle established connection holds no goroutine.
func TestEpollIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if !transport.EpollSupported {
		t.Skip("epoll mode needs Linux")
	}
	addr, _ := startServer(t, config.ModeEpoll, nil)
	// Warm up: the loop, workers and writers exist before we count.
	if _, err := dialRaw(t, addr, nil); err != nil {
		t.Fatal(err)
	}
	settle := func() int {
		time.Sleep(100 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	const n = 200
	for i := 0; i < n; i++ {
		if _, err := dialRaw(t, addr, nil); err != nil {
			t.Fatal(err)
		}
	}
	after := settle()
	// The test's own client side holds no goroutines either (the dialer
	// returns plain connections), so any growth is the server's.
	if after-before > n/20 {
		t.Fatalf("goroutines grew from %d to %d for %d idle connections", before, after, n)
	}
}

// seedSession copies a PHP-written Symfony session (phpsession's fixture,
// user "alice") into the files store of cfg under id.
func seedSession(t *testing.T, dir, id string) {
	t.Helper()
	copyFixture(t, dir, id, "upt_inmemory_roles")
}

func TestLimitsPerUserAndPerIP(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		dir := t.TempDir()
		seedSession(t, dir, "sessA1")
		seedSession(t, dir, "sessA2")
		addr, _ := startServer(t, mode, func(c *config.Config) {
			c.Session.Files.Path = dir
			c.Session.Files.GCMaxLifetime = 0
			c.Limits.MaxConnectionsPerUser = 1
		})
		alice := http.Header{"Cookie": {"PHPSESSID=sessA1"}}
		first, err := dialRaw(t, addr, alice)
		if err != nil {
			t.Fatal(err)
		}
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Cookie": {"PHPSESSID=sessA2"}}), Protocols: []string{"wamp"}}
		_, _, _, err = d.Dial(context.Background(), "ws://"+addr+"/")
		var se ws.StatusError
		if !errors.As(err, &se) || se != 429 {
			t.Fatalf("second connection of the same user: %v, want 429", err)
		}
		// Anonymous clients are not counted per user.
		if _, err := dialRaw(t, addr, nil); err != nil {
			t.Fatal(err)
		}
		// When the first goes, the user may connect again.
		first.write(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
		first.expectClose()
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := dialRaw(t, addr, alice)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("user could not reconnect after closing: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, func(c *config.Config) { c.Limits.AcceptRatePerIP = 3 })
		refused := 0
		for i := 0; i < 10; i++ {
			_, err := dialRaw(t, addr, nil)
			var se ws.StatusError
			if errors.As(err, &se) && se == 429 {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if refused < 5 {
			t.Fatalf("%d of 10 rapid connections refused with a rate of 3/s, want at least 5", refused)
		}
	})
}

func TestKeepalivePings(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, func(c *config.Config) {
			c.Keepalive = config.KeepaliveConfig{Ping: true, Interval: 50 * time.Millisecond}
		})
		c, err := dialRaw(t, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		if f := c.readFrame(); f.Header.OpCode != ws.OpPing {
			t.Fatalf("got %v, want a ping", f.Header.OpCode)
		}
	})
}

// Drain lets a call in flight answer before the client gets 1001.
func TestDrainFinishesInflightCalls(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		reg := handler.NewRegistry()
		started := make(chan struct{})
		if err := reg.AddRPC(slowRPC{started: started}); err != nil {
			t.Fatal(err)
		}
		addr, srv := startServerWith(t, mode, reg, func(c *config.Config) {
			c.Routes.RPC = map[string]wamp.RouteConfig{"slow": {Pattern: "slow/{method}", Handler: "test.slow"}}
			c.Routes.Topics = nil
		})
		c, err := dialRaw(t, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.write(ws.NewTextFrame([]byte(`[2,"c1","slow/wait"]`)))
		<-started
		go srv.Shutdown(context.Background())
		if f := c.readFrame(); string(f.Payload) != `[3,"c1",["done"]]` {
			t.Fatalf("in-flight call answered %q", f.Payload)
		}
		if code := c.expectClose(); code != ws.StatusGoingAway {
			t.Fatalf("close code %d", code)
		}
	})
}

type slowRPC struct{ started chan struct{} }

func (slowRPC) Name() string { return "test.slow" }
func (r slowRPC) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{"wait": func(ctx context.Context, _ handler.Client, _ handler.Request, _ json.RawMessage) (any, error) {
		close(r.started)
		time.Sleep(200 * time.Millisecond)
		return "done", nil
	}}
}

func TestPermessageDeflateNegotiated(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		addr, _ := startServer(t, mode, func(c *config.Config) { c.Transport.PermessageDeflate = true })
		ext := wsflate.Extension{Parameters: wsflate.DefaultParameters}
		d := ws.Dialer{Protocols: []string{"wamp"}, Extensions: []httphead.Option{ext.Parameters.Option()}, Timeout: 5 * time.Second}
		nc, br, hs, err := d.Dial(context.Background(), "ws://"+addr+"/")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if len(hs.Extensions) != 1 || string(hs.Extensions[0].Name) != "permessage-deflate" {
			t.Fatalf("extensions %v, want permessage-deflate", hs.Extensions)
		}
		if br == nil {
			br = bufio.NewReader(nc)
		}
		c := &rawClient{t: t, nc: nc, br: br}
		c.readFrame() // WELCOME, uncompressed
		c.nc.Write(compressedFrame(t, true, ws.OpText, deflateMessage(t, []byte(`[2,"c1","sample/sum",[1,2]]`))))
		f := c.readFrame()
		if f.Header.Rsv != 0 || !bytes.HasPrefix(f.Payload, []byte(`[3,"c1"`)) {
			t.Fatalf("got rsv %d %q", f.Header.Rsv, f.Payload)
		}
	})
}

// An upstream with forward_headers receives the browser's handshake
// headers (joined as browsers join them) on every request.
func TestUpstreamForwardsHandshakeHeaders(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		var got atomic.Value
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got.Store(r.Header.Get("Cookie") + "|" + r.Header.Get("X-Other"))
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"result":"ok"}`))
		}))
		defer app.Close()
		addr, _ := startServerWith(t, mode, handler.NewRegistry(), func(c *config.Config) {
			c.Upstreams = map[string]config.UpstreamConfig{"app": {URL: app.URL, Secret: "0123456789abcdef0123", ForwardHeaders: []string{"cookie"}}}
			c.Routes.RPC = map[string]wamp.RouteConfig{"app": {Pattern: "app/{method}", Handler: "upstream.app"}}
		})
		h := http.Header{"Cookie": {"a=1", "PHPSESSID=zz"}, "X-Other": {"not forwarded"}}
		c, err := dialRaw(t, addr, h)
		if err != nil {
			t.Fatal(err)
		}
		c.write(ws.NewTextFrame([]byte(`[2,"c1","app/anything",[1]]`)))
		if f := c.readFrame(); string(f.Payload) != `[3,"c1",["ok"]]` {
			t.Fatalf("got %q", f.Payload)
		}
		if v, _ := got.Load().(string); v != "a=1; PHPSESSID=zz|" {
			t.Fatalf("upstream saw %q, want the joined cookies and no other header", v)
		}
	})
}
