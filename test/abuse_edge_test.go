package test

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// abuseEdgeConfig is the gateway of the handshake, framing and flood
// probes. It uses only keys every gateway since issue 2 knows, so that an
// older binary runs these probes too; its limits are small so that floods
// stay short.
const abuseEdgeConfig = `
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
transport: {mode: %s, permessage_deflate: true}
limits:
  handshake_timeout: 2s
  max_header_bytes: 4096
  max_handshakes: 64
  max_message_size: 16384
  outbound_queue_bytes: 65536
  # A slow consumer's blocked write ends this soon (its close waits for
  # it in goroutine mode), which keeps the floods short.
  write_timeout: 2s
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
  topics:
    acme_topic: {pattern: "acme/channel/{room}", handler: acme.topic}
`

const (
	edgeMaxHeader    = 4096
	edgeMaxMessage   = 16384
	edgeOutboundCap  = 65536
	edgeMaxHandshake = 64
)

// TestAbuseEdge drives one gateway per transport mode through the
// handshake, framing and flood probes, one after the other (they share the
// gateway, and a flood must not distort its neighbour's memory figure).
func TestAbuseEdge(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		g := startAbuseGateway(t, fmt.Sprintf(abuseEdgeConfig, mode, t.TempDir()))
		probe := func(name string, f func(t *testing.T, g *gatewayProcess, rss *rssProbe)) {
			t.Run(name, func(t *testing.T) { f(t, g, measureRSS(t, g, mode)) })
		}
		probe("rfc6455", probeRFC6455)
		probe("deflate_bomb", probeDeflateBomb)
		probe("header_1MiB_line", probeHugeHeader)
		probe("header_trickle_8MiB", probeHeaderTrickle)
		probe("slowloris", probeSlowloris)
		probe("silent_sockets", probeSilentSockets)
		probe("unrouted_call_flood", probeUnroutedCallFlood)
		probe("ping_flood", probePingFlood)
		// Whatever came before, the gateway still serves, and once every
		// probe's client is gone it holds no connection.
		checkServed(t, g.Addr, "sample/sum")
		expectNoConnections(t, g)
	})
}

// probeRFC6455 sends each framing violation of RFC 6455 on a fresh
// connection and expects the close code the RFC (and the bundle) gives.
func probeRFC6455(t *testing.T, g *gatewayProcess, _ *rssProbe) {
	call := []byte(`[2,"c1","sample/sum",[1,2]]`)
	closeFrame := func(code uint16, reason string) []byte {
		p := binary.BigEndian.AppendUint16(nil, code)
		return wsFrame(true, 0, opClose, append(p, reason...), true)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		send []byte
		want int
		alt  int // another code the RFC allows, 0 = none
	}{
		{"unmasked client frame", wsFrame(true, 0, opText, call, false), 1002, 0},
		{"RSV1 without extension", wsFrame(true, 0x40, opText, call, true), 1002, 0},
		{"RSV3 without extension", wsFrame(true, 0x10, opText, call, true), 1002, 0},
		{"reserved data opcode 0x3", wsFrame(true, 0, 0x3, call, true), 1002, 0},
		{"reserved control opcode 0xB", wsFrame(true, 0, 0xB, nil, true), 1002, 0},
		{"fragmented ping", wsFrame(false, 0, opPing, []byte("x"), true), 1002, 0},
		{"ping payload of 126 bytes", wsFrame(true, 0, opPing, bytes.Repeat([]byte("p"), 126), true), 1002, 0},
		{"continuation without a start", wsFrame(true, 0, opCont, call, true), 1002, 0},
		{"data frame inside a fragmented message", cat(wsFrame(false, 0, opText, call[:5], true), wsFrame(true, 0, opText, call[5:], true)), 1002, 0},
		{"binary message", wsFrame(true, 0, opBinary, call, true), 1003, 0},
		{"invalid UTF-8 text", wsFrame(true, 0, opText, []byte("[2,\"c1\",\"\xff\xfe\"]"), true), 1007, 0},
		{"invalid UTF-8 split over fragments", cat(wsFrame(false, 0, opText, []byte("[2,\"\xe2\x82"), true), wsFrame(true, 0, opCont, []byte("\"]"), true)), 1007, 0},
		{"64-bit length 2^63", wsHeader(true, 0, opText, 1<<63, true), 1009, 0},
		{"64-bit length 1 GiB", wsHeader(true, 0, opText, 1<<30, true), 1009, 0},
		{"text over max_message_size", wsFrame(true, 0, opText, bytes.Repeat([]byte(" "), edgeMaxMessage+1), true), 1009, 0},
		{"fragments adding up over max_message_size", cat(
			wsFrame(false, 0, opText, bytes.Repeat([]byte(" "), edgeMaxMessage/2+1), true),
			wsFrame(true, 0, opCont, bytes.Repeat([]byte(" "), edgeMaxMessage/2+1), true)), 1009, 0},
		{"close code 999", closeFrame(999, ""), 1002, 0},
		{"close code 1005", closeFrame(1005, ""), 1002, 0},
		{"close code 1015", closeFrame(1015, ""), 1002, 0},
		{"close payload of 1 byte", wsFrame(true, 0, opClose, []byte{3}, true), 1002, 0},
		// RFC 6455 §8.1 fails the connection without naming the code;
		// autobahn's case 7.5.1 accepts either.
		{"close reason not UTF-8", closeFrame(1000, "\xff"), 1007, 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustUpgrade(t, g.Addr, rawDialOpts{})
			if m := c.nextMsg(5 * time.Second); msgType(m) != 0 {
				t.Fatalf("want WELCOME, got %s", msgString(m))
			}
			// The gateway may close while a long frame is still being
			// written: that is an answer too, read below.
			_ = c.write(tc.send)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if o := c.readUntilClose(ctx, 1<<20); o.Code != tc.want && (tc.alt == 0 || o.Code != tc.alt) {
				t.Errorf("got %v, want close %d", o, tc.want)
			}
		})
	}
	// The well-formed message these rows break is answered.
	c := mustV1(t, g.Addr)
	expectAnswer(t, c, "ok", "sample/sum", []int{1, 2})
}

