package test

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/wsgate/wsgate/metrics"
)

// The chart's PrometheusRule: every alert expression must parse as PromQL
// (Prometheus's own parser) and read only series the gateway exports, with
// only labels those series have (or that scraping adds), and every alert
// must have its entry in docs/operations.md. The exported series are not a
// copy kept here: they are what metrics.New registers, read back from the
// collectors' descriptors (a vector without children yet shows there,
// where a scrape of /metrics would not list it).

// targetLabels are added by Prometheus and the Prometheus Operator to
// every scraped series, so the rules may match and group by them.
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// exportedSeries maps each series name the gateway exports (histogram
// and summary series with their _bucket/_sum/_count names) to its labels.
func exportedSeries(t *testing.T) map[string]map[string]bool {
	t.Helper()
	rec := &recordingRegisterer{reg: prometheus.NewRegistry()}
	g := metrics.New(rec)
	g.WatchWAMP(func() (map[string]int, int, int) { return nil, 0, 0 })

	series := map[string]map[string]bool{}
	add := func(name string, labels []string, extra ...string) {
		m := map[string]bool{}
		for _, l := range append(append([]string{}, labels...), extra...) {
			m[l] = true
		}
		series[name] = m
	}
	descRe := regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)
	kinds := map[string]dto.MetricType{}
	mfs, err := rec.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		kinds[mf.GetName()] = mf.GetType()
	}
	for _, d := range rec.descs {
		m := descRe.FindStringSubmatch(d.desc.String())
		if m == nil {
			t.Fatalf("descriptor %s: unexpected form", d.desc)
		}
		name := m[1]
		var labels []string
		for _, lp := range strings.Split(m[2], ",") {
			if k, _, ok := strings.Cut(lp, "="); ok {
				labels = append(labels, k)
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		kind, gathered := kinds[name]
		switch {
		case d.histogram || (gathered && kind == dto.MetricType_HISTOGRAM):
			add(name+"_bucket", labels, "le")
			add(name+"_sum", labels)
			add(name+"_count", labels)
		case gathered && kind == dto.MetricType_SUMMARY:
			add(name, labels, "quantile")
			add(name+"_sum", labels)
			add(name+"_count", labels)
		default:
			add(name, labels)
		}
	}
	if len(series) < 20 || series["wsgate_connections"] == nil {
		t.Fatalf("metrics.New registered only %d series: %v", len(series), series)
	}
	return series
}

// recordingRegisterer registers on reg and keeps every collector's
// descriptors, noting which come from histograms.
type recordingRegisterer struct {
	reg   *prometheus.Registry
	descs []recordedDesc
}

type recordedDesc struct {
	desc      *prometheus.Desc
	histogram bool
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	hist := false
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		hist = true
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		r.descs = append(r.descs, recordedDesc{d, hist})
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// alertRule is one rule of the rendered PrometheusRule.
type alertRule struct {
	Alert, Expr, For string
	Labels           map[string]any
	Annotations      map[string]any
}

func renderedRules(t *testing.T, args ...string) []alertRule {
	t.Helper()
	objs := parseObjects(t, mustHelm(t, append([]string{"template", "rel", chartDir, "--namespace", "web", "--set", "prometheusRule.enabled=true"}, args...)...))
	pr := one(t, objs, "PrometheusRule")
	var rules []alertRule
	for _, g := range list(get(pr, "spec", "groups")) {
		for _, r := range list(get(g, "rules")) {
			labels, _ := get(r, "labels").(map[string]any)
			ann, _ := get(r, "annotations").(map[string]any)
			rules = append(rules, alertRule{str(get(r, "alert")), str(get(r, "expr")), str(get(r, "for")), labels, ann})
		}
	}
	if len(rules) == 0 {
		t.Fatalf("PrometheusRule has no rules")
	}
	return rules
}

// checkExpr parses expr and returns what is wrong with the series and
// labels it reads.
func checkExpr(expr string, series map[string]map[string]bool) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{"does not parse as PromQL: " + err.Error()}
	}
	var problems []string
	target := map[string]bool{}
	for _, l := range targetLabels {
		target[l] = true
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			labels, ok := series[n.Name]
			if !ok {
				problems = append(problems, "reads "+n.Name+", which the gateway does not export")
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" && !labels[m.Name] && !target[m.Name] {
					problems = append(problems, n.Name+" has no label "+m.Name)
				}
			}
		case *parser.AggregateExpr:
			// Grouping labels must exist on some series aggregated.
			have := map[string]bool{}
			parser.Inspect(n.Expr, func(c parser.Node, _ []parser.Node) error {
				if vs, ok := c.(*parser.VectorSelector); ok {
					for l := range series[vs.Name] {
						have[l] = true
					}
				}
				return nil
			})
			for _, l := range n.Grouping {
				if !have[l] && !target[l] {
					problems = append(problems, "groups by "+l+", a label of none of the series aggregated")
				}
			}
		}
		return nil
	})
	if len(problems) == 0 && !strings.Contains(expr, "wsgate_") {
		problems = append(problems, "reads no wsgate_ series")
	}
	return problems
}

