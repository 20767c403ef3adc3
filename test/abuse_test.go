package test

// The abuse suite (issue 14): probes that try the real gateway binary as a
// hostile client or a slow application would, once per transport mode, and
// assert what a hardened gateway must show: the HTTP status or close code
// the client gets, the wsgate_limit_exceeded_total{limit} count, and a bound
// on the gateway's resident memory. Every probe is bounded in bytes, in
// sockets and by a context deadline; none asserts a duration.
//
// Environment:
//
//	WSGATE_ABUSE_BIN     run the probes against this gateway binary instead
//	                     of the one TestMain built (e.g. a build of the
//	                     previous commit, for docs/benchmarks.md)
//	WSGATE_ABUSE_PLUGIN  the acme example plugin built together with that
//	                     binary (same tree and flags); default: the one
//	                     TestMain built, which only loads into a binary of
//	                     this tree
//	WSGATE_ABUSE_REPORT  a file every probe appends its RSS line to
//
// Each probe logs one line (go test -v shows it):
//
//	abuse-rss probe=<test name> mode=<mode> rss_before_kib=N peak_kib=N
//
// where peak is the gateway's VmHWM over the probe (reset at its start
// through /proc/<pid>/clear_refs) and rss_before its VmRSS then.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// abuseModes are the transport modes every probe runs in.
var abuseModes = []string{"epoll", "goroutine"}

// forEachMode runs f once per transport mode, as subtests named by mode.
func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	t.Helper()
	for _, mode := range abuseModes {
		t.Run(mode, func(t *testing.T) { f(t, mode) })
	}
}

// abuseBin is the gateway binary the probes start: WSGATE_ABUSE_BIN, or a
// build of this tree without the race detector, whose shadow memory would
// swamp the memory bounds the probes assert (the race-enabled binary the
// other end-to-end tests run, and the in-process transport tests, cover
// the same paths for races).
func abuseBin(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("WSGATE_ABUSE_BIN"); v != "" {
		return v
	}
	bin, _ := testenv.PlainBuilds(t, "../cmd/wsgate", gatewayLDFlags)
	return bin
}

// abusePlugin is the acme example plugin for abuseBin.
func abusePlugin(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("WSGATE_ABUSE_PLUGIN"); v != "" {
		return v
	}
	_, so := testenv.PlainBuilds(t, "../cmd/wsgate", gatewayLDFlags)
	return so
}

