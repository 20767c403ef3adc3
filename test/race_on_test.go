//go:build race

package test

// raceEnabled reports whether these tests are a -race build. The gateway
// and plugin builds follow testenv.RaceEnabled, which always agrees; this
// stays for the test files that read it.
const raceEnabled = true
