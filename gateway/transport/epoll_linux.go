//go:build linux

package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Epoll mode. One event loop goroutine waits in epoll_wait on the listener
// and every connection (edge-triggered). A readable connection is put on the
// read queue, where one of transport.workers goroutines reads it until
// EAGAIN into that worker's own buffer and feeds the connection's
// incremental frame reader; a connection with queued output is put on the
// write queue, where one of transport.writers goroutines writes it with
// writev until done or EAGAIN (then EPOLLOUT brings it back). Handshakes
// are read the same way and, once the request is complete, upgraded on a
// short-lived goroutine bounded by limits.max_handshakes (the session lookup
// may block). So an idle connection holds no goroutine and no buffer: only
// its conn, epConn and WAMP session.
//
// Both queues hold each connection at most once, so they are bounded by the
// number of connections, and pushing never blocks the pusher.

const (
	epollSupported = true
	defaultMode    = ModeEpoll
)

// Phases of an epConn.
const (
	phaseRequest int32 = iota // reading the HTTP upgrade request
	phaseUpgrade              // upgrading on a handshake goroutine
	phaseOpen                 // websocket established
	phaseLinger               // refused: answered, write side shut, discarding what the client still sends
)

// Read scheduling states of an epConn (epConn.rstate).
const (
	readIdle    int32 = iota // waiting for EPOLLIN
	readQueued               // on the read queue or being read
	readPending              // being read, and another EPOLLIN came meanwhile
)

// eventLoop is the epoll machinery of one Server.
type eventLoop struct {
	t    *Transport
	epfd int
	// epFile is epfd wrapped for Go's network poller: the loop waits in
	// the runtime's poller (see run), not in a blocking epoll_wait. It
	// owns epfd from newEventLoop on (its finalizer closes it).
	epFile *os.File
	wakefd int   // eventfd: written to stop the loop
	lfd    int   // our dup of the listener's descriptor; -1 once closed; guarded by lmu
	lfdNum int32 // lfd's number, fixed, to recognise its events without the lock

	mu sync.Mutex // guards conns and gen
	// conns holds every socket from accept to close at its descriptor's
	// number (descriptors are small and dense; a map took ≈ 36 B per idle
	// connection, the slice 8–16, issue 19).
	conns []*epConn
	gen   uint32

	reads, writes readyQueue
	// upgrades hands a handshake to a parked upgrader (unbuffered: a send
	// succeeds only when one waits); parked counts them, at most
	// maxParkedUpgraders. A goroutine per handshake started with a small
	// stack and grew it (the session decode, the upgrade) every time:
	// runtime.newstack/copystack took 10 % of the gateway's CPU per
	// handshake (issue 19). A parked upgrader keeps its grown stack.
	upgrades chan *epConn
	parked   atomic.Int32
	stopping atomic.Bool
	done     chan struct{} // closed by stop: ends the sweeper
	lmu      sync.Mutex    // guards lfd
}

// epConn is the epoll transport of one connection.
type epConn struct {
	loop  *eventLoop
	fd    int
	gen   int32
	phase atomic.Int32
	c     atomic.Pointer[Conn] // set when the upgrade succeeded

	// hs is what the socket needs only until it is established or closed:
	// its request, its place in the pending list, the linger of a refusal.
	// Set at accept, dropped once the websocket is open, so an idle
	// connection does not carry it.
	hs atomic.Pointer[handshakeState]

	rstate    atomic.Int32
	outEvents atomic.Uint32 // EPOLLOUT edges seen; see flush
	blocked   bool          // waiting for EPOLLOUT; guarded by c.mu
	// owned is set while a worker reads the connection (or its upgrade
	// runs); a kick then only sets flushPending and that goroutine writes
	// the queue itself when it is done, sparing a hand-off to a writer
	// for the common reply-to-a-request case. Both guarded by c.mu.
	owned, flushPending bool
	blockedAt           atomic.Int64 // unix nanoseconds when the last write hit EAGAIN, 0 when not blocked

	fdMu     sync.Mutex // guards fdRefs and fdClosed
	fdRefs   int
	fdClosed bool
}

