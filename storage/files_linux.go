//go:build linux

package storage

import (
	"io/fs"
	"syscall"
	"time"
)

// sessionFile is an open session file, used through raw system calls:
// os.OpenFile would also try to register the file with the runtime's
// network poller (an epoll_ctl that fails for a regular file), allocate a
// File with a finalizer and, per Stat, a FileInfo. A handshake on the
// files store opens one file (issue 19: 4 % of a handshake's CPU went to
// that wrapping).
type sessionFile struct{ fd int }

// openSessionFile opens path read-only with filesOpenFlags. Errors are
// *fs.PathError, as os.OpenFile's, so fsError maps them the same way.
func openSessionFile(path string) (sessionFile, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|filesOpenFlags, 0)
		if err == nil {
			return sessionFile{fd: fd}, nil
		}
		if err != syscall.EINTR {
			return sessionFile{fd: -1}, &fs.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// stat returns the file's size and modification time and whether it is a
// regular file.
func (f sessionFile) stat() (size int64, mtime time.Time, regular bool, err error) {
	var st syscall.Stat_t
	for {
		err = syscall.Fstat(f.fd, &st)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, time.Time{}, false, &fs.PathError{Op: "stat", Path: "session file", Err: err}
	}
	return st.Size, time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)), st.Mode&syscall.S_IFMT == syscall.S_IFREG, nil
}

// readAt fills b from offset 0 until it is full or the file ends; it
// returns the bytes read (io.ReadFull's contract without io.EOF: a short
// count means the file ended).
func (f sessionFile) readAt(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Pread(f.fd, b[n:], int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, &fs.PathError{Op: "read", Path: "session file", Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// close closes the file; a session file is only read, so there is nothing
// a failed close could lose.
func (f sessionFile) close() { syscall.Close(f.fd) }
