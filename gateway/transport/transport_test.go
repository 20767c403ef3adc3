package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// testHost admits every request unless it carries "X-Refuse", and echoes
// each message back; it records how connections ended.
type testHost struct {
	mu      sync.Mutex // guards closed
	closed  []string   // reasons given to Closed
	opened  chan *Conn
	admitFn func(ctx context.Context) error
}

func newTestHost() *testHost { return &testHost{opened: make(chan *Conn, 1024)} }

func (h *testHost) Handshake(net.Addr) Handshake { return &testHandshake{h: h, outcome: "bad_request"} }

func (h *testHost) reasons() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.closed...)
}

type testHandshake struct {
	h       *testHost
	refuse  bool
	outcome string
}

func (hs *testHandshake) Header(key, _ []byte) {
	if bytes.EqualFold(key, []byte("X-Refuse")) {
		hs.refuse = true
	}
}
func (hs *testHandshake) Protocol(p []byte) bool { return string(p) == "wamp" }
func (hs *testHandshake) Admit(ctx context.Context) error {
	if hs.h.admitFn != nil {
		if err := hs.h.admitFn(ctx); err != nil {
			return err
		}
	}
	if hs.refuse {
		hs.outcome = "refused"
		return Reject(403, "refused")
	}
	hs.outcome = "ok"
	return nil
}
func (hs *testHandshake) Open(c *Conn) Handler {
	hs.h.opened <- c
	return &echoHandler{h: hs.h, c: c}
}
func (hs *testHandshake) Abandon()        {}
func (hs *testHandshake) Outcome() string { return hs.outcome }

type echoHandler struct {
	h *testHost
	c *Conn
}

func (e *echoHandler) Message(p []byte) bool {
	e.c.Send(append([]byte(nil), p...))
	return true
}

func (e *echoHandler) Closed(reason string) {
	e.h.mu.Lock()
	e.h.closed = append(e.h.closed, reason)
	e.h.mu.Unlock()
}

// countingObserver counts limits and handshake outcomes.
type countingObserver struct {
	nopObserver
	mu       sync.Mutex // guards the maps
	limits   map[string]int
	outcomes map[string]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{limits: map[string]int{}, outcomes: map[string]int{}}
}

func (o *countingObserver) Limit(l string) {
	o.mu.Lock()
	o.limits[l]++
	o.mu.Unlock()
}

func (o *countingObserver) Handshake(out string) {
	o.mu.Lock()
	o.outcomes[out]++
	o.mu.Unlock()
}

func (o *countingObserver) limit(l string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.limits[l]
}

func testConfig(mode string) Config {
	return Config{
		Mode:               mode,
		Workers:            2,
		Writers:            2,
		HandshakeTimeout:   5 * time.Second,
		MaxHeaderBytes:     4096,
		MaxPendingRequests: 64,
		MaxHandshakes:      16,
		MaxConnections:     1000,
		MaxMessageSize:     1 << 16,
		OutboundQueueBytes: 1 << 16,
		WriteTimeout:       5 * time.Second,
		IdleTimeout:        time.Minute,
	}
}

