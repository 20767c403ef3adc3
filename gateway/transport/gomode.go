package transport

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
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
	t       *Transport
	nc      net.Conn
	pend    pendingEntry
	evicted atomic.Bool // pushed out of the pending list: its reader stops quietly
}

// evict implements evictable.
func (g *goConn) evict() {
	g.evicted.Store(true)
	writeBrief(g.nc, responseOverloaded)
	g.nc.Close()
}

// writeBrief writes a short answer to a socket that is about to be closed,
// waiting at most briefly: a refused client must not hold anyone.
func writeBrief(nc net.Conn, b []byte) {
	nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	nc.Write(b)
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
		batch, closeAfter := c.takeBatch(written)
		if batch == nil {
			if closeAfter {
				c.Kill("")
			}
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
		g := &goConn{t: t, nc: nc}
		g.pend.owner = g
		if !t.listPending(&g.pend) {
			nc.Close()
			continue
		}
		t.wg.Add(1)
		go t.serveConn(g)
	}
}

// serveConn runs one connection in goroutine mode, listed as pending by
// the accept loop: its request, its upgrade, then its reads.
func (t *Transport) serveConn(g *goConn) {
	defer t.wg.Done()
	nc := g.nc
	deadline := time.Now().Add(t.cfg.HandshakeTimeout)
	nc.SetReadDeadline(deadline)
	var req requestBuf
	buf := make([]byte, 4096) // the request's, then the connection's read buffer
	for {
		n, err := nc.Read(buf)
		if n > 0 {
			complete, tooLarge := req.add(buf[:n], t.cfg.MaxHeaderBytes)
			if tooLarge {
				if t.pending.remove(&g.pend) {
					t.limit(LimitHeaderBytes)
					t.handshakeEnded(OutcomeBadRequest)
					writeBrief(nc, responseHeaderTooLarge)
					nc.Close()
				}
				return
			}
			if complete {
				break
			}
		}
		if err != nil {
			if !t.pending.remove(&g.pend) {
				return // evicted: answered and closed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.limit(LimitHandshakeTime)
				writeBrief(nc, responseRequestTimeout)
			}
			t.handshakeEnded(OutcomeBadRequest)
			nc.Close()
			return
		}
	}
	if !t.pending.remove(&g.pend) {
		return // evicted as the request completed
	}
	if !t.acquireHandshake() {
		writeBrief(nc, responseOverloaded)
		nc.Close()
		return
	}
	resp, hs, deflate := t.upgrade(req.b, nc.RemoteAddr(), deadline)
	if hs == nil {
		t.releaseHandshake()
		writeBrief(nc, resp)
		nc.Close()
		return
	}
	nc.SetReadDeadline(time.Time{})
	c := newConn(t, g, deflate)
	c.queueRaw(resp) // the 101, ahead of what Open sends
	opened := t.open(c, hs)
	t.releaseHandshake()
	t.handshakeEnded(hs.Outcome())
	if !opened {
		return
	}
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
