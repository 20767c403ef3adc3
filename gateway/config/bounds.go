package config

import (
	"fmt"
	"strings"
)

// The helpers below are the one place where a count, size or duration
// setting is judged, for the sections of this package and for packages
// that take settings of their own (gateway/upstream's New and NewEvents).
// Each returns nil or an *Error naming key and the bad value, so that
// every caller reports the same way.

// Number is what the bound helpers check: counts, byte sizes and
// time.Duration (an int64).
type Number interface {
	~int | ~int64
}

// Between returns an *Error naming key and v unless lo <= v <= hi.
func Between[T Number](key string, v, lo, hi T) error {
	if v < lo || v > hi {
		return &Error{Key: key, Value: fmt.Sprint(v), Reason: fmt.Sprintf("must be between %v and %v", lo, hi)}
	}
	return nil
}

// Positive returns an *Error naming key and v unless v > 0: the rule of a
// timeout or interval that has no "off".
func Positive[T Number](key string, v T) error {
	if v <= 0 {
		return &Error{Key: key, Value: fmt.Sprint(v), Reason: "must be positive"}
	}
	return nil
}

// NotNegative returns an *Error naming key and v when v < 0.
func NotNegative[T Number](key string, v T) error {
	if v < 0 {
		return &Error{Key: key, Value: fmt.Sprint(v), Reason: "must not be negative"}
	}
	return nil
}

// OrDefault is the rule of an optional setting whose zero means "the
// default": negative is an *Error naming key and the value, zero is
// replaced by def, and above hi is an *Error (hi 0: no upper bound).
func OrDefault[T Number](key string, v *T, def, hi T) error {
	if err := NotNegative(key, *v); err != nil {
		return err
	}
	if *v == 0 {
		*v = def
	}
	if hi > 0 && *v > hi {
		return &Error{Key: key, Value: fmt.Sprint(*v), Reason: fmt.Sprintf("must be at most %v", hi)}
	}
	return nil
}

// First returns the first non-nil of errs: a section lists its checks in
// the order an operator should hear about them. Go evaluates every
// argument before First runs, so each check must stand on its own.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// OneOf returns an *Error naming key and v unless v is one of allowed,
// listing them: "must be a or b", "must be a, b or c", and from four on
// "must be one of a, b, c, d".
func OneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	var list string
	switch n := len(allowed); {
	case n >= 4:
		list = "one of " + strings.Join(allowed, ", ")
	case n >= 2:
		list = strings.Join(allowed[:n-1], ", ") + " or " + allowed[n-1]
	default:
		list = strings.Join(allowed, "")
	}
	return &Error{Key: key, Value: v, Reason: "must be " + list}
}
