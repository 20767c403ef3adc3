package test

// A raw websocket and WAMP client for the abuse probes: it writes frames
// byte by byte as a hostile client would (unmasked, reserved bits, lying
// lengths) and reads the server's frames without interpreting them, so
// that a probe sees exactly the close code the gateway sends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Websocket opcodes (RFC 6455 §5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA
)

// setRcvBuf returns a net.Dialer Control setting SO_RCVBUF.
func setRcvBuf(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// wsRaw is a client websocket over a plain TCP connection.
type wsRaw struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
	// Resp is the handshake response (its body is not read).
	Resp *http.Response
}

// rawDialOpts are the handshake's variable parts.
type rawDialOpts struct {
	Protocol string // Sec-WebSocket-Protocol; "" = wamp, "-" = none
	Header   string // extra header lines, each ending in \r\n
	RcvBuf   int    // SO_RCVBUF of the client socket; 0 = the kernel's default
}

// statusError is a handshake answered with another status than 101.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("handshake answered %d", int(e)) }

// upgradeRequest is a browser-like upgrade request for addr.
func upgradeRequest(addr string, o rawDialOpts) string {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	switch o.Protocol {
	case "":
		b.WriteString("Sec-WebSocket-Protocol: wamp\r\n")
	case "-":
	default:
		b.WriteString("Sec-WebSocket-Protocol: " + o.Protocol + "\r\n")
	}
	b.WriteString(o.Header)
	b.WriteString("\r\n")
	return b.String()
}

