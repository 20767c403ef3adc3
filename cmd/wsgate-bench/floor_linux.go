//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// floor runs the floor scenario's phases (see floor.go) and fills
// rep.Results.Floor. No gateway is involved.
func (b *bench) floor(ctx context.Context, rep *report) error {
	tool0 := selfCPU()
	start := time.Now()
	defer func() {
		rep.ToolCPUSeconds = selfCPU() - tool0
		rep.WindowSeconds = time.Since(start).Seconds()
	}()
	var err error
	rep.Results.Floor, err = b.measureFloor(ctx)
	return err
}

// measureFloor runs the floor phases cfg.FloorPhases names, in their order,
// each bounded in time: the floor scenario itself, or the floor a gateway
// scenario measures first with --with-floor.
func (b *bench) measureFloor(ctx context.Context) (*floorResults, error) {
	cfg := b.cfg
	fr := &floorResults{CPU: cfg.FloorCPU}
	deliveries := cfg.floorPhase("write") || cfg.floorPhase("writev") || cfg.floorPhase("writev-read") || cfg.floorPhase("writev-epoll") || cfg.floorPhase("writev-wake")
	if deliveries {
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && uint64(2*cfg.FloorPairs+floorFDReserve) > rl.Cur {
			return fr, fmt.Errorf("floor: %d pairs need %d file descriptors, the limit is %d: lower --conns (floor) or --floor-pairs", cfg.FloorPairs, 2*cfg.FloorPairs+floorFDReserve, rl.Cur)
		}
	}
	phase, cancel := context.WithTimeout(ctx, floorPhaseBound*time.Second)
	defer cancel()
	var err error
	if cfg.floorPhase("write") {
		if fr.Delivery, err = b.deliveryFloor(phase, false); err != nil {
			return fr, fmt.Errorf("floor, write phase: %w", err)
		}
	}
	if cfg.floorPhase("writev") {
		if fr.DeliveryWritev, err = b.deliveryFloor(phase, true); err != nil {
			return fr, fmt.Errorf("floor, writev phase: %w", err)
		}
	}
	if cfg.floorPhase("writev-epoll") {
		if fr.DeliveryWritevEpoll, err = b.deliveryFloorEpoll(phase); err != nil {
			return fr, fmt.Errorf("floor, writev-epoll phase: %w", err)
		}
	}
	if cfg.floorPhase("writev-read") {
		if fr.DeliveryWritevRead, err = b.deliveryFloorReading(phase); err != nil {
			return fr, fmt.Errorf("floor, writev-read phase: %w", err)
		}
	}
	if cfg.floorPhase("writev-wake") {
		if fr.DeliveryWritevWake, err = b.deliveryFloorWaking(phase); err != nil {
			return fr, fmt.Errorf("floor, writev-wake phase: %w", err)
		}
	}
	if cfg.floorPhase("handshake") {
		if fr.Handshake, err = b.handshakeFloor(phase); err != nil {
			return fr, fmt.Errorf("floor, handshake phase: %w", err)
		}
	}
	return fr, ctx.Err()
}

// threadTimes is the calling OS thread's CPU time: Total from
// CLOCK_THREAD_CPUTIME_ID (exact: it includes the time since the last
// scheduler tick), User and Sys from getrusage(RUSAGE_THREAD), whose split
// is tick-based (and lags by up to a tick): use it as a proportion over long
// phases only.
type threadTimes struct{ Total, User, Sys time.Duration }

func threadCPU() threadTimes {
	var t threadTimes
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) == nil {
		t.Total = time.Duration(ts.Nano())
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) == nil {
		t.User, t.Sys = time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
	}
	return t
}

// cpuSince is the thread's exact CPU time since t0.
func cpuSince(t0 threadTimes) time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano()) - t0.Total
}

