package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bench is one run of one scenario.
type bench struct {
	cfg *config
	log io.Writer
	gw  *gateway   // the first target's
	gws []*gateway // one per target

	srcNext atomic.Uint64

	errMu sync.Mutex
	errs  map[string]int64

	closing atomic.Bool    // set before the tool closes its own connections
	readers sync.WaitGroup // every per-connection goroutine
	dead    atomic.Int64   // connections lost before the tool closed them
}

func newBench(cfg *config, log io.Writer) *bench {
	b := &bench{cfg: cfg, log: log, errs: map[string]int64{}}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for _, t := range cfg.targets {
		b.gws = append(b.gws, &gateway{pid: t.pid, metrics: t.metrics, hc: hc})
	}
	b.gw = b.gws[0]
	return b
}

// report is what a run prints.
type report struct {
	Scenario string  `json:"scenario"`
	Params   *config `json:"params"`
	Gateway  struct {
		PID       int    `json:"pid,omitempty"`
		PIDSource string `json:"pid_source"`
	} `json:"gateway"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute load averages when
	// the run started: how busy the shared machine was.
	LoadAvg     []float64        `json:"load_avg,omitempty"`
	Results     results          `json:"results"`
	Errors      map[string]int64 `json:"errors"`
	ErrorsTotal int64            `json:"errors_total"`
	// Before and After bound the measured window (see each scenario).
	Before *sample `json:"before,omitempty"`
	After  *sample `json:"after,omitempty"`
	// End is idle's sample at the end of the hold (--duration).
	End           *sample `json:"end,omitempty"`
	WindowSeconds float64 `json:"window_s"`
	// GatewayCPUSeconds is the CPU every target gateway used over the
	// window, summed.
	GatewayCPUSeconds *float64 `json:"gateway_cpu_seconds,omitempty"`
	ToolCPUSeconds    float64  `json:"tool_cpu_seconds"`
	// Gateways has one entry per target when there are several (broadcast
	// across replicas); the first is the one Gateway, Before and After
	// describe.
	Gateways []*gatewayReport `json:"gateways,omitempty"`
	// OtherProcesses are the --extra-pid processes' CPU over the window.
	OtherProcesses []*procReport `json:"other_processes,omitempty"`
}

// gatewayReport is one target gateway's share of a run with several.
type gatewayReport struct {
	Target    string `json:"target"`
	PID       int    `json:"pid,omitempty"`
	PIDSource string `json:"pid_source"`
	// Publisher is set on the target the publisher is connected to.
	Publisher          bool         `json:"publisher,omitempty"`
	Subscribers        int64        `json:"subscribers"`
	ExpectedDeliveries int64        `json:"expected_deliveries"`
	Delivered          int64        `json:"delivered"`
	Lost               int64        `json:"lost"`
	DeliveriesPerSec   float64      `json:"deliveries_per_s"`
	Delivery           *percentiles `json:"delivery_latency,omitempty"`
	CPUSeconds         *float64     `json:"cpu_seconds,omitempty"`
	CPUPerDeliveryUs   *float64     `json:"cpu_per_delivery_us,omitempty"`
	Before             *sample      `json:"before,omitempty"`
	After              *sample      `json:"after,omitempty"`
}

// procReport is another process' CPU over the measured window.
type procReport struct {
	PID        int      `json:"pid"`
	Name       string   `json:"name,omitempty"`
	CPUSeconds *float64 `json:"cpu_seconds,omitempty"`
	Error      string   `json:"error,omitempty"`
	before     *float64
}

// results holds every scenario's figures; each fills its own.
type results struct {
	ConnectionsOpened int64        `json:"connections_opened"`
	ConnectSeconds    float64      `json:"connect_s"`
	HandshakesPerSec  float64      `json:"handshakes_per_s"`
	Handshake         *percentiles `json:"handshake_latency,omitempty"` // dial to WELCOME
	ConnectionsLost   int64        `json:"connections_lost"`

	// idle
	RSSPerConnBytes       *float64 `json:"rss_per_conn_bytes,omitempty"`
	HeapInusePerConnBytes *float64 `json:"heap_inuse_per_conn_bytes,omitempty"`
	GoroutinesPerConn     *float64 `json:"goroutines_per_conn,omitempty"`
	ThreadsDelta          *int     `json:"threads_delta,omitempty"`

	// connect
	CPUPerHandshakeUs *float64 `json:"cpu_per_handshake_us,omitempty"`

	// broadcast
	Subscribers        int64        `json:"subscribers,omitempty"`
	SetupSeconds       float64      `json:"setup_s,omitempty"`
	JoinEventsIgnored  int64        `json:"join_events_ignored,omitempty"`
	Published          int64        `json:"published,omitempty"`
	ExpectedDeliveries int64        `json:"expected_deliveries,omitempty"`
	Delivered          int64        `json:"delivered,omitempty"`
	Lost               int64        `json:"lost,omitempty"`
	OutOfOrder         int64        `json:"out_of_order,omitempty"`
	DeliveriesPerSec   float64      `json:"deliveries_per_s,omitempty"`
	Delivery           *percentiles `json:"delivery_latency,omitempty"` // publish write to EVENT read
	CPUPerDeliveryUs   *float64     `json:"cpu_per_delivery_us,omitempty"`

	// rpc
	Calls        int64        `json:"calls,omitempty"`
	CallsPerSec  float64      `json:"calls_per_s,omitempty"`
	Call         *percentiles `json:"call_latency,omitempty"` // CALL write to CALLRESULT read
	CPUPerCallUs *float64     `json:"cpu_per_call_us,omitempty"`

	// floor: the floor scenario's figures, or with --with-floor the floor
	// measured first in a gateway scenario's run
	Floor *floorResults `json:"floor,omitempty"`
	// RatiosToFloor are the gateway figures over Floor (--with-floor).
	RatiosToFloor *floorRatios `json:"ratios_to_floor,omitempty"`
}

func (b *bench) fail(kind string) {
	b.errMu.Lock()
	b.errs[kind]++
	b.errMu.Unlock()
}

func (b *bench) failN(kind string, n int64) {
	if n > 0 {
		b.errMu.Lock()
		b.errs[kind] += n
		b.errMu.Unlock()
	}
}

func (b *bench) source() net.IP {
	ips := b.cfg.sourceIPs
	return ips[int(b.srcNext.Add(1)-1)%len(ips)]
}

func (b *bench) run(ctx context.Context) (*report, error) {
	rep := &report{Scenario: b.cfg.Scenario, Params: b.cfg, LoadAvg: loadAvg()}
	if b.cfg.Scenario == "floor" {
		// No gateway: nothing to find or sample.
		rep.Gateway.PIDSource = "none (floor)"
		err := b.floor(ctx, rep)
		b.errMu.Lock()
		rep.Errors = b.errs
		for _, n := range b.errs {
			rep.ErrorsTotal += n
		}
		b.errMu.Unlock()
		return rep, err
	}
	for i, t := range b.cfg.targets {
		pid, source := t.pid, "flag"
		if pid <= 0 {
			p, err := findListener(t.port)
			if err != nil {
				source = "not found: " + err.Error()
				fmt.Fprintf(b.log, "wsgate-bench: gateway process of %s: %v (no CPU/RSS figures)\n", t.dialAddr, err)
			} else {
				pid, source = p, "listening port"
			}
		}
		b.gws[i].pid = pid
		if i == 0 {
			rep.Gateway.PID, rep.Gateway.PIDSource = pid, source
		}
		if len(b.cfg.targets) > 1 {
			rep.Gateways = append(rep.Gateways, &gatewayReport{Target: t.url, PID: pid, PIDSource: source})
		}
	}
	for _, pid := range b.cfg.ExtraPIDs {
		pr := &procReport{PID: pid}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			pr.Name = strings.TrimSpace(string(comm))
		}
		rep.OtherProcesses = append(rep.OtherProcesses, pr)
	}
	var err error
	if b.cfg.WithFloor {
		// Before any gateway connection: the floor's pairs and the
		// scenario's connections never share the descriptor limit, and the
		// gateway is idle while its CPU's floor is measured.
		fmt.Fprintf(b.log, "wsgate-bench: measuring the kernel floor first (%s)\n", strings.Join(b.cfg.FloorPhases, ", "))
		if rep.Results.Floor, err = b.measureFloor(ctx); err != nil {
			err = fmt.Errorf("the floor before the %s run: %w", b.cfg.Scenario, err)
			b.fail("floor_failed")
		}
	}
	if err == nil {
		err = b.runScenario(ctx, rep)
	}
	rep.Results.RatiosToFloor = ratiosToFloor(&rep.Results, rep.Results.Floor)
	rep.Results.ConnectionsLost = b.dead.Load()
	b.errMu.Lock()
	rep.Errors = b.errs
	for _, n := range b.errs {
		rep.ErrorsTotal += n
	}
	b.errMu.Unlock()
	if rep.Before != nil && rep.After != nil && rep.Before.CPUSeconds != nil && rep.After.CPUSeconds != nil {
		d := *rep.After.CPUSeconds - *rep.Before.CPUSeconds
		rep.GatewayCPUSeconds = &d
		rep.WindowSeconds = rep.After.At.Sub(rep.Before.At).Seconds()
	}
	if len(rep.Gateways) > 0 {
		// Several gateways: the sum, or nothing when one is unknown.
		var sum float64
		for _, g := range rep.Gateways {
			if g.CPUSeconds == nil {
				rep.GatewayCPUSeconds = nil
				break
			}
			sum += *g.CPUSeconds
			rep.GatewayCPUSeconds = &sum
		}
	}
	return rep, err
}

// runScenario runs the gateway scenario cfg.Scenario names.
func (b *bench) runScenario(ctx context.Context, rep *report) error {
	switch b.cfg.Scenario {
	case "idle":
		return b.idle(ctx, rep)
	case "connect":
		return b.connect(ctx, rep)
	case "broadcast":
		return b.broadcast(ctx, rep)
	case "rpc":
		return b.rpc(ctx, rep)
	}
	return fmt.Errorf("unknown scenario %q", b.cfg.Scenario)
}

// sampleBefore takes the samples that open the measured window: every
// gateway and every --extra-pid process.
func (b *bench) sampleBefore(ctx context.Context, rep *report) {
	rep.Before = b.gw.take(ctx)
	for i, g := range rep.Gateways {
		g.Before = b.gatewaySample(ctx, rep.Before, i)
	}
	for _, p := range rep.OtherProcesses {
		if cpu, err := readCPU(p.PID); err == nil {
			p.before = &cpu
		} else {
			p.Error = err.Error()
		}
	}
}

// gatewaySample samples gateway i; the first one's sample is first, the
// report's own, taken already.
func (b *bench) gatewaySample(ctx context.Context, first *sample, i int) *sample {
	if i == 0 {
		return first
	}
	return b.gws[i].take(ctx)
}

// sampleAfter closes the window and works out each process' CPU over it.
func (b *bench) sampleAfter(ctx context.Context, rep *report) {
	rep.After = b.gw.take(ctx)
	for i, g := range rep.Gateways {
		g.After = b.gatewaySample(ctx, rep.After, i)
		if g.Before != nil && g.After != nil && g.Before.CPUSeconds != nil && g.After.CPUSeconds != nil {
			d := *g.After.CPUSeconds - *g.Before.CPUSeconds
			g.CPUSeconds = &d
		}
	}
	for _, p := range rep.OtherProcesses {
		if cpu, err := readCPU(p.PID); err == nil && p.before != nil {
			d := cpu - *p.before
			p.CPUSeconds = &d
		} else if err != nil {
			p.Error = err.Error()
		}
	}
}

// opener opens connections [from, from+n) with cfg.Concurrency workers,
// paced to rate per second when rate > 0, until ctx ends. onOpen runs on the
// worker for each connection that reached WELCOME; it takes ownership.
type opener struct {
	from, n int
	rate    float64
	onOpen  func(c *client)
	// target picks the target (an index of cfg.targets) of client idx;
	// nil means the first.
	target func(idx int) int
}

// open returns the number of connections opened and how long it took.
// Connections not attempted before ctx ended count as errors of kind
// "not_attempted"; failed ones under their own kind.
func (b *bench) open(ctx context.Context, o opener, hs *hist) (int64, time.Duration) {
	var next, opened, attempted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	workers := min(b.cfg.Concurrency, o.n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.n {
					return
				}
				if o.rate > 0 {
					at := start.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))
					if !sleepUntil(ctx, at) {
						return
					}
				}
				t := &b.cfg.targets[0]
				if o.target != nil {
					t = &b.cfg.targets[o.target(o.from+i)]
				}
				t0 := time.Now()
				c, err := dial(ctx, b.cfg, t, o.from+i, b.source())
				if err != nil {
					if ctx.Err() == nil {
						attempted.Add(1)
						b.fail(kindOf(err))
					}
					continue
				}
				attempted.Add(1)
				hs.record(time.Since(t0))
				opened.Add(1)
				o.onOpen(c)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	b.failN("not_attempted", int64(o.n)-attempted.Load())
	return opened.Load(), took
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pool keeps the open connections so they can be closed at the end.
type pool struct {
	mu sync.Mutex
	cs []*client
}

func (p *pool) add(c *client) {
	p.mu.Lock()
	p.cs = append(p.cs, c)
	p.mu.Unlock()
}

// closeAll closes every connection (RST) and waits, at most 10 s, for their
// goroutines.
func (b *bench) closeAll(p *pool) {
	b.closing.Store(true)
	p.mu.Lock()
	cs := p.cs
	p.cs = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.closeAbort()
	}
	done := make(chan struct{})
	go func() { b.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintln(b.log, "wsgate-bench: some connection goroutines did not end")
	}
}

// drainLoop reads and discards messages until the connection ends; handle,
// when set, sees each message.
func (b *bench) drainLoop(c *client, handle func(msg []byte)) {
	defer b.readers.Done()
	for {
		msg, err := c.readMessage()
		if err != nil {
			if !b.closing.Load() {
				b.dead.Add(1)
				b.fail(kindOf(err))
			}
			return
		}
		if handle != nil {
			handle(msg)
		}
	}
}

// callMsg is the CALL sent by rpc and auth checks: procedure (--procedure,
// sample/sum by default) of 1 and 2.
func callMsg(procedure, id string) []byte {
	return []byte(`[2,"` + id + `","` + procedure + `",[1,2]]`)
}

// callResult classifies msg as the answer to call id: "" (not an answer to
// it), "ok", "auth_failure" (the anonymous refusal) or "bad_result". The
// sum 3 is accepted as acme.rpc answers it ({"result":3}) and as a call
// through an HTTP upstream answering {"result": 3} does: the gateway sends
// a scalar result as a one-element list, [3] (a bare 3 is accepted too).
func callResult(msg []byte, id string) string {
	if rest, ok := bytes.CutPrefix(msg, []byte(`[3,"`+id+`",`)); ok {
		rest = bytes.TrimSpace(rest)
		switch {
		case bytes.Contains(rest, []byte(`"result":3`)), bytes.Equal(rest, []byte(`[3]]`)), bytes.Equal(rest, []byte(`3]`)):
			return "ok"
		case bytes.Contains(rest, []byte(`"error":true`)):
			return "auth_failure"
		}
		return "bad_result"
	}
	if bytes.HasPrefix(msg, []byte(`[4,"`+id+`",`)) {
		return "call_error"
	}
	return ""
}

// syncCall sends one CALL and reads until its answer or the deadline; it
// returns "ok" or an error kind. Only for connections whose reads this
// goroutine owns.
func syncCall(c *client, procedure, id string, deadline time.Time) string {
	if err := c.writeText(callMsg(procedure, id)); err != nil {
		return kindOf(err)
	}
	c.nc.SetReadDeadline(deadline)
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		msg, err := c.readMessage()
		if err != nil {
			return kindOf(err)
		}
		if r := callResult(msg, id); r != "" {
			return r
		}
	}
}

// settleConnections waits (at most 5 s) until the gateway's connection gauge
// is back to want, so the after sample includes the teardown work.
func (b *bench) settleConnections(ctx context.Context, want *float64) {
	if want == nil || b.gw.metrics == "" {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		m, err := b.gw.scrape(ctx, "wsgate_connections")
		if err != nil || m["wsgate_connections"] == nil || *m["wsgate_connections"] <= *want {
			return
		}
		sleepUntil(ctx, time.Now().Add(50*time.Millisecond))
	}
}

func perUnit(before, after *sample, units int64, get func(*sample) *float64, scale float64) *float64 {
	if before == nil || after == nil || units <= 0 {
		return nil
	}
	a, bf := get(after), get(before)
	if a == nil || bf == nil {
		return nil
	}
	v := (*a - *bf) / float64(units) * scale
	return &v
}

func cpuOf(s *sample) *float64 { return s.CPUSeconds }
func goroutinesOf(s *sample) *float64 {
	return s.Goroutines
}
func heapOf(s *sample) *float64 { return s.HeapInuse }
func rssOf(s *sample) *float64 {
	if s.RSSBytes == 0 {
		return nil
	}
	v := float64(s.RSSBytes)
	return &v
}

// verifyAuth makes --verify-auth's one call on a fresh connection and
// reports whether it answered as an authenticated client; a failure is
// counted under its kind. Without --verify-auth every connection passes.
// idleSubscribe subscribes an idle client to --idle-subscribe (if set) and
// confirms it with a call: WAMP v1 does not acknowledge SUBSCRIBE, but one
// connection's messages are handled in order.
func (b *bench) idleSubscribe(c *client, n *atomic.Int64) bool {
	if b.cfg.IdleSubscribe == "" {
		return true
	}
	topic := strings.ReplaceAll(b.cfg.IdleSubscribe, "{i}", strconv.Itoa(c.idx))
	if err := c.writeText([]byte(`[5,"` + topic + `"]`)); err != nil {
		b.fail(kindOf(err))
		return false
	}
	if r := syncCall(c, b.cfg.Procedure, "sub", time.Now().Add(10*time.Second)); r != "ok" {
		b.fail(r)
		return false
	}
	n.Add(1)
	return true
}

func (b *bench) verifyAuth(c *client) bool {
	if !b.cfg.VerifyAuth {
		return true
	}
	if r := syncCall(c, b.cfg.Procedure, "auth", time.Now().Add(10*time.Second)); r != "ok" {
		b.fail(r)
		return false
	}
	return true
}

// idle opens cfg.Conns connections and holds them. Before: just before the
// first connection; After: --settle after the last; End: after holding
// --duration more.
func (b *bench) idle(ctx context.Context, rep *report) error {
	cfg := b.cfg
	var p pool
	defer b.closeAll(&p)
	hs := &hist{}
	var subscribed atomic.Int64
	b.sampleBefore(ctx, rep)
	if c := rep.Before.Connections; c != nil && *c > 0 {
		fmt.Fprintf(b.log, "wsgate-bench: warning: the gateway already has %.0f connections; per-connection figures need a fresh gateway\n", *c)
	}
	tool0 := selfCPU()
	setup, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	n, took := b.open(setup, opener{from: 0, n: cfg.Conns, rate: cfg.Rate, onOpen: func(c *client) {
		if !b.verifyAuth(c) || !b.idleSubscribe(c, &subscribed) {
			c.closeAbort()
			return
		}
		p.add(c)
		b.readers.Add(1)
		go b.drainLoop(c, nil)
	}}, hs)
	b.fillConnect(rep, n, took, hs)
	rep.Results.Subscribers = subscribed.Load()
	sleepUntil(ctx, time.Now().Add(cfg.Settle))
	b.sampleAfter(ctx, rep)
	rep.ToolCPUSeconds = selfCPU() - tool0
	alive := n - b.dead.Load()
	r := &rep.Results
	r.RSSPerConnBytes = perUnit(rep.Before, rep.After, alive, rssOf, 1)
	r.HeapInusePerConnBytes = perUnit(rep.Before, rep.After, alive, heapOf, 1)
	r.GoroutinesPerConn = perUnit(rep.Before, rep.After, alive, goroutinesOf, 1)
	if rep.Before.Threads > 0 && rep.After.Threads > 0 {
		d := rep.After.Threads - rep.Before.Threads
		r.ThreadsDelta = &d
	}
	if cfg.Duration > 0 {
		sleepUntil(ctx, time.Now().Add(cfg.Duration))
		rep.End = b.gw.take(ctx)
	}
	return ctx.Err()
}

func (b *bench) fillConnect(rep *report, n int64, took time.Duration, hs *hist) {
	r := &rep.Results
	r.ConnectionsOpened = n
	r.ConnectSeconds = took.Seconds()
	if took > 0 {
		r.HandshakesPerSec = float64(n) / took.Seconds()
	}
	r.Handshake = hs.summary()
}

// connect performs cfg.Conns handshakes, each closed (RST) right after
// WELCOME, within --duration. Before/After bound the handshakes and the
// gateway's teardown of the last connections.
func (b *bench) connect(ctx context.Context, rep *report) error {
	cfg := b.cfg
	hs := &hist{}
	b.sampleBefore(ctx, rep)
	tool0 := selfCPU()
	run, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	n, took := b.open(run, opener{from: 0, n: cfg.Conns, rate: cfg.Rate, onOpen: func(c *client) {
		b.verifyAuth(c)
		c.closeAbort()
	}}, hs)
	b.settleConnections(ctx, rep.Before.Connections)
	b.sampleAfter(ctx, rep)
	rep.ToolCPUSeconds = selfCPU() - tool0
	b.fillConnect(rep, n, took, hs)
	rep.Results.CPUPerHandshakeUs = perUnit(rep.Before, rep.After, n, cpuOf, 1e6)
	return ctx.Err()
}

// Broadcast event: the published event is the JSON string
// "B|<seq>|<unix ns>|xxx…", padded to --payload-bytes.
const (
	eventMarker = `"B|`
	minPayload  = 48
)

