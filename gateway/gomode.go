package gateway

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/gateway/upstream"
)

// Goroutine mode: each connection has a reader goroutine that runs its
// handshake and then blocks in Read, and a writer goroutine while it has
// something to write. Portable, works with any net.Listener (TLS included),
// and the baseline the epoll mode is measured against.

// goTransport moves one connection's bytes with blocking calls on nc.
type goTransport struct{ nc net.Conn }

func (t *goTransport) kick(c *conn) {
	c.srv.wg.Add(1)
	go t.writeLoop(c)
}

// writeLoop writes whole batches with one writev (net.Buffers) until the
// queue is empty, then exits. No lock is held across the socket write.
func (t *goTransport) writeLoop(c *conn) {
	defer c.srv.wg.Done()
	for {
		batch, closeAfter := c.takeBatch()
		if batch == nil {
			if closeAfter {
				c.kill("")
			}
			return
		}
		start := time.Now()
		t.nc.SetWriteDeadline(start.Add(c.srv.cfg.Limits.WriteTimeout))
		bufs := net.Buffers(batch)
		n, err := bufs.WriteTo(t.nc)
		c.srv.metrics.SentBytes.Add(float64(n))
		c.srv.metrics.WriteDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			c.kill("write_error")
			return
		}
	}
}

func (t *goTransport) closeSocket(c *conn) {
	discardUnread(t.nc)
	t.nc.Close()
	c.teardown()
}

// serveGoroutines is the goroutine-mode accept loop.
func (s *Server) serveGoroutines(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isDraining() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: back off instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		if !s.acceptFrom(nc.RemoteAddr()) {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write(rateLimitedResponse)
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveConn(nc)
	}
}

// serveConn runs one connection in goroutine mode: handshake, then reads.
func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	if !s.acquireHandshake() {
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write(overloadedResponse)
		nc.Close()
		return
	}
	deadline := time.Now().Add(s.cfg.Limits.HandshakeTimeout)
	nc.SetDeadline(deadline)
	h := handshake{outcome: "bad_request"}
	if s.events != nil {
		h.remote = nc.RemoteAddr().String()
	}
	up := s.newUpgrader(&h, deadline)
	_, err := up.Upgrade(nc)
	<-s.handshakes
	s.metrics.Handshakes.WithLabelValues(h.outcome).Inc()
	if err != nil {
		// Past admit, only the 101's write fails: the app was told.
		s.releaseUser(h.userKey)
		s.abandon(&h, upstream.ReasonError)
		s.log.Debug("handshake refused", "remote", nc.RemoteAddr().String(), "outcome", h.outcome, "err", err)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	c := &conn{srv: s, tr: &goTransport{nc: nc}}
	if !s.register(c, &h) {
		nc.Close()
		return
	}
	buf := make([]byte, 4096)
	for {
		nc.SetReadDeadline(time.Now().Add(s.cfg.Limits.IdleTimeout))
		n, err := nc.Read(buf)
		if n > 0 && !c.feed(buf[:n]) {
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.closeWith(closeGoingAway, "idle timeout", "idle_timeout")
			} else {
				c.readEnded()
			}
			break
		}
	}
	// The writer closes the socket once a queued close frame is out; if the
	// client never reads it, the write deadline ends that wait.
}

// Compile-time check that both transports satisfy the interface.
var _ transport = (*goTransport)(nil)
