package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Goroutine mode: a goroutine per connection collects its request, runs
// its upgrade and then blocks in Read; a writer goroutine exists while the
// connection has output. Portable, works with any net.Listener (TLS
// included), and the baseline the epoll mode is measured against. The
// request is bounded exactly as in epoll mode: at most MaxHeaderBytes
// buffered, the handshake deadline on the socket, a place in the pending
// list before any byte arrives and a handshake slot only once the request
// is complete.

// goConn is the goroutine-mode transport of one connection.
type goConn struct {
	t        *Transport
	nc       net.Conn
	pend     pendingEntry
	deadline time.Time // of the handshake, set on the socket before it is listed
}

// evict implements evictable: it wakes the socket's goroutine, blocked in
// Read, which answers 503 and closes.
func (g *goConn) evict() {
	g.nc.SetReadDeadline(time.Now())
}

// writeBrief writes a short answer to a socket that is about to be closed,
// waiting at most briefly: a refused client must not hold anyone.
func writeBrief(nc net.Conn, b []byte) {
	nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	nc.Write(b)
}

// lingerClose answers a refused handshake and closes the socket lingering,
// as epoll mode's answerAndClose does: the answer, the write side shut,
// then what the client still sends discarded into buf until it closes,
// lingerBytes or lingerTime. It runs on the socket's own goroutine.
func (t *Transport) lingerClose(nc net.Conn, answer, buf []byte) {
	writeBrief(nc, answer)
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		nc.SetReadDeadline(time.Now().Add(lingerTime))
		// Stop ends the linger at once.
		stop := context.AfterFunc(t.baseCtx, func() { nc.SetReadDeadline(time.Now()) })
		defer stop()
		for n := 0; n < lingerBytes; {
			m, err := nc.Read(buf)
			n += m
			if err != nil {
				break
			}
		}
	}
	nc.Close()
}

// kick implements connIO: start the writer.
func (g *goConn) kick(c *Conn) {
	g.t.wg.Add(1)
	go g.writeLoop(c)
}

// writeLoop writes whole batches with one writev (net.Buffers) until the
// queue is empty, then exits. No lock is held across the socket write.
func (g *goConn) writeLoop(c *Conn) {
	defer g.t.wg.Done()
	written := 0
	for {
		batch := c.nextBatch(written)
		if batch == nil {
			return
		}
		start := time.Now()
		g.nc.SetWriteDeadline(start.Add(g.t.cfg.WriteTimeout))
		bufs := net.Buffers(batch)
		n, err := bufs.WriteTo(g.nc)
		g.t.obs.Wrote(int(n), time.Since(start))
		written = int(n)
		if err != nil {
			reason := ReasonWriteError
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				reason = ReasonWriteTimeout
				g.t.limit(LimitWriteTimeout)
			}
			c.Kill(reason)
			return
		}
		recycleBatch(batch) // WriteTo wrote it all
	}
}

// closeSocket implements connIO.
func (g *goConn) closeSocket(c *Conn) {
	discardUnread(g.nc)
	g.nc.Close()
	c.socketClosed()
}

// serveGoroutines is the goroutine-mode accept loop.
func (t *Transport) serveGoroutines(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !t.isAccepting() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: back off instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t.log.Warn("accept failed, backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		if answer := t.admitSocket(nc.RemoteAddr()); answer != nil {
			writeBrief(nc, answer)
			nc.Close()
			continue
		}
		// Listed here, in accept order, so that the oldest socket is the
		// one evicted whatever order the goroutines run in.
		g := &goConn{t: t, nc: nc, deadline: time.Now().Add(t.cfg.HandshakeTimeout)}
		g.pend.owner = g
		// Before listing: an eviction's deadline must not be overwritten.
		nc.SetReadDeadline(g.deadline)
		if !t.listPending(&g.pend) {
			nc.Close()
			continue
		}
		t.wg.Add(1)
		go t.serveConn(g)
	}
}

// serveConn runs one connection in goroutine mode, listed as pending by
// the accept loop: its request and upgrade, then its reads. They are two
// calls so that the idle connection's goroutine holds only the read loop's
// small frame: the handshake's deep stack (the session decode) is gone, and
// the runtime can shrink the stack back.
func (t *Transport) serveConn(g *goConn) {
	defer t.wg.Done()
	buf := make([]byte, 4096) // the request's, then the connection's read buffer
	if c := t.handshake(g, buf); c != nil {
		t.readLoop(g.nc, c, buf)
	}
}

// handshake collects g's request and upgrades it; it returns the live
// connection, or nil when the socket was answered and closed.
func (t *Transport) handshake(g *goConn, buf []byte) *Conn {
	nc, deadline := g.nc, g.deadline
	var req requestBuf
	for {
		n, err := nc.Read(buf)
		if n > 0 {
			complete, tooLarge := req.add(buf[:n], t.cfg.MaxHeaderBytes)
			if tooLarge {
				if !t.pending.remove(&g.pend) {
					t.lingerClose(nc, responseOverloaded, buf) // evicted as it overflowed
					return nil
				}
				t.limit(LimitHeaderBytes)
				t.handshakeEnded(OutcomeBadRequest)
				t.lingerClose(nc, responseHeaderTooLarge, buf)
				return nil
			}
			if complete {
				break
			}
		}
		if err != nil {
			if !t.pending.remove(&g.pend) {
				// Evicted (counted by whoever evicted it).
				t.lingerClose(nc, responseOverloaded, buf)
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.limit(LimitHandshakeTime)
				t.handshakeEnded(OutcomeBadRequest)
				t.lingerClose(nc, responseRequestTimeout, buf)
				return nil
			}
			t.handshakeEnded(OutcomeBadRequest) // gave up before its request was complete
			nc.Close()
			return nil
		}
	}
	if !t.pending.remove(&g.pend) {
		t.lingerClose(nc, responseOverloaded, buf) // evicted as the request completed
		return nil
	}
	if !t.acquireHandshake() {
		t.lingerClose(nc, responseOverloaded, buf)
		return nil
	}
	resp, hs, deflate := t.upgrade(req.b, nc.RemoteAddr(), deadline)
	if hs == nil {
		t.releaseHandshake()
		t.lingerClose(nc, resp, buf)
		return nil
	}
	nc.SetReadDeadline(time.Time{})
	c := newConn(t, g, deflate)
	c.queueRaw(resp) // the 101, ahead of what Open sends
	opened := t.open(c, hs)
	t.releaseHandshake()
	t.handshakeEnded(hs.Outcome())
	if !opened {
		return nil
	}
	return c
}

// readLoop reads c until it ends.
func (t *Transport) readLoop(nc net.Conn, c *Conn, buf []byte) {
	for {
		nc.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		n, err := nc.Read(buf)
		if n > 0 && !c.feed(buf[:n]) {
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.limit(LimitIdleTimeout)
				c.Close(CloseGoingAway, "idle timeout", ReasonIdleTimeout)
			} else {
				c.readEnded()
			}
			break
		}
	}
	// The writer closes the socket once a queued close frame is out; if the
	// client never reads it, the write deadline ends that wait.
}