// handshakeState is an epConn's state from accept until its websocket is
// open (or its socket closed).
type handshakeState struct {
	request  requestBuf   // the upgrade request so far (phaseRequest only)
	started  time.Time    // accepted: the handshake deadline runs from here
	remote   net.Addr     // the peer's address, from accept (no getpeername later)
	pend     pendingEntry // its place in the pending list (phaseRequest only)
	lingerAt atomic.Int64 // unix nanoseconds phaseLinger began
	lingered int          // bytes discarded in phaseLinger; touched by the reading worker only
}

// serveEpoll runs the event loop on ln until Stop.
func (t *Transport) serveEpoll(ln *net.TCPListener) error {
	l, err := newEventLoop(t, ln)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if t.stopped || !t.accepting {
		t.mu.Unlock()
		l.closeAll()
		return nil
	}
	t.loop = l
	t.wg.Add(t.cfg.Workers + t.cfg.Writers + 1)
	t.mu.Unlock()
	for range t.cfg.Workers {
		go l.readWorker()
	}
	for range t.cfg.Writers {
		go l.writeWorker()
	}
	go l.sweep()
	return l.run()
}

func newEventLoop(t *Transport, ln *net.TCPListener) (*eventLoop, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("epoll: listener descriptor: %w", err)
	}
	lfd := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) {
		// A dup shares the open file (and its O_NONBLOCK) with the runtime's
		// descriptor; ours is closed when accepting stops.
		lfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("epoll: listener descriptor: %w", err)
	}
	if dupErr != nil {
		return nil, fmt.Errorf("epoll: dup listener: %w", dupErr)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(lfd)
		return nil, fmt.Errorf("epoll: create: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(lfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll: eventfd: %w", err)
	}
	// Non-blocking, so that os.NewFile registers it with the runtime's
	// poller: an epoll descriptor is readable while events are ready.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(lfd)
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll: non-blocking: %w", err)
	}
	l := &eventLoop{t: t, epfd: epfd, epFile: os.NewFile(uintptr(epfd), "epoll"), wakefd: wakefd, lfd: lfd, lfdNum: int32(lfd), done: make(chan struct{}), upgrades: make(chan *epConn)}
	l.reads.init()
	l.writes.init()
	for _, fd := range []int{wakefd, lfd} {
		// Level-triggered: a listener whose accept failed for lack of
		// descriptors is retried on the next wait.
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			l.closeAll()
			return nil, fmt.Errorf("epoll: register: %w", err)
		}
	}
	return l, nil
}

// run is the event loop goroutine: it waits for events and routes them.
//
// It waits in Go's network poller, where the epoll descriptor is
// registered like a socket, and collects the events with a non-blocking
// epoll_wait. A blocking epoll_wait would keep the loop's thread and P in
// a system call: with GOMAXPROCS=1 (a gateway pinned to one core) the
// read workers and upgraders it just woke could then run only once the
// runtime's monitor took the P back (20 µs to 10 ms later, and a thread
// hand-off each time), which left half the core idle in a connect storm
// (issue 19: 5k handshakes/s in epoll mode against 11k in goroutine
// mode). Parked in the poller the loop costs no thread, and it runs when
// the scheduler has nothing else to do or the monitor polls.
func (l *eventLoop) run() error {
	events := make([]unix.EpollEvent, 256)
	rc, err := l.epFile.SyscallConn()
	if err != nil {
		return fmt.Errorf("epoll: descriptor: %w", err)
	}
	for {
		var n int
		var werr error
		collect := func(fd uintptr) bool {
			for {
				n, werr = unix.EpollWait(int(fd), events, 0)
				if !errors.Is(werr, unix.EINTR) {
					break
				}
			}
			return n > 0 || werr != nil // none ready: wait in the poller
		}
		if err := rc.Read(collect); err != nil {
			// Not pollable (no runtime poller for it): block in the
			// kernel instead, as the loop did before.
			n, werr = unix.EpollWait(l.epfd, events, -1)
			if errors.Is(werr, unix.EINTR) {
				continue
			}
		}
		if werr != nil {
			return fmt.Errorf("epoll_wait: %w", werr)
		}
		if l.route(events[:n]) {
			return nil
		}
	}
}