// onThread runs f on a goroutine locked to an OS thread of its own, pinned
// to cpu when cpu ≥ 0, and returns f's error. The goroutine never unlocks,
// so the (possibly pinned) thread exits with it instead of going back to
// the runtime.
func onThread(cpu int, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				done <- fmt.Errorf("pinning the measuring thread to CPU %d: %w", cpu, err)
				return
			}
		}
		done <- f()
	}()
	return <-done
}

// loopbackListener opens a blocking TCP listener on 127.0.0.1 (a free port)
// whose accept, and the reads of the sockets it accepts (they inherit it),
// give up after ioTimeout.
func loopbackListener(backlog int, ioTimeout time.Duration) (int, *unix.SockaddrInet4, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("socket: %w", err)
	}
	tv := unix.NsecToTimeval(ioTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	in4, ok := sa.(*unix.SockaddrInet4)
	if err != nil || !ok {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("getsockname: %v", err)
	}
	return fd, in4, nil
}

// accept4 accepts one connection, retrying when a signal interrupted the
// wait (the listener's timeout makes accept return EINTR even with
// SA_RESTART). EAGAIN means the timeout passed.
func accept4(lfd, flags int) (int, error) {
	for {
		fd, _, err := unix.Accept4(lfd, flags)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// connectLoopback connects a new blocking socket to sa. An interrupted
// connect goes on in the background: wait for it by connecting again until
// EISCONN.
func connectLoopback(sa *unix.SockaddrInet4) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	for i := 0; ; i++ {
		err = unix.Connect(fd, sa)
		switch {
		case err == nil, err == unix.EISCONN && i > 0:
			return fd, nil
		case (err == unix.EINTR || err == unix.EALREADY || err == unix.EINPROGRESS) && i < 1000:
			if i > 0 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		unix.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
}

// deliveryFloor opens cfg.Conns loopback pairs, then writes one frame of
// cfg.FrameBytes to the accepted end of each, cfg.Rounds times, on one
// thread whose CPU is measured; the connecting ends never read. With writev
// the frame goes as two slices (header, payload), as the gateway writes it.
func (b *bench) deliveryFloor(ctx context.Context, writev bool) (*deliveryFloor, error) {
	return b.deliveryPhase(ctx, writev, false, false)
}

// deliveryFloorEpoll is the writev phase with every writing socket
// registered, edge-triggered for input and output, in an epoll instance a
// thread on the measuring CPU waits on, as the gateway's sockets are in its
// event loop: the kernel's wake-ups of that waiter after each write (the
// peer's ACK frees write space) are then in the figure, the waiter's
// thread CPU added to the writer's.
func (b *bench) deliveryFloorEpoll(ctx context.Context) (*deliveryFloor, error) {
	return b.deliveryPhase(ctx, true, false, true)
}

// deliveryFloorReading is the writev phase with every peer read by a
// goroutine of this process through Go's netpoller, as the tool's clients
// read a gateway's frames: each write also wakes its reader.
func (b *bench) deliveryFloorReading(ctx context.Context) (*deliveryFloor, error) {
	return b.deliveryPhase(ctx, true, true, false)
}

// floorPairs are loopback connections for a delivery phase: writers are
// the accepted ends (non-blocking, TCP_NODELAY, as the gateway's), peers
// the connecting ends; a peer set to -1 was handed to someone who closes
// it.
type floorPairs struct {
	writers, peers []int
	// slabPerSocket is the kernel's slab memory per socket opened, before
	// anything was written (0 when /proc/meminfo did not say).
	slabPerSocket float64
}

// openFloorPairs opens n pairs; close them with close, even on error.
func openFloorPairs(ctx context.Context, n int) (*floorPairs, error) {
	p := &floorPairs{writers: make([]int, 0, n), peers: make([]int, 0, n)}
	lfd, sa, err := loopbackListener(min(n, 4096), floorIOTimeoutMs*time.Millisecond)
	if err != nil {
		return p, err
	}
	defer unix.Close(lfd)
	slab0 := slabBytes()
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		cfd, err := connectLoopback(sa)
		if err != nil {
			return p, fmt.Errorf("pair %d: %w", i, err)
		}
		p.peers = append(p.peers, cfd)
		sfd, err := accept4(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			return p, fmt.Errorf("pair %d: accept: %w", i, err)
		}
		p.writers = append(p.writers, sfd)
		// As the gateway does for every accepted socket.
		if err := unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return p, fmt.Errorf("pair %d: TCP_NODELAY: %w", i, err)
		}
	}
	if slab1 := slabBytes(); slab0 > 0 && slab1 > slab0 && n > 0 {
		p.slabPerSocket = float64(slab1-slab0) / float64(2*n)
	}
	return p, nil
}

// close closes every descriptor the pairs still own.
func (p *floorPairs) close() {
	for _, fd := range p.writers {
		unix.Close(fd)
	}
	for _, fd := range p.peers {
		if fd >= 0 { // -1: handed to a reader's net.Conn
			unix.Close(fd)
		}
	}
}

// deliveryPhase is one delivery phase (see deliveryFloor); reading starts a
// reader per peer before the rounds and checks that they read every byte.
func (b *bench) deliveryPhase(ctx context.Context, writev, reading, epolled bool) (*deliveryFloor, error) {
	cfg := b.cfg
	header, payload := floorFrame(cfg.FrameBytes)
	frame := append(append([]byte(nil), header...), payload...)
	iov := [][]byte{header, payload}
	d := &deliveryFloor{Syscall: "write", Pairs: cfg.FloorPairs, Rounds: cfg.Rounds, FrameBytes: len(frame)}
	if writev {
		d.Syscall = "writev"
	}
	if reading {
		d.Syscall = "writev, peers reading"
	}
	if epolled {
		d.Syscall = "writev, sockets in an epoll"
	}

	pairs, err := openFloorPairs(ctx, cfg.FloorPairs)
	defer pairs.close()
	if err != nil {
		return nil, err
	}
	writers, peers := pairs.writers, pairs.peers
	d.SlabPerSocketBytes = pairs.slabPerSocket

	var readers sync.WaitGroup
	var read atomic.Int64
	var readConns []net.Conn
	defer func() {
		for _, nc := range readConns {
			nc.Close()
		}
		readers.Wait()
	}()
	if reading {
		for i, fd := range peers {
			f := os.NewFile(uintptr(fd), "floor-peer")
			nc, err := net.FileConn(f) // a dup on Go's netpoller
			if err != nil {
				return nil, fmt.Errorf("pair %d: reader: %w", i, err)
			}
			// Only the dup stays open: the pairs keep to two descriptors.
			f.Close()
			peers[i] = -1
			readConns = append(readConns, nc)
			readers.Add(1)
			go func() {
				defer readers.Done()
				buf := make([]byte, 512)
				for {
					n, err := nc.Read(buf)
					read.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}

	var waiter *epollWaiter
	if epolled {
		if waiter, err = startEpollWaiter(cfg.FloorCPU, writers); err != nil {
			return nil, err
		}
		defer waiter.stop()
	}

	perRound := make([]float64, 0, cfg.Rounds)
	var total, user, sys time.Duration
	start := time.Now()
	err = onThread(cfg.FloorCPU, func() error {
		t0 := threadCPU()
		for r := 0; r < cfg.Rounds && ctx.Err() == nil; r++ {
			if r > 0 && cfg.FloorRoundGap > 0 {
				time.Sleep(cfg.FloorRoundGap) // no CPU: not in the figure
			}
			r0 := threadCPU()
			var ok int64
			for _, fd := range writers {
				n, err := writeFrame(fd, writev, iov, frame)
				switch {
				case err == unix.EAGAIN:
					d.WouldBlock++
				case err != nil:
					return fmt.Errorf("%s: %w", d.Syscall, err)
				case n < len(frame):
					d.ShortWrites++
				default:
					ok++
				}
			}
			if ok > 0 {
				perRound = append(perRound, float64(cpuSince(r0))/float64(time.Microsecond)/float64(ok))
			}
			d.Writes += ok
		}
		t1 := threadCPU()
		total, user, sys = t1.Total-t0.Total, t1.User-t0.User, t1.Sys-t0.Sys
		return nil
	})
	d.WallSeconds = time.Since(start).Seconds()
	if err != nil {
		return nil, err
	}
	if reading {
		// Every byte written reaches its reader (bounded wait: the
		// readers run on the other CPUs).
		want := d.Writes * int64(len(frame))
		for end := time.Now().Add(10 * time.Second); read.Load() < want && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		d.ReadBytes = read.Load()
		if d.ReadBytes != want {
			b.fail("floor_unread")
		}
	}
	b.failN("floor_would_block", d.WouldBlock)
	b.failN("floor_short_write", d.ShortWrites)
	if waiter != nil {
		wt, events, err := waiter.stop()
		if err != nil {
			return nil, err
		}
		total, user, sys = total+wt.Total, user+wt.User, sys+wt.Sys
		d.WaiterCPUSeconds, d.EpollEvents = wt.Total.Seconds(), events
	}
	d.CPUSeconds, d.UserSeconds, d.SysSeconds = total.Seconds(), user.Seconds(), sys.Seconds()
	if d.Writes > 0 {
		per := func(s float64) float64 { return s / float64(d.Writes) * 1e6 }
		d.CPUPerWriteUs, d.UserPerWriteUs, d.SysPerWriteUs = per(d.CPUSeconds), per(d.UserSeconds), per(d.SysSeconds)
	}
	d.PerRound = summarizeRounds(perRound)
	return d, ctx.Err()
}

// Pacing of the writev-wake phase.
const (
	// wakeMaxRounds bounds its rounds: each write waits for its read, so
	// a round of 9,000 pairs takes about half a second.
	wakeMaxRounds = 10
	// wakeSettle is how long the writer waits after the reader has read
	// before the next write, so that the reader is back asleep in
	// epoll_wait (it calls it right after counting what it read).
	wakeSettle = 30 * time.Microsecond
	// wakeReadTimeout bounds the wait for one write's read.
	wakeReadTimeout = 2 * time.Second
	// wakeClockSamples is how many empty clock pairs measure the clock's
	// own cost.
	wakeClockSamples = 20000
)

// deliveryFloorWaking is the writev phase with every write landing on a
// sleeping reader, as a gateway's write to its subscribers does at one
// publish per second: there the subscribers' reader (the load tool, on
// the other CPU) often reads each event faster than the next is written
// and goes back to sleep, so a write wakes it. One thread, pinned to
// another CPU of the tool's than the writer's, waits in epoll_wait on
// every peer and reads what arrives; the writer writes to one pair, waits until that frame is
// read and wakeSettle more, then writes the next. The writer's CPU is
// taken around each writev alone (its thread CPU clock before and after,
// less the cost of that pair of clock reads, measured in the phase): the
// waits are not in it. Run the tool on another CPU than --floor-cpu, or
// the reader cannot be asleep on another CPU when the write lands.
func (b *bench) deliveryFloorWaking(ctx context.Context) (*deliveryFloor, error) {
	cfg := b.cfg
	header, payload := floorFrame(cfg.FrameBytes)
	iov := [][]byte{header, payload}
	frameLen := len(header) + len(payload)
	rounds := min(cfg.Rounds, wakeMaxRounds)
	d := &deliveryFloor{Syscall: "writev, each waking a sleeping reader", Pairs: cfg.FloorPairs, Rounds: rounds, FrameBytes: frameLen}

	pairs, err := openFloorPairs(ctx, cfg.FloorPairs)
	defer pairs.close()
	if err != nil {
		return nil, err
	}
	d.SlabPerSocketBytes = pairs.slabPerSocket

	// The writer and the reader are each locked to a thread, and the
	// reader blocks in epoll_wait holding its P: with fewer Ps than
	// threads that need one, each would wait for the runtime to take a
	// P back.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4)))
	r, err := startSleepingReader(pairs.peers, otherCPU(cfg.FloorCPU))
	if err != nil {
		return nil, err
	}
	defer r.stop()

	var spent time.Duration // wall time in writev, clock reads included
	perRound := make([]float64, 0, rounds)
	start := time.Now()
	err = onThread(cfg.FloorCPU, func() error {
		d.ClockCostUs = float64(clockPairCost()) / float64(time.Microsecond)
		want := int64(0)
		for round := 0; round < rounds && ctx.Err() == nil; round++ {
			var roundCPU time.Duration // wall time in writev this round
			var ok int64
			for _, fd := range pairs.writers {
				c0 := time.Now()
				n, err := writeFrame(fd, true, iov, nil)
				roundCPU += time.Since(c0)
				switch {
				case err == unix.EAGAIN:
					d.WouldBlock++
					continue
				case err != nil:
					return fmt.Errorf("%s: %w", d.Syscall, err)
				case n < frameLen:
					d.ShortWrites++
				default:
					ok++
				}
				want += int64(n)
				if !r.waitRead(want, wakeReadTimeout) {
					return fmt.Errorf("%s: the reader read %d of %d bytes within %v", d.Syscall, r.read.Load(), want, wakeReadTimeout)
				}
				for t := time.Now(); time.Since(t) < wakeSettle; {
				}
			}
			spent += roundCPU
			if ok > 0 {
				perRound = append(perRound, (float64(roundCPU)/float64(ok)-float64(time.Duration(d.ClockCostUs*1e3)))/float64(time.Microsecond))
			}
			d.Writes += ok
		}
		return nil
	})
	d.WallSeconds = time.Since(start).Seconds()
	if err != nil {
		return nil, err
	}
	d.ReadBytes = r.read.Load()
	if d.ReadBytes != d.Writes*int64(frameLen) {
		b.fail("floor_unread")
	}
	b.failN("floor_would_block", d.WouldBlock)
	b.failN("floor_short_write", d.ShortWrites)
	if d.Writes > 0 {
		clock := time.Duration(d.ClockCostUs*1e3) * time.Duration(d.Writes)
		d.CPUSeconds = (spent - clock).Seconds()
		d.CPUPerWriteUs = d.CPUSeconds / float64(d.Writes) * 1e6
	}
	d.PerRound = summarizeRounds(perRound)
	return d, ctx.Err()
}

// writeFrame is one writev of iov (writev) or write of frame, retried on
// EINTR: what every delivery phase does per delivery.
func writeFrame(fd int, writev bool, iov [][]byte, frame []byte) (int, error) {
	for {
		var n int
		var err error
		if writev {
			n, err = unix.Writev(fd, iov)
		} else {
			n, err = unix.Write(fd, frame)
		}
		if err != unix.EINTR {
			return n, err
		}
	}
}

// clockPairCost is the median cost of reading the clock twice with
// nothing between: what each measured writev of the writev-wake phase
// carries beside the write.
func clockPairCost() time.Duration {
	samples := make([]time.Duration, wakeClockSamples)
	for i := range samples {
		c0 := time.Now()
		samples[i] = time.Since(c0)
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}

// sleepingReader is one thread that waits in epoll_wait (level-triggered
// EPOLLIN) on the peers and reads everything that arrives (writev-wake).
type sleepingReader struct {
	epfd   int
	read   atomic.Int64 // bytes read so far, counted after each batch of events
	halt   atomic.Bool
	done   chan error
	closed bool
}

// otherCPU is a CPU of this thread's affinity mask other than cpu, for the
// writev-wake reader: pinned away from the writer, as the tool's
// subscribers are from the gateway (threads the runtime starts from a
// pinned thread inherit its pin, so not pinning is not enough). -1 when
// cpu is not pinned or there is no other.
func otherCPU(cpu int) int {
	if cpu < 0 {
		return -1
	}
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return -1
	}
	for i := range 1024 {
		if i != cpu && set.IsSet(i) {
			return i
		}
	}
	return -1
}

// startSleepingReader registers peers (made non-blocking) and starts the
// reading thread, pinned to cpu when cpu ≥ 0.
func startSleepingReader(peers []int, cpu int) (*sleepingReader, error) {
	r := &sleepingReader{done: make(chan error, 1)}
	var err error
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	for _, fd := range peers {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(r.epfd)
			return nil, fmt.Errorf("non-blocking peer: %w", err)
		}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			unix.Close(r.epfd)
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	go func() {
		r.done <- onThread(cpu, func() error {
			evs := make([]unix.EpollEvent, 64)
			buf := make([]byte, 4096)
			for !r.halt.Load() {
				n, err := unix.EpollWait(r.epfd, evs, 100)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return fmt.Errorf("epoll_wait: %w", err)
				}
				var got int64
				for _, e := range evs[:n] {
					for {
						m, err := unix.Read(int(e.Fd), buf)
						if m > 0 {
							got += int64(m)
						}
						if m <= 0 || err != nil {
							break
						}
					}
				}
				r.read.Add(got)
			}
			return nil
		})
	}()
	return r, nil
}

// waitRead spins until the reader has read want bytes in all, or d passed.
func (r *sleepingReader) waitRead(want int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for r.read.Load() < want {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// stop ends the reading thread (within its 100 ms wait) and closes the
// epoll instance. Idempotent.
func (r *sleepingReader) stop() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.halt.Store(true)
	err := <-r.done
	unix.Close(r.epfd)
	return err
}

// handshakeFloor serves cfg.Handshakes connections on one measured thread
// (accept4, read the request, write the fixed 101, close) while
// cfg.Concurrency client goroutines connect, send floorRequest, read the
// response to its end and close with RST (no TIME_WAIT, as the connect
// scenario's clients).
func (b *bench) handshakeFloor(ctx context.Context) (*handshakeFloor, error) {
	cfg := b.cfg
	n := cfg.Handshakes
	h := &handshakeFloor{Concurrency: min(cfg.Concurrency, n), RequestBytes: len(floorRequest), ResponseBytes: len(floorResponse)}
	lfd, sa, err := loopbackListener(4096, floorIOTimeoutMs*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer unix.Close(lfd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.Port)

	// failed counts client connections that never got a whole response;
	// the server stops once served+failed reaches n (or accept times out).
	var served, failed atomic.Int64
	resp := []byte(floorResponse)
	proc0 := selfCPU()
	start := time.Now()
	srv := make(chan error, 1)
	go func() {
		srv <- onThread(cfg.FloorCPU, func() error {
			buf := make([]byte, 4096)
			t0 := threadCPU()
			defer func() {
				t1 := threadCPU()
				h.CPUSeconds = (t1.Total - t0.Total).Seconds()
				h.UserSeconds, h.SysSeconds = (t1.User - t0.User).Seconds(), (t1.Sys - t0.Sys).Seconds()
			}()
			for served.Load()+failed.Load() < int64(n) && ctx.Err() == nil {
				fd, err := accept4(lfd, unix.SOCK_CLOEXEC)
				if err == unix.EAGAIN {
					continue // the loop condition decides: a client may have failed meanwhile
				}
				if err != nil {
					return fmt.Errorf("accept4: %w", err)
				}
				if serveFloorConn(fd, buf, resp) {
					served.Add(1)
				} else {
					b.fail("floor_server_io")
				}
				unix.Close(fd)
			}
			return nil
		})
	}()

	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < h.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if next.Add(1) > int64(n) {
					return
				}
				if ctx.Err() != nil {
					failed.Add(1)
					b.fail("not_attempted")
					continue
				}
				if err := floorClient(ctx, addr, resp); err != nil {
					failed.Add(1)
					b.fail("floor_client_" + kindOf(err))
				}
			}
		}()
	}
	wg.Wait()
	err = <-srv
	h.WallSeconds = time.Since(start).Seconds()
	h.ProcessCPUSeconds = selfCPU() - proc0
	if err != nil {
		return nil, err
	}
	h.Connections = served.Load()
	if h.Connections > 0 {
		h.CPUPerHandshakeUs = h.CPUSeconds / float64(h.Connections) * 1e6
		h.PerSec = float64(h.Connections) / h.WallSeconds
	}
	return h, ctx.Err()
}

// serveFloorConn reads one request (to its blank line, at most len(buf)
// bytes) from the blocking socket fd and writes resp; false when either
// failed.
func serveFloorConn(fd int, buf, resp []byte) bool {
	got := 0
	for got < len(buf) {
		m, err := unix.Read(fd, buf[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			return false
		}
		got += m
		if bytes.HasSuffix(buf[:got], []byte("\r\n\r\n")) {
			break
		}
	}
	for {
		m, err := unix.Write(fd, resp)
		if err == unix.EINTR {
			continue
		}
		return err == nil && m == len(resp)
	}
}

// floorClient makes one handshake-floor connection: it sends the request,
// reads until the server closes and checks it got the whole response.
func floorClient(ctx context.Context, addr string, resp []byte) error {
	d := net.Dialer{Timeout: handshakeTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	tc := nc.(*net.TCPConn)
	defer func() {
		tc.SetLinger(0)
		tc.Close()
	}()
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if _, err := io.WriteString(tc, floorRequest); err != nil {
		return err
	}
	got, err := io.ReadAll(io.LimitReader(tc, int64(2*len(resp))))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, resp) {
		return errBadFloorResponse
	}
	return nil
}

// slabBytes is the kernel's slab memory, from /proc/meminfo, or 0.
func slabBytes() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Slab:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// epollWaiter is a thread waiting on an epoll instance holding the writing
// sockets (writev-epoll), as the gateway's event loop waits on its own.
type epollWaiter struct {
	epfd, stopfd int
	events       atomic.Int64
	done         chan error
	cpu          threadTimes // the thread's CPU from its start to stop
	stopped      bool
}

// startEpollWaiter registers fds (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, as the
// gateway) and starts the waiting thread, pinned to cpu (-1: not pinned).
func startEpollWaiter(cpu int, fds []int) (*epollWaiter, error) {
	w := &epollWaiter{done: make(chan error, 1)}
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	if w.stopfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(w.epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	add := func(fd int, events uint32) error {
		return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
	}
	if err := add(w.stopfd, unix.EPOLLIN); err != nil {
		w.close()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	for _, fd := range fds {
		if err := add(fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET); err != nil {
			w.close()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	go func() {
		w.done <- onThread(cpu, func() error {
			t0 := threadCPU()
			evs := make([]unix.EpollEvent, 256)
			for {
				n, err := unix.EpollWait(w.epfd, evs, -1)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return fmt.Errorf("epoll_wait: %w", err)
				}
				stop := false
				for _, e := range evs[:n] {
					if e.Fd == int32(w.stopfd) {
						stop = true
					} else {
						// Counted even in the batch that also stops the
						// thread: a waiter that had not run before stop
						// (a short phase) gets every pending event there.
						w.events.Add(1)
					}
				}
				if stop {
					t1 := threadCPU()
					w.cpu = threadTimes{Total: t1.Total - t0.Total, User: t1.User - t0.User, Sys: t1.Sys - t0.Sys}
					return nil
				}
			}
		})
	}()
	return w, nil
}

// stop ends the waiting thread and returns its CPU and the events it saw;
// it closes the instance. Idempotent (later calls return zeros).
func (w *epollWaiter) stop() (threadTimes, int64, error) {
	if w.stopped {
		return threadTimes{}, 0, nil
	}
	w.stopped = true
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(w.stopfd, one)
	err := <-w.done
	w.close()
	return w.cpu, w.events.Load(), err
}

func (w *epollWaiter) close() {
	unix.Close(w.stopfd)
	unix.Close(w.epfd)
}
