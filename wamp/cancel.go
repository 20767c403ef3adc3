package wamp

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"time"

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

// errURICanceled answers a canceled call, errURITimeout one whose
// caller's timeout (CALL option timeout) went by.
const (
	errURICanceled = "wamp.error.canceled"
	errURITimeout  = "wamp.error.timeout"
)

// maxCallerTimeout caps a CALL's timeout option where the node has no
// call timeout of its own, so that the milliseconds always convert.
const maxCallerTimeout = 24 * time.Hour

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
	// timeout is the caller's timeout (CALL option timeout), 0 for none;
	// timer, when set, ends the call when it goes by without a result
	// (the first, or the next after a progress). Both are set before the
	// call is listed and never change; the timer is reset under mu.
	timeout time.Duration
	timer   *time.Timer

	// mu guards state and orders what is sent for the call: a progress
	// and the final answer are sent with it held, so no progress ever
	// follows the final answer. Peer.Send only queues, so holding it
	// across a send never waits on the client.
	mu    sync.Mutex
	state callState
}

// beginCallV2 lists the call reqID and returns the context its handler
// runs with: ctx, cancelled by a CANCEL or the caller's timeout, and
// carrying the progress sender when the caller asked for progressive
// results. A second CALL reusing the id of a running one is answered as
// usual but cannot be canceled: the first keeps the id.
func (s *Session) beginCallV2(ctx context.Context, reqID uint64, o callOptions) (context.Context, *pendingCall) {
	ctx, stop := context.WithCancel(ctx)
	pc := &pendingCall{s: s, reqID: reqID, stop: stop}
	if o.ReceiveProgress {
		ctx = handler.WithProgress(ctx, pc.progress)
	}
	if d := s.callerTimeout(o.timeoutMS); d > 0 {
		pc.timeout = d
		pc.timer = time.AfterFunc(d, pc.timedOut)
	}
	s.callMu.Lock()
	if s.calls == nil {
		s.calls = map[uint64]*pendingCall{}
	}
	if _, dup := s.calls[reqID]; !dup {
		s.calls[reqID] = pc
	}
	s.callMu.Unlock()
	return ctx, pc
}

// runningCall returns the running call reqID, or nil.
func (s *Session) runningCall(reqID uint64) *pendingCall {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	return s.calls[reqID]
}

// end takes the call off the list (if it is the one listed under its id)
// and cancels its ctx, releasing what the handler left to it.
func (pc *pendingCall) end() {
	s := pc.s
	s.callMu.Lock()
	if s.calls[pc.reqID] == pc {
		delete(s.calls, pc.reqID)
		if len(s.calls) == 0 {
			s.calls = nil
		}
	}
	s.callMu.Unlock()
	if pc.timer != nil {
		pc.timer.Stop()
	}
	pc.stop()
}

// callerTimeout is the timer a CALL's timeout option (ms) needs: none for
// 0 (the spec's "no timeout"), nor when the node's own call timeout (or,
// without one, maxCallerTimeout) is not longer.
func (s *Session) callerTimeout(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	limit := maxCallerTimeout
	if nt := s.node.callTimeout; nt > 0 && nt < limit {
		limit = nt
	}
	if ms >= limit.Milliseconds() {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// timedOut ends a call whose caller's timeout went by: like a CANCEL in
// mode killnowait, with ERROR wamp.error.timeout.
func (pc *pendingCall) timedOut() {
	pc.mu.Lock()
	if pc.state != callRunning {
		pc.mu.Unlock()
		return
	}
	pc.s.sendErrorV2(v2Call, pc.reqID, errURITimeout, "call timed out", nil)
	pc.state = callEnded
	pc.mu.Unlock()
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
	if pc.timer != nil {
		// The caller's timeout runs between results (spec: progressive
		// call results and timeouts).
		pc.timer.Reset(pc.timeout)
	}
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
	// Timeout is the caller's timeout in ms (call_timeout feature).
	Timeout json.RawMessage `json:"timeout"`

	// timeoutMS is Timeout when it is a non-negative integer, else 0.
	timeoutMS int64
}

// parseCallOptions reads CALL options; options it cannot read are taken
// as none, as they were before any was honoured, and a timeout that is
// not a non-negative integer as no timeout.
func parseCallOptions(dict json.RawMessage) callOptions {
	var o callOptions
	if isEmptyContainer(dict) {
		return o
	}
	if json.Unmarshal(dict, &o) != nil {
		return callOptions{}
	}
	if len(o.Timeout) > 0 {
		if ms, err := strconv.ParseInt(string(o.Timeout), 10, 64); err == nil && ms > 0 {
			o.timeoutMS = ms
		}
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
