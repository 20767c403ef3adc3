package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wampV1Client is a minimal WAMP v1 client speaking over a real websocket,
// as autobahn 0.8 does: subprotocol "wamp", JSON arrays in text frames.
type wampV1Client struct {
	t         *testing.T
	conn      net.Conn
	rw        io.ReadWriter // conn, behind the dialer's buffered reader when it holds data
	SessionID string
	Server    string
}

// dialOptions are the handshake headers a browser would send.
type dialOptions struct {
	Cookie    string // full Cookie header value
	Origin    string
	Protocols []string // default ["wamp"]
}

// handshakeStatus returns the HTTP status of a refused handshake, 0 if it
// was accepted.
func handshakeStatus(err error) int {
	var se ws.StatusError
	if errors.As(err, &se) {
		return int(se)
	}
	return 0
}

// dialWAMP opens a websocket to addr and waits for the WELCOME.
func dialWAMP(t *testing.T, addr string, o dialOptions) (*wampV1Client, error) {
	t.Helper()
	h := http.Header{}
	if o.Cookie != "" {
		h.Set("Cookie", o.Cookie)
	}
	if o.Origin != "" {
		h.Set("Origin", o.Origin)
	}
	protos := o.Protocols
	if protos == nil {
		protos = []string{"wamp"}
	}
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(h), Protocols: protos, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, "ws://"+addr+"/")
	if err != nil {
		return nil, err
	}
	// The server may send WELCOME right behind the 101; then the dialer
	// hands back a reader that already holds it.
	var rw io.ReadWriter = conn
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{br, conn}
	}
	if len(protos) > 0 && hs.Protocol != "wamp" {
		conn.Close()
		return nil, fmt.Errorf("negotiated subprotocol %q, want wamp", hs.Protocol)
	}
	c := &wampV1Client{t: t, conn: conn, rw: rw}
	t.Cleanup(func() { conn.Close() })
	var welcome []any
	if err := c.readJSON(&welcome); err != nil {
		return nil, fmt.Errorf("read WELCOME: %w", err)
	}
	if len(welcome) != 4 || welcome[0] != float64(0) || welcome[2] != float64(1) {
		return nil, fmt.Errorf("not a WAMP v1 WELCOME: %v", welcome)
	}
	sid, ok1 := welcome[1].(string)
	srv, ok2 := welcome[3].(string)
	if !ok1 || !ok2 || sid == "" {
		return nil, fmt.Errorf("WELCOME fields have wrong types: %v", welcome)
	}
	c.SessionID, c.Server = sid, srv
	return c, nil
}

func (c *wampV1Client) send(msg ...any) {
	c.t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *wampV1Client) sendRaw(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wsutil.WriteClientText(c.conn, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// readJSON reads the next text message. A close frame becomes a
// wsutil.ClosedError carrying its code.
func (c *wampV1Client) readJSON(v any) error {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		return err
	}
	if op != ws.OpText {
		return fmt.Errorf("got %v frame, want text", op)
	}
	return json.Unmarshal(msg, v)
}

// next reads the next WAMP message as a raw array.
func (c *wampV1Client) next() []json.RawMessage {
	c.t.Helper()
	var m []json.RawMessage
	if err := c.readJSON(&m); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// call sends CALL and returns the CALLRESULT or CALLERROR message.
func (c *wampV1Client) call(id, proc string, args ...any) []json.RawMessage {
	c.t.Helper()
	c.send(append([]any{2, id, proc}, args...)...)
	return c.next()
}

// expectClose reads until the server's close frame and returns its code.
func (c *wampV1Client) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := wsutil.ReadServerData(c.rw)
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			c.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

func (c *wampV1Client) close() { c.conn.Close() }
