package cluster

import (
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// testLogWriter sends log lines to t.Log.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testLogger logs to t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
}

// testOptions gives o a generous lookup timeout unless it has one (the
// tests are about outcomes, and -race is slow), and returns the logger a
// node under test logs to.
func testOptions(t testing.TB, o *storage.RedisOptions) *slog.Logger {
	if o.LookupTimeout == 0 {
		o.LookupTimeout = 5 * time.Second
	}
	return testLogger(t)
}

// closeAtEnd calls close when the test ends, failing the test if it fails
// (as it does when its goroutines do not stop in time).
func closeAtEnd(t testing.TB, close func() error) {
	t.Cleanup(func() {
		if err := close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// goroutinesRunning returns the stacks of the live goroutines whose stack
// holds any of marks (a function or method name).
func goroutinesRunning(marks ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, m := range marks {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// uniqueName names the channels of one test: tests sharing one Redis
// never see each other's.
func uniqueName(t testing.TB, prefix string) string { return testenv.UniqueName(t, prefix) }

// redisAdmin is a plain client of the server at addr that the tests
// publish and inspect through; it is closed when the test ends.
func redisAdmin(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		testenv.Missing(t, "Redis at "+addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// blackhole is a Redis that accepts connections and never answers.
func blackhole(t testing.TB) string { return testenv.Blackhole(t) }
