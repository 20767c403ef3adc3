//go:build !unix

package storage

import "errors"

// filesOpenFlags: without O_NOFOLLOW and O_NONBLOCK outside unix, the file is
// opened plainly. wsgate is deployed on Linux; this keeps the package
// building elsewhere.
const filesOpenFlags = 0

// errNotDirectory never matches outside unix.
var errNotDirectory = errors.New("not a directory")

// isSymlinkError never matches outside unix, where symlinks are followed.
func isSymlinkError(error) bool { return false }
