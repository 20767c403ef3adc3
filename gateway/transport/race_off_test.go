//go:build !race

package transport

// raceEnabled: under -race sync.Pool drops some of what it is given, so
// allocation counts that rely on a pool are not checked.
const raceEnabled = false
