package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// Client-side sizes: kept small, the client is not what is measured.
const (
	clientReadBuffer = 1024
	maxClientMessage = 1 << 20
	handshakeTimeout = 10 * time.Second
	welcomeTimeout   = 10 * time.Second
)

// client is one websocket connection to the gateway.
type client struct {
	idx  int
	nc   net.Conn
	br   *bufio.Reader
	buf  []byte // payload of the last message read; reused
	hbuf [ws.MaxHeaderSize]byte

	wmu   sync.Mutex
	wbuf  bytes.Buffer
	whbuf [ws.MaxHeaderSize]byte
}

// errServerClose is returned by readMessage when the server sent a close
// frame.
type errServerClose struct{ code ws.StatusCode }

func (e errServerClose) Error() string { return fmt.Sprintf("server closed with %d", e.code) }

// dial opens client idx's connection to gateway t from source address src
// and reads the WAMP WELCOME. The returned error is already classified (see
// kindOf).
func dial(ctx context.Context, cfg *config, t *target, idx int, src net.IP) (*client, error) {
	cookie := cfg.Cookie + "=" + sessionID(idx%cfg.SessionIDs)
	d := ws.Dialer{
		ReadBufferSize: clientReadBuffer,
		Timeout:        handshakeTimeout,
		Protocols:      []string{"wamp"},
		Header:         ws.HandshakeHeaderHTTP(http.Header{"Cookie": {cookie}}),
		NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: handshakeTimeout}
			return nd.DialContext(ctx, network, t.dialAddr)
		},
	}
	nc, br, _, err := d.Dial(ctx, t.url)
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, clientReadBuffer)
	}
	c := &client{idx: idx, nc: nc, br: br}
	nc.SetReadDeadline(time.Now().Add(welcomeTimeout))
	msg, err := c.readMessage()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("welcome: %w", err)
	}
	if !bytes.HasPrefix(msg, []byte("[0,")) {
		nc.Close()
		return nil, errBadWelcome
	}
	nc.SetReadDeadline(time.Time{})
	return c, nil
}

var (
	errBadWelcome = errors.New("first message is not WELCOME")
	errTooBig     = errors.New("message too big")
)

// readMessage returns the next data message's payload (valid until the next
// call). It answers pings and returns errServerClose on a close frame.
func (c *client) readMessage() ([]byte, error) {
	c.buf = c.buf[:0]
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.hbuf[:])
		if err != nil {
			return nil, err
		}
		if h.Length > maxClientMessage || int64(len(c.buf))+h.Length > maxClientMessage {
			return nil, errTooBig
		}
		n := int(h.Length)
		start := len(c.buf)
		if cap(c.buf)-start < n {
			nb := make([]byte, start, start+n+256)
			copy(nb, c.buf)
			c.buf = nb
		}
		c.buf = c.buf[:start+n]
		if _, err := io.ReadFull(c.br, c.buf[start:]); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(c.buf[start:], h.Mask, 0)
		}
		if h.OpCode.IsControl() {
			payload := append([]byte(nil), c.buf[start:]...)
			c.buf = c.buf[:start]
			switch h.OpCode {
			case ws.OpPing:
				if err := c.writeFrame(ws.OpPong, payload); err != nil {
					return nil, err
				}
			case ws.OpClose:
				code, _ := ws.ParseCloseFrameData(payload)
				return nil, errServerClose{code}
			}
			continue
		}
		if h.Fin {
			return c.buf, nil
		}
	}
}

// writeText sends one masked text frame.
func (c *client) writeText(p []byte) error { return c.writeFrame(ws.OpText, p) }

func (c *client) writeFrame(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf.Reset()
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	if err := ws.WriteHeaderBuffer(&c.wbuf, h, c.whbuf[:]); err != nil {
		return err
	}
	off := c.wbuf.Len()
	c.wbuf.Write(p)
	ws.Cipher(c.wbuf.Bytes()[off:], h.Mask, 0)
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(c.wbuf.Bytes())
	return err
}

// closeAbort closes the socket with an RST (SO_LINGER 0), leaving no
// TIME_WAIT entry to use up the source address's ephemeral ports.
func (c *client) closeAbort() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.nc.Close()
}

// kindOf names an error for the report's errors-by-kind map.
func kindOf(err error) string {
	var se ws.StatusError
	var sc errServerClose
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return fmt.Sprintf("handshake_status_%d", int(se))
	case errors.As(err, &sc):
		return fmt.Sprintf("closed_by_server_%d", int(sc.code))
	case errors.Is(err, errBadWelcome):
		return "bad_welcome"
	case errors.Is(err, errTooBig):
		return "message_too_big"
	case errors.Is(err, errBadFloorResponse):
		return "bad_response"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "dial_no_source_port"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "dial_refused"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection_reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_eof"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, ws.ErrHandshakeBadSubProtocol), errors.Is(err, ws.ErrHandshakeBadProtocol),
		errors.Is(err, ws.ErrHandshakeBadUpgrade), errors.Is(err, ws.ErrHandshakeBadConnection),
		errors.Is(err, ws.ErrHandshakeBadSecAccept):
		return "handshake_bad_response"
	}
	return "other"
}
