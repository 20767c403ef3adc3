package wamp

import (
	"context"
	"testing"
)

// TestLinkedCalls checks the list of handler calls Close cancels: every
// call in flight is cancelled by Close (the inline slot and the overflow),
// a finished call is not, a call linked after Close is cancelled at once,
// and an idle session keeps nothing (issue 19: the per-session context
// this replaces kept a children map and a channel after its first call).
func TestLinkedCalls(t *testing.T) {
	newCall := func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }
	s := &Session{}

	// Link and unlink in every order: nothing left behind.
	var ctxs []context.Context
	var ids []uint32
	for i := 0; i < 5; i++ {
		ctx, cancel := newCall()
		ctxs = append(ctxs, ctx)
		ids = append(ids, s.linkCall(cancel))
	}
	for i, id := range ids {
		if id == 0 {
			t.Fatalf("call %d: id 0 before Close", i)
		}
	}
	for _, i := range []int{2, 0, 4, 1, 3} {
		s.unlinkCall(ids[i])
	}
	if s.call1 != nil || s.call1ID != 0 || s.callMore != nil {
		t.Fatalf("after every call finished: call1 set %v (id %d), callMore %v: want nothing kept", s.call1 != nil, s.call1ID, s.callMore)
	}
	for i, ctx := range ctxs {
		if ctx.Err() != nil {
			t.Errorf("finished call %d was cancelled", i)
		}
	}

	// Three in flight, one finishes, Close cancels the two others.
	a, ca := newCall()
	b, cb := newCall()
	c, cc := newCall()
	ia, ib, ic := s.linkCall(ca), s.linkCall(cb), s.linkCall(cc)
	if ia == ib || ib == ic || ia == ic {
		t.Fatalf("ids %d %d %d: want distinct", ia, ib, ic)
	}
	s.unlinkCall(ib)
	s.cancel()
	if a.Err() == nil || c.Err() == nil {
		t.Errorf("in flight at Close: a %v, c %v: want both cancelled", a.Err(), c.Err())
	}
	if b.Err() != nil {
		t.Errorf("finished before Close, cancelled by it: %v", b.Err())
	}
	// Unlinking after Close is harmless.
	s.unlinkCall(ia)
	s.unlinkCall(ic)

	// After Close: cancelled at once, id 0, nothing kept.
	d, cd := newCall()
	if id := s.linkCall(cd); id != 0 {
		t.Errorf("linked after Close: id %d, want 0", id)
	}
	if d.Err() == nil {
		t.Error("a call linked after Close was not cancelled at once")
	}
	if s.call1 != nil || s.callMore != nil {
		t.Error("a call linked after Close was kept")
	}
	s.cancel() // idempotent
}

// TestLinkedCallIDsSkipZero: the id counter wraps without giving out 0,
// which means "not linked".
func TestLinkedCallIDsSkipZero(t *testing.T) {
	s := &Session{callSeq: ^uint32(0)}
	_, cancel := context.WithCancel(context.Background())
	defer cancel()
	if id := s.linkCall(cancel); id != 1 {
		t.Fatalf("id after wrap %d, want 1", id)
	}
}
