//go:build race

package plugins_test

// raceTest reports whether this test binary was built with -race: plugins
// it loads must be built the same way.
const raceTest = true
