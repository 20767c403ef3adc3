package gateway

import (
	"testing"
	"unsafe"
)

// TestClientSizeClass guards the gateway client's size class: every idle
// connection holds one, and issue 19 took it from the 112- to the
// 64-byte class (no connectedAt copy, the per-user key one pointer).
func TestClientSizeClass(t *testing.T) {
	if got := unsafe.Sizeof(client{}); got > 64 {
		t.Errorf("client is %d bytes, over the 64-byte size class: +16 B or more per connection", got)
	}
}