// serve starts a transport for host with cfg changed by mutate and
// returns its address; it is stopped when the test ends.
func serve(t *testing.T, mode string, host Host, obs Observer, mutate func(*Config)) string {
	t.Helper()
	cfg := testConfig(mode)
	cfg.Observer = obs
	if mutate != nil {
		mutate(&cfg)
	}
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
	t.Cleanup(func() {
		tr.Stop()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	modes := []string{ModeGoroutine}
	if EpollSupported {
		modes = append(modes, ModeEpoll)
	}
	for _, m := range modes {
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

const upgradeRequest = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wamp\r\n\r\n"

// status sends raw on a new connection and returns the HTTP status of the
// answer, or 0 when the server closed without one.
func status(t *testing.T, addr, raw string) int {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if raw != "" {
		if _, err := io.WriteString(nc, raw); err != nil {
			return 0
		}
	}
	return readStatus(nc)
}

func readStatus(nc net.Conn) int {
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// dial upgrades a websocket client connection.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"wamp"}, Timeout: 5 * time.Second}
	nc, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	}
	return nc, br
}

func TestHeaderCapBothModes(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		obs := newCountingObserver()
		addr := serve(t, mode, newTestHost(), obs, nil)
		long := "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
		if got := status(t, addr, long); got != 431 {
			t.Fatalf("1 MiB header line: status %d, want 431", got)
		}
		// An unterminated header trickled in small writes.
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
		chunk := strings.Repeat("b", 512)
		for sent := 0; sent < 64<<10; sent += len(chunk) {
			if _, err := io.WriteString(nc, chunk); err != nil {
				break // the server answered and closed
			}
		}
		if got := readStatus(nc); got != 431 {
			t.Fatalf("trickled header: status %d, want 431", got)
		}
		if n := obs.limit(LimitHeaderBytes); n != 2 {
			t.Errorf("limit %s counted %d times, want 2", LimitHeaderBytes, n)
		}
		// A request at the cap's size still upgrades.
		if got := status(t, addr, upgradeRequest); got != 101 {
			t.Fatalf("normal request: status %d", got)
		}
	})
}

func TestRequestTimeoutAnswers408(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		obs := newCountingObserver()
		addr := serve(t, mode, newTestHost(), obs, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
		if got := status(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n"); got != 408 {
			t.Fatalf("status %d, want 408", got)
		}
		if n := obs.limit(LimitHandshakeTime); n != 1 {
			t.Errorf("limit counted %d times, want 1", n)
		}
	})
}

// Sockets that send nothing never keep a real client out: they take no
// handshake slot, and past max_pending_requests the oldest make room.
func TestSilentSocketsCannotStarveHandshakes(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		obs := newCountingObserver()
		addr := serve(t, mode, newTestHost(), obs, func(c *Config) {
			// Far fewer slots than silent sockets; a few, so that a real
			// client's slot freed just after its 101 (goroutine mode: its
			// writer may send the 101 before Open returns) is no issue.
			c.MaxHandshakes = 4
			c.MaxPendingRequests = 8
		})
		const silent = 40
		var socks []net.Conn
		for range silent {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			socks = append(socks, nc)
		}
		// Each real client gets through, whatever the silent ones hold.
		for i := range 5 {
			if got := status(t, addr, upgradeRequest); got != 101 {
				t.Fatalf("real client %d: status %d, want 101", i, got)
			}
		}
		// The oldest silent sockets were told 503 and closed.
		evicted := 0
		for _, nc := range socks[:silent-8] {
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if readStatus(nc) == 503 {
				evicted++
			}
		}
		if evicted != silent-8 {
			t.Errorf("%d of the %d oldest silent sockets got 503", evicted, silent-8)
		}
		if n := obs.limit(LimitPendingRequests); n < silent-8 {
			t.Errorf("limit %s counted %d times, want at least %d", LimitPendingRequests, n, silent-8)
		}
	})
}

// A client that floods pings and never reads is closed as a slow consumer:
// the pongs count against the outbound queue.
func TestPingFloodIsClosed(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		obs := newCountingObserver()
		host := newTestHost()
		addr := serve(t, mode, host, obs, func(c *Config) {
			c.OutboundQueueBytes = 8192
			c.WriteTimeout = time.Minute // the queue bound must act, not the write timeout
		})
		nc, _ := dial(t, addr)
		ping := clientFrame(t, true, ws.OpPing, bytes.Repeat([]byte("p"), 125))
		batch := bytes.Repeat(ping, 64)
		nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		sent := 0
		for sent < 256<<20 { // far more than the kernel buffers hold
			n, err := nc.Write(batch)
			sent += n
			if err != nil {
				break // reset: the server closed us
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for obs.limit(LimitOutboundQueue) == 0 || len(host.reasons()) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("sent %d bytes of pings; limit counted %d, closed %q", sent, obs.limit(LimitOutboundQueue), host.reasons())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if r := host.reasons(); len(r) != 1 || r[0] != ReasonSlowConsumer && r[0] != ReasonWriteError {
			t.Errorf("closed with %q, want slow_consumer", r)
		}
	})
}

