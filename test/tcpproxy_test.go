package test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards loopback TCP connections to a target so that a test
// can cut or stall a backing service (a session store, Redis) for the
// gateway alone, without touching the shared server.
//
// Goroutines: one accept loop, and two copiers per forwarded connection;
// all are counted in wg, and Close waits for them.
type tcpProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex            // guards the fields below
	conns   map[net.Conn]struct{} // both ends of every forwarded connection
	cut     bool                  // refuse new connections (accept, then reset)
	stalled bool                  // copiers hold what they read until resumed
	resume  chan struct{}         // closed when a stall ends
	closed  bool
}

// startTCPProxy listens on a free loopback port and forwards to target;
// it closes when t ends.
func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut || p.closed
		p.mu.Unlock()
		if cut {
			resetConn(c)
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			resetConn(c)
			continue
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			resetConn(c)
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.copy(up, c)
		go p.copy(c, up)
	}
}

// copy forwards src to dst until either fails, holding data while the
// proxy is stalled; then it closes both.
func (p *tcpProxy) copy(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
		dst.Close()
		src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resume := p.resume
			p.mu.Unlock()
			<-resume
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// resetConn closes c with a RST, as a refused or killed peer would look.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Cut resets every forwarded connection and refuses new ones until
// Restore: the service is down for whoever goes through the proxy.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		resetConn(c)
	}
}

// Restore forwards new connections again.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Stall keeps connections open but forwards nothing until Resume: the
// service hangs.
func (p *tcpProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.resume = make(chan struct{})
	}
}

// Resume ends a stall; held data goes through.
func (p *tcpProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.resume)
	}
}

// Close stops the proxy, closes every connection and waits for its
// goroutines.
func (p *tcpProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.Resume()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// TestTCPProxy checks the proxy itself: it forwards, Cut resets live
// connections and refuses new ones, Restore forwards again, and Stall
// holds bytes until Resume.
func TestTCPProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ewg sync.WaitGroup
	// Registered before the proxy's cleanup, so it runs after it: the
	// echo copies end when the proxy closes its side.
	t.Cleanup(func() {
		echo.Close()
		ewg.Wait()
	})
	ewg.Add(1)
	go func() {
		defer ewg.Done()
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			ewg.Add(1)
			go func() { defer ewg.Done(); io.Copy(c, c); c.Close() }()
		}
	}()
	p := startTCPProxy(t, echo.Addr().String())
	roundTrip := func(c net.Conn, msg string, d time.Duration) error {
		c.SetDeadline(time.Now().Add(d))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return errors.New("echo mismatch: " + string(buf))
		}
		return nil
	}
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	if err := roundTrip(c, "hello", 2*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Stall()
	if err := roundTrip(c, "held", 300*time.Millisecond); err == nil {
		t.Fatal("stalled proxy forwarded")
	}
	p.Resume()
	c2 := dial()
	if err := roundTrip(c2, "after", 2*time.Second); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	p.Cut()
	if err := roundTrip(c2, "cut", 2*time.Second); err == nil {
		t.Fatal("a cut connection still forwards")
	}
	// A refused connection may fail in connect already (the reset can
	// beat the handshake's completion) or on first use.
	if c3, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second); err == nil {
		defer c3.Close()
		if err := roundTrip(c3, "new", 2*time.Second); err == nil {
			t.Fatal("a cut proxy forwards new connections")
		}
	}
	p.Restore()
	if err := roundTrip(dial(), "again", 2*time.Second); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}