// startAbuseGateway is startGateway for abuseBin: it writes config (with
// %LISTEN%, %METRICS%, %API% and %ACME_PLUGIN% replaced), starts
// `wsgate serve` and waits until /readyz answers 200. A gateway that
// refuses the config (a key it does not know) fails t with its message.
func startAbuseGateway(t *testing.T, config string) *gatewayProcess {
	t.Helper()
	if strings.Contains(config, acmePluginMark) {
		config = strings.ReplaceAll(config, acmePluginMark, strconv.Quote(abusePlugin(t)))
	}
	for attempt := 1; ; attempt++ {
		g, err := tryStartBin(t, abuseBin(t), config)
		if err == nil {
			return g
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying on other ports: %v", err)
	}
}

// Pid is the gateway's process id.
func (g *gatewayProcess) Pid() int { return g.cmd.Process.Pid }

// procStatusKiB reads a "Vm...: N kB" field of /proc/<pid>/status.
func procStatusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// rssProbe measures one probe's memory: the gateway's VmRSS when it
// starts and its peak (VmHWM, reset at the start) when it ends.
type rssProbe struct {
	t         *testing.T
	g         *gatewayProcess
	mode      string
	beforeKiB int64
	reset     bool // VmHWM was reset: the peak is this probe's own
}

// measureRSS starts measuring the gateway's memory for the probe t.
func measureRSS(t *testing.T, g *gatewayProcess, mode string) *rssProbe {
	t.Helper()
	p := &rssProbe{t: t, g: g, mode: mode}
	// "5" resets the peak RSS (Linux 4.0+); without it the peak is the
	// process's whole life, which the log line says.
	p.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", g.Pid()), []byte("5"), 0) == nil
	var err error
	if p.beforeKiB, err = procStatusKiB(g.Pid(), "VmRSS"); err != nil {
		t.Fatalf("gateway RSS: %v", err)
	}
	t.Cleanup(p.log)
	return p
}

// peakKiB is the gateway's VmHWM now.
func (p *rssProbe) peakKiB() int64 {
	p.t.Helper()
	v, err := procStatusKiB(p.g.Pid(), "VmHWM")
	if err != nil {
		p.t.Fatalf("gateway peak RSS: %v", err)
	}
	return v
}

// assertPeakWithin fails the probe when the gateway's peak RSS went more
// than bound above its RSS at the start.
func (p *rssProbe) assertPeakWithin(bound int64) {
	p.t.Helper()
	peak := p.peakKiB()
	if peak-p.beforeKiB > bound>>10 {
		p.t.Errorf("gateway peak RSS %d MiB, %d MiB above its %d MiB before the probe: bound is +%d MiB",
			peak>>10, (peak-p.beforeKiB)>>10, p.beforeKiB>>10, bound>>20)
	}
}

var abuseReportMu sync.Mutex // guards appends to WSGATE_ABUSE_REPORT

// log writes the probe's RSS line (and appends it to WSGATE_ABUSE_REPORT).
func (p *rssProbe) log() {
	peak, err := procStatusKiB(p.g.Pid(), "VmHWM")
	if err != nil {
		p.t.Logf("abuse-rss probe=%s: gateway gone: %v", p.t.Name(), err)
		return
	}
	scope := "probe"
	if !p.reset {
		scope = "process"
	}
	status := "pass"
	if p.t.Failed() {
		status = "fail"
	}
	line := fmt.Sprintf("abuse-rss probe=%s mode=%s result=%s rss_before_kib=%d peak_kib=%d peak_scope=%s bin=%s",
		p.t.Name(), p.mode, status, p.beforeKiB, peak, scope, abuseBin(p.t))
	p.t.Log(line)
	if path := os.Getenv("WSGATE_ABUSE_REPORT"); path != "" {
		abuseReportMu.Lock()
		defer abuseReportMu.Unlock()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			p.t.Errorf("abuse report: %v", err)
			return
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}

// metricSum adds the values of the series of metric name in a /metrics
// body whose labels include every `k="v"` pair given. A series the
// gateway never created counts 0.
func metricSum(body, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, val := line[:sp], line[sp+1:]
		var lbl string
		if i := strings.IndexByte(series, '{'); i >= 0 {
			series, lbl = series[:i], series[i:]
		}
		if series != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(lbl, l) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// metricWatch remembers counters at a probe's start so that the probe can
// assert on how much they grew.
type metricWatch struct {
	t      *testing.T
	g      *gatewayProcess
	before string
}

func watchMetrics(t *testing.T, g *gatewayProcess) *metricWatch {
	t.Helper()
	return &metricWatch{t: t, g: g, before: metricsBody(t, g)}
}

// delta is how much metric name (with the given labels) grew since the
// watch began.
func (w *metricWatch) delta(name string, labels ...string) float64 {
	w.t.Helper()
	return metricSum(metricsBody(w.t, w.g), name, labels...) - metricSum(w.before, name, labels...)
}

// expectLimit asserts that wsgate_limit_exceeded_total{limit=key} grew by
// at least n since the watch began.
func (w *metricWatch) expectLimit(key string, n int) {
	w.t.Helper()
	if d := w.awaitDelta("wsgate_limit_exceeded_total", `limit="`+key+`"`, n); d < float64(n) {
		w.t.Errorf(`wsgate_limit_exceeded_total{limit=%q} grew by %v, want at least %d`, key, d, n)
	}
}

// expectDisconnects asserts that wsgate_disconnects_total{reason} grew by
// at least n since the watch began.
func (w *metricWatch) expectDisconnects(reason string, n int) {
	w.t.Helper()
	if d := w.awaitDelta("wsgate_disconnects_total", `reason="`+reason+`"`, n); d < float64(n) {
		w.t.Errorf(`wsgate_disconnects_total{reason=%q} grew by %v, want at least %d`, reason, d, n)
	}
}

// awaitDelta polls metric name{label} until it grew by n or a few seconds
// passed, and returns the growth: the gateway counts a disconnect after it
// closed the socket, so a client can see the close a moment before the
// count. The wait bounds an outcome; it asserts no duration.
func (w *metricWatch) awaitDelta(name, label string, n int) float64 {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := w.delta(name, label)
		if d >= float64(n) || time.Now().After(deadline) {
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialLoopback connects to addr with an optional small receive buffer
// (rcvBuf > 0 sets SO_RCVBUF before connecting, which also stops the
// kernel from growing it), so that a client that never reads makes the
// gateway's queue fill after little output rather than after megabytes
// of socket buffers.
func dialLoopback(ctx context.Context, addr string, rcvBuf int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvBuf > 0 {
		d.Control = setRcvBuf(rcvBuf)
	}
	return d.DialContext(ctx, "tcp", addr)
}