func TestUpgradeAndEcho(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		host := newTestHost()
		addr := serve(t, mode, host, nil, nil)
		nc, br := dial(t, addr)
		nc.Write(clientFrame(t, true, ws.OpText, []byte("hello")))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := ws.ReadFrame(br)
		if err != nil || string(f.Payload) != "hello" {
			t.Fatalf("echo: %v %q", err, f.Payload)
		}
		if got := status(t, addr, strings.Replace(upgradeRequest, "\r\n\r\n", "\r\nX-Refuse: 1\r\n\r\n", 1)); got != 403 {
			t.Fatalf("refused: status %d, want 403", got)
		}
	})
}

// stubIO never writes: what is queued stays queued, as with a client
// that does not read.
type stubIO struct{ closed bool }

func (s *stubIO) kick(*Conn) {}
func (s *stubIO) closeSocket(c *Conn) {
	s.closed = true
	c.socketClosed()
}

func newStubConn(t *testing.T, limit int) (*Conn, *stubIO, *countingObserver, *testHost) {
	t.Helper()
	obs := newCountingObserver()
	cfg := testConfig(ModeGoroutine)
	cfg.OutboundQueueBytes = limit
	cfg.Observer = obs
	host := newTestHost()
	tr, err := New(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	io := &stubIO{}
	c := newConn(tr, io, false)
	if !tr.open(c, &testHandshake{h: host}) {
		t.Fatal("open failed")
	}
	return c, io, obs, host
}

// The queue bound covers everything a client makes us hold: messages,
// control replies, and the batch a writer has taken but not written.
func TestQueueBoundCountsEverything(t *testing.T) {
	t.Run("pongs", func(t *testing.T) {
		c, _, obs, _ := newStubConn(t, 1024)
		pong := controlFrame(ws.OpPong, bytes.Repeat([]byte("x"), 125))
		n := 0
		for c.sendControl(pong) {
			n++
			if n > 100 {
				t.Fatal("pongs queued without bound")
			}
		}
		if n != 1024/len(pong) {
			t.Errorf("queued %d pongs of %d bytes under 1024, want %d", n, len(pong), 1024/len(pong))
		}
		if !c.Closing() || obs.limit(LimitOutboundQueue) != 1 {
			t.Errorf("closing %v, limit %d", c.Closing(), obs.limit(LimitOutboundQueue))
		}
	})
	t.Run("batch in flight", func(t *testing.T) {
		c, _, _, _ := newStubConn(t, 1024)
		msg := bytes.Repeat([]byte("m"), 400)
		if !c.Send(msg) || !c.Send(msg) {
			t.Fatal("first messages refused")
		}
		batch, _ := c.takeBatch(0) // a writer holds 804 bytes now
		if len(batch) != 4 {
			t.Fatalf("batch of %d slices", len(batch))
		}
		if c.Send(msg) {
			t.Fatal("a message past the bound was queued while the batch was in flight")
		}
		if !c.Closing() {
			t.Error("not closed as a slow consumer")
		}
	})
	t.Run("written bytes are freed", func(t *testing.T) {
		c, _, _, _ := newStubConn(t, 1024)
		msg := bytes.Repeat([]byte("m"), 400)
		for range 10 {
			if !c.Send(msg) {
				t.Fatal("refused although everything before was written")
			}
			batch, _ := c.takeBatch(0)
			n := 0
			for _, b := range batch {
				n += len(b)
			}
			c.takeBatch(n) // written in full
		}
	})
	t.Run("partial write keeps the rest counted", func(t *testing.T) {
		c, _, _, _ := newStubConn(t, 1024)
		msg := bytes.Repeat([]byte("m"), 400)
		c.Send(msg)
		c.Send(msg)
		batch, _ := c.takeBatch(0)
		c.requeue(batch[2:], 402) // the first message went out
		if !c.Send(msg) {
			t.Fatal("refused with 402 bytes queued")
		}
		if c.Send(msg) {
			t.Fatal("queued past the bound after a partial write")
		}
	})
}

// Closed is called once, after Open returned, even when the socket died
// while the host was opening it.
func TestClosedAfterEarlyDeath(t *testing.T) {
	host := newTestHost()
	cfg := testConfig(ModeGoroutine)
	tr, err := New(cfg, host)
	if err != nil {
		t.Fatal(err)
	}
	io := &stubIO{}
	c := newConn(tr, io, false)
	hs := &dyingHandshake{testHandshake: testHandshake{h: host}}
	if tr.open(c, hs) {
		t.Fatal("open reported a live connection that died")
	}
	if r := host.reasons(); len(r) != 1 || r[0] != ReasonWriteError {
		t.Fatalf("Closed calls %q, want one write_error", r)
	}
	if tr.Len() != 0 {
		t.Errorf("%d connections still tracked", tr.Len())
	}
}

type dyingHandshake struct{ testHandshake }

func (d *dyingHandshake) Open(c *Conn) Handler {
	h := d.testHandshake.Open(c)
	c.Kill(ReasonWriteError) // the first write failed
	return h
}

func TestRequestBuf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chunks   []string
		max      int
		complete bool
		tooLarge bool
		kept     string
	}{
		{"whole", []string{"GET / HTTP/1.1\r\n\r\n"}, 64, true, false, "GET / HTTP/1.1\r\n\r\n"},
		{"split terminator", []string{"GET / HTTP/1.1\r\n\r", "\n"}, 64, true, false, "GET / HTTP/1.1\r\n\r\n"},
		{"bytes after the end dropped", []string{"GET /\r\n\r\n\x81\x80abcd"}, 64, true, false, "GET /\r\n\r\n"},
		{"exactly at the cap", []string{"GET /\r\n\r\n"}, 9, true, false, "GET /\r\n\r\n"},
		{"over the cap", []string{"GET /abcdefgh"}, 8, false, true, "GET /abc"},
		{"over the cap in pieces", []string{"GET /", "abcd", "efgh"}, 8, false, true, "GET /abc"},
		{"end beyond the cap", []string{"GET /\r\n", "\r\n"}, 8, false, true, "GET /\r\n\r"},
		{"incomplete", []string{"GET / HTTP/1.1\r\n"}, 64, false, false, "GET / HTTP/1.1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r requestBuf
			var complete, tooLarge bool
			for _, c := range tc.chunks {
				complete, tooLarge = r.add([]byte(c), tc.max)
				if complete || tooLarge {
					break
				}
			}
			if complete != tc.complete || tooLarge != tc.tooLarge || string(r.b) != tc.kept {
				t.Errorf("complete %v tooLarge %v kept %q; want %v %v %q", complete, tooLarge, r.b, tc.complete, tc.tooLarge, tc.kept)
			}
		})
	}
}

