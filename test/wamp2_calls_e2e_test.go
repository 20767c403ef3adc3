package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestWAMP2AutobahnCalls runs autobahn-js 26 against progressive call
// results, call canceling and call timeouts on the real gateway: acme.jobs/countdown
// (the example plugin) reports progress and honours its ctx; an upstream
// (a Go server in this test) streams progress as application/x-ndjson and
// holds one request until the gateway aborts it.
func TestWAMP2AutobahnCalls(t *testing.T) {
	autobahnNode(t)
	testenv.PHP(t)
	holdArrived := make(chan string, 4)
	holdAborted := make(chan struct{}, 4)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Method string `json:"method"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		w.Header().Set("Content-Type", "application/x-ndjson")
		switch body.Method {
		case "stream":
			for i := 1; i <= 3; i++ {
				fmt.Fprintf(w, `{"progress":{"step":%d}}`+"\n", i)
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, `{"result":"streamed"}`+"\n")
		case "hold":
			holdArrived <- r.Header.Get("Accept")
			io.WriteString(w, `{"progress":"holding"}`+"\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				holdAborted <- struct{}{}
			case <-time.After(20 * time.Second):
				io.WriteString(w, `{"result":"not aborted"}`+"\n")
			}
		default:
			http.Error(w, "unknown method", 404)
		}
	}))
	defer app.Close()

	const secret = "0123456789abcdef0123456789abcdef"
	phpURL := startPHPUpstream(t, secret) // examples/php-upstream: countdown streams
	dir := t.TempDir()
	alice := writePHPSession(t, map[string]any{"store": "files", "dir": dir, "user": "alice", "roles": []string{"ROLE_USER"}, "firewall": "main"})
	g := startGateway(t, fmt.Sprintf(`
listen: "%%LISTEN%%"
metrics: {listen: "%%METRICS%%"}
session:
  store: files
  files: {path: "%s", gc_maxlifetime: 1440}
wamp:
  realm: realm1
limits: {call_timeout: 60s}
upstreams:
  app: {url: "%s", secret: "%s", timeout: 50s}
  php: {url: "%s", secret: "%s", timeout: 10s}
plugins: [%%ACME_PLUGIN%%]
routes:
  rpc:
    jobs: {pattern: "jobs/{method}", handler: acme.jobs}
    app_rpc: {pattern: "app/{method}", handler: upstream.app}
    php_rpc: {pattern: "php/{method}", handler: upstream.php}
`, dir, app.URL, secret, phpURL, secret))

	runs := 0
	for _, ser := range []string{"json", "msgpack"} {
		t.Run(ser, func(t *testing.T) {
			runs++
			var r struct {
				DealerFeatures map[string]bool `json:"dealerFeatures"`
				Progress       []progressStep  `json:"progress"`
				NoProgress     wampOutcome     `json:"noProgress"`
				Stream         []progressStep  `json:"stream"`
				PHPStream      []progressStep  `json:"phpStream"`
				PHPPlain       wampOutcome     `json:"phpPlain"`
				TimedOut       wampOutcome     `json:"timedOut"`
				TimeoutKept    wampOutcome     `json:"timeoutKept"`
				Kill           cancelOutcome   `json:"kill"`
				Plain          cancelOutcome   `json:"plain"`
				Upstream       cancelOutcome   `json:"upstream"`
				After          wampOutcome     `json:"after"`
				Close          json.RawMessage `json:"close"`
			}
			startAutobahn(t, "calls", map[string]any{
				"url": "ws://" + g.Addr + "/", "realm": "realm1", "cookie": cookie(alice), "serializer": ser,
				"countdown": "jobs/countdown", "stream": "app/stream", "upstreamHold": "app/hold", "phpStream": "php/countdown",
			}).result(&r)
			for _, f := range []string{"progressive_call_results", "call_canceling", "call_timeout"} {
				if !r.DealerFeatures[f] {
					t.Errorf("WELCOME dealer features %v lack %s", r.DealerFeatures, f)
				}
			}
			// Progress in order, then the final result.
			assertSteps(t, "countdown", r.Progress, []string{`3`, `2`, `1`}, `"liftoff"`)
			assertSteps(t, "upstream stream", r.Stream, []string{`{"step":1}`, `{"step":2}`, `{"step":3}`}, `"streamed"`)
			assertJSON(t, "countdown without receive_progress", r.NoProgress.OK, `"liftoff"`)
			// The PHP example streams from PHP's own server.
			assertSteps(t, "PHP upstream stream", r.PHPStream, []string{`3`, `2`, `1`}, `"liftoff"`)
			assertJSON(t, "PHP countdown without receive_progress", r.PHPPlain.OK, `"liftoff"`)
			if r.TimedOut.errURI() != "wamp.error.timeout" {
				t.Errorf("call with timeout 300 ms: %+v, want wamp.error.timeout", r.TimedOut)
			}
			assertJSON(t, "call kept alive by progress within its timeout", r.TimeoutKept.OK, `"liftoff"`)

			// kill: the gateway cancels the handler's ctx and answers
			// ERROR wamp.error.canceled once it returned; the countdown
			// would have taken 100 s.
			if r.Kill.Outcome.errURI() != "wamp.error.canceled" || r.Kill.MS > 10000 {
				t.Errorf("cancel kill: %+v, want wamp.error.canceled within 10 s", r.Kill)
			}
			// No mode: autobahn rejects at once ("Cancelled"), and the
			// gateway sends nothing more: the session is still open.
			if r.Plain.Outcome.Err == nil || !strings.Contains(r.Plain.Outcome.Err.Error, "Cancelled") {
				t.Errorf("cancel without a mode: %+v", r.Plain)
			}
			assertJSON(t, "a call after the cancels", r.After.OK, `"liftoff"`)
			if !strings.Contains(string(r.Close), `"reason":"closed"`) {
				t.Errorf("session did not close cleanly after the cancels: %s", r.Close)
			}

			// The upstream request was made accepting a stream and was
			// aborted by the CANCEL: the application saw its request
			// context end.
			select {
			case accept := <-holdArrived:
				if accept != "application/json, application/x-ndjson" {
					t.Errorf("upstream request Accept %q", accept)
				}
			default:
				t.Fatal("the held upstream request never arrived")
			}
			select {
			case <-holdAborted:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream request was not aborted by the CANCEL")
			}
			if r.Upstream.Outcome.errURI() != "wamp.error.canceled" || len(r.Upstream.Progress) != 1 {
				t.Errorf("upstream cancel: %+v", r.Upstream)
			}
		})
	}
	// Every canceled call's handler ended with its ctx: acme.jobs counts
	// three failed calls a run (timeout, kill, no mode), the upstream one
	// canceled request a run.
	deadline := time.Now().Add(10 * time.Second)
	for {
		body := metricsBody(t, g)
		jobs := metricSum(body, "wsgate_rpc_duration_seconds_count", `handler="acme.jobs"`, `outcome="error"`)
		up := metricSum(body, "wsgate_upstream_request_duration_seconds_count", `outcome="canceled"`)
		if jobs == float64(3*runs) && up == float64(runs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme.jobs failed calls %v (want %d), upstream canceled requests %v (want %d)", jobs, 3*runs, up, runs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// progressStep is one entry of client.mjs's progressOf sequence.
type progressStep struct {
	Progress json.RawMessage `json:"progress"`
	Final    *wampOutcome    `json:"final"`
}

// cancelOutcome is client.mjs's cancelAfterFirst result.
type cancelOutcome struct {
	NoProgress bool              `json:"noProgress"`
	Progress   []json.RawMessage `json:"progress"`
	Outcome    wampOutcome       `json:"outcome"`
	MS         int               `json:"ms"`
}

// assertSteps checks a progressOf sequence: the progress values in
// order, then the final result, and nothing after it.
func assertSteps(t *testing.T, what string, seq []progressStep, progress []string, final string) {
	t.Helper()
	if len(seq) != len(progress)+1 {
		t.Fatalf("%s: %d steps %+v, want %d progress and the final result", what, len(seq), seq, len(progress))
	}
	for i, p := range progress {
		if seq[i].Final != nil || !jsonSame(seq[i].Progress, p) {
			t.Errorf("%s: step %d is %+v, want progress %s", what, i, seq[i], p)
		}
	}
	last := seq[len(seq)-1]
	if last.Final == nil || last.Final.Err != nil || !jsonSame(last.Final.OK, final) {
		t.Errorf("%s: final step %+v, want result %s", what, last, final)
	}
}
