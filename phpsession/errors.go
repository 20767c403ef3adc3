package phpsession

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrMalformed is wrapped by every error caused by input that is not valid
// PHP serialized/session data (syntax errors, truncation, bad back-references,
// trailing bytes). Test with errors.Is.
var ErrMalformed = errors.New("phpsession: malformed data")

// ErrLimit is wrapped by every error caused by input exceeding the configured
// [Limits] (size, nesting depth, number of values, string length). It does
// NOT wrap [ErrMalformed]: the input may be perfectly valid PHP data that is
// merely too big for this deployment, and operators want to tell the two
// apart in logs and metrics. Callers that only care "could not decode" test
// for both.
var ErrLimit = errors.New("phpsession: limit exceeded")

// ErrUnsupportedFormat is returned by [NewReader] and [DecodeSession] for a
// session.serialize_handler this package does not (yet) decode.
var ErrUnsupportedFormat = errors.New("phpsession: unsupported serialize handler")

// ErrUnsupportedToken is wrapped by [FirewallResult.Err] when a
// _security_<firewall> attribute decodes fine but holds a token or user
// layout this package does not understand (for example a custom user class
// without any of the configured identifier properties).
var ErrUnsupportedToken = errors.New("phpsession: unsupported security token layout")

// DecodeError describes where and why decoding failed. It wraps exactly one
// of [ErrMalformed] or [ErrLimit].
type DecodeError struct {
	// Offset is the byte offset in the input given to the decoding
	// function (for a token nested in a session: in the whole session when it
	// can be computed, see Context).
	Offset int
	// Context says which part of the input was being decoded, e.g.
	// "token in _security_main (byte 12 of it)"; empty at top level.
	Context string
	// Reason is what was wrong, e.g. "expected ';' after integer".
	Reason string
	// Err is ErrMalformed or ErrLimit.
	Err error
}

// Error formats the error as "<sentinel> at byte N [(context)]: reason".
func (e *DecodeError) Error() string {
	if e.Context != "" {
		return fmt.Sprintf("%v at byte %d (%s): %s", e.Err, e.Offset, e.Context, e.Reason)
	}
	return fmt.Sprintf("%v at byte %d: %s", e.Err, e.Offset, e.Reason)
}

// Unwrap returns ErrMalformed or ErrLimit so errors.Is works.
func (e *DecodeError) Unwrap() error { return e.Err }

func malformed(off int, format string, args ...any) *DecodeError {
	return &DecodeError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: ErrMalformed}
}

func limitErr(off int, format string, args ...any) *DecodeError {
	return &DecodeError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: ErrLimit}
}

// clip shortens input-controlled text quoted in messages: a 4 MiB class name
// must not become a 4 MiB log line.
func clip(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

// isMalformed reports whether err is a *DecodeError for malformed input.
func isMalformed(err error) bool {
	de, ok := err.(*DecodeError)
	return ok && de.Err == ErrMalformed
}