// FuzzRequest feeds arbitrary request bytes, in arbitrary pieces, through
// the request collector and the upgrade: no input may panic, buffer past
// the cap, or be admitted without being a valid upgrade.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(upgradeRequest), uint8(7))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(1))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"), uint8(3))
	f.Add([]byte("\r\n\r\n"), uint8(0))
	f.Add([]byte(strings.Replace(upgradeRequest, "wamp", "wamp, wamp.2.json", 1)), uint8(5))
	host := newTestHost()
	cfg := testConfig(ModeGoroutine)
	cfg.MaxHeaderBytes = 1024
	tr, err := New(cfg, host)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var r requestBuf
		n := int(step)%17 + 1
		complete := false
		for i := 0; i < len(data) && !complete; i += n {
			var tooLarge bool
			complete, tooLarge = r.add(data[i:min(i+n, len(data))], cfg.MaxHeaderBytes)
			if len(r.b) > cfg.MaxHeaderBytes {
				t.Fatalf("buffered %d bytes past the cap %d", len(r.b), cfg.MaxHeaderBytes)
			}
			if tooLarge {
				return
			}
		}
		if !complete {
			return
		}
		resp, hs, _ := tr.upgrade(r.b, nil, time.Now().Add(time.Second))
		if hs != nil && !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) {
			t.Fatalf("admitted with answer %q", resp)
		}
		if hs == nil && bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) {
			t.Fatalf("refused with a 101: %q", resp)
		}
	})
}

