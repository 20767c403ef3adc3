//go:build race

package storage

// raceEnabled: the race detector makes big reads slow; tests that only need
// many reads, not big ones, shrink their files under it.
const raceEnabled = true
