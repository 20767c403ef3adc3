package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestResult: every sentinel, however wrapped, maps to its label.
func TestResult(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ResultOK},
		{fmt.Errorf("x: %w", ErrNotFound), ResultNotFound},
		{fmt.Errorf("x: %w", ErrExpired), ResultExpired},
		{fmt.Errorf("x: %w", ErrInvalidID), ResultInvalidID},
		{fmt.Errorf("x: %w", ErrTooLarge), ResultTooLarge},
		{fmt.Errorf("%w: 9 lookups in flight: %w", ErrUnavailable, ErrBusy), ResultBusy},
		{unavailable("x", context.DeadlineExceeded), ResultTimeout},
		{unavailable("x", ErrClosed), ResultClosed},
		{unavailable("x", ErrIncomplete), ResultIncomplete},
		{unavailable("x", errors.New("connection refused")), ResultUnavailable},
	} {
		if got := Result(tt.err); got != tt.want {
			t.Errorf("Result(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