// TestTextHeader: the shared headers, of text and of binary frames, are
// the ones appendHeader builds, for every length class, and cannot be
// appended to in place.
func TestTextHeader(t *testing.T) {
	for op, header := range map[ws.OpCode]func(int) []byte{ws.OpText: textHeader, ws.OpBinary: binaryHeader} {
		for _, n := range []int{0, 1, 125, 126, 127, 1000, 0xFFFE, 0xFFFF, 0x10000, 1 << 20} {
			want := appendHeader(nil, op, n)
			got := header(n)
			if !bytes.Equal(got, want) {
				t.Errorf("op %d header(%d) = %x, want %x", op, n, got, want)
			}
			if cap(got) != len(got) && n <= 0xFFFF {
				t.Errorf("op %d header(%d) has room to append into its neighbour (cap %d)", op, n, cap(got))
			}
		}
	}
}

// TestSendAllocatesNothing: queuing a message shares its payload and its
// frame header; only the queue's own growth allocates.
func TestSendAllocatesNothing(t *testing.T) {
	c, _, _, _ := newStubConn(t, 1<<30)
	msg := bytes.Repeat([]byte("x"), 100)
	for range 64 { // grow the queue first
		c.Send(msg)
	}
	c.mu.Lock()
	c.out = c.out[:0]
	c.mu.Unlock()
	allocs := testing.AllocsPerRun(30, func() { c.Send(msg) })
	if allocs != 0 {
		t.Errorf("Send allocates %v times per message", allocs)
	}
}

// TestSendToEmptyQueueAllocatesNothing is the fan-out case at a low event
// rate: every Send finds the subscriber's queue empty (its writer took and
// wrote the last batch). The queue's array comes from the pool the writer
// gave the written batch back to, so nothing is allocated per message
// (issue 19). The batch's payload references are dropped on the way.
func TestSendToEmptyQueueAllocatesNothing(t *testing.T) {
	c, _, _, _ := newStubConn(t, 1<<30)
	msg := bytes.Repeat([]byte("x"), 100)
	cycle := func() {
		c.Send(msg)
		batch, _ := c.takeBatch(0)
		if len(batch) != 2 || &batch[1][0] != &msg[0] {
			t.Fatalf("batch %d entries, want header and msg", len(batch))
		}
		c.mu.Lock()
		c.queued = 0 // as a writer's written count does
		c.mu.Unlock()
		recycleBatch(batch)
		if batch[:outArrayLen][1] != nil {
			t.Fatal("a recycled array still holds the payload")
		}
	}
	cycle()
	if raceEnabled {
		t.Log("-race: sync.Pool drops some arrays, the count is not checked")
		return
	}
	if allocs := testing.AllocsPerRun(100, cycle); allocs != 0 {
		t.Errorf("Send to an empty queue and a written batch allocate %v times per message", allocs)
	}
}

// TestRecycleBatchTakesOnlyWholeArrays: a batch whose start was requeued
// elsewhere (cap below the array's) or that grew into an array append
// made is not recycled as a pooled array, and an array given back comes
// out clean.
func TestRecycleBatchTakesOnlyWholeArrays(t *testing.T) {
	x := []byte("x")
	a := new(outArray)
	a[0], a[1] = x, x
	recycleBatch(a[1:2]) // not the start: ignored
	if a[1] == nil {
		t.Error("a slice past the array's start was recycled")
	}
	grown := make([][]byte, 3, 16)
	grown[0] = x
	recycleBatch(grown)
	if grown[0] == nil {
		t.Error("a grown array was recycled")
	}
	recycleBatch(a[:2])
	for i, b := range a {
		if b != nil {
			t.Errorf("recycled array entry %d still set", i)
		}
	}
}

// BenchmarkSend is one subscriber's share of a fan-out: queuing a shared
// 100-byte event.
func BenchmarkSend(b *testing.B) {
	obs := newCountingObserver()
	cfg := testConfig(ModeGoroutine)
	cfg.OutboundQueueBytes = 1 << 40
	cfg.Observer = obs
	host := newTestHost()
	tr, err := New(cfg, host)
	if err != nil {
		b.Fatal(err)
	}
	c := newConn(tr, &stubIO{}, false)
	if !tr.open(c, &testHandshake{h: host}) {
		b.Fatal("open failed")
	}
	msg := bytes.Repeat([]byte("x"), 100)
	b.ReportAllocs()
	for i := range b.N {
		if i%1024 == 0 {
			c.mu.Lock()
			c.out, c.queued = c.out[:0], 0
			c.mu.Unlock()
		}
		c.Send(msg)
	}
}
