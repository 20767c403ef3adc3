//go:build !linux

package storage

import (
	"errors"
	"io"
	"os"
	"time"
)

// sessionFile is an open session file through os.File (files_linux.go has the raw version).
type sessionFile struct{ f *os.File }

// openSessionFile opens path read-only.
func openSessionFile(path string) (sessionFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|filesOpenFlags, 0)
	return sessionFile{f: f}, err
}

// stat returns the file's size and modification time and whether it is a
// regular file.
func (f sessionFile) stat() (size int64, mtime time.Time, regular bool, err error) {
	fi, err := f.f.Stat()
	if err != nil {
		return 0, time.Time{}, false, err
	}
	return fi.Size(), fi.ModTime(), fi.Mode().IsRegular(), nil
}

// readAt fills b from offset 0 until it is full or the file ends.
func (f sessionFile) readAt(b []byte) (int, error) {
	n, err := f.f.ReadAt(b, 0)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// close closes the file.
func (f sessionFile) close() { f.f.Close() }
