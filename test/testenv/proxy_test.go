package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestProxy checks the proxy itself: it forwards, Cut resets live
// connections and refuses new ones, Restore forwards again, and Stall
// holds bytes until Resume.
func TestProxy(t *testing.T) {
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
	p := StartProxy(t, echo.Addr().String())
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
