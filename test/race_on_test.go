//go:build race

package test

// raceEnabled makes the gateway under test a -race build when the tests are.
const raceEnabled = true
