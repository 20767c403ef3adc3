package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// The floor scenario (issue 19): what the kernel alone charges on this
// machine for the two units the gateway is judged by, measured in-process
// with no gateway, so that a gateway's CPU per delivery and per handshake
// can be given as a ratio to it in the same session.
//
//   - delivery: one write(2) of a --frame-bytes websocket frame to each of
//     --conns loopback TCP connections, --rounds times over (TCP_NODELAY on
//     the writing end, the peer never reads: the loopback receive path runs
//     in the writer's context, as it does for the gateway's writes); then the
//     same with writev(2) of two slices (header, payload), as the gateway's
//     writers send a frame. CPU is the writing thread's own
//     (CLOCK_THREAD_CPUTIME_ID; user/sys from getrusage RUSAGE_THREAD).
//   - handshake: a minimal server thread doing accept4 + read of a ~300-byte
//     websocket upgrade request + write of a fixed 101 response + close, for
//     --handshakes connections made by --concurrency client goroutines of the
//     same process. CPU is the server thread's only: the clients' share (and
//     the kernel work done in their context: connect, the SYN handling, the
//     RST that ends each connection) is not in it, as the tool's is not in a
//     gateway's CPU per handshake.
//
// --floor-cpu pins the measuring thread (writer, server) to one CPU, the
// gateway's in a side-by-side session, while the clients stay where the
// process was started (taskset).

// Limits of the floor flags.
const (
	maxRounds        = 10000
	maxHandshakes    = 1000000
	maxFrameBytes    = 65535 + 4
	minFrameBytes    = 2 + 1
	floorFDReserve   = 64 // descriptors kept free beside the pairs (stdio, listener, runtime)
	defaultFloorCPU  = -1
	floorPhaseBound  = 10 * 60 // seconds: the most one phase may take
	floorIOTimeoutMs = 2000    // accept, read and write bound of the handshake server
)

// floorResults is what the floor scenario reports.
type floorResults struct {
	// Delivery is one write(2) of the whole frame per delivery.
	Delivery *deliveryFloor `json:"delivery,omitempty"`
	// DeliveryWritev is one writev(2) of header and payload per delivery,
	// on fresh connections, after Delivery.
	DeliveryWritev *deliveryFloor `json:"delivery_writev,omitempty"`
	// DeliveryWritevRead is DeliveryWritev with every peer read by a
	// goroutine of this process (Go's netpoller, as the tool's clients
	// read). Written back to back, the readers stay busy and are seldom
	// asleep when a write lands, so the wake-up a gateway's write to an
	// idle subscriber pays is mostly not in it. Not run by default
	// (--floor-phases ...,writev-read,...).
	DeliveryWritevRead *deliveryFloor `json:"delivery_writev_read,omitempty"`
	// DeliveryWritevEpoll is DeliveryWritev with the writing sockets in an
	// epoll instance (edge-triggered in and out, as the gateway registers
	// them) that a thread on the measuring CPU waits on; that thread's CPU
	// is added. Not run by default (writev-epoll).
	DeliveryWritevEpoll *deliveryFloor `json:"delivery_writev_epoll,omitempty"`
	// DeliveryWritevWake is DeliveryWritev with every write landing on a
	// reader asleep in epoll_wait on another CPU, as a gateway's write to
	// its subscribers does at one publish per second: the write pays for
	// waking it. Paced (one write, its read, then the next), at most
	// wakeMaxRounds rounds; the cost is each writev's wall time on the
	// writer's dedicated CPU (no user/sys split). Not run by default
	// (writev-wake).
	DeliveryWritevWake *deliveryFloor `json:"delivery_writev_wake,omitempty"`
	// Handshake is the minimal server's CPU per connection.
	Handshake *handshakeFloor `json:"handshake,omitempty"`
	// CPU is the measuring thread's CPU, if it was pinned (--floor-cpu).
	CPU int `json:"cpu"`
}

