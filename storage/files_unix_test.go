//go:build unix

package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFilesStoreOnlyRegularFiles: PHP only creates regular files, opens them
// with O_NOFOLLOW, and a FIFO planted under a session name must not hang the
// reader.
func TestFilesStoreOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("not a session"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "sess_symlink01")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "sess_fifo01"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sess_dir01"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := openFilesStore(t, FilesOptions{Dir: dir})
	for _, id := range []string{"symlink01", "fifo01", "dir01"} {
		t.Run(id, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := s.Read(ctx, id)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Read = %v; want ErrNotFound", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Read hung")
			}
		})
	}
}

// TestFilesStoreErrorMapping: a file the gateway may not read is a deployment
// problem (503), not a missing session (401); the path, which holds the id,
// stays out of the message. (Tests run as root, which reads files whatever
// their mode, so the errors are fed in directly.)
func TestFilesStoreErrorMapping(t *testing.T) {
	s := &FilesStore{}
	path := "/var/lib/php/sessions/sess_secretid01"
	tests := []struct {
		err  error
		want error
	}{
		{&os.PathError{Op: "open", Path: path, Err: syscall.EACCES}, ErrUnavailable},
		{&os.PathError{Op: "open", Path: path, Err: syscall.EIO}, ErrUnavailable},
		{&os.PathError{Op: "open", Path: path, Err: syscall.ENOENT}, ErrNotFound},
		{&os.PathError{Op: "open", Path: path, Err: syscall.ENOTDIR}, ErrNotFound},
		{&os.PathError{Op: "open", Path: path, Err: syscall.ENAMETOOLONG}, ErrNotFound},
		{&os.PathError{Op: "open", Path: path, Err: syscall.ELOOP}, ErrNotFound},
	}
	for _, tt := range tests {
		got := s.fsError(tt.err)
		if !errors.Is(got, tt.want) {
			t.Errorf("fsError(%v) = %v; want %v", tt.err, got, tt.want)
		}
		if strings.Contains(got.Error(), "secretid01") {
			t.Errorf("fsError(%v) = %q leaks the session id", tt.err, got)
		}
	}
}

// TestFilesStoreConcurrentPHPWrites runs reads against a writer that rewrites
// the file the way PHP's ps_files_write does (ftruncate when shorter, then
// pwrite at 0) every half millisecond, without any lock on our side. Every successful read must be
// one of the written payloads; an empty or changing file may only give
// ErrNotFound or ErrUnavailable.
func TestFilesStoreConcurrentPHPWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sess_racy01")
	short := []byte(`a|s:5:"short";`)
	long := []byte(`a|s:60:"` + strings.Repeat("L", 60) + `";b|i:42;`)
	writeSessionFile(t, path, long, time.Now())
	s := openFilesStore(t, FilesOptions{Dir: dir})

	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	// Stop the writer however the test ends, so that it never reports to
	// a finished test.
	stopWriter := sync.OnceFunc(func() { close(stop); <-writerDone })
	defer stopWriter()
	go func() {
		defer close(writerDone)
		size := int64(len(long))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := short
			if i%2 == 1 {
				data = long
			}
			if int64(len(data)) < size {
				if err := w.Truncate(0); err != nil {
					t.Error(err)
					return
				}
			}
			if _, err := w.WriteAt(data, 0); err != nil {
				t.Error(err)
				return
			}
			size = int64(len(data))
			// PHP writes once at the end of a request; requests are
			// milliseconds apart even on a busy session.
			time.Sleep(500 * time.Microsecond)
		}
	}()

	var ok, retried int
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		got, err := s.Read(context.Background(), "racy01")
		switch {
		case err == nil:
			if !bytes.Equal(got, short) && !bytes.Equal(got, long) {
				t.Fatalf("torn read: %q", got)
			}
			ok++
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnavailable):
			retried++
		default:
			t.Fatalf("Read: %v", err)
		}
	}
	stopWriter()
	t.Logf("%d whole reads, %d reads that gave up after retries", ok, retried)
	if ok == 0 {
		t.Fatal("no read succeeded while PHP-style writes were running")
	}
}
