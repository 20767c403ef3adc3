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

// isNoSuchPath reports the errors that mean no session file can exist there:
// ENOTDIR when a level of Dir/a/b/sess_ab... is a file, ENAMETOOLONG for ids
// over 250 characters, whose sess_<id> name exceeds NAME_MAX (PHP cannot
// store those with the files handler either).
func isNoSuchPath(err error) bool {
	return errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG)
}

// isSymlinkError reports the error O_NOFOLLOW gives for a symlink.
func isSymlinkError(err error) bool {
	return errors.Is(err, syscall.ELOOP)
}