func eventJSON(seq int64, ts time.Time, size int) []byte {
	e := make([]byte, 0, size)
	e = append(e, eventMarker...)
	e = strconv.AppendInt(e, seq, 10)
	e = append(e, '|')
	e = strconv.AppendInt(e, ts.UnixNano(), 10)
	e = append(e, '|')
	for len(e) < size-1 {
		e = append(e, 'x')
	}
	return append(e, '"')
}

// parseEvent finds a bench event in an EVENT message.
func parseEvent(msg []byte) (seq, ts int64, ok bool) {
	i := bytes.Index(msg, []byte(eventMarker))
	if i < 0 || !bytes.HasPrefix(msg, []byte("[8,")) {
		return 0, 0, false
	}
	rest := msg[i+len(eventMarker):]
	a := bytes.IndexByte(rest, '|')
	if a < 0 {
		return 0, 0, false
	}
	bb := bytes.IndexByte(rest[a+1:], '|')
	if bb < 0 {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseInt(string(rest[:a]), 10, 64)
	ts, err2 := strconv.ParseInt(string(rest[a+1:a+1+bb]), 10, 64)
	return seq, ts, err1 == nil && err2 == nil
}

// broadcast subscribes cfg.Conns clients to cfg.Topic, then one more client
// publishes cfg.PublishRate events/s for cfg.Duration. With several targets
// (replicas of one cluster) subscriber i goes to target i mod n and the
// publisher to the first, so every other replica's subscribers are reached
// through the cluster fan-out. Before: after every subscriber confirmed and
// the join announcements went quiet (and at least --settle after the last
// confirmation, which lets replicas subscribe to the fan-out channel);
// After: when every delivery arrived or --drain-timeout after the last
// publish.
func (b *bench) broadcast(ctx context.Context, rep *report) error {
	cfg := b.cfg
	var p pool
	defer b.closeAll(&p)
	hs, lat := &hist{}, &hist{}
	var subscribed, setupDone, delivered, outOfOrder, joins atomic.Int64
	var lastJoin, lastDelivery atomic.Int64
	nt := len(cfg.targets)
	per := make([]*targetCounts, nt)
	for i := range per {
		per[i] = &targetCounts{}
	}
	subscribe := []byte(`[5,"` + cfg.Topic + `"]`)

	setupStart := time.Now()
	setup, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	n, took := b.open(setup, opener{from: 0, n: cfg.Conns, rate: cfg.Rate, target: func(idx int) int { return idx % nt }, onOpen: func(c *client) {
		p.add(c)
		pt := per[c.idx%nt]
		if err := c.writeText(subscribe); err != nil {
			b.fail(kindOf(err))
			setupDone.Add(1)
			return
		}
		// WAMP v1 does not acknowledge SUBSCRIBE; a CALL sent after it is
		// answered after the subscription is in place (one connection's
		// messages are handled in order), and proves authentication.
		if err := c.writeText(callMsg(b.cfg.Procedure, "sub")); err != nil {
			b.fail(kindOf(err))
			setupDone.Add(1)
			return
		}
		var last int64
		confirmed := false
		b.readers.Add(1)
		go b.drainLoop(c, func(msg []byte) {
			if seq, ts, ok := parseEvent(msg); ok {
				now := time.Now()
				d := now.Sub(time.Unix(0, ts))
				lat.record(d)
				pt.lat.record(d)
				delivered.Add(1)
				pt.delivered.Add(1)
				lastDelivery.Store(now.UnixNano())
				pt.lastDelivery.Store(now.UnixNano())
				if seq <= last {
					outOfOrder.Add(1)
				}
				last = seq
				return
			}
			if bytes.HasPrefix(msg, []byte("[8,")) {
				joins.Add(1)
				lastJoin.Store(time.Now().UnixNano())
				return
			}
			if r := callResult(msg, "sub"); r != "" && !confirmed {
				confirmed = true
				if r == "ok" {
					subscribed.Add(1)
					pt.subscribed.Add(1)
				} else {
					b.fail(r)
				}
				setupDone.Add(1)
			}
		})
	}}, hs)
	b.fillConnect(rep, n, took, hs)
	// Wait for every subscription, then for the join storm to end.
	for setup.Err() == nil && setupDone.Load() < n-b.dead.Load() {
		sleepUntil(setup, time.Now().Add(20*time.Millisecond))
	}
	confirmedAt := time.Now().UnixNano()
	for setup.Err() == nil && time.Since(time.Unix(0, max(lastJoin.Load(), confirmedAt))) < cfg.Settle {
		sleepUntil(setup, time.Now().Add(20*time.Millisecond))
	}
	if setup.Err() != nil && ctx.Err() == nil {
		b.fail("setup_timeout")
	}
	rep.Results.Subscribers = subscribed.Load()
	rep.Results.SetupSeconds = time.Since(setupStart).Seconds()
	rep.Results.JoinEventsIgnored = joins.Load()
	if ctx.Err() != nil || subscribed.Load() == 0 {
		return ctx.Err()
	}

	// The publisher: one more client, subscribed to nothing, on the first
	// target.
	var pub *client
	pn, _ := b.open(setup, opener{from: cfg.Conns, n: 1, onOpen: func(c *client) {
		pub = c
		p.add(c)
	}}, &hist{})
	if pn != 1 {
		b.fail("publisher_not_opened")
		return nil
	}
	b.readers.Add(1)
	go b.drainLoop(pub, nil)

	subs := subscribed.Load()
	joinsBefore := joins.Load()
	total := max(int64(cfg.PublishRate*cfg.Duration.Seconds()), 1)
	prefix := []byte(`[7,"` + cfg.Topic + `",`)
	b.sampleBefore(ctx, rep)
	tool0 := selfCPU()
	start := time.Now()
	var published int64
	for seq := int64(1); seq <= total && ctx.Err() == nil; seq++ {
		if !sleepUntil(ctx, start.Add(time.Duration(float64(seq-1)/cfg.PublishRate*float64(time.Second)))) {
			break
		}
		msg := append(append([]byte(nil), prefix...), eventJSON(seq, time.Now(), cfg.PayloadBytes)...)
		msg = append(msg, ",true]"...)
		if err := pub.writeText(msg); err != nil {
			b.fail("publish_" + kindOf(err))
			break
		}
		published++
	}
	lastPublish := time.Now()
	expected := published * subs
	for delivered.Load() < expected && time.Since(lastPublish) < cfg.DrainTimeout && ctx.Err() == nil {
		sleepUntil(ctx, time.Now().Add(5*time.Millisecond))
	}
	b.sampleAfter(ctx, rep)
	rep.ToolCPUSeconds = selfCPU() - tool0

	r := &rep.Results
	r.Published = published
	r.ExpectedDeliveries = expected
	r.Delivered = delivered.Load()
	r.OutOfOrder = outOfOrder.Load()
	r.Lost = max(expected-r.Delivered, 0)
	b.failN("lost_deliveries", r.Lost)
	b.failN("out_of_order", r.OutOfOrder)
	if extra := joins.Load() - joinsBefore; extra > 0 {
		// Other EVENTs during the window (joins or leaves): not counted.
		fmt.Fprintf(b.log, "wsgate-bench: %d join/leave events during the window\n", extra)
	}
	r.DeliveriesPerSec = ratePerSec(r.Delivered, start, lastDelivery.Load())
	r.Delivery = lat.summary()
	r.CPUPerDeliveryUs = perUnit(rep.Before, rep.After, r.Delivered, cpuOf, 1e6)
	if len(rep.Gateways) > 0 {
		var cpu float64
		cpuKnown := true
		for i, g := range rep.Gateways {
			pt := per[i]
			g.Publisher = i == 0
			g.Subscribers = pt.subscribed.Load()
			g.ExpectedDeliveries = published * g.Subscribers
			g.Delivered = pt.delivered.Load()
			g.Lost = max(g.ExpectedDeliveries-g.Delivered, 0)
			g.DeliveriesPerSec = ratePerSec(g.Delivered, start, pt.lastDelivery.Load())
			g.Delivery = pt.lat.summary()
			if g.CPUSeconds != nil {
				cpu += *g.CPUSeconds
				if g.Delivered > 0 {
					v := *g.CPUSeconds / float64(g.Delivered) * 1e6
					g.CPUPerDeliveryUs = &v
				}
			} else {
				cpuKnown = false
			}
		}
		// Every gateway's CPU per delivery, whichever replica delivered it.
		r.CPUPerDeliveryUs = nil
		if cpuKnown && r.Delivered > 0 {
			v := cpu / float64(r.Delivered) * 1e6
			r.CPUPerDeliveryUs = &v
		}
	}
	return ctx.Err()
}

// targetCounts are one target's broadcast counters.
type targetCounts struct {
	subscribed, delivered, lastDelivery atomic.Int64
	lat                                 hist
}

// ratePerSec is n over the time from start to the unix-ns instant last.
func ratePerSec(n int64, start time.Time, last int64) float64 {
	if last <= 0 || n <= 0 {
		return 0
	}
	if d := time.Unix(0, last).Sub(start).Seconds(); d > 0 {
		return float64(n) / d
	}
	return 0
}

// rpc runs cfg.Conns clients each calling sample/sum in a closed loop for
// cfg.Duration (paced to cfg.Rate calls/s in total when set). Before/After
// bound the calls.
func (b *bench) rpc(ctx context.Context, rep *report) error {
	cfg := b.cfg
	var p pool
	defer b.closeAll(&p)
	hs := &hist{}
	setup, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	var cs []*client
	var mu sync.Mutex
	n, took := b.open(setup, opener{from: 0, n: cfg.Conns, onOpen: func(c *client) {
		p.add(c)
		mu.Lock()
		cs = append(cs, c)
		mu.Unlock()
	}}, hs)
	b.fillConnect(rep, n, took, hs)
	if ctx.Err() != nil || len(cs) == 0 {
		return ctx.Err()
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].idx < cs[j].idx })

	lat := &hist{}
	var calls, ticket atomic.Int64
	maxTickets := int64(-1)
	if cfg.Rate > 0 {
		maxTickets = max(int64(cfg.Rate*cfg.Duration.Seconds()), 1)
	}
	b.sampleBefore(ctx, rep)
	tool0 := selfCPU()
	start := time.Now()
	end := start.Add(cfg.Duration)
	run, cancelRun := context.WithDeadline(ctx, end)
	defer cancelRun()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for k := 0; run.Err() == nil; k++ {
				if maxTickets >= 0 {
					t := ticket.Add(1) - 1
					if t >= maxTickets {
						return
					}
					if !sleepUntil(run, start.Add(time.Duration(float64(t)/cfg.Rate*float64(time.Second)))) {
						return
					}
				}
				buf = strconv.AppendInt(buf[:0], int64(k), 36)
				t0 := time.Now()
				r := syncCall(c, cfg.Procedure, string(buf), t0.Add(10*time.Second))
				if r != "ok" {
					b.fail(r)
					if r != "auth_failure" && r != "bad_result" && r != "call_error" {
						b.dead.Add(1)
						return // the connection is unusable
					}
					continue
				}
				lat.record(time.Since(t0))
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	took = time.Since(start)
	b.sampleAfter(ctx, rep)
	rep.ToolCPUSeconds = selfCPU() - tool0
	r := &rep.Results
	r.Calls = calls.Load()
	r.CallsPerSec = float64(r.Calls) / took.Seconds()
	r.Call = lat.summary()
	r.CPUPerCallUs = perUnit(rep.Before, rep.After, r.Calls, cpuOf, 1e6)
	return ctx.Err()
}

