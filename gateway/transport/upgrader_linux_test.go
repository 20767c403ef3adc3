//go:build linux

package transport

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestUpgradersParkAndStop: in epoll mode the goroutines that ran
// upgrades park for the next handshake (so a connect storm reuses grown
// stacks instead of growing a new one per handshake), never more than
// maxParkedUpgraders of them, every handshake still completes, and Stop
// ends the parked ones without waiting for their idle timeout.
func TestUpgradersParkAndStop(t *testing.T) {
	if !EpollSupported {
		t.Skip("no epoll")
	}
	host := newTestHost()
	cfg := testConfig(ModeEpoll)
	cfg.MaxHandshakes = 4 * maxParkedUpgraders // the burst below is never refused
	cfg.MaxPendingRequests = 4 * maxParkedUpgraders
	tr, err := New(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Serve(ln) }()
	addr := ln.Addr().String()
	stopped := false
	defer func() {
		if !stopped {
			tr.Stop()
			<-done
		}
	}()

	echo := func(t *testing.T) {
		nc, br := dial(t, addr)
		nc.Write(clientFrame(t, true, ws.OpText, []byte("hi")))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if f, err := ws.ReadFrame(br); err != nil || string(f.Payload) != "hi" {
			t.Errorf("echo: %v %q", err, f.Payload)
		}
		nc.Close()
	}
	// A burst wider than the parking bound, then one at a time.
	var wg sync.WaitGroup
	for i := 0; i < 2*maxParkedUpgraders; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); echo(t) }()
	}
	wg.Wait()
	for i := 0; i < 20; i++ {
		echo(t)
	}
	tr.mu.Lock()
	loop := tr.loop
	tr.mu.Unlock()
	// The last upgrader parks right after its Open; give it the moment.
	deadline := time.Now().Add(5 * time.Second)
	for loop.parked.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p := loop.parked.Load(); p < 1 || p > maxParkedUpgraders {
		t.Errorf("parked upgraders %d, want 1..%d", p, maxParkedUpgraders)
	}

	// Stop must not wait upgraderIdle for the parked ones.
	stopDone := make(chan struct{})
	go func() { tr.Stop(); close(stopDone) }()
	select {
	case <-stopDone:
	case <-time.After(upgraderIdle / 2):
		t.Fatalf("Stop still waiting after %s with %d upgraders parked", upgraderIdle/2, loop.parked.Load())
	}
	stopped = true
	<-done
	if p := loop.parked.Load(); p != 0 {
		t.Errorf("parked upgraders after Stop: %d", p)
	}
}