// deliveryFloor is one delivery phase: Pairs connections, Rounds writes to
// each.
type deliveryFloor struct {
	Syscall    string `json:"syscall"` // "write" or "writev"
	Pairs      int    `json:"pairs"`
	Rounds     int    `json:"rounds"`
	FrameBytes int    `json:"frame_bytes"`
	Writes     int64  `json:"writes"` // complete writes
	// ClockCostUs is the cost of the two clock reads around each write,
	// taken out of the figures (writev-wake only).
	ClockCostUs float64 `json:"clock_cost_us,omitempty"`
	// ReadBytes is what the peers read (writev-read, writev-wake): every byte
	// written, or the phase reports floor_unread.
	ReadBytes int64 `json:"read_bytes,omitempty"`
	// WaiterCPUSeconds and EpollEvents are the epoll waiter's thread CPU
	// (in CPUSeconds too) and the events it took (writev-epoll only).
	WaiterCPUSeconds float64 `json:"waiter_cpu_s,omitempty"`
	EpollEvents      int64   `json:"epoll_events,omitempty"`
	// ShortWrites and WouldBlock count writes that did not take the whole
	// frame (the peer's buffer full): errors, the run measured something
	// else.
	ShortWrites int64 `json:"short_writes"`
	WouldBlock  int64 `json:"would_block"`
	// Thread CPU over all rounds, in seconds, and per complete write in µs:
	// CPU exact (CLOCK_THREAD_CPUTIME_ID), its user/sys split from
	// getrusage(RUSAGE_THREAD), tick-based, so the two need not add up
	// exactly.
	CPUSeconds     float64 `json:"cpu_s"`
	UserSeconds    float64 `json:"user_s"`
	SysSeconds     float64 `json:"sys_s"`
	WallSeconds    float64 `json:"wall_s"`
	CPUPerWriteUs  float64 `json:"cpu_per_write_us"`
	UserPerWriteUs float64 `json:"user_per_write_us"`
	SysPerWriteUs  float64 `json:"sys_per_write_us"`
	// SlabPerSocketBytes is the kernel's slab memory (/proc/meminfo Slab)
	// per socket the phase opened, before anything was written: what an
	// idle connection costs the kernel beside the gateway's own memory.
	// Other processes' allocations in between make it approximate.
	SlabPerSocketBytes float64 `json:"slab_per_socket_bytes,omitempty"`
	// PerRound summarises the rounds' CPU per write (µs): the first round
	// touches each connection's receive queue first, later ones find data
	// queued already.
	PerRound *roundSummary `json:"per_round_cpu_per_write_us,omitempty"`
}

