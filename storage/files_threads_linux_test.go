//go:build linux

package storage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The thread test fires a burst of concurrent lookups at real session files
// in a child process (a fresh process: the Go runtime never ends an idle OS
// thread, so a process' thread count only grows and is its peak, and
// earlier tests must not have raised it already) and reads the child's
// thread count afterwards.
const (
	burstEnv      = "WSGATE_TEST_FILES_BURST" // "pool" or "direct": what the child runs
	burstDirEnv   = "WSGATE_TEST_FILES_BURST_DIR"
	burstLookups  = 2000
	burstFiles    = 32
	burstReaders  = 2
	burstMaxProcs = 2
	// threadSlack: threads the runtime has besides the ones running Go
	// code (GOMAXPROCS) and the ones blocked in the readers' system calls:
	// sysmon, the template thread, the main thread parked in the test
	// runner, and one spinning thread looking for work while others hand
	// Ps over; one more under the race detector.
	threadSlack = 5
)

// TestFilesStoreThreadsStayFlat: 2000 concurrent Reads through the pool
// leave the process with at most readers + GOMAXPROCS + threadSlack OS
// threads. The same burst read on the callers' goroutines (the pool
// bypassed; before the pool the store did that, 64 lookups at a time) is run
// too and its count logged: how much it grows depends on the machine, its
// load and its disk, so it is not asserted.
func TestFilesStoreThreadsStayFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 8 MiB of session files")
	}
	dir := t.TempDir()
	data := bytes.Repeat([]byte("s"), burstFileSize())
	for i := range burstFiles {
		writeSessionFile(t, filepath.Join(dir, burstID(i)), data, time.Now())
	}
	bound := burstReaders + burstMaxProcs + threadSlack
	pool := runBurst(t, dir, "pool")
	direct := runBurst(t, dir, "direct")
	t.Logf("threads after %d concurrent reads: %d through %d readers (bound %d), %d on the callers' goroutines", burstLookups, pool, burstReaders, bound, direct)
	if pool > bound {
		t.Errorf("%d OS threads after the burst through the pool; want at most %d readers + %d GOMAXPROCS + %d slack = %d", pool, burstReaders, burstMaxProcs, threadSlack, bound)
	}
	if direct <= bound {
		t.Logf("reads on the callers' goroutines stayed within the bound too: this machine does not show the growth the pool prevents")
	}
}

// burstFileSize: sessions of 256 KiB, so that a read takes long enough
// (hundreds of microseconds, like a read under load or from a cold disk) for
// the Go scheduler to hand the reader's P to another thread; reads of 1 KiB
// from the page cache end before it ever does. The race detector makes big
// reads slow, and the pool's bound does not depend on the size: 4 KiB then.
func burstFileSize() int {
	if raceEnabled {
		return 4 << 10
	}
	return 256 << 10
}

// burstID names the session file i (sess_<id>).
func burstID(i int) string { return fmt.Sprintf("sess_burst%04d", i) }

// runBurst runs the child in mode and returns its thread count.
func runBurst(t *testing.T, dir, mode string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFilesStoreBurstChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), burstEnv+"="+mode, burstDirEnv+"="+dir, "GOMAXPROCS="+strconv.Itoa(burstMaxProcs))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("burst child (%s): %v\n%s", mode, err, out)
	}
	_, after, ok := strings.Cut(string(out), "burst-threads=")
	if !ok {
		t.Fatalf("burst child (%s) printed no thread count:\n%s", mode, out)
	}
	n, err := strconv.Atoi(strings.Fields(after)[0])
	if err != nil {
		t.Fatalf("burst child (%s): %v\n%s", mode, err, out)
	}
	return n
}

// TestFilesStoreBurstChild is the child process of
// TestFilesStoreThreadsStayFlat; run by itself it does nothing.
func TestFilesStoreBurstChild(t *testing.T) {
	mode, dir := os.Getenv(burstEnv), os.Getenv(burstDirEnv)
	if mode == "" {
		t.Skip("the child process of TestFilesStoreThreadsStayFlat")
	}
	if got := runtime.GOMAXPROCS(0); got != burstMaxProcs {
		t.Fatalf("GOMAXPROCS = %d, want %d", got, burstMaxProcs)
	}
	pinToOneCPU(t)
	s := openFilesStore(t, FilesOptions{Dir: dir, MaxSize: 2 * int64(burstFileSize()), MaxConcurrent: burstReaders, QueueSize: burstLookups})
	read := s.Read
	if mode == "direct" {
		// The pool bypassed: each caller's goroutine does its own
		// system calls.
		read = s.read
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		start  = make(chan struct{})
	)
	for i := range burstLookups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := read(ctx, strings.TrimPrefix(burstID(i%burstFiles), "sess_"))
			if err != nil || len(got) != burstFileSize() {
				failed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed", n, burstLookups)
	}
	fmt.Printf("burst-threads=%d\n", procThreads(t))
}

// pinToOneCPU keeps every thread of this process (and so every thread it
// creates later, which inherits its creator's mask) on one CPU: its threads
// then take turns, a system call often waits for the CPU, and the Go
// scheduler meets the slow calls it hands a P away from, as on a loaded
// production machine, without the test needing a slow disk.
func pinToOneCPU(t *testing.T) {
	t.Helper()
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Fatal(err)
	}
	var one unix.CPUSet
	for cpu := 0; cpu < 1024; cpu++ {
		if mine.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &one); err != nil {
			t.Fatalf("pin thread %d: %v", tid, err)
		}
	}
}

// procThreads is this process' OS thread count (/proc/self/status).
func procThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}
