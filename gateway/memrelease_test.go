package gateway

import (
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wsgate/wsgate/gateway/config"
)

func TestBurstEndDecides(t *testing.T) {
	const mib = 1 << 20
	type step struct {
		at         time.Duration // since the first check
		conns      uint64
		free, live uint64 // reclaimable and live
		release    bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"nothing happens", []step{{0 * memReleaseEvery, 0, 64 * mib, 10 * mib, false}, {1 * memReleaseEvery, 0, 64 * mib, 10 * mib, false}}},
		{"burst then quiet", []step{{0 * memReleaseEvery, 100, 64 * mib, 10 * mib, false}, {1 * memReleaseEvery, 100, 64 * mib, 10 * mib, true}, {2 * memReleaseEvery, 100, 64 * mib, 10 * mib, false}}},
		{"still arriving", []step{{0 * memReleaseEvery, 100, 64 * mib, 10 * mib, false}, {1 * memReleaseEvery, 200, 64 * mib, 10 * mib, false}, {2 * memReleaseEvery, 300, 64 * mib, 10 * mib, false}, {3 * memReleaseEvery, 300, 64 * mib, 10 * mib, true}}},
		{"too little free", []step{{0 * memReleaseEvery, 100, 4 * mib, 1 * mib, false}, {1 * memReleaseEvery, 100, 4 * mib, 1 * mib, false}}},
		{"free small beside live", []step{{0 * memReleaseEvery, 100, 20 * mib, 100 * mib, false}, {1 * memReleaseEvery, 100, 20 * mib, 100 * mib, false}}},
		{"free a quarter of live", []step{{0 * memReleaseEvery, 100, 25 * mib, 100 * mib, false}, {1 * memReleaseEvery, 100, 25 * mib, 100 * mib, true}}},
		{"at most one a minute", []step{{0, 100, 64 * mib, 1 * mib, false}, {memReleaseEvery, 100, 64 * mib, 1 * mib, true}, {2 * memReleaseEvery, 101, 64 * mib, 1 * mib, false}, {3 * memReleaseEvery, 101, 64 * mib, 1 * mib, false}, {memReleaseEvery + memReleaseMinGap, 101, 64 * mib, 1 * mib, true}}},
		{"one look per burst", []step{{0 * memReleaseEvery, 100, 4 * mib, 1 * mib, false}, {1 * memReleaseEvery, 100, 4 * mib, 1 * mib, false}, {2 * memReleaseEvery, 100, 64 * mib, 1 * mib, false}, {3 * memReleaseEvery, 101, 64 * mib, 1 * mib, false}, {4 * memReleaseEvery, 101, 64 * mib, 1 * mib, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b burstEnd
			t0 := time.Now()
			for i, s := range tc.steps {
				got := b.check(t0.Add(s.at), s.conns, func() (uint64, uint64) { return s.free, s.live })
				if got != s.release {
					t.Fatalf("step %d (%d connections, free %d, live %d): release %v, want %v", i, s.conns, s.free, s.live, got, s.release)
				}
			}
		})
	}
}

// sink keeps the test's garbage reachable until it chooses to drop it.
var sink [][]byte

// TestMemoryReleasedAfterBurst: a real server returns its free heap once
// its connections stop arriving, and not before.
func TestMemoryReleasedAfterBurst(t *testing.T) {
	addr, srv := startServer(t, config.ModeGoroutine, func(c *config.Config) { c.Transport.ReleaseMemory = false })
	srv.wg.Add(1)
	go srv.releaseMemoryAfterBursts(20 * time.Millisecond)

	// Free heap well above the thresholds: 128 MiB made garbage.
	for range 128 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	time.Sleep(100 * time.Millisecond) // quiet intervals: no burst, no release
	if n := testutil.ToFloat64(srv.metrics.MemoryReleases); n != 0 {
		t.Fatalf("%v releases with no connection opened, want 0", n)
	}
	c, err := dialRaw(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(srv.metrics.MemoryReleases) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no release within 5 s of a connection followed by quiet intervals")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if after.HeapReleased <= before.HeapReleased {
		t.Errorf("HeapReleased %d before the release, %d after: nothing returned", before.HeapReleased, after.HeapReleased)
	}
	time.Sleep(100 * time.Millisecond)
	if n := testutil.ToFloat64(srv.metrics.MemoryReleases); n != 1 {
		t.Errorf("%v releases after one burst, want 1", n)
	}
}