// roundSummary is the spread of a per-round figure.
type roundSummary struct {
	First  float64 `json:"first"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Last   float64 `json:"last"`
}

// handshakeFloor is the handshake phase.
type handshakeFloor struct {
	Connections   int64 `json:"connections"` // served completely
	Concurrency   int   `json:"concurrency"`
	RequestBytes  int   `json:"request_bytes"`
	ResponseBytes int   `json:"response_bytes"`
	// The server thread's CPU (exact) and its user/sys split (tick-based).
	CPUSeconds  float64 `json:"server_cpu_s"`
	UserSeconds float64 `json:"server_user_s"`
	SysSeconds  float64 `json:"server_sys_s"`
	WallSeconds float64 `json:"wall_s"`
	PerSec      float64 `json:"handshakes_per_s"`
	// CPUPerHandshakeUs is the server thread's CPU per connection, in µs.
	CPUPerHandshakeUs float64 `json:"cpu_per_handshake_us"`
	// ProcessCPUSeconds is the whole process (server and clients).
	ProcessCPUSeconds float64 `json:"process_cpu_s"`
}

// floorRequest is the upgrade request the handshake clients send: what a
// browser sends a wsgate gateway, about 300 bytes.
const floorRequest = "GET / HTTP/1.1\r\n" +
	"Host: 127.0.0.1:8080\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Sec-WebSocket-Protocol: wamp\r\n" +
	"Origin: http://127.0.0.1:8080\r\n" +
	"User-Agent: wsgate-bench floor\r\n" +
	"Cookie: PHPSESSID=wsgbench0000000000000000000000000000000000000000000\r\n" +
	"\r\n"

// floorResponse is the fixed 101 the handshake server writes.
const floorResponse = "HTTP/1.1 101 Switching Protocols\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
	"Sec-WebSocket-Protocol: wamp\r\n" +
	"\r\n"

// floorFrame is an unmasked websocket text frame of exactly size bytes
// (2-byte header up to 127 bytes, 4-byte header above): the frame a
// gateway writes to one subscriber. It returns the header and payload
// separately, for writev.
func floorFrame(size int) (header, payload []byte) {
	if size-2 <= 125 {
		header = []byte{0x81, byte(size - 2)}
	} else {
		n := size - 4
		header = []byte{0x81, 126, byte(n >> 8), byte(n)}
	}
	payload = make([]byte, size-len(header))
	for i := range payload {
		payload[i] = 'x'
	}
	if len(payload) >= 2 {
		payload[0], payload[len(payload)-1] = '"', '"'
	}
	return header, payload
}

// summarizeRounds returns the spread of per-round values (nil for none).
func summarizeRounds(v []float64) *roundSummary {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return &roundSummary{First: v[0], Min: s[0], Median: s[len(s)/2], Max: s[len(s)-1], Last: v[len(v)-1]}
}

// errBadFloorResponse is a handshake-floor client that did not read back
// exactly the server's fixed response.
var errBadFloorResponse = errors.New("floor: unexpected response")

// floorPhases are the phases --floor-phases may list, in the order they run;
// defaultFloorPhases those it runs by default.
var (
	floorPhases        = []string{"write", "writev", "writev-epoll", "writev-read", "writev-wake", "handshake"}
	defaultFloorPhases = []string{"write", "writev", "handshake"}
)

// floorPhase reports whether the floor scenario runs phase.
func (c *config) floorPhase(phase string) bool {
	for _, p := range c.FloorPhases {
		if p == phase {
			return true
		}
	}
	return false
}

// parseFloorPhases checks a comma-separated --floor-phases list.
func parseFloorPhases(v string) ([]string, error) {
	parts, err := splitList("--floor-phases", v, len(floorPhases))
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, errors.New("--floor-phases: name at least one of " + strings.Join(floorPhases, ", "))
	}
	seen := map[string]bool{}
	for _, p := range parts {
		known := false
		for _, f := range floorPhases {
			known = known || p == f
		}
		if !known || seen[p] {
			return nil, errors.New("--floor-phases: " + p + " is unknown or listed twice (" + strings.Join(floorPhases, ", ") + ")")
		}
		seen[p] = true
	}
	return parts, nil
}

// writeText prints the floor figures for a human.
func (f *floorResults) writeText(w io.Writer) {
	fmt.Fprintf(w, "scenario floor (no gateway), measuring thread on CPU %d (-1: not pinned)\n", f.CPU)
	for _, d := range []*deliveryFloor{f.Delivery, f.DeliveryWritev, f.DeliveryWritevEpoll, f.DeliveryWritevRead, f.DeliveryWritevWake} {
		if d == nil {
			continue
		}
		fmt.Fprintf(w, "delivery floor, %s of %d bytes: %d pairs × %d rounds, %d complete writes (would block %d, short %d)\n",
			d.Syscall, d.FrameBytes, d.Pairs, d.Rounds, d.Writes, d.WouldBlock, d.ShortWrites)
		if d.ClockCostUs > 0 {
			fmt.Fprintf(w, "  CPU per write %.2f µs (wall time in writev, less %.3f µs of clock reads); %.2f s of writes in %.2f s\n",
				d.CPUPerWriteUs, d.ClockCostUs, d.CPUSeconds, d.WallSeconds)
		} else {
			fmt.Fprintf(w, "  CPU per write %.2f µs (user %.2f, sys %.2f); thread CPU %.2f s in %.2f s\n",
				d.CPUPerWriteUs, d.UserPerWriteUs, d.SysPerWriteUs, d.CPUSeconds, d.WallSeconds)
		}
		if r := d.PerRound; r != nil {
			fmt.Fprintf(w, "  per round, µs per write: first %.2f, min %.2f, median %.2f, max %.2f, last %.2f\n", r.First, r.Min, r.Median, r.Max, r.Last)
		}
		if d.EpollEvents > 0 {
			fmt.Fprintf(w, "  the epoll waiter took %d events, %.2f s of its thread's CPU (included above)\n", d.EpollEvents, d.WaiterCPUSeconds)
		}
		if d.ReadBytes > 0 {
			fmt.Fprintf(w, "  the peers read %d bytes\n", d.ReadBytes)
		}
		if d.SlabPerSocketBytes > 0 {
			fmt.Fprintf(w, "  kernel slab per idle socket %.0f B\n", d.SlabPerSocketBytes)
		}
	}
	if h := f.Handshake; h != nil {
		fmt.Fprintf(w, "handshake floor: %d connections (%d at a time), request %d B, response %d B\n",
			h.Connections, h.Concurrency, h.RequestBytes, h.ResponseBytes)
		fmt.Fprintf(w, "  server CPU per handshake %.2f µs (server thread %.2f s: user %.2f, sys %.2f); %.0f/s; process CPU %.2f s in %.2f s\n",
			h.CPUPerHandshakeUs, h.CPUSeconds, h.UserSeconds, h.SysSeconds, h.PerSec, h.ProcessCPUSeconds, h.WallSeconds)
	}
}

// floorRatios are a gateway run's figures divided by the kernel floor
// measured in the same run (--with-floor): how many times what the kernel
// alone charges for the same unit the gateway spends. A figure is absent
// when the run did not measure it or the floor phase it needs did not run.
type floorRatios struct {
	// CPUPerHandshake is cpu_per_handshake_us over the handshake floor's
	// server CPU per connection (connect).
	CPUPerHandshake *float64 `json:"cpu_per_handshake_x_floor,omitempty"`
	// CPUPerDeliveryWritev and CPUPerDeliveryWrite are cpu_per_delivery_us
	// over the writev floor (the gateway's syscall) and the write floor
	// (issue 19's figure) (broadcast).
	CPUPerDeliveryWritev *float64 `json:"cpu_per_delivery_x_writev_floor,omitempty"`
	CPUPerDeliveryWrite  *float64 `json:"cpu_per_delivery_x_write_floor,omitempty"`
	// CPUPerDeliveryReading is cpu_per_delivery_us over the writev floor
	// with reading peers (writev-read, if it ran): the floor that includes
	// waking the reader (broadcast).
	CPUPerDeliveryReading *float64 `json:"cpu_per_delivery_x_reading_floor,omitempty"`
	// CPUPerDeliveryWaking is cpu_per_delivery_us over the writev floor
	// whose every write wakes a sleeping reader (writev-wake, if it ran):
	// the kernel's cost per delivery at one publish per second, when the
	// subscribers' reader waits for each event (broadcast).
	CPUPerDeliveryWaking *float64 `json:"cpu_per_delivery_x_waking_floor,omitempty"`
	// CPUPerCall is cpu_per_call_us over the write floor: a call costs the
	// gateway at least the write of its result; the read of the CALL is not
	// in the floor, so 1 is not reachable (rpc).
	CPUPerCall *float64 `json:"cpu_per_call_x_write_floor,omitempty"`
	// RSSPerConnOverSlab is the gateway's RSS per idle connection over the
	// kernel's slab memory per idle socket (idle): the gateway's share
	// against the kernel's for the same connection.
	RSSPerConnOverSlab *float64 `json:"rss_per_conn_x_kernel_slab_per_socket,omitempty"`
}

// ratioTo is v / floor, or nil when v is unknown or floor is not positive.
func ratioTo(v *float64, floor float64) *float64 {
	if v == nil || !(floor > 0) {
		return nil
	}
	r := *v / floor
	return &r
}

// ratiosToFloor divides r's gateway figures by the floor f measured in the
// same run; nil when there is no floor.
func ratiosToFloor(r *results, f *floorResults) *floorRatios {
	if f == nil {
		return nil
	}
	out := &floorRatios{}
	if h := f.Handshake; h != nil {
		out.CPUPerHandshake = ratioTo(r.CPUPerHandshakeUs, h.CPUPerHandshakeUs)
	}
	// The kernel's memory per socket: the writev phase's pairs if it ran
	// (opened later, on a warmer slab), else the write phase's.
	var slab float64
	if d := f.Delivery; d != nil {
		out.CPUPerDeliveryWrite = ratioTo(r.CPUPerDeliveryUs, d.CPUPerWriteUs)
		out.CPUPerCall = ratioTo(r.CPUPerCallUs, d.CPUPerWriteUs)
		slab = d.SlabPerSocketBytes
	}
	if d := f.DeliveryWritev; d != nil {
		out.CPUPerDeliveryWritev = ratioTo(r.CPUPerDeliveryUs, d.CPUPerWriteUs)
		if d.SlabPerSocketBytes > 0 {
			slab = d.SlabPerSocketBytes
		}
	}
	if d := f.DeliveryWritevRead; d != nil {
		out.CPUPerDeliveryReading = ratioTo(r.CPUPerDeliveryUs, d.CPUPerWriteUs)
	}
	if d := f.DeliveryWritevWake; d != nil {
		out.CPUPerDeliveryWaking = ratioTo(r.CPUPerDeliveryUs, d.CPUPerWriteUs)
	}
	out.RSSPerConnOverSlab = ratioTo(r.RSSPerConnBytes, slab)
	return out
}

// writeText prints the ratios for a human.
func (q *floorRatios) writeText(w io.Writer) {
	for _, x := range []struct {
		name string
		v    *float64
	}{
		{"CPU per handshake × handshake floor", q.CPUPerHandshake},
		{"CPU per delivery × writev floor", q.CPUPerDeliveryWritev},
		{"CPU per delivery × write floor", q.CPUPerDeliveryWrite},
		{"CPU per delivery × writev floor with reading peers", q.CPUPerDeliveryReading},
		{"CPU per delivery × writev floor waking a sleeping reader", q.CPUPerDeliveryWaking},
		{"CPU per call × write floor", q.CPUPerCall},
		{"RSS per connection × kernel slab per socket", q.RSSPerConnOverSlab},
	} {
		if x.v != nil {
			fmt.Fprintf(w, "  %s: %.2f\n", x.name, *x.v)
		}
	}
}

// broadcastFrameBytes is the size of the websocket frame a v1 subscriber
// gets for one event of payloadBytes published on topic through acme.topic
// or acme.relay: [8,"<topic>",{"msg":<event>}] and its header. With
// --with-floor the broadcast's floor writes frames of this size unless
// --frame-bytes is given.
func broadcastFrameBytes(topic string, payloadBytes int) int {
	n := len(`[8,"`) + len(topic) + len(`",{"msg":`) + payloadBytes + len(`}]`)
	switch {
	case n <= 125:
		return n + 2
	case n <= 65535:
		return n + 4
	default:
		return n + 10
	}
}
