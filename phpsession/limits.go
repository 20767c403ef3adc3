package phpsession

import "fmt"

// Limits bound the work and memory one decode may use. Session data comes
// from storage the PHP application writes, but a gateway must survive a
// corrupted or hostile record (shared Redis, SQL injection elsewhere in the
// legacy app, ...), so every dimension an attacker controls is capped.
//
// A zero field means "use the default" from [DefaultLimits]; negative fields
// are invalid.
type Limits struct {
	// MaxInput is the largest input accepted, in bytes.
	MaxInput int
	// MaxDepth is the deepest nesting of arrays and objects accepted (a
	// top-level scalar has depth 0, a top-level array depth 1).
	MaxDepth int
	// MaxElements is the total number of values decoded in one call
	// (scalars, arrays, objects and back-references; array keys and property
	// names are not counted). It caps the size of the resulting tree.
	MaxElements int
	// MaxString is the longest single string (s:, S:, class name, C: payload)
	// accepted, in bytes.
	MaxString int
}

// maxDepthCap is a hard ceiling on MaxDepth: the decoder recurses once per
// nesting level, and a configuration typo must not let input exhaust the
// goroutine stack.
const maxDepthCap = 10000

// DefaultLimits returns limits generous for any real Symfony session (which
// is usually around 1 KiB) yet small enough that a hostile record costs a
// bounded amount of memory and CPU: 4 MiB input, depth 64, 1<<20 values,
// strings up to the input size.
func DefaultLimits() Limits {
	return Limits{
		MaxInput:    4 << 20,
		MaxDepth:    64,
		MaxElements: 1 << 20,
		MaxString:   4 << 20,
	}
}

// normalized fills zero fields with defaults and rejects invalid ones.
func (l Limits) normalized() (Limits, error) {
	d := DefaultLimits()
	if l.MaxInput < 0 || l.MaxDepth < 0 || l.MaxElements < 0 || l.MaxString < 0 {
		return l, fmt.Errorf("phpsession: invalid limits %+v: negative value", l)
	}
	if l.MaxDepth > maxDepthCap {
		return l, fmt.Errorf("phpsession: invalid limits: MaxDepth %d above %d", l.MaxDepth, maxDepthCap)
	}
	if l.MaxInput == 0 {
		l.MaxInput = d.MaxInput
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxElements == 0 {
		l.MaxElements = d.MaxElements
	}
	if l.MaxString == 0 {
		l.MaxString = l.MaxInput
	}
	return l, nil
}
