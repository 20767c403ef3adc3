//go:build unix

package storage

import (
	"errors"
	"syscall"
)

// filesOpenFlags are added to O_RDONLY when opening a session file.
// O_NOFOLLOW: PHP's files handler refuses symlinks too, and following one
// planted in the session directory could expose another file.
// O_NONBLOCK: opening a FIFO planted under a session's name must not hang the
// reader; it has no effect on the regular files PHP writes.
const filesOpenFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// errNotDirectory is what opening Dir/a/b/sess_ab... returns when a level is
// a file: no session there.
var errNotDirectory error = syscall.ENOTDIR

// isSymlinkError reports the error O_NOFOLLOW gives for a symlink.
func isSymlinkError(err error) bool {
	return errors.Is(err, syscall.ELOOP)
}
