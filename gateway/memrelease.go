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
// interval and none during the next) and enough of the heap is free or
// garbage, the gateway forces one collection and returns the free pages
// (debug.FreeOSMemory). That costs one full collection per burst, at most
// one a minute, and nothing while connections keep arriving or while
// nothing happens.

// Defaults of the releaser.
const (
	// memReleaseEvery is how often the releaser looks: a burst has ended
	// when a whole interval saw no new connection.
	memReleaseEvery = 5 * time.Second
	// memReleaseMinFree is the least reclaimable heap worth a collection,
	// and memReleaseFreeShare the least share of the live heap
	// (reclaimable ≥ live / memReleaseFreeShare): below either, the
	// collection costs more than the pages are worth.
	memReleaseMinFree   = 8 << 20
	memReleaseFreeShare = 4
	// memReleaseMinGap spaces releases: with connections trickling in
	// (one every other interval) every interval could end a burst, and a
	// forced collection of a large heap costs about a second of CPU per
	// GiB of live heap. At most one per minute bounds that.
	memReleaseMinGap = time.Minute
)

// burstEnd decides when a burst of connections has ended and the free heap
// is worth returning. It is the releaser goroutine's state; nothing else
// touches it.
type burstEnd struct {
	lastConns   uint64    // the connection count at the previous check
	inBurst     bool      // connections were opened since the last release check
	lastRelease time.Time // when check last said to release
}

// check is called every interval, at now, with the number of connections
// ever opened and a reader of the heap's reclaimable and live bytes
// (called only when a burst has just ended). It reports whether to
// release now.
func (b *burstEnd) check(now time.Time, conns uint64, heap func() (reclaimable, live uint64)) bool {
	if conns != b.lastConns {
		b.lastConns, b.inBurst = conns, true
		return false // still arriving: wait for a quiet interval
	}
	if !b.inBurst {
		return false // quiet, and already looked since the last burst
	}
	if !b.lastRelease.IsZero() && now.Sub(b.lastRelease) < memReleaseMinGap {
		return false // too soon: look again at the next quiet interval
	}
	b.inBurst = false
	reclaimable, live := heap()
	if reclaimable < memReleaseMinFree || reclaimable < live/memReleaseFreeShare {
		return false
	}
	b.lastRelease = now
	return true
}

// heapReclaimable reads from runtime/metrics, which stops nothing, what a
// collection and release could return: the free pages not yet returned,
// plus the objects allocated beyond the live heap of the last collection
// (garbage a collection would free; an idle gateway allocates little, so
// no collection comes by itself and that garbage stays resident). live is
// the live heap of the last collection.
func heapReclaimable() (reclaimable, live uint64) {
	s := []runtimemetrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	runtimemetrics.Read(s)
	free, objects, live := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	if objects > live {
		free += objects - live
	}
	return free, live
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
		if !b.check(time.Now(), s.connSeq.Load(), heapReclaimable) {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		s.metrics.MemoryReleases.Inc()
		s.log.Debug("returned free heap to the OS after a burst of connections", "took", time.Since(start))
	}
}
