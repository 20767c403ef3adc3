//go:build !unix

package transport

import "net"

// discardUnread is a no-op where raw descriptors are not at hand; closing
// may then answer unread data with RST.
func discardUnread(net.Conn) {}