// writeText prints the report's main figures for a human.
func (rep *report) writeText(w io.Writer) {
	r := rep.Results
	if rep.Scenario == "floor" && rep.Results.Floor != nil {
		rep.Results.Floor.writeText(w)
		fmt.Fprintf(w, "load average at the start %v, tool CPU %.2f s over %.1f s\n", rep.LoadAvg, rep.ToolCPUSeconds, rep.WindowSeconds)
		fmt.Fprintf(w, "errors %d %v\n", rep.ErrorsTotal, rep.Errors)
		return
	}
	fmt.Fprintf(w, "scenario %s, target %s, gateway pid %d (%s)\n", rep.Scenario, rep.Params.Target, rep.Gateway.PID, rep.Gateway.PIDSource)
	fmt.Fprintf(w, "connections opened %d in %.2fs (%.0f/s), lost %d\n", r.ConnectionsOpened, r.ConnectSeconds, r.HandshakesPerSec, r.ConnectionsLost)
	pct := func(name string, p *percentiles) {
		if p != nil && p.Count > 0 {
			fmt.Fprintf(w, "%s: n=%d p50 %.0fµs p90 %.0fµs p99 %.0fµs max %.0fµs\n", name, p.Count, p.P50Us, p.P90Us, p.P99Us, p.MaxUs)
		}
	}
	f := func(name string, v *float64, unit string) {
		if v != nil {
			fmt.Fprintf(w, "%s: %.2f%s\n", name, *v, unit)
		}
	}
	pct("handshake latency", r.Handshake)
	f("gateway RSS per connection", r.RSSPerConnBytes, " B")
	f("gateway heap in use per connection", r.HeapInusePerConnBytes, " B")
	f("gateway goroutines per connection", r.GoroutinesPerConn, "")
	f("gateway CPU per handshake", r.CPUPerHandshakeUs, " µs")
	if rep.Scenario == "broadcast" {
		fmt.Fprintf(w, "setup %.1fs (join/leave events ignored: %d)\n", r.SetupSeconds, r.JoinEventsIgnored)
		fmt.Fprintf(w, "subscribers %d, published %d, delivered %d of %d (lost %d), %.0f deliveries/s\n",
			r.Subscribers, r.Published, r.Delivered, r.ExpectedDeliveries, r.Lost, r.DeliveriesPerSec)
		pct("delivery latency", r.Delivery)
		f("gateway CPU per delivery (all gateways)", r.CPUPerDeliveryUs, " µs")
		for i, g := range rep.Gateways {
			fmt.Fprintf(w, "gateway %d %s pid %d: subscribers %d, delivered %d of %d (lost %d), %.0f deliveries/s",
				i+1, g.Target, g.PID, g.Subscribers, g.Delivered, g.ExpectedDeliveries, g.Lost, g.DeliveriesPerSec)
			if g.CPUSeconds != nil {
				fmt.Fprintf(w, ", CPU %.2f s", *g.CPUSeconds)
			}
			if g.Publisher {
				fmt.Fprint(w, " (publisher)")
			}
			fmt.Fprintln(w)
			pct(fmt.Sprintf("gateway %d delivery latency", i+1), g.Delivery)
		}
	}
	if rep.Scenario == "rpc" {
		fmt.Fprintf(w, "calls %d, %.0f calls/s\n", r.Calls, r.CallsPerSec)
		pct("call latency", r.Call)
		f("gateway CPU per call", r.CPUPerCallUs, " µs")
	}
	f("gateway CPU over the window", rep.GatewayCPUSeconds, " s")
	if r.Floor != nil {
		fmt.Fprintln(w, "the kernel floor, measured first in this run:")
		r.Floor.writeText(w)
	}
	if r.RatiosToFloor != nil {
		fmt.Fprintln(w, "ratios to that floor:")
		r.RatiosToFloor.writeText(w)
	}
	for _, p := range rep.OtherProcesses {
		if p.CPUSeconds != nil {
			fmt.Fprintf(w, "CPU of pid %d (%s) over the window: %.2f s\n", p.PID, p.Name, *p.CPUSeconds)
		} else {
			fmt.Fprintf(w, "CPU of pid %d (%s): unknown (%s)\n", p.PID, p.Name, p.Error)
		}
	}
	fmt.Fprintf(w, "tool CPU over the window: %.2f s\n", rep.ToolCPUSeconds)
	for _, s := range []struct {
		name string
		s    *sample
	}{{"before", rep.Before}, {"after", rep.After}, {"end", rep.End}} {
		if s.s == nil {
			continue
		}
		fmt.Fprintf(w, "%s: rss %d B, threads %d", s.name, s.s.RSSBytes, s.s.Threads)
		if s.s.Goroutines != nil {
			fmt.Fprintf(w, ", goroutines %.0f", *s.s.Goroutines)
		}
		if s.s.Connections != nil {
			fmt.Fprintf(w, ", connections %.0f", *s.s.Connections)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "errors %d %v\n", rep.ErrorsTotal, rep.Errors)
}
