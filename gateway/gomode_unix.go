//go:build unix

package gateway

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
	rc.Read(func(fd uintptr) bool {
		for range 16 {
			n, err := syscall.Read(int(fd), buf[:])
			if n <= 0 || err != nil {
				break
			}
		}
		return true // never wait for more
	})
}
