package transport

import (
	"testing"
	"unsafe"
)

// TestConnSizeClass guards the transport Conn's size class: every
// connection holds one, idle or not (192 bytes; its slot in the
// Transport's list sits in the flags' padding).
func TestConnSizeClass(t *testing.T) {
	if got := unsafe.Sizeof(Conn{}); got > 192 {
		t.Errorf("Conn is %d bytes, over the 192-byte size class: +16 B or more per connection", got)
	}
}
