package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"runtime/debug"
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
	g.AnonymousHandshakes.WithLabelValues("no_cookie").Inc()
	g.Disconnects.WithLabelValues("client_close").Inc()
	g.PushRequests.WithLabelValues("http", "accepted").Inc()
	g.UpstreamRequests.WithLabelValues("app", "app_rpc", "call", "ok").Observe(0.002)
	g.ConnectionEvents.WithLabelValues("connect", "ok").Inc()
	g.ConnectionEventDuration.WithLabelValues("connect").Observe(0.002)
	g.FanoutPublished.Inc()
	g.FanoutLag.Observe(0.001)
	g.FanoutDropped.WithLabelValues("publish_queue_full").Inc()
	g.Dropped.WithLabelValues("slow_consumer").Inc()
	g.WAMPMessagesIn.WithLabelValues("wamp1", "CALL").Inc()
	g.WAMPMessagesOut.WithLabelValues("wamp1", "EVENT").Inc()
	g.RPCDuration.WithLabelValues("acme.rpc", "ok").Observe(0.001)
	g.RoutingMisses.WithLabelValues("rpc").Inc()
	g.AccessDenied.WithLabelValues("topic").Inc()
	g.StoreLookups.WithLabelValues("files", "read", "ok").Observe(0.001)
	g.StoreCacheHits.WithLabelValues("redis").Inc()
	g.StoreCacheMisses.WithLabelValues("redis").Inc()
	g.Revalidations.WithLabelValues("valid").Inc()
	g.Pushes.WithLabelValues("http").Inc()
	g.WatchWAMP(func() (map[string]int, int, int) { return map[string]int{"wamp1": 1}, 1, 1 })
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "wsgate_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	// Label names must be of bounded sets fixed by code and config: no
	// user, session, connection or topic values, which would grow the
	// series count with the traffic (and leak identities to monitoring).
	bounded := map[string]bool{
		"outcome": true, "result": true, "reason": true, "protocol": true, "type": true,
		"handler": true, "kind": true, "store": true, "op": true, "source": true,
		"upstream": true, "route": true, "event": true,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "wsgate_") {
			continue
		}
		seen++
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !bounded[l.GetName()] {
					t.Errorf("%s has label %q, not one of the bounded label names", mf.GetName(), l.GetName())
				}
			}
		}
	}
	if seen < 25 {
		t.Errorf("gathered %d wsgate_ metric families; the test must exercise every one", seen)
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

// wsgate_build_info is 1 with the version, Go version and revision as
// labels, and passes the linter.
func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := ReadBuildInfo("1.2.3", "")
	if b.Version != "1.2.3" || !strings.HasPrefix(b.GoVersion, "go") || b.Revision == "" {
		t.Fatalf("%+v", b)
	}
	if b := ReadBuildInfo("1.2.3", "feedface"); b.Revision != "feedface" {
		t.Fatalf("the -ldflags revision is not used: %+v", b)
	}
	RegisterBuildInfo(reg, BuildInfo{Version: "1.2.3", GoVersion: "go1.99", Revision: "abc123"})
	want := `# HELP wsgate_build_info Always 1; the labels say which build runs: version (-ldflags), goversion, revision (VCS commit).
# TYPE wsgate_build_info gauge
wsgate_build_info{goversion="go1.99",revision="abc123",version="1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wsgate_build_info"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg, "wsgate_build_info"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestRevision(t *testing.T) {
	for _, tc := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, "unknown"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}, "abc"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}, "abc-dirty"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}, "abc"},
		{[]debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}, "unknown"},
	} {
		if got := revision(tc.settings); got != tc.want {
			t.Errorf("revision(%v) = %q, want %q", tc.settings, got, tc.want)
		}
	}
}