func TestChartPrometheusRules(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	series := exportedSeries(t)
	runbook, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"selector", []string{"--set-string", `prometheusRule.selector=job="wsgate-internal"`, "--set", "prometheusRule.groupBy=job"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, r := range renderedRules(t, tc.args...) {
				if seen[r.Alert] {
					t.Errorf("alert %s twice", r.Alert)
				}
				seen[r.Alert] = true
				for _, p := range checkExpr(r.Expr, series) {
					t.Errorf("alert %s: %s\n%s", r.Alert, p, r.Expr)
				}
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
				if sev := str(r.Labels["severity"]); sev != "warning" && sev != "critical" {
					t.Errorf("alert %s: severity %q", r.Alert, sev)
				}
				if tc.name == "defaults" && !strings.Contains(r.Expr, `namespace="web"`) {
					t.Errorf("alert %s does not select the release's namespace:\n%s", r.Alert, r.Expr)
				}
				if tc.name == "selector" && (!strings.Contains(r.Expr, `job="wsgate-internal"`) || strings.Contains(r.Expr, "namespace=")) {
					t.Errorf("alert %s does not use prometheusRule.selector:\n%s", r.Alert, r.Expr)
				}
				anchor := strings.ToLower(r.Alert)
				if url := str(r.Annotations["runbook_url"]); !strings.HasSuffix(url, "docs/operations.md#"+anchor) {
					t.Errorf("alert %s: runbook_url %q", r.Alert, url)
				}
				if !regexp.MustCompile(`(?m)^#+ ` + r.Alert + `$`).Match(runbook) {
					t.Errorf("alert %s: no heading %q in docs/operations.md", r.Alert, r.Alert)
				}
			}
		})
	}

	// disabled leaves an alert out; labels reach the object and the alerts.
	rules := renderedRules(t, "--set", "prometheusRule.disabled.WsgateSlowConsumers=true", "--set", "prometheusRule.additionalLabels.team=web")
	for _, r := range rules {
		if r.Alert == "WsgateSlowConsumers" {
			t.Errorf("WsgateSlowConsumers rendered although disabled")
		}
		if str(r.Labels["team"]) != "web" {
			t.Errorf("alert %s lacks additionalLabels team=web", r.Alert)
		}
	}
	// Off by default.
	if objs := parseObjects(t, mustHelm(t, "template", "rel", chartDir)); len(byKind(objs, "PrometheusRule")) != 0 {
		t.Errorf("PrometheusRule rendered by default")
	}
}

// TestChartRuleCheckCatches: the checks above refuse what they must, so a
// rule reading a missing metric or label cannot pass unnoticed.
func TestChartRuleCheckCatches(t *testing.T) {
	series := exportedSeries(t)
	for _, tc := range []struct{ expr, want string }{
		{`rate(wsgate_no_such_total[5m]) > 0`, "does not export"},
		{`sum by (namespace) (rate(wsgate_handshakes_total{result="x"}[5m]))`, "has no label result"},
		{`sum by (reason) (rate(wsgate_handshakes_total[5m]))`, "groups by reason"},
		{`sum(rate(wsgate_handshakes_total[5m]) >`, "does not parse"},
		{`up == 0`, "does not export"},
	} {
		got := strings.Join(checkExpr(tc.expr, series), "; ")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: problems %q, want one saying %q", tc.expr, got, tc.want)
		}
	}
	// And accepts the series it knows, with their labels.
	var names []string
	for n := range series {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, ok := range []string{
		`histogram_quantile(0.99, sum by (le, result) (rate(wsgate_session_lookup_duration_seconds_bucket{namespace="x"}[5m])))`,
		`sum by (outcome) (rate(wsgate_handshakes_total[5m]))`,
		`wsgate_wamp_sessions{protocol="wamp1"}`,
		`go_goroutines and wsgate_connections`,
	} {
		if p := checkExpr(ok, series); len(p) > 0 {
			t.Errorf("%s: %v (series known: %v)", ok, p, names)
		}
	}
}
