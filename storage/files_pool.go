package storage

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Defaults for the files store's pool of readers.
const (
	// filesReadersPerCPU: a session read from the page cache costs a few
	// microseconds of kernel time, so one reader per CPU would keep the
	// CPUs busy; four leave room for readers waiting on a cold disk
	// without holding more than a few OS threads per CPU.
	filesReadersPerCPU = 4
	// filesMinReaders and filesMaxReaders clamp the default.
	filesMinReaders = 4
	filesMaxReaders = 64
	// DefaultFilesQueueSize is FilesOptions.QueueSize's default: a
	// handshake burst queues here rather than holding threads; at a few
	// microseconds per read the readers drain it within milliseconds.
	DefaultFilesQueueSize = 1024
)

// DefaultFilesReaders is FilesOptions.MaxConcurrent's default: four reader
// goroutines per CPU the Go scheduler runs on (GOMAXPROCS), at least 4 and
// at most 64.
func DefaultFilesReaders() int {
	return min(filesMaxReaders, max(filesMinReaders, filesReadersPerCPU*runtime.GOMAXPROCS(0)))
}

// filesJob is one lookup handed to a reader: a Read of id (its result in
// data and err) or, when run is set, other file system work that leaves its
// result where the caller's closure put it. done is closed once the job ran,
// which is what lets the caller read the result. A Read carries no closure:
// it is the hot path of every handshake.
type filesJob struct {
	ctx  context.Context
	id   string
	run  func(ctx context.Context)
	data []byte
	err  error
	done chan struct{}
}

// readerPool is a fixed set of goroutines doing blocking file system calls
// for a store, fed by a bounded queue. Go runs a goroutine blocked in a
// system call on an OS thread of its own, so doing those calls only on
// these goroutines bounds the threads they can hold to the pool size,
// however many lookups arrive at once.
//
// Goroutines: newReaderPool starts them; close stops and waits for them,
// after they ran every job already queued. When the queue is full, submit
// waits up to the busy wait for room and then fails with ErrBusy.
type readerPool struct {
	// mu guards closed and makes close wait for senders: a sender holds
	// the read lock while it may send on queue, close takes the write
	// lock before closing it.
	mu     sync.RWMutex
	closed bool
	queue  chan *filesJob
	wait   time.Duration
	size   int
	read   func(ctx context.Context, id string) ([]byte, error)
	wg     sync.WaitGroup // counts the readers
}

// newReaderPool starts size readers behind a queue of queue jobs; read is
// what they do for a Read.
func newReaderPool(size, queue int, wait time.Duration, read func(ctx context.Context, id string) ([]byte, error)) *readerPool {
	if wait <= 0 {
		wait = DefaultBusyWait
	}
	p := &readerPool{queue: make(chan *filesJob, queue), wait: wait, size: size, read: read}
	p.wg.Add(size)
	for range size {
		go p.reader()
	}
	return p
}

// reader runs jobs until the queue is closed and empty.
func (p *readerPool) reader() {
	defer p.wg.Done()
	for j := range p.queue {
		if j.run != nil {
			j.run(j.ctx)
		} else {
			j.data, j.err = p.read(j.ctx, j.id)
		}
		close(j.done)
	}
}

// readFile reads session id on a reader (see do).
func (p *readerPool) readFile(ctx context.Context, what, id string) ([]byte, error) {
	j := &filesJob{ctx: ctx, id: id, done: make(chan struct{})}
	if err := p.runJob(ctx, what, j); err != nil {
		return nil, err
	}
	return j.data, j.err
}

// do runs f on a reader and waits for it within ctx. It fails without
// running f when the pool is closed (ErrClosed) or stays full for the busy
// wait (ErrBusy), both wrapped with ErrUnavailable, or when ctx ends first;
// a job whose caller left is still run (f must check ctx itself) and its
// result dropped.
func (p *readerPool) do(ctx context.Context, what string, f func(ctx context.Context)) error {
	return p.runJob(ctx, what, &filesJob{ctx: ctx, run: f, done: make(chan struct{})})
}

// runJob queues j and waits for it within ctx.
func (p *readerPool) runJob(ctx context.Context, what string, j *filesJob) error {
	if err := p.submit(ctx, what, j); err != nil {
		return err
	}
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return unavailable(what, ctx.Err())
	}
}

// submit queues j, waiting at most the busy wait for room.
func (p *readerPool) submit(ctx context.Context, what string, j *filesJob) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return unavailable(what, ErrClosed)
	}
	select {
	case p.queue <- j:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return unavailable(what, err)
	}
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case p.queue <- j:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %s: %d lookups queued for %d readers: %w", ErrUnavailable, what, cap(p.queue), p.size, ErrBusy)
	case <-ctx.Done():
		return unavailable(what, ctx.Err())
	}
}

// close stops taking jobs, lets the readers finish the queued ones and
// waits for them. Later calls do nothing.
func (p *readerPool) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