// route hands each event to its connection; it reports whether the loop
// must stop.
func (l *eventLoop) route(events []unix.EpollEvent) (stop bool) {
	for i := range events {
		ev := &events[i]
		switch ev.Fd {
		case int32(l.wakefd):
			if l.stopping.Load() {
				return true
			}
			continue
		case l.lfdNum:
			l.accept()
			continue
		}
		ec := l.conn(ev.Fd)
		if ec == nil || ec.gen != ev.Pad {
			continue // closed since; the descriptor may be reused
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			ec.scheduleRead()
		}
		if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			ec.onWritable()
		}
	}
	return false
}

// accept takes every pending connection off the listener.
func (l *eventLoop) accept() {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	t := l.t
	for l.lfd >= 0 {
		// syscall's Accept4, not x/sys/unix's: the latter asks the socket
		// for its protocol (a getsockopt) on every IPv4/IPv6 accept.
		fd, sa, err := syscall.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
				if errors.Is(err, unix.EAGAIN) {
					return
				}
				continue
			case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
				// Out of descriptors: the listener stays readable, so
				// slow the retry instead of spinning.
				t.log.Warn("accept failed, backing off", "err", err)
				time.Sleep(10 * time.Millisecond)
				return
			default:
				t.log.Error("accept failed", "err", err)
				return
			}
		}
		remote := sockaddrToAddr(sa)
		if answer := t.admitSocket(remote); answer != nil {
			unix.Write(fd, answer) // a fresh socket takes this at once
			unix.Close(fd)
			continue
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		l.mu.Lock()
		l.gen++
		ec := &epConn{loop: l, fd: fd, gen: int32(l.gen)}
		hs := &handshakeState{started: time.Now(), remote: remote}
		hs.pend.owner = ec
		ec.hs.Store(hs)
		if fd >= len(l.conns) {
			// Amortised doubling; every slot up to the capacity is
			// usable (and nil until a socket takes it).
			grown := slices.Grow(l.conns, fd+1-len(l.conns))
			l.conns = grown[:cap(grown)]
		}
		l.conns[fd] = ec
		l.mu.Unlock()
		if !t.listPending(&hs.pend) {
			ec.closeFD() // not accepting any more
			continue
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: ec.gen}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			t.log.Error("epoll register failed", "err", err)
			ec.closeFD()
		}
	}
}

// evict implements evictable: a newer socket needs this one's place in the
// pending list, or accepting stopped.
func (ec *epConn) evict() { ec.answerAndClose(responseOverloaded) }

// stopAccepting closes our listener descriptor; Shutdown calls it first.
func (l *eventLoop) stopAccepting() {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	if l.lfd >= 0 {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lfd, nil)
		unix.Close(l.lfd)
		l.lfd = -1
	}
}

// stop ends the loop, its workers and every connection still open.
func (l *eventLoop) stop() {
	l.stopAccepting()
	if l.stopping.Swap(true) {
		return
	}
	close(l.done)
	var one [8]byte
	one[7] = 1 // eventfd counter, native (little) endian is fine for any nonzero value
	unix.Write(l.wakefd, one[:])
	l.reads.close()
	l.writes.close()
	for _, ec := range l.snapshot(nil) {
		if c := ec.c.Load(); c != nil {
			c.Kill(ReasonDrain)
		} else {
			ec.closeFD()
		}
	}
}

// conn returns the socket at descriptor fd, nil if none.
func (l *eventLoop) conn(fd int32) *epConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if int(fd) < len(l.conns) {
		return l.conns[fd]
	}
	return nil
}

// snapshot appends every socket to buf and returns it.
func (l *eventLoop) snapshot(buf []*epConn) []*epConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ec := range l.conns {
		if ec != nil {
			buf = append(buf, ec)
		}
	}
	return buf
}

// closeAll releases the loop's own descriptors; the loop goroutine has
// ended or never started.
func (l *eventLoop) closeAll() {
	l.stopAccepting()
	unix.Close(l.wakefd)
	l.epFile.Close()
}

