//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFloorScenario runs the floor scenario small, without a gateway, and
// checks what it reports: every write and handshake done and counted, CPU
// figures positive and consistent with each other (per unit × units = the
// total; one thread's CPU never above the wall time it ran), units as
// documented. Nothing here depends on how fast the machine is.
func TestFloorScenario(t *testing.T) {
	const pairs, rounds, handshakes = 20, 5, 200
	cpu := allowedCPU(t)
	args := []string{"--scenario", "floor", "--json", "--conns", "20", "--rounds", "5", "--handshakes", "200", "--concurrency", "4",
		// Pinned to a CPU this test may run on, which exercises the pinning.
		"--floor-cpu", strconv.Itoa(cpu)}
	rep := runFloorReport(t, args)
	if rep.Scenario != "floor" || rep.ErrorsTotal != 0 || rep.Gateway.PID != 0 || rep.Before != nil {
		t.Fatalf("scenario %q, errors %v, gateway %+v, before %+v: want a floor run with no gateway and no error",
			rep.Scenario, rep.Errors, rep.Gateway, rep.Before)
	}
	if len(rep.LoadAvg) != 3 {
		t.Errorf("load_avg %v, want three figures", rep.LoadAvg)
	}
	f := rep.Results.Floor
	if f == nil || f.Delivery == nil || f.DeliveryWritev == nil || f.Handshake == nil || f.CPU != cpu {
		t.Fatalf("floor results %+v: want both delivery phases and the handshake, on CPU %d", f, cpu)
	}

	// within reports whether got is want up to a relative rounding error.
	within := func(got, want float64) bool { return math.Abs(got-want) <= 1e-6*math.Max(math.Abs(want), 1e-9) }
	for _, d := range []*deliveryFloor{f.Delivery, f.DeliveryWritev} {
		if d.Pairs != pairs || d.Rounds != rounds || d.FrameBytes != 112 || d.Writes != pairs*rounds || d.WouldBlock != 0 || d.ShortWrites != 0 {
			t.Errorf("%s: %+v, want %d×%d complete writes of 112 bytes", d.Syscall, d, pairs, rounds)
		}
		if d.CPUSeconds <= 0 || d.CPUPerWriteUs <= 0 || !within(d.CPUPerWriteUs, d.CPUSeconds/float64(d.Writes)*1e6) {
			t.Errorf("%s: CPU %g s, %g µs per write over %d writes: want positive, per write = total / writes in µs", d.Syscall, d.CPUSeconds, d.CPUPerWriteUs, d.Writes)
		}
		if d.CPUSeconds > d.WallSeconds {
			t.Errorf("%s: one thread used %g s of CPU in %g s", d.Syscall, d.CPUSeconds, d.WallSeconds)
		}
		if d.UserSeconds < 0 || d.SysSeconds < 0 {
			t.Errorf("%s: user %g, sys %g", d.Syscall, d.UserSeconds, d.SysSeconds)
		}
		r := d.PerRound
		if r == nil || r.Min <= 0 || r.Min > r.Median || r.Median > r.Max || r.First < r.Min || r.First > r.Max || r.Last < r.Min || r.Last > r.Max {
			t.Errorf("%s: per-round summary %+v", d.Syscall, r)
		}
	}
	if f.Delivery.Syscall != "write" || f.DeliveryWritev.Syscall != "writev" {
		t.Errorf("syscalls %q, %q", f.Delivery.Syscall, f.DeliveryWritev.Syscall)
	}
	h := f.Handshake
	if h.Connections != handshakes || h.Concurrency != 4 || h.RequestBytes < 250 || h.RequestBytes > 400 || h.ResponseBytes != len(floorResponse) {
		t.Errorf("handshake %+v: want %d connections, 4 at a time, a ~300-byte request", h, handshakes)
	}
	if h.CPUSeconds <= 0 || !within(h.CPUPerHandshakeUs, h.CPUSeconds/float64(h.Connections)*1e6) || h.CPUSeconds > h.WallSeconds || h.PerSec <= 0 {
		t.Errorf("handshake CPU %g s, %g µs each, wall %g s, %g/s: want positive, consistent, one thread's CPU within the wall time",
			h.CPUSeconds, h.CPUPerHandshakeUs, h.WallSeconds, h.PerSec)
	}
	if h.ProcessCPUSeconds < h.CPUSeconds {
		t.Errorf("process CPU %g s below the server thread's %g s", h.ProcessCPUSeconds, h.CPUSeconds)
	}

	// The text report names the figures the JSON has.
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if code := run(ctx, []string{"--scenario", "floor", "--conns", "2", "--rounds", "1", "--floor-phases", "write"}, &out, &errOut); code != 0 {
		t.Fatalf("text run: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"delivery floor, write of 112 bytes: 2 pairs × 1 rounds, 2 complete writes", "CPU per write", "errors 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report %q lacks %q", out.String(), want)
		}
	}
	if strings.Contains(out.String(), "handshake floor") {
		t.Errorf("text report %q has a phase that did not run", out.String())
	}
}