// deflateRaw compresses msg as an RFC 7692 sender does: raw deflate with
// the final empty stored block's 4-byte tail removed.
func deflateRaw(t *testing.T, msg []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(msg)
	w.Flush()
	out := b.Bytes()
	tail := []byte{0, 0, 0xff, 0xff}
	if !bytes.HasSuffix(out, tail) {
		t.Fatalf("deflate output does not end in a sync flush")
	}
	return out[:len(out)-4]
}

// probeDeflateBomb agrees permessage-deflate and sends a small frame that
// inflates past max_message_size: 1009. A compressed message within the
// limit is answered, so 1009 is the bomb's answer, not compression's.
func probeDeflateBomb(t *testing.T, g *gatewayProcess, rss *rssProbe) {
	o := rawDialOpts{Header: "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"}
	c := mustUpgrade(t, g.Addr, o)
	if ext := c.Resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("permessage-deflate not agreed (Sec-WebSocket-Extensions %q)", ext)
	}
	if m := c.nextMsg(5 * time.Second); msgType(m) != 0 {
		t.Fatalf("want WELCOME, got %s", msgString(m))
	}
	c.mustWrite(wsFrame(true, 0x40, opText, deflateRaw(t, []byte(`[2,"z1","sample/sum",[20,22]]`)), true))
	if m := c.nextMsg(5 * time.Second); msgType(m) != 3 && msgType(m) != 4 {
		t.Fatalf("compressed CALL: got %s, want its answer", msgString(m))
	}
	bomb := deflateRaw(t, bytes.Repeat([]byte("a"), 4<<20))
	t.Logf("bomb: %d bytes inflating to 4 MiB", len(bomb))
	_ = c.write(wsFrame(true, 0x40, opText, bomb, true))
	c.expectCloseCode(1009)
	rss.assertPeakWithin(32 << 20)
}

