//go:build !linux

package gateway

import (
	"errors"
	"net"
)

const (
	epollSupported = false
	defaultMode    = ModeGoroutine
)

// eventLoop exists only on Linux; elsewhere transport.mode must be
// goroutine (Validate refuses epoll).
type eventLoop struct{}

func (*eventLoop) stop()          {}
func (*eventLoop) stopAccepting() {}

func (s *Server) serveEpoll(*net.TCPListener) error {
	return errors.New("transport.mode epoll needs Linux")
}