// scheduleRead puts ec on the read queue unless it is already there or
// being read; then it only records that more arrived.
func (ec *epConn) scheduleRead() {
	for {
		switch ec.rstate.Load() {
		case readIdle:
			if ec.rstate.CompareAndSwap(readIdle, readQueued) {
				ec.loop.reads.push(ec)
				return
			}
		case readQueued:
			if ec.rstate.CompareAndSwap(readQueued, readPending) {
				return
			}
		default:
			return
		}
	}
}

// readWorker is one of transport.workers goroutines.
func (l *eventLoop) readWorker() {
	defer l.t.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		ec, ok := l.reads.pop()
		if !ok {
			return
		}
		l.read(ec, buf)
	}
}

// goIdle ends a worker's read of ec once the socket is drained: ec goes
// idle (the next EPOLLIN schedules it) unless an edge came while it was
// read, in which case it stays queued and goIdle reports false: read on.
func (ec *epConn) goIdle() bool {
	if ec.rstate.CompareAndSwap(readQueued, readIdle) {
		return true
	}
	ec.rstate.Store(readQueued)
	return false
}

// maxReadsPerTurn bounds how long one busy connection keeps a worker before
// it goes to the back of the queue.
const maxReadsPerTurn = 16

// read reads ec until EAGAIN (or its turn ends) and hands the bytes on.
// Replies queued meanwhile are written by this worker when it is done.
func (l *eventLoop) read(ec *epConn, buf []byte) {
	if c := ec.c.Load(); c != nil && ec.phase.Load() == phaseOpen {
		ec.own(c)
		defer ec.disown(c)
	}
	for turn := 0; ; turn++ {
		if turn == maxReadsPerTurn {
			l.reads.push(ec) // still readQueued: requeue for fairness
			return
		}
		if !ec.acquire() {
			return
		}
		n, err := unix.Read(ec.fd, buf)
		ec.release()
		if n > 0 {
			if !l.consume(ec, buf[:n]) {
				return // closing or upgrading: no more reads are scheduled here
			}
			if n == len(buf) || !ec.goIdle() {
				continue
			}
			// A short read emptied the socket's receive queue: no need
			// for a read that only says EAGAIN (one system call per
			// message saved, issue 19). Whatever arrives after it
			// raises a new edge (Linux signals every arrival on an
			// edge-triggered socket), which goIdle or the loop sees.
			return
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			if ec.goIdle() {
				return
			}
			continue
		}
		// EOF (n == 0) or a socket error.
		if c := ec.c.Load(); c != nil && ec.phase.Load() == phaseOpen {
			c.readEnded()
		} else if ph := ec.phase.Load(); ph == phaseRequest || ph == phaseLinger {
			if hs := ec.hs.Load(); ph == phaseRequest && hs != nil && l.t.pending.remove(&hs.pend) {
				l.t.handshakeEnded(OutcomeBadRequest) // gave up before its request was complete
			}
			ec.closeFD()
		}
		return
	}
}

// consume handles bytes read from ec. It returns false when this worker
// must stop reading ec.
func (l *eventLoop) consume(ec *epConn, data []byte) bool {
	switch ec.phase.Load() {
	case phaseOpen:
		return ec.c.Load().feed(data)
	case phaseRequest:
		return l.consumeRequest(ec, data)
	case phaseLinger:
		hs := ec.hs.Load()
		hs.lingered += len(data)
		if hs.lingered > lingerBytes {
			ec.closeFD() // it keeps sending: enough
			return false
		}
		return true
	}
	return false // bytes before our 101: dropped, as the client must wait for it
}

// consumeRequest collects the upgrade request; once complete it starts the
// handshake goroutine. It returns false when this worker must stop reading
// ec.
func (l *eventLoop) consumeRequest(ec *epConn, data []byte) bool {
	t := l.t
	hs := ec.hs.Load()
	complete, tooLarge := hs.request.add(data, t.cfg.MaxHeaderBytes)
	if tooLarge {
		if t.pending.remove(&hs.pend) {
			t.limit(LimitHeaderBytes)
			t.handshakeEnded(OutcomeBadRequest)
			ec.answerAndClose(responseHeaderTooLarge)
		}
		return true // go on reading: discarding, so the answer is not lost to a reset
	}
	if !complete {
		return true
	}
	if !t.pending.remove(&hs.pend) {
		return true // evicted or timed out meanwhile: answered, now discarding
	}
	if !t.acquireHandshake() {
		ec.answerAndClose(responseOverloaded)
		return true
	}
	ec.phase.Store(phaseUpgrade)
	select {
	case l.upgrades <- ec: // a parked upgrader takes it
	default:
		t.wg.Add(1)
		go l.upgrader(ec)
	}
	return false
}

