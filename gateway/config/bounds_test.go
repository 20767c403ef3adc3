package config

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// wantError checks err against an expected *Error: key "" means nil.
func wantError(t *testing.T, name string, err error, key, value, reason string) {
	t.Helper()
	if key == "" {
		if err != nil {
			t.Errorf("%s: %v, want nil", name, err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Key != key || e.Value != value || e.Reason != reason {
		t.Errorf("%s: got %#v, want key %q value %q reason %q", name, err, key, value, reason)
	}
}

func TestBetweenPositiveNotNegative(t *testing.T) {
	for _, tc := range []struct {
		name               string
		err                error
		key, value, reason string
	}{
		{"int inside", Between("k", 5, 1, 10), "", "", ""},
		{"int at bounds", First(Between("k", 1, 1, 10), Between("k", 10, 1, 10)), "", "", ""},
		{"int below", Between("a.b", 0, 1, 10), "a.b", "0", "must be between 1 and 10"},
		{"int above", Between("a.b", 11, 1, 10), "a.b", "11", "must be between 1 and 10"},
		{"int64 above", Between[int64]("k", 1<<40, 0, 1<<30), "k", "1099511627776", "must be between 0 and 1073741824"},
		{"duration below", Between("d", 500*time.Millisecond, time.Second, time.Hour), "d", "500ms", "must be between 1s and 1h0m0s"},
		{"positive", Positive("d", time.Nanosecond), "", "", ""},
		{"positive zero", Positive("d", time.Duration(0)), "d", "0s", "must be positive"},
		{"positive negative int", Positive("n", -3), "n", "-3", "must be positive"},
		{"not negative zero", NotNegative("d", time.Duration(0)), "", "", ""},
		{"not negative", NotNegative("d", -5*time.Second), "d", "-5s", "must not be negative"},
	} {
		wantError(t, tc.name, tc.err, tc.key, tc.value, tc.reason)
	}
}

func TestOrDefault(t *testing.T) {
	for _, tc := range []struct {
		v, def, hi, want   int
		key, value, reason string // key "": no error
	}{
		{0, 7, 0, 7, "", "", ""},
		{3, 7, 0, 3, "", "", ""},
		{0, 7, 10, 7, "", "", ""},
		{10, 7, 10, 10, "", "", ""},
		{1 << 40, 7, 0, 1 << 40, "", "", ""}, // hi 0: unbounded
		{-1, 7, 10, -1, "q", "-1", "must not be negative"},
		{11, 7, 10, 11, "q", "11", "must be at most 10"},
	} {
		v := tc.v
		err := OrDefault("q", &v, tc.def, tc.hi)
		name := fmt.Sprintf("OrDefault(%d, def %d, hi %d)", tc.v, tc.def, tc.hi)
		wantError(t, name, err, tc.key, tc.value, tc.reason)
		if v != tc.want {
			t.Errorf("%s: value %d, want %d", name, v, tc.want)
		}
	}
	d := time.Duration(0)
	if err := OrDefault("t", &d, 2*time.Second, 0); err != nil || d != 2*time.Second {
		t.Errorf("duration default: %v %v", d, err)
	}
	d = -time.Millisecond
	wantError(t, "negative duration", OrDefault("t", &d, 2*time.Second, 0), "t", "-1ms", "must not be negative")
}

func TestOneOf(t *testing.T) {
	for _, tc := range []struct {
		v       string
		allowed []string
		reason  string // "": accepted
	}{
		{"b", []string{"a", "b"}, ""},
		{"", []string{"a", "b"}, "must be a or b"},
		{"x", []string{"a"}, "must be a"},
		{"x", []string{"a", "b", "c"}, "must be a, b or c"},
		{"x", []string{"a", "b", "c", "d"}, "must be one of a, b, c, d"},
		{"A", []string{"a", "b"}, "must be a or b"}, // case matters
	} {
		key := ""
		if tc.reason != "" {
			key = "k"
		}
		wantError(t, fmt.Sprintf("OneOf(%q, %q)", tc.v, tc.allowed), OneOf("k", tc.v, tc.allowed...), key, tc.v, tc.reason)
	}
}

func TestNest(t *testing.T) {
	inner := fmt.Errorf("upstream %q: %w", "app", &Error{Key: "timeout", Value: "-1s", Reason: "must not be negative"})
	wantError(t, "nested *Error", Nest("upstreams.app", inner), "upstreams.app.timeout", "-1s", "must not be negative")
	wantError(t, "plain error", Nest("events", errors.New("boom")), "events", "", "boom")
}