// TestFloorTooManyPairs: pairs the descriptor limit cannot hold are refused
// before any socket is opened.
func TestFloorTooManyPairs(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max >= 2*maxConns+floorFDReserve {
		t.Skipf("the descriptor limit (%d) holds the most pairs the flags allow", rl.Max)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--scenario", "floor", "--conns", fmt.Sprint(maxConns), "--floor-phases", "write"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "file descriptors") {
		t.Fatalf("exit %d, stderr %q: want 1 and the descriptor limit named", code, errOut.String())
	}
}

// allowedCPU returns a CPU this process may run on.
func allowedCPU(t *testing.T) int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	t.Fatal("no CPU in this process' affinity mask")
	return -1
}

// TestFloorReadingPeers runs the writev phases with reading peers and with
// the sockets in an epoll small: every write is complete, every byte
// written reaches its reader, the epoll waiter sees at least each socket's
// first writable edge and its CPU is in the phase's.
func TestFloorReadingPeers(t *testing.T) {
	args := []string{"--scenario", "floor", "--json", "--conns", "20", "--rounds", "5", "--floor-phases", "writev-epoll,writev-read"}
	rep := runFloorReport(t, args)
	f := rep.Results.Floor
	if f == nil || f.DeliveryWritevRead == nil || f.DeliveryWritevEpoll == nil || f.Delivery != nil || f.DeliveryWritev != nil || f.Handshake != nil {
		t.Fatalf("floor results %+v: want the writev-epoll and writev-read phases only", f)
	}
	e := f.DeliveryWritevEpoll
	if e.Writes != 20*5 || e.EpollEvents < 20 || e.WaiterCPUSeconds < 0 || e.WaiterCPUSeconds > e.CPUSeconds || e.CPUPerWriteUs <= 0 {
		t.Errorf("writev-epoll %+v: want 100 writes, ≥ 20 events, the waiter's CPU within the phase's", e)
	}
	d := f.DeliveryWritevRead
	if d.Writes != 20*5 || d.ReadBytes != 20*5*112 || d.WouldBlock != 0 || d.ShortWrites != 0 || rep.ErrorsTotal != 0 {
		t.Errorf("%+v, errors %v: want 100 complete writes of 112 bytes, all read", d, rep.Errors)
	}
	if d.CPUSeconds <= 0 || d.CPUPerWriteUs <= 0 {
		t.Errorf("CPU %g s, %g µs per write: want positive", d.CPUSeconds, d.CPUPerWriteUs)
	}
}

// TestFloorWakingReader runs the writev-wake phase small: every write is
// complete and read, each paced after the last one's read, the rounds are
// capped, and the clock's cost is measured and taken out.
func TestFloorWakingReader(t *testing.T) {
	args := []string{"--scenario", "floor", "--json", "--conns", "20", "--rounds", "12", "--floor-phases", "writev-wake"}
	rep := runFloorReport(t, args)
	f := rep.Results.Floor
	if f == nil || f.DeliveryWritevWake == nil || f.DeliveryWritev != nil || f.DeliveryWritevRead != nil || f.Handshake != nil {
		t.Fatalf("floor results %+v: want the writev-wake phase only", f)
	}
	d := f.DeliveryWritevWake
	if d.Rounds != wakeMaxRounds || d.Writes != 20*wakeMaxRounds || d.ReadBytes != 20*wakeMaxRounds*112 || d.WouldBlock != 0 || d.ShortWrites != 0 || rep.ErrorsTotal != 0 {
		t.Errorf("%+v, errors %v: want %d rounds of 20 complete writes of 112 bytes, all read", d, rep.Errors, wakeMaxRounds)
	}
	if d.ClockCostUs <= 0 || d.CPUPerWriteUs <= 0 || d.PerRound == nil {
		t.Errorf("clock %g µs, %g µs per write, rounds %+v: want positive, with the rounds' spread", d.ClockCostUs, d.CPUPerWriteUs, d.PerRound)
	}
}

// runFloorReport runs the tool with args (a --json floor run, within a
// minute) and returns its report; a failed run or bad JSON fails t.
func runFloorReport(t *testing.T, args []string) report {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if code := run(ctx, args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return rep
}