// Upgraders kept parked between handshakes, and how long one waits for the
// next before it ends: enough for a connect storm with a hundred or so
// handshakes in flight (at 32, a storm of 128 at a time still started
// most upgrades on a fresh goroutine: newstack went from 12 % to 5–8 % of
// the CPU, not to 0), few enough that their stacks (8–16 KiB each, 2 MiB
// at most) do not matter, and they end when the storm is over.
const (
	maxParkedUpgraders = 128
	upgraderIdle       = 2 * time.Second
)

// upgrader runs the upgrade of ec, then parks for the next handshake
// (l.upgrades) unless maxParkedUpgraders already wait; it ends after
// upgraderIdle without one, or when the transport stops. The number of
// upgrades running is bounded by the handshake slots (acquireHandshake),
// not here.
func (l *eventLoop) upgrader(ec *epConn) {
	t := l.t
	defer t.wg.Done()
	var idle *time.Timer
	for {
		l.upgrade(ec)
		if l.parked.Add(1) > maxParkedUpgraders {
			l.parked.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(upgraderIdle)
		} else {
			idle.Reset(upgraderIdle)
		}
		select {
		case ec = <-l.upgrades:
			l.parked.Add(-1)
			idle.Stop()
		case <-idle.C:
			l.parked.Add(-1)
			return
		case <-t.baseCtx.Done():
			l.parked.Add(-1)
			idle.Stop()
			return
		}
	}
}

// upgrade runs the upgrade of the collected request and opens the
// connection; it is the only goroutine that may block on the host's Admit
// and Open for ec, and holds a handshake slot meanwhile.
func (l *eventLoop) upgrade(ec *epConn) {
	t := l.t
	state := ec.hs.Load()
	deadline := state.started.Add(t.cfg.HandshakeTimeout)
	resp, hs, deflate := t.upgrade(state.request.b, state.remote, deadline)
	state.request = requestBuf{}
	if hs == nil {
		t.releaseHandshake()
		ec.answerAndClose(resp)
		// Nobody reads ec since its request completed: discard from here.
		ec.rstate.Store(readQueued)
		l.reads.push(ec)
		return
	}
	c := newConn(t, ec, deflate)
	ec.c.Store(c)
	ec.own(c)        // the 101 and what Open sends are written from here
	c.queueRaw(resp) // the 101 goes out before anything the host sends
	opened := t.open(c, hs)
	// The slot bounds the host's Admit and Open; it is free before the 101
	// goes out, so a client that got its 101 finds it free for the next.
	t.releaseHandshake()
	t.handshakeEnded(hs.Outcome())
	ec.disown(c)
	if !opened {
		return
	}
	ec.phase.Store(phaseOpen)
	ec.hs.Store(nil) // an open connection does not carry its handshake
	// Bytes may have arrived while we upgraded, and with edge triggering
	// no new event announces them: read now.
	ec.rstate.Store(readQueued)
	l.reads.push(ec)
}

// answerAndClose answers a refused handshake and closes the socket the
// way HTTP servers do (lingering close): it writes the answer, shuts the
// write side (the client reads the answer, then EOF) and discards what the
// client still sends until it closes, lingerBytes were discarded, or
// lingerTime passed (the sweeper). Closing at once with unread bytes would
// make the kernel answer with a reset, which can destroy the answer in the
// client's receive buffer before it reads it: a client that sent a huge
// header would never see its 431. The answer is small; if the socket cannot
// take it at once it is dropped.
func (ec *epConn) answerAndClose(b []byte) {
	if !ec.acquire() {
		return
	}
	unix.Write(ec.fd, b)
	unix.Shutdown(ec.fd, unix.SHUT_WR)
	ec.release()
	ec.hs.Load().lingerAt.Store(time.Now().UnixNano())
	ec.phase.Store(phaseLinger)
}

