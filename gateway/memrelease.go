package gateway

import (
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"time"
)

// Returning memory after a burst of connections (transport.release_memory).
//
// A connect storm (a deploy, a network blip, the morning) allocates far
// more than the connections keep: request buffers, session decodes,
// upgrade scratch. The Go runtime collects it but keeps the freed pages,
// returning them to the kernel only down to about its heap goal (twice the
// live heap by default), so an idle gateway's RSS stays near twice what its
// connections hold (issue 19: 2.5–2.7 KB of RSS per idle connection for
// 1.5 KB of live heap). RSS is what a Kubernetes memory limit counts.
//
// So once a burst has ended (connections were opened during one check
// interval and none during the next) and the heap holds enough free
// pages, the gateway forces one collection and returns the free pages
// (debug.FreeOSMemory). That costs one full collection per burst, and
// nothing while connections keep arriving or while nothing happens.

// Defaults of the releaser.
const (
	// memReleaseEvery is how often the releaser looks: a burst has ended
	// when a whole interval saw no new connection.
	memReleaseEvery = 5 * time.Second
	// memReleaseMinFree is the least free heap worth returning, and
	// memReleaseFreeShare the least share of the live heap (free ≥ live /
	// memReleaseFreeShare): below either, the collection costs more than
	// the pages are worth.
	memReleaseMinFree   = 8 << 20
	memReleaseFreeShare = 4
)

// burstEnd decides when a burst of connections has ended and the free heap
// is worth returning. It is the releaser goroutine's state; nothing else
// touches it.
type burstEnd struct {
	lastConns uint64 // the connection count at the previous check
	inBurst   bool   // connections were opened since the last release check
}

// check is called every interval with the number of connections ever
// opened and the heap's free and live bytes (read only when needed: free
// and live are called lazily). It reports whether to release now.
func (b *burstEnd) check(conns uint64, heap func() (free, live uint64)) bool {
	if conns != b.lastConns {
		b.lastConns, b.inBurst = conns, true
		return false // still arriving: wait for a quiet interval
	}
	if !b.inBurst {
		return false // quiet, and already looked since the last burst
	}
	b.inBurst = false
	free, live := heap()
	return free >= memReleaseMinFree && free >= live/memReleaseFreeShare
}

// heapFreeLive reads the heap's free (not yet returned) and live bytes
// from runtime/metrics, which stops nothing.
func heapFreeLive() (free, live uint64) {
	s := []runtimemetrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	runtimemetrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// releaseMemoryAfterBursts runs until Shutdown (bgStop) and looks every
// interval; Serve starts it when transport.release_memory is set, and s.wg
// counts it.
func (s *Server) releaseMemoryAfterBursts(interval time.Duration) {
	defer s.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	b := burstEnd{lastConns: s.connSeq.Load()}
	for {
		select {
		case <-s.bgStop:
			return
		case <-tick.C:
		}
		if !b.check(s.connSeq.Load(), heapFreeLive) {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		s.metrics.MemoryReleases.Inc()
		s.log.Debug("returned free heap to the OS after a burst of connections", "took", time.Since(start))
	}
}
