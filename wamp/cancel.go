package wamp

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/wsgate/wsgate/wamp/handler"
)

// WAMP v2 progressive call results and call canceling (advanced profile):
// the calls of a v2 session that are still running, what a CANCEL does to
// one, and the progressive RESULTs a method sends with handler.Progress.
//
// A call is listed from its CALL (on the reader, before the handler runs,
// so that a CANCEL read next finds it) until its final answer. The list
// is bounded by what runs: one call at a time when it is not offloaded
// (and then the reader is busy with it, so no CANCEL can arrive before it
// ends), Limits.MaxOffloadedCallsPerSession when it is.

// errURICanceled answers a canceled call.
const errURICanceled = "wamp.error.canceled"

// Cancel modes (CANCEL.Options.mode).
const (
	// cancelSkip: ERROR at once, the handler is not interrupted (its ctx
	// lives on) and its answer is discarded.
	cancelSkip = "skip"
	// cancelKill: the handler's ctx is cancelled; its answer, when it
	// returns, is the call's: RESULT when it still produced one, else
	// ERROR wamp.error.canceled.
	cancelKill = "kill"
	// cancelKillNoWait: ERROR at once, the handler's ctx is cancelled and
	// its answer discarded.
	cancelKillNoWait = "killnowait"
	// cancelDefault is a CANCEL without a mode (autobahn-js's
	// `call.cancel()`): the handler's ctx is cancelled and nothing more
	// is sent for the call. The spec names no default; autobahn-js has
	// already rejected the call when it sends such a CANCEL and treats any
	// later answer to it as a protocol violation (it closes the
	// connection), so silence is the only answer it can take.
	cancelDefault = ""
)

// callState is where a listed call is.
type callState uint8

const (
	// callRunning: the handler runs and the caller waits for its answer.
	callRunning callState = iota
	// callKilled: canceled in mode kill; the handler's answer, when it
	// comes, decides what the caller gets.
	callKilled
	// callEnded: the caller has its final answer (or, canceled, needs
	// none): nothing more is sent for the call.
	callEnded
)

// pendingCall is one running v2 call.
type pendingCall struct {
	s     *Session
	reqID uint64
	// stop cancels the handler's ctx; idempotent.
	stop context.CancelFunc

	// mu guards state and orders what is sent for the call: a progress
	// and the final answer are sent with it held, so no progress ever
	// follows the final answer. Peer.Send only queues, so holding it
	// across a send never waits on the client.
	mu    sync.Mutex
	state callState
}

// callTable lists a session's running v2 calls by request id.
type callTable struct {
	mu sync.Mutex // guards m
	// m is made on the first call and emptied as calls end: an idle
	// session carries no map.
	m map[uint64]*pendingCall
}

// beginCallV2 lists the call reqID and returns the context its handler
// runs with: ctx, cancelled by a CANCEL, and carrying the progress sender
// when the caller asked for progressive results. A second CALL reusing the
// id of a running one is answered as usual but cannot be canceled: the
// first keeps the id.
func (s *Session) beginCallV2(ctx context.Context, reqID uint64, progress bool) (context.Context, *pendingCall) {
	ctx, stop := context.WithCancel(ctx)
	pc := &pendingCall{s: s, reqID: reqID, stop: stop}
	if progress {
		ctx = handler.WithProgress(ctx, pc.progress)
	}
	t := &s.calls
	t.mu.Lock()
	if t.m == nil {
		t.m = map[uint64]*pendingCall{}
	}
	if _, dup := t.m[reqID]; !dup {
		t.m[reqID] = pc
	}
	t.mu.Unlock()
	return ctx, pc
}

// runningCall returns the running call reqID, or nil.
func (s *Session) runningCall(reqID uint64) *pendingCall {
	t := &s.calls
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[reqID]
}

// end takes the call off the list (if it is the one listed under its id)
// and cancels its ctx, releasing what the handler left to it.
func (pc *pendingCall) end() {
	t := &pc.s.calls
	t.mu.Lock()
	if t.m[pc.reqID] == pc {
		delete(t.m, pc.reqID)
		if len(t.m) == 0 {
			t.m = nil
		}
	}
	t.mu.Unlock()
	pc.stop()
}

