//go:build !linux

package transport

import (
	"errors"
	"net"
)

const (
	epollSupported = false
	defaultMode    = ModeGoroutine
)

// eventLoop exists only on Linux; elsewhere transport.mode must be
// goroutine (New refuses epoll).
type eventLoop struct{}

func (*eventLoop) stop()          {}
func (*eventLoop) stopAccepting() {}

func (t *Transport) serveEpoll(*net.TCPListener) error {
	return errors.New("transport: epoll mode needs Linux")
}
