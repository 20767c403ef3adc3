package config

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a configuration value that cannot be used. It names the key
// (its YAML path), the offending value and where it came from, so that an
// operator can fix it without reading code.
type Error struct {
	Key    string // YAML path, e.g. "session.files.gc_maxlifetime"
	Value  string // the bad value as written, or "" when the key is unknown
	Source string // "line 12" of the file, or the environment variable
	Reason string
}

// Error says `config: <key>: "<value>": <reason> (<source>)`, leaving out
// what is empty: the value of a secret is never set, so never printed.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	b.WriteString(e.Key)
	if e.Value != "" {
		fmt.Fprintf(&b, ": %q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Source != "" {
		fmt.Fprintf(&b, " (%s)", e.Source)
	}
	return b.String()
}

// Nest reports err, from building what the section at key configures, as
// an *Error of that section: an *Error within err (a field of gateway/upstream's
// New or NewEvents, say) gets key prefixed to its own key, so the operator
// reads "upstreams.app.timeout" rather than two keys; any other error
// becomes the reason of key.
func Nest(key string, err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return &Error{Key: key, Reason: err.Error()}
	}
	nested := *e
	nested.Key = key + "." + e.Key
	return &nested
}