// kick implements connIO: queue ec for a writer, or leave it to the
// goroutine that owns ec right now.
func (ec *epConn) kick(c *Conn) {
	if ec.blocked {
		return // EPOLLOUT will bring it back
	}
	if ec.owned {
		ec.flushPending = true
		return
	}
	ec.loop.writes.push(ec)
}

// own marks the calling goroutine as the one that will flush what its
// work queues on ec (see owned).
func (ec *epConn) own(c *Conn) {
	c.mu.Lock()
	ec.owned = true
	c.mu.Unlock()
}

// disown ends own and writes what was queued meanwhile.
func (ec *epConn) disown(c *Conn) {
	c.mu.Lock()
	ec.owned = false
	pending := ec.flushPending
	ec.flushPending = false
	c.mu.Unlock()
	if pending {
		ec.flush()
	}
}

// onWritable handles an EPOLLOUT edge.
func (ec *epConn) onWritable() {
	ec.outEvents.Add(1)
	c := ec.c.Load()
	if c == nil {
		return
	}
	c.mu.Lock()
	if ec.blocked {
		ec.blocked = false
		ec.blockedAt.Store(0)
		ec.loop.writes.push(ec)
	}
	c.mu.Unlock()
}

// writeWorker is one of transport.writers goroutines.
func (l *eventLoop) writeWorker() {
	defer l.t.wg.Done()
	for {
		ec, ok := l.writes.pop()
		if !ok {
			return
		}
		ec.flush()
	}
}

// flush writes the queue of ec until it is empty or the socket is full.
func (ec *epConn) flush() {
	c := ec.c.Load() // set before anything can be queued
	written := 0
	for {
		batch := c.nextBatch(written)
		if batch == nil {
			return
		}
		seen := ec.outEvents.Load()
		rest, n, err := ec.writev(batch)
		written = n
		if err != nil {
			c.Kill(ReasonWriteError)
			return
		}
		if len(rest) == 0 {
			recycleBatch(batch) // all written: nothing of it is requeued
			continue
		}
		c.requeue(rest, written)
		written = 0
		c.mu.Lock()
		if ec.outEvents.Load() != seen {
			// The socket became writable while we wrote: go on.
			c.mu.Unlock()
			continue
		}
		ec.blocked = true // flushing stays set: Send will not kick again
		ec.blockedAt.Store(time.Now().UnixNano())
		c.mu.Unlock()
		return
	}
}

// iovMax is Linux's IOV_MAX: the most slices one writev takes.
const iovMax = 1024

// writev writes batch until done or EAGAIN and returns what is left and
// how many bytes went out.
func (ec *epConn) writev(batch [][]byte) (rest [][]byte, written int, err error) {
	obs := ec.loop.t.obs
	for len(batch) > 0 {
		if !ec.acquire() {
			return nil, written, net.ErrClosed
		}
		start := time.Now()
		n, err := unix.Writev(ec.fd, batch[:min(len(batch), iovMax)])
		ec.release()
		if n > 0 {
			obs.Wrote(n, time.Since(start))
			written += n
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				return batch, written, nil
			}
			return nil, written, err
		}
		for n > 0 {
			if n >= len(batch[0]) {
				n -= len(batch[0])
				batch[0] = nil // drop the reference to a shared payload
				batch = batch[1:]
			} else {
				batch[0] = batch[0][n:]
				n = 0
			}
		}
	}
	return nil, written, nil
}

// closeSocket implements connIO.
func (ec *epConn) closeSocket(c *Conn) {
	ec.closeFD()
	c.socketClosed()
}

// acquire takes a reference on the descriptor for one system call, so that
// it is not closed (and its number reused by another connection) meanwhile.
func (ec *epConn) acquire() bool {
	ec.fdMu.Lock()
	defer ec.fdMu.Unlock()
	if ec.fdClosed {
		return false
	}
	ec.fdRefs++
	return true
}

func (ec *epConn) release() {
	ec.fdMu.Lock()
	defer ec.fdMu.Unlock()
	ec.fdRefs--
	if ec.fdClosed && ec.fdRefs == 0 {
		drainAndClose(ec.fd)
	}
}