// probeHugeHeader sends an upgrade request with a 1 MiB header line: 431
// and the socket closed, never 101.
func probeHugeHeader(t *testing.T, g *gatewayProcess, _ *rssProbe) {
	w := watchMetrics(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := dialLoopback(ctx, g.Addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := upgradeRequest(g.Addr, rawDialOpts{Header: "X-Big: " + strings.Repeat("a", 1<<20) + "\r\n"})
	go func() {
		// The gateway may answer and close before all of it is sent.
		nc.SetWriteDeadline(time.Now().Add(15 * time.Second))
		io.WriteString(nc, req)
	}()
	answer, err := readHTTPAnswer(ctx, nc, 64<<10)
	status := statusOf(answer)
	if status == 101 {
		t.Fatalf("1 MiB header line: upgraded (%q)", clip(answer))
	}
	if status != 431 {
		t.Fatalf("1 MiB header line: answer %q (status %d, read ended by %v), want 431", clip(answer), status, err)
	}
	if err == nil || !closedErr(err) {
		t.Errorf("after 431 the socket stayed open (read ended by %v)", err)
	}
	w.expectLimit("max_header_bytes", 1)
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// probeHeaderTrickle has 8 sockets each send an unterminated 8 MiB header
// line in small writes: each gets 431 once it passes max_header_bytes, and
// the gateway's memory stays within a bound.
func probeHeaderTrickle(t *testing.T, g *gatewayProcess, rss *rssProbe) {
	const (
		sockets = 8
		total   = 8 << 20
		chunk   = 4 << 10
	)
	w := watchMetrics(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		answer []byte
		err    error
		sent   int
	}
	results := make([]result, sockets)
	var wg sync.WaitGroup
	for i := range results {
		nc, err := dialLoopback(ctx, g.Addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wg.Add(2)
		answered := make(chan struct{})
		go func() { // writer: stops at the answer, an error or 8 MiB
			defer wg.Done()
			head := "GET / HTTP/1.1\r\nHost: " + g.Addr + "\r\nX-Trickle: "
			nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			n, err := io.WriteString(nc, head)
			results[i].sent = n
			buf := bytes.Repeat([]byte("t"), chunk)
			for err == nil && results[i].sent < total {
				select {
				case <-answered:
					return
				case <-ctx.Done():
					return
				default:
				}
				n, err = nc.Write(buf)
				results[i].sent += n
			}
		}()
		go func() {
			defer wg.Done()
			results[i].answer, results[i].err = readHTTPAnswer(ctx, nc, 64<<10)
			close(answered)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if st := statusOf(r.answer); st != 431 {
			t.Errorf("socket %d: answer %q (status %d, read ended by %v) after sending %d KiB, want 431",
				i, clip(r.answer), st, r.err, r.sent>>10)
		} else {
			t.Logf("socket %d: 431 after sending %d KiB", i, r.sent>>10)
		}
	}
	w.expectLimit("max_header_bytes", sockets)
	// 8 sockets × max_header_bytes is nothing; 8 × 8 MiB buffered is
	// what a gateway reading the whole line would hold.
	rss.assertPeakWithin(32 << 20)
}

// probeSlowloris has 16 sockets send a header byte every 200ms, never
// finishing: each is closed at limits.handshake_timeout, with a best-effort
// 408 (never another status), and meanwhile a real client is served.
func probeSlowloris(t *testing.T, g *gatewayProcess, _ *rssProbe) {
	const sockets = 16
	w := watchMetrics(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		answer []byte
		err    error
	}
	results := make([]result, sockets)
	var wg sync.WaitGroup
	for i := range results {
		nc, err := dialLoopback(ctx, g.Addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		done := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			results[i].answer, results[i].err = readHTTPAnswer(ctx, nc, 4096)
			close(done)
		}()
		go func() {
			defer wg.Done()
			req := "GET / HTTP/1.1\r\nHost: " + g.Addr + "\r\nX-Slow: " + strings.Repeat("s", 1000)
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for j := 0; j < len(req); j++ {
				nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Write([]byte{req[j]}); err != nil {
					return
				}
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	// While they trickle, a real client is served.
	checkServed(t, g.Addr, "sample/sum")
	wg.Wait()
	with408 := 0
	for i, r := range results {
		if !closedErr(r.err) {
			t.Errorf("slowloris socket %d not closed: read ended by %v", i, r.err)
		}
		switch st := statusOf(r.answer); {
		case st == 408:
			with408++
		case len(r.answer) > 0:
			t.Errorf("slowloris socket %d: answer %q, want 408 or nothing", i, clip(r.answer))
		}
	}
	t.Logf("%d of %d slowloris sockets got 408 before the close", with408, sockets)
	w.expectLimit("handshake_timeout", sockets)
}

// openSilentSockets opens n sockets to addr that send nothing; they are
// closed when the test ends.
func openSilentSockets(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	for range n {
		nc, err := dialLoopback(ctx, addr, 0)
		if err != nil {
			t.Fatalf("silent socket %d: %v", len(conns), err)
		}
		conns = append(conns, nc)
	}
	return conns
}

// probeSilentSockets opens 1,100 sockets that send nothing, far over
// limits.max_handshakes: a real client connecting after them still gets
// 101 and its call answered.
func probeSilentSockets(t *testing.T, g *gatewayProcess, _ *rssProbe) {
	const sockets = 1100
	openSilentSockets(t, g.Addr, sockets)
	c, err := dialV1(t, g.Addr, rawDialOpts{})
	if err != nil {
		var se statusError
		if errors.As(err, &se) {
			t.Fatalf("real client after %d silent sockets: handshake answered %d, want 101", sockets, int(se))
		}
		t.Fatalf("real client after %d silent sockets: %v", sockets, err)
	}
	expectAnswer(t, c, "after-silent", "sample/sum", []int{1, 1})
}

// probeUnroutedCallFlood sends unrouted CALLs as fast as it can and never
// reads: the CALLERRORs fill the outbound queue and the client is closed
// 1008 as a slow consumer.
func probeUnroutedCallFlood(t *testing.T, g *gatewayProcess, rss *rssProbe) {
	w := watchMetrics(t, g)
	c := mustUpgrade(t, g.Addr, rawDialOpts{RcvBuf: 4096})
	outcome := floodUntilClosed(t, c, clientText([]byte(`[2,"c1","nowhere/x"]`)), 32<<20)
	expectSlowConsumerEnd(t, "unrouted call flood", outcome)
	w.expectDisconnects("slow_consumer", 1)
	w.expectLimit("outbound_queue_bytes", 1)
	rss.assertPeakWithin(64 << 20)
	checkServed(t, g.Addr, "sample/sum")
}

// probePingFlood sends masked 125-byte pings as fast as it can and never
// reads: the gateway must close it rather than queue pongs without bound,
// and its memory stays within a bound.
func probePingFlood(t *testing.T, g *gatewayProcess, rss *rssProbe) {
	w := watchMetrics(t, g)
	c := mustUpgrade(t, g.Addr, rawDialOpts{RcvBuf: 4096})
	outcome := floodUntilClosed(t, c, wsFrame(true, 0, opPing, bytes.Repeat([]byte("p"), 125), true), 64<<20)
	expectSlowConsumerEnd(t, "ping flood", outcome)
	w.expectDisconnects("slow_consumer", 1)
	w.expectLimit("outbound_queue_bytes", 1)
	rss.assertPeakWithin(64 << 20)
	checkServed(t, g.Addr, "sample/sum")
}

// floodUntilClosed writes frame repeatedly (in batches) without reading,
// until a write fails, budget bytes are sent or 30s pass; then it reads
// what the gateway sent until its close, the connection's end, 10s or 4
// MiB past the outbound queue limit, whichever comes first.
func floodUntilClosed(t *testing.T, c *wsRaw, frame []byte, budget int) closeOutcome {
	t.Helper()
	batch := bytes.Repeat(frame, max(1, (64<<10)/len(frame)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent := 0
	var werr error
	for sent < budget && ctx.Err() == nil {
		// A gateway that stops reading without closing blocks the write:
		// the deadline ends the flood then.
		c.nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
		n, err := c.nc.Write(batch)
		sent += n
		if err != nil {
			werr = err
			break
		}
	}
	t.Logf("flood: sent %d KiB (%d frames), ended by %v", sent>>10, sent/len(frame), werr)
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	o := c.readUntilClose(rctx, edgeOutboundCap+4<<20)
	t.Logf("flood: then read %v", o)
	return o
}

// expectSlowConsumerEnd fails t unless a flooder was dropped: a close
// frame 1008, or, when the gateway had no room left for one, the
// connection closed or reset.
func expectSlowConsumerEnd(t *testing.T, what string, o closeOutcome) {
	t.Helper()
	switch {
	case o.Code == 1008:
	case o.Code != 0:
		t.Errorf("%s: %v, want close 1008", what, o)
	default:
		if err := connGone(o); err != nil {
			t.Errorf("%s: the gateway did not drop the flooder: %v", what, err)
		}
	}
}

// expectNoConnections waits (bounded) for wsgate_connections to reach 0,
// once the probes' clients are all closed: no connection leaked.
func expectNoConnections(t *testing.T, g *gatewayProcess) {
	t.Helper()
	var n float64
	for range 100 {
		if n = metricSum(metricsBody(t, g), "wsgate_connections"); n == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("wsgate_connections is %v with every client gone", n)
}
