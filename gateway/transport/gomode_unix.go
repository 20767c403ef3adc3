//go:build unix

package transport

import (
	"net"
	"syscall"
)

// discardUnread reads, without waiting, what the client sent and we did not
// read, so that closing does not answer with RST (which can make the client
// lose our close frame). See drainAndClose for the epoll mode.
func discardUnread(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var buf [4096]byte
	// Control, not Read: the connection's reader goroutine may hold the
	// read lock, blocked in Read until this close. The descriptor is in
	// non-blocking mode, so this never waits.
	rc.Control(func(fd uintptr) {
		for range 16 {
			n, err := syscall.Read(int(fd), buf[:])
			if n <= 0 || err != nil {
				break
			}
		}
	})
}
