package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The metric names and help texts follow the Prometheus conventions, as
// client_golang's linter judges them.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := New(reg)
	g.Handshakes.WithLabelValues(OutcomeAuthenticated).Inc()
	g.SessionLookups.WithLabelValues("authenticated").Observe(0.001)
	g.Disconnects.WithLabelValues("client_close").Inc()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "wsgate_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := New(reg)
	g.Connections.Set(3)
	ready := errors.New("draining")
	srv := httptest.NewServer(Handler(reg, func() error { return ready }, true))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "wsgate_connections 3") {
		t.Errorf("/metrics: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	ready = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, _ := get("/debug/pprof/heap"); code != 200 {
		t.Errorf("/debug/pprof/heap: %d", code)
	}
}