// rawUpgrade opens a websocket to addr. A refused handshake returns a
// statusError with the status. The connection closes when t ends.
func rawUpgrade(t *testing.T, addr string, o rawDialOpts) (*wsRaw, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := dialLoopback(ctx, addr, o.RcvBuf)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	if _, err := io.WriteString(nc, upgradeRequest(addr, o)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("write upgrade request: %w", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("read handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, statusError(resp.StatusCode)
	}
	nc.SetDeadline(time.Time{})
	return &wsRaw{t: t, nc: nc, br: br, Resp: resp}, nil
}

// mustUpgrade is rawUpgrade failing t on error.
func mustUpgrade(t *testing.T, addr string, o rawDialOpts) *wsRaw {
	t.Helper()
	c, err := rawUpgrade(t, addr, o)
	if err != nil {
		t.Fatalf("websocket handshake: %v", err)
	}
	return c
}

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// wsFrame encodes one frame. rsv holds the RSV1-3 bits as in the first
// byte (0x40, 0x20, 0x10).
func wsFrame(fin bool, rsv, op byte, payload []byte, masked bool) []byte {
	b := wsHeader(fin, rsv, op, uint64(len(payload)), masked)
	start := len(b)
	b = append(b, payload...)
	if masked {
		for i := range payload {
			b[start+i] ^= testMask[i%4]
		}
	}
	return b
}

// wsHeader encodes a frame header announcing length bytes of payload.
func wsHeader(fin bool, rsv, op byte, length uint64, masked bool) []byte {
	b0 := rsv | op
	if fin {
		b0 |= 0x80
	}
	var m byte
	if masked {
		m = 0x80
	}
	b := []byte{b0}
	switch {
	case length < 126:
		b = append(b, m|byte(length))
	case length <= 0xffff:
		b = append(b, m|126, byte(length>>8), byte(length))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, length)
	}
	if masked {
		b = append(b, testMask[:]...)
	}
	return b
}

// clientText is a masked, final text frame.
func clientText(payload []byte) []byte { return wsFrame(true, 0, opText, payload, true) }

// write sends raw bytes (within 5s) and returns the error: a probe that
// expects the gateway to close midway ignores it.
func (c *wsRaw) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// mustWrite sends raw bytes and fails t on error.
func (c *wsRaw) mustWrite(b []byte) {
	c.t.Helper()
	if err := c.write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads one server frame (payload capped at 16 MiB).
func (c *wsRaw) readFrame(deadline time.Time) (fin bool, op byte, payload []byte, err error) {
	c.nc.SetReadDeadline(deadline)
	var h [2]byte
	if _, err = io.ReadFull(c.br, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(c.br, e[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(c.br, e[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if h[1]&0x80 != 0 {
		err = errors.New("server frame is masked")
		return
	}
	if n > 16<<20 {
		err = fmt.Errorf("server frame of %d bytes", n)
		return
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return
}

// closeOutcome is how a connection ended for the client.
type closeOutcome struct {
	Code    int    // close code of the server's close frame; 0 when none came
	Reason  string // its reason
	Err     error  // the read error ending the wait when no close frame came
	Skipped int64  // payload bytes of other frames read before it
}

func (o closeOutcome) String() string {
	if o.Code != 0 {
		return fmt.Sprintf("close %d %q after %d bytes", o.Code, o.Reason, o.Skipped)
	}
	return fmt.Sprintf("no close frame (%v) after %d bytes", o.Err, o.Skipped)
}

// readUntilClose reads frames until the server's close frame, the end of
// the connection, ctx's deadline or maxSkip bytes of other frames,
// whichever comes first.
func (c *wsRaw) readUntilClose(ctx context.Context, maxSkip int64) closeOutcome {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	var o closeOutcome
	for {
		_, op, p, err := c.readFrame(deadline)
		if err != nil {
			o.Err = err
			return o
		}
		if op == opClose {
			o.Code = 1005 // RFC 6455 §7.1.5: no status code present
			if len(p) >= 2 {
				o.Code = int(binary.BigEndian.Uint16(p))
				o.Reason = string(p[2:])
			}
			return o
		}
		o.Skipped += int64(len(p))
		if o.Skipped > maxSkip {
			o.Err = fmt.Errorf("still open after %d bytes of other frames", o.Skipped)
			return o
		}
	}
}

// expectCloseCode reads until the close frame (within 10s and 1 MiB of
// other frames) and fails t unless its code is want.
func (c *wsRaw) expectCloseCode(want int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o := c.readUntilClose(ctx, 1<<20); o.Code != want {
		c.t.Errorf("got %v, want close %d", o, want)
	}
}

// connGone reports how a connection the gateway should have dropped
// ended: nil when it closed (EOF, reset or a close frame), else why not.
func connGone(o closeOutcome) error {
	if o.Code != 0 {
		return nil
	}
	var ne net.Error
	if errors.Is(o.Err, io.EOF) || errors.Is(o.Err, io.ErrUnexpectedEOF) || errors.Is(o.Err, syscall.ECONNRESET) || errors.Is(o.Err, syscall.EPIPE) {
		return nil
	}
	if errors.As(o.Err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open at the deadline after %d bytes", o.Skipped)
	}
	return o.Err
}

// sendJSON sends msg as one masked text frame.
func (c *wsRaw) sendJSON(msg ...any) {
	c.t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mustWrite(clientText(b))
}

// nextMsg reads the next text message (within d) as a JSON array. Pings
// are skipped; a close frame or an error fails t.
func (c *wsRaw) nextMsg(d time.Duration) []json.RawMessage {
	c.t.Helper()
	m, err := c.tryNext(d)
	if err != nil {
		c.t.Fatalf("read WAMP message: %v", err)
	}
	return m
}

// tryNext is nextMsg returning the error.
func (c *wsRaw) tryNext(d time.Duration) ([]json.RawMessage, error) {
	deadline := time.Now().Add(d)
	for {
		fin, op, p, err := c.readFrame(deadline)
		if err != nil {
			return nil, err
		}
		switch op {
		case opText:
			if !fin {
				return nil, errors.New("fragmented server message")
			}
			var m []json.RawMessage
			if err := json.Unmarshal(p, &m); err != nil {
				return nil, fmt.Errorf("server message %q: %w", p, err)
			}
			return m, nil
		case opClose:
			code := 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			return nil, fmt.Errorf("closed by the gateway with %d %q", code, p[min(2, len(p)):])
		}
	}
}

// msgType is the WAMP message type of m (-1 if it has none).
func msgType(m []json.RawMessage) int {
	var n int
	if len(m) == 0 || json.Unmarshal(m[0], &n) != nil {
		return -1
	}
	return n
}

func msgString(m []json.RawMessage) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// dialV1 opens a WAMP v1 connection and reads its WELCOME.
func dialV1(t *testing.T, addr string, o rawDialOpts) (*wsRaw, error) {
	t.Helper()
	c, err := rawUpgrade(t, addr, o)
	if err != nil {
		return nil, err
	}
	m, err := c.tryNext(10 * time.Second)
	if err != nil {
		return nil, fmt.Errorf("read WELCOME: %w", err)
	}
	if msgType(m) != 0 {
		return nil, fmt.Errorf("want WELCOME, got %s", msgString(m))
	}
	return c, nil
}

// mustV1 is dialV1 failing t on error.
func mustV1(t *testing.T, addr string) *wsRaw {
	t.Helper()
	c, err := dialV1(t, addr, rawDialOpts{})
	if err != nil {
		t.Fatalf("WAMP v1 client: %v", err)
	}
	return c
}

// dialV2 opens a WAMP v2 (wamp.2.json) session in realm1.
func dialV2(t *testing.T, addr string, o rawDialOpts) (*wsRaw, error) {
	t.Helper()
	o.Protocol = "wamp.2.json"
	c, err := rawUpgrade(t, addr, o)
	if err != nil {
		return nil, err
	}
	roles := map[string]any{"caller": map[string]any{}, "publisher": map[string]any{}, "subscriber": map[string]any{}}
	b, _ := json.Marshal([]any{1, "realm1", map[string]any{"roles": roles}})
	if err := c.write(clientText(b)); err != nil {
		return nil, fmt.Errorf("send HELLO: %w", err)
	}
	m, err := c.tryNext(10 * time.Second)
	if err != nil {
		return nil, fmt.Errorf("read WELCOME: %w", err)
	}
	if msgType(m) != 2 {
		return nil, fmt.Errorf("want v2 WELCOME, got %s", msgString(m))
	}
	return c, nil
}

// mustV2 is dialV2 failing t on error.
func mustV2(t *testing.T, addr string) *wsRaw {
	t.Helper()
	c, err := dialV2(t, addr, rawDialOpts{})
	if err != nil {
		t.Fatalf("WAMP v2 client: %v", err)
	}
	return c
}

// checkServed asserts that the gateway still serves: a new v1 client gets
// its WELCOME and a CALL on it gets an answer (CALLRESULT or CALLERROR for
// its call id); proc is the procedure called.
func checkServed(t *testing.T, addr, proc string) {
	t.Helper()
	c, err := dialV1(t, addr, rawDialOpts{})
	if err != nil {
		t.Errorf("a new client after the probe: %v", err)
		return
	}
	defer c.nc.Close()
	expectAnswer(t, c, "served", proc)
}

// expectAnswer sends a v1 CALL and fails t unless it is answered.
func expectAnswer(t *testing.T, c *wsRaw, id, proc string, args ...any) []json.RawMessage {
	t.Helper()
	if err := c.write(clientText(mustJSON(t, append([]any{2, id, proc}, args...)))); err != nil {
		t.Errorf("CALL %s: %v", proc, err)
		return nil
	}
	for {
		m, err := c.tryNext(10 * time.Second)
		if err != nil {
			t.Errorf("CALL %s (%s): no answer: %v", proc, id, err)
			return nil
		}
		var got string
		if (msgType(m) == 3 || msgType(m) == 4) && len(m) > 1 && json.Unmarshal(m[1], &got) == nil && got == id {
			return m
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readHTTPAnswer reads what the gateway answers on a raw socket until it
// closes (EOF or reset), ctx ends, max bytes came or a complete 101 came
// (an upgrade stays open: waiting for its end would only wait for ctx),
// and returns the bytes and the error that ended the read.
func readHTTPAnswer(ctx context.Context, nc net.Conn, max int) ([]byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	nc.SetReadDeadline(deadline)
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for out.Len() < max {
		n, err := nc.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.Bytes(), err
		}
		if statusOf(out.Bytes()) == 101 && bytes.Contains(out.Bytes(), []byte("\r\n\r\n")) {
			return out.Bytes(), nil
		}
	}
	return out.Bytes(), nil
}

// statusOf is the status code of an HTTP answer's first line, 0 if none.
func statusOf(answer []byte) int {
	line, _, _ := bytes.Cut(answer, []byte("\r\n"))
	var code int
	if _, err := fmt.Sscanf(string(line), "HTTP/1.1 %d", &code); err != nil {
		return 0
	}
	return code
}

// closedErr reports whether err ended a read because the peer closed.
func closedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// peekState reports, without blocking, whether the gateway closed a raw
// socket (or sent bytes on it): "open", "data" or "closed".
func peekState(nc net.Conn) string {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return "open"
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return "closed"
	}
	state := "open"
	buf := make([]byte, 1)
	rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN:
			state = "open"
		case err != nil:
			state = "closed"
		case n == 0:
			state = "closed"
		default:
			state = "data"
		}
		return true
	})
	return state
}
