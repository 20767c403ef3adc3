package acme

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

func TestCountdown(t *testing.T) {
	for _, tc := range []struct {
		name     string
		params   string
		progress []any
		result   any
		errCode  int
	}{
		{"counts down", `[3,1]`, []any{int64(3), int64(2), int64(1)}, "liftoff", 0},
		{"from zero", `[0,1]`, nil, "liftoff", 0},
		{"no arguments", `[]`, nil, nil, 400},
		{"from too big", `[101,1]`, nil, nil, 400},
		{"interval too long", `[1,1001]`, nil, nil, 400},
		{"interval zero", `[1,0]`, nil, nil, 400},
		{"not a number", `["x"]`, nil, nil, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []any
			ctx := handler.WithProgress(context.Background(), func(v any) error {
				got = append(got, v)
				return nil
			})
			res, err := Countdown(ctx, nil, handler.Request{}, json.RawMessage(tc.params))
			var he *handler.Error
			if tc.errCode != 0 {
				if !errors.As(err, &he) || he.Code != tc.errCode {
					t.Fatalf("error %v, want code %d", err, tc.errCode)
				}
				return
			}
			if err != nil || res != tc.result || !reflect.DeepEqual(got, tc.progress) {
				t.Fatalf("result %v %v, progress %v; want %v, %v", res, err, got, tc.result, tc.progress)
			}
		})
	}
}

// Countdown stops when its ctx ends, and when Progress says the call
// ended.
func TestCountdownStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	ctx = handler.WithProgress(ctx, func(any) error {
		select {
		case started <- struct{}{}:
		default:
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := Countdown(ctx, nil, handler.Request{}, json.RawMessage(`[100,1000]`))
		done <- err
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Countdown ignored its ctx")
	}
	ended := handler.WithProgress(context.Background(), func(any) error { return handler.ErrCallEnded })
	if _, err := Countdown(ended, nil, handler.Request{}, json.RawMessage(`[5,1]`)); !errors.Is(err, handler.ErrCallEnded) {
		t.Fatalf("err %v, want ErrCallEnded", err)
	}
}