func (ec *epConn) isClosed() bool {
	ec.fdMu.Lock()
	defer ec.fdMu.Unlock()
	return ec.fdClosed
}

// closeFD unregisters and closes the descriptor (once the last system call
// on it returns) and forgets ec.
func (ec *epConn) closeFD() {
	ec.fdMu.Lock()
	if ec.fdClosed {
		ec.fdMu.Unlock()
		return
	}
	ec.fdClosed = true
	l := ec.loop
	if hs := ec.hs.Load(); hs != nil && ec.phase.Load() == phaseRequest {
		l.t.pending.remove(&hs.pend)
	}
	l.mu.Lock()
	if ec.fd < len(l.conns) && l.conns[ec.fd] == ec {
		l.conns[ec.fd] = nil
	}
	l.mu.Unlock()
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ec.fd, nil)
	if ec.fdRefs == 0 {
		drainAndClose(ec.fd)
	}
	ec.fdMu.Unlock()
}

// sweep enforces the deadlines that have no goroutine waiting on them: the
// handshake deadline of requests still arriving, the idle timeout, and the
// write timeout of connections blocked on a full socket.
func (l *eventLoop) sweep() {
	t := l.t
	defer t.wg.Done()
	cfg := t.cfg
	period := min(cfg.HandshakeTimeout, cfg.IdleTimeout, cfg.WriteTimeout) / 4
	period = min(max(period, 10*time.Millisecond), time.Second)
	tick := time.NewTicker(period)
	defer tick.Stop()
	var all []*epConn
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		all = l.snapshot(all[:0])
		now := time.Now()
		for _, ec := range all {
			switch ec.phase.Load() {
			case phaseRequest:
				// hs is nil once the websocket is open, which may have
				// happened since the phase was read.
				if hs := ec.hs.Load(); hs != nil && now.Sub(hs.started) > cfg.HandshakeTimeout && t.pending.remove(&hs.pend) {
					t.limit(LimitHandshakeTime)
					t.handshakeEnded(OutcomeBadRequest)
					ec.answerAndClose(responseRequestTimeout)
				}
			case phaseLinger:
				if hs := ec.hs.Load(); hs != nil && now.Sub(time.Unix(0, hs.lingerAt.Load())) > lingerTime {
					ec.closeFD()
				}
			case phaseOpen:
				c := ec.c.Load()
				if at := ec.blockedAt.Load(); at != 0 && now.Sub(time.Unix(0, at)) > cfg.WriteTimeout {
					t.limit(LimitWriteTimeout)
					c.Kill(ReasonWriteTimeout)
				} else if now.Sub(time.Unix(0, c.lastRead.Load())) > cfg.IdleTimeout && !c.Closing() {
					t.limit(LimitIdleTimeout)
					c.Close(CloseGoingAway, "idle timeout", ReasonIdleTimeout)
				}
			}
		}
		clear(all)
	}
}

// readyQueue is a FIFO of connections that need a worker. Each connection
// is in it at most once (the read state or the write flag guarantees that),
// so its length is bounded by the number of connections and push never
// blocks.
type readyQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []*epConn
	head   int
	closed bool
}

func (q *readyQueue) init() { q.cond.L = &q.mu }

func (q *readyQueue) push(ec *epConn) {
	q.mu.Lock()
	q.items = append(q.items, ec)
	q.mu.Unlock()
	q.cond.Signal()
}

// pop waits for a connection; ok is false once the queue is closed.
func (q *readyQueue) pop() (*epConn, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) {
		if q.closed {
			return nil, false
		}
		q.cond.Wait()
	}
	ec := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return ec, true
}

func (q *readyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func sockaddrToAddr(sa syscall.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// drainAndClose discards what the client sent and we did not read (say the
// rest of a refused frame) before closing: closing a socket with unread
// data makes the kernel answer with RST, and a client that gets RST may
// lose our close frame still in its receive buffer. Bounded: at most 64 KiB
// that are already there, no waiting.
func drainAndClose(fd int) {
	var buf [4096]byte
	for range 16 {
		n, err := unix.Read(fd, buf[:])
		if n <= 0 || err != nil {
			break
		}
	}
	unix.Close(fd)
}
