//go:build race

package plugins

// raceEnabled reports whether the gateway was built with -race; a plugin
// must be built the same way.
const raceEnabled = true
