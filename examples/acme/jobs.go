package acme

import (
	"context"
	"encoding/json"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Jobs is the "acme.jobs" RPC handler: long-running calls that report
// progress and stop when canceled, to show the SDK's progressive results
// (handler.Progress) and call canceling (the call's ctx) with WAMP v2
// clients. Its calls wait, so it is a handler.OffloadedRPC: they run off
// the gateway's socket workers. Route it like any RPC handler:
//
//	routes:
//	  rpc:
//	    acme_jobs: {pattern: "jobs/{method}", handler: acme.jobs}
//
// and call it from autobahn-js:
//
//	const call = session.call('jobs/countdown', [5, 200], {}, {receive_progress: true});
//	call.then(final => ..., err => ..., n => console.log('progress', n)); // 5, 4, 3, 2, 1, then "liftoff"
//	call.cancel({mode: 'kill'}); // later, if need be: ERROR wamp.error.canceled
type Jobs struct{}

var _ handler.OffloadedRPC = Jobs{}

// Name is the handler name routes refer to.
func (Jobs) Name() string { return "acme.jobs" }

// Offload runs the calls off the socket workers: they wait.
func (Jobs) Offload() bool { return true }

// Methods exposes "countdown".
func (Jobs) Methods() map[string]handler.RPCMethod {
	return map[string]handler.RPCMethod{"countdown": Countdown}
}

// Bounds of Countdown's arguments, so that a client cannot hold a call
// (and a pending-call slot) for more than about 100 s.
const (
	maxCountdownFrom     = 100
	maxCountdownInterval = time.Second
	minCountdownInterval = time.Millisecond
)

// Countdown counts down from its first argument (at most 100) to 1, one
// step every second argument milliseconds (default 1000, between 1 and
// 1000), sending each number as a progressive result when the caller asked
// for them, and returns "liftoff". It stops as soon as its ctx ends (a
// CANCEL, the call timeout, the client leaving), returning ctx's error.
func Countdown(ctx context.Context, _ handler.Client, _ handler.Request, params json.RawMessage) (any, error) {
	var args []json.Number
	if err := json.Unmarshal(params, &args); err != nil || len(args) < 1 || len(args) > 2 {
		return nil, &handler.Error{Desc: "countdown takes [from, interval_ms]", Code: 400}
	}
	from, err := args[0].Int64()
	if err != nil || from < 0 || from > maxCountdownFrom {
		return nil, &handler.Error{Desc: "from must be an integer in [0, 100]", Code: 400}
	}
	interval := maxCountdownInterval
	if len(args) == 2 {
		ms, err := args[1].Int64()
		if err != nil || time.Duration(ms)*time.Millisecond < minCountdownInterval || time.Duration(ms)*time.Millisecond > maxCountdownInterval {
			return nil, &handler.Error{Desc: "interval_ms must be an integer in [1, 1000]", Code: 400}
		}
		interval = time.Duration(ms) * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := from; n > 0; n-- {
		if err := handler.Progress(ctx, n); err != nil {
			return nil, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return "liftoff", nil
}
