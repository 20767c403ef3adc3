package handler

import (
	"context"
	"errors"
)

// Progressive call results and call canceling (WAMP v2 advanced
// profile): see the package documentation.

// ErrCallEnded is returned by Progress once the call has ended for its
// caller: its final result or error was sent, or the caller canceled it.
// Nothing more reaches the caller; the method should return.
var ErrCallEnded = errors.New("handler: the call has ended")

// ProgressFunc sends one progressive result, the JSON encoding of v, to
// the caller of one call.
type ProgressFunc func(v any) error

// progressKey is the context key of a call's ProgressFunc.
type progressKey struct{}

// WithProgress returns a copy of ctx in which Progress sends through
// send. The gateway sets it for each call whose caller asked for
// progressive results; a handler calling another method with its own ctx
// passes it on, and tests may set their own.
func WithProgress(ctx context.Context, send ProgressFunc) context.Context {
	return context.WithValue(ctx, progressKey{}, send)
}

// WantsProgress reports whether the caller of the call ctx belongs to
// asked for progressive results.
func WantsProgress(ctx context.Context) bool {
	send, _ := ctx.Value(progressKey{}).(ProgressFunc)
	return send != nil
}

// Progress sends v (any JSON-encodable value) to the caller as a
// progressive result of the call ctx belongs to: WAMP v2 RESULT with
// details {"progress": true} and v as its single positional argument.
// It returns nil without sending anything when the caller did not ask for
// progressive results, ErrCallEnded once the call has ended for the
// caller (answered or canceled), and an error when v cannot be encoded.
// Progress may be called from any goroutine while the method runs; a
// progress sent concurrently with the method's return may be dropped,
// never sent after the final result.
func Progress(ctx context.Context, v any) error {
	send, _ := ctx.Value(progressKey{}).(ProgressFunc)
	if send == nil {
		return nil
	}
	return send(v)
}