// answer sends the call's final answer with send unless a CANCEL already
// answered it (skip, killnowait, no mode: the answer is discarded); after
// a kill, a failed call is answered ERROR wamp.error.canceled instead.
// Then the call ends.
func (pc *pendingCall) answer(failed bool, send func()) {
	pc.mu.Lock()
	switch pc.state {
	case callRunning:
		send()
	case callKilled:
		if failed {
			pc.s.sendCanceledV2(pc.reqID)
		} else {
			send()
		}
	case callEnded:
		// A CANCEL answered already (or asked for no answer).
	}
	pc.state = callEnded
	pc.mu.Unlock()
	pc.end()
}

// progress is the call's handler.ProgressFunc: RESULT [50, request,
// {"progress": true}, [v]] while the call runs, handler.ErrCallEnded
// after its final answer or a CANCEL.
func (pc *pendingCall) progress(v any) error {
	b, err := appendJSON(nil, v)
	if err != nil {
		return err
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.state != callRunning {
		return handler.ErrCallEnded
	}
	pc.s.send("RESULT", encodeProgressV2(pc.reqID, b))
	return nil
}

// encodeProgressV2 builds RESULT [50, request, {"progress":true},
// [result]].
func encodeProgressV2(reqID uint64, result []byte) []byte {
	b := make([]byte, 0, 48+len(result))
	b = append(b, "[50,"...)
	b = appendID(b, reqID)
	b = append(b, `,{"progress":true},[`...)
	b = append(b, result...)
	return append(b, "]]"...)
}

// sendCanceledV2 answers a canceled call.
func (s *Session) sendCanceledV2(reqID uint64) {
	s.sendErrorV2(v2Call, reqID, errURICanceled, "call canceled", nil)
}

// callOptions are the CALL options the node honours.
type callOptions struct {
	// ReceiveProgress asks for progressive results.
	ReceiveProgress bool `json:"receive_progress"`
}

// parseCallOptions reads CALL options; options it cannot read are taken
// as none, as they were before any was honoured.
func parseCallOptions(dict json.RawMessage) callOptions {
	var o callOptions
	if !isEmptyContainer(dict) {
		_ = json.Unmarshal(dict, &o) // unreadable: the defaults
	}
	return o
}

// cancelV2 handles CANCEL [49, CALL.Request, Options]: see the cancel
// modes above. A CANCEL of a call that is not running (unknown, already
// answered, already canceled) or with a mode the spec does not name is
// ignored: the call it names has, or will get, its answer.
func (s *Session) cancelV2(m messageV2) error {
	if err := s.checkReqID(m); err != nil {
		return err
	}
	var o struct {
		Mode *string `json:"mode"`
	}
	mode := cancelDefault
	if !isEmptyContainer(m.dict) {
		if err := json.Unmarshal(m.dict, &o); err != nil {
			s.logAt(slog.LevelDebug, "wamp: CANCEL with unreadable options ignored", "request", m.reqID)
			return nil
		}
		if o.Mode != nil {
			mode = *o.Mode
		}
	}
	switch mode {
	case cancelSkip, cancelKill, cancelKillNoWait, cancelDefault:
	default:
		s.logAt(slog.LevelDebug, "wamp: CANCEL with an unknown mode ignored", "request", m.reqID, "mode", clip(mode, 32))
		return nil
	}
	pc := s.runningCall(m.reqID)
	if pc == nil {
		return nil
	}
	pc.mu.Lock()
	if pc.state != callRunning {
		pc.mu.Unlock()
		return nil
	}
	interrupt := true
	switch mode {
	case cancelSkip:
		interrupt = false
		s.sendCanceledV2(pc.reqID)
		pc.state = callEnded
	case cancelKillNoWait:
		s.sendCanceledV2(pc.reqID)
		pc.state = callEnded
	case cancelKill:
		pc.state = callKilled
	case cancelDefault:
		pc.state = callEnded
	}
	pc.mu.Unlock()
	if interrupt {
		pc.stop()
	}
	return nil
}
