package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// blockReaders parks n jobs on s's pool until the returned release is
// called; it returns once n readers run them.
func blockReaders(t *testing.T, s *FilesStore, n int) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	running := make(chan struct{}, n)
	for range n {
		go s.pool.do(context.Background(), "park", func(context.Context) {
			running <- struct{}{}
			<-gate
		})
	}
	for range n {
		select {
		case <-running:
		case <-time.After(10 * time.Second):
			t.Fatal("the parked jobs never reached a reader")
		}
	}
	released := false
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	return release
}

// TestFilesStorePoolBusy: with every reader busy and the queue full, a
// lookup waits BusyWait for room and fails with ErrBusy (and
// ErrUnavailable); the observer hears "busy". Once the readers are free the
// lookups queued meanwhile are answered.
func TestFilesStorePoolBusy(t *testing.T) {
	dir := t.TempDir()
	data := []byte(`a|i:1;`)
	writeSessionFile(t, filepath.Join(dir, "sess_queued01"), data, time.Now())
	obs := &countingObserver{}
	s := openFilesStore(t, FilesOptions{Dir: dir, MaxConcurrent: 2, QueueSize: 1, BusyWait: 20 * time.Millisecond, Observer: obs})
	release := blockReaders(t, s, 2)

	// One lookup fits in the queue and waits there for a reader.
	queued := make(chan error, 1)
	go func() {
		got, err := s.Read(context.Background(), "queued01")
		if err == nil && string(got) != string(data) {
			err = errors.New("wrong data: " + string(got))
		}
		queued <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); len(s.pool.queue) < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lookup never queued")
		}
	}
	for _, lookup := range []func() error{
		func() error { _, err := s.Read(context.Background(), "busy01"); return err },
		func() error { _, err := s.ReadMany(context.Background(), []string{"busy01", "busy02"}); return err },
		func() error { return s.Ping(context.Background()) },
	} {
		if err := lookup(); !errors.Is(err, ErrBusy) || !errors.Is(err, ErrUnavailable) || Result(err) != ResultBusy {
			t.Errorf("lookup with the queue full = %v; want ErrBusy", err)
		}
	}
	release()
	if err := <-queued; err != nil {
		t.Fatalf("queued Read = %v", err)
	}
	if obs.count("read busy") != 1 || obs.count("read_many busy") != 1 || obs.count("ping busy") != 1 || obs.count("read ok") != 1 {
		t.Errorf("observer: %v", obs.lookups)
	}
}

// TestFilesStorePoolContext: a lookup waiting for a reader gives up when its
// context ends, and the reader that picks its job up later does no I/O for
// it.
func TestFilesStorePoolContext(t *testing.T) {
	dir := t.TempDir()
	writeSessionFile(t, filepath.Join(dir, "sess_late01"), []byte(`a|i:1;`), time.Now())
	s := openFilesStore(t, FilesOptions{Dir: dir, MaxConcurrent: 1})
	release := blockReaders(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Read(ctx, "late01"); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) || Result(err) != ResultTimeout {
		t.Fatalf("Read past its deadline = %v", err)
	}
	// The job is still queued; once run it must see its context ended.
	ran := make(chan error, 1)
	j := &filesJob{ctx: ctx, done: make(chan struct{}), run: func(ctx context.Context) {
		_, err := s.read(ctx, "late01")
		ran <- err
	}}
	if err := s.pool.submit(context.Background(), "test", j); err != nil {
		t.Fatal(err)
	}
	release()
	if err := <-ran; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read for a caller that left = %v; want its context's error, no I/O", err)
	}
}

// TestFilesStoreCloseStopsReaders: Close waits for the readers, answers the
// queued lookups with ErrClosed, and refuses later ones.
func TestFilesStoreCloseStopsReaders(t *testing.T) {
	dir := t.TempDir()
	writeSessionFile(t, filepath.Join(dir, "sess_queued01"), []byte(`a|i:1;`), time.Now())
	s, err := NewFilesStore(FilesOptions{Dir: dir, MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	release := blockReaders(t, s, 1)
	queued := make(chan error, 1)
	go func() { _, err := s.Read(context.Background(), "queued01"); queued <- err }()
	for deadline := time.Now().Add(10 * time.Second); len(s.pool.queue) < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lookup never queued")
		}
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	// Close cannot return while a reader is still busy.
	select {
	case <-closed:
		t.Fatal("Close returned while a reader was busy")
	case <-time.After(20 * time.Millisecond):
	}
	release()
	<-closed
	if err := <-queued; !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("lookup queued at Close = %v; want ErrClosed", err)
	}
	if _, err := s.Read(context.Background(), "queued01"); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}
	if err := s.pool.do(context.Background(), "test", func(context.Context) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("a job after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestDefaultFilesReaders(t *testing.T) {
	n := DefaultFilesReaders()
	if n < filesMinReaders || n > filesMaxReaders {
		t.Fatalf("DefaultFilesReaders() = %d", n)
	}
	s := openFilesStore(t, FilesOptions{Dir: t.TempDir()})
	if s.pool.size != n || cap(s.pool.queue) != DefaultFilesQueueSize {
		t.Errorf("default pool: %d readers, queue %d", s.pool.size, cap(s.pool.queue))
	}
	if _, err := NewFilesStore(FilesOptions{Dir: t.TempDir(), QueueSize: -1}); err == nil {
		t.Error("negative QueueSize accepted")
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping without the directory = %v", err)
	}
}
