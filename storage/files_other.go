//go:build !unix

package storage

// filesOpenFlags: without O_NOFOLLOW and O_NONBLOCK outside unix, the file is
// opened plainly. wsgate is deployed on Linux; this keeps the package
// building elsewhere.
const filesOpenFlags = 0

// isNoSuchPath never matches outside unix.
func isNoSuchPath(error) bool { return false }

// isSymlinkError never matches outside unix, where symlinks are followed.
func isSymlinkError(error) bool { return false }
