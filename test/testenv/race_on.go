//go:build race

package testenv

// RaceEnabled reports whether this test binary was built with -race: the
// gateway and the plugins the tests build must then be -race builds too.
const RaceEnabled = true
