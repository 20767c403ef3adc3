package wamp

// runCall runs finish, the rest of a CALL once it is routed and allowed:
// on the caller's goroutine, or, for a handler.OffloadedRPC, on a goroutine
// of its own so that the connection's reader (an epoll worker serving
// every connection, in the gateway) is free at once. busy answers the
// call when the session or the node is at its bound of offloaded calls:
// refusing is better than queueing without bound behind a slow backend.
func (s *Session) runCall(h *rpcHandler, finish, busy func()) {
	if !h.offload {
		finish()
		return
	}
	if !s.acquireOffload() {
		busy()
		return
	}
	go func() {
		defer s.releaseOffload()
		finish()
	}()
}

func (s *Session) acquireOffload() bool {
	n := s.node
	if s.offloaded.Add(1) > int64(n.limits.MaxOffloadedCallsPerSession) {
		s.offloaded.Add(-1)
		return false
	}
	if n.offloaded.Add(1) > int64(n.limits.MaxOffloadedCalls) {
		n.offloaded.Add(-1)
		s.offloaded.Add(-1)
		return false
	}
	return true
}

func (s *Session) releaseOffload() {
	s.node.offloaded.Add(-1)
	s.offloaded.Add(-1)
}

// OffloadedCalls returns how many offloaded calls (handler.OffloadedRPC)
// are running, so that a drain can wait for their results to go out.
func (n *Node) OffloadedCalls() int64 { return n.offloaded.Load() }
