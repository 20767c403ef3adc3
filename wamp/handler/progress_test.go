package handler

import (
	"context"
	"errors"
	"testing"
)

func TestProgress(t *testing.T) {
	// Without a sender (v1, or no receive_progress): a no-op.
	if WantsProgress(context.Background()) {
		t.Error("WantsProgress without a sender")
	}
	if err := Progress(context.Background(), 1); err != nil {
		t.Errorf("Progress without a sender: %v", err)
	}
	var got []any
	ctx := WithProgress(context.Background(), func(v any) error {
		if len(got) == 2 {
			return ErrCallEnded
		}
		got = append(got, v)
		return nil
	})
	if !WantsProgress(ctx) {
		t.Error("WantsProgress with a sender")
	}
	for i, want := range []error{nil, nil, ErrCallEnded} {
		if err := Progress(ctx, i); !errors.Is(err, want) {
			t.Errorf("Progress %d: %v, want %v", i, err, want)
		}
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("sent %v", got)
	}
}
