// Command wsgate-bench is the load tool of issue 5: it drives a wsgate
// gateway on this machine with many authenticated WAMP v1 websocket clients
// and reports what the gateway spent doing it.
//
//	wsgate-bench --scenario idle|connect|broadcast|rpc|floor [flags]
//	wsgate-bench upstream-echo [--listen 127.0.0.1:8001] [--secret-env WSGATE_UPSTREAM_SECRET]
//
// Scenarios:
//
//   - idle: open --conns authenticated connections and hold them; report the
//     gateway's RSS, threads and goroutines before and after (per connection).
//   - connect: perform --conns authenticated handshakes (--concurrency at a
//     time, optionally paced by --rate), each closed right after WELCOME;
//     report handshakes/s, handshake latency and gateway CPU per handshake.
//   - broadcast: subscribe --conns clients to one topic, publish --publish-rate
//     events/s of --payload-bytes for --duration from a separate client;
//     report deliveries/s, loss, delivery latency (a send timestamp travels in
//     the event) and gateway CPU per delivered message. --target may list
//     several replicas of one cluster (comma-separated): subscribers are
//     spread over them round-robin, the publisher is on the first, and each
//     replica's deliveries, loss, latency and CPU are reported beside the sum.
//   - rpc: --conns clients call sample/sum in a closed loop for --duration
//     (optionally paced to --rate calls/s in total); report calls/s, call
//     latency and gateway CPU per call.
//   - floor: no gateway; what the kernel alone costs on this machine per
//     delivery (one write(2)/writev(2) of a websocket frame to each of
//     --conns loopback connections whose peer does not read, --rounds times)
//     and per handshake (a minimal server thread's accept4, read of an
//     upgrade request, write of a fixed 101 and close, --handshakes times),
//     so gateway figures of the same session can be given as ratios to it.
//
// upstream-echo is a minimal HTTP upstream of the gateway (gateway/upstream)
// in Go, answering "sum" calls: run with an rpc scenario whose --procedure
// routes to it, it isolates the gateway's own upstream overhead from the
// application's (see upstream_echo.go).
//
// Sessions: with --session-dir the tool writes one PHP files-store session
// (a real Symfony 5.4 session, user bench<i>) per client id into that
// directory; point the gateway's session.files.path at it. With
// --session-redis it writes the same sessions into Redis instead, as
// Symfony's RedisSessionHandler does (SETEX <prefix><id>), for a gateway
// with session.store redis and the same session.redis.prefix.
//
// The gateway's CPU time, RSS and threads come from /proc/<pid> (--gateway-pid,
// or the process listening on the target port), its goroutines and
// connections from --metrics (both one per target when there are several);
// --extra-pid adds the CPU of other processes, such as redis-server. Every
// target must be loopback (127.0.0.0/8): this tool refuses anything else.
// Every phase is bounded in count and time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	Target       string        `json:"target"`            // the first of Targets
	Targets      []string      `json:"targets,omitempty"` // when there are several
	Scenario     string        `json:"scenario"`
	Conns        int           `json:"conns"`
	Duration     time.Duration `json:"-"`
	Rate         float64       `json:"rate,omitempty"`
	Concurrency  int           `json:"concurrency"`
	Sources      []string      `json:"sources"`
	SessionDir   string        `json:"session_dir,omitempty"`
	SessionRedis string        `json:"session_redis,omitempty"`        // loopback host:port to seed sessions into
	RedisPrefix  string        `json:"session_redis_prefix,omitempty"` // their key prefix, with SessionRedis
	RedisTTL     time.Duration `json:"-"`                              // their keys' TTL
	SessionIDs   int           `json:"session_ids"`
	Cookie       string        `json:"cookie"`
	Metrics      string        `json:"metrics,omitempty"`      // the first target's
	MetricsURLs  []string      `json:"metrics_urls,omitempty"` // one per target, when there are several
	GatewayPID   int           `json:"gateway_pid,omitempty"`  // the first target's
	GatewayPIDs  []int         `json:"gateway_pids,omitempty"` // one per target, when there are several
	ExtraPIDs    []int         `json:"extra_pids,omitempty"`   // other processes whose CPU is reported
	PublishRate  float64       `json:"publish_rate,omitempty"`
	PayloadBytes int           `json:"payload_bytes,omitempty"`
	Topic        string        `json:"topic,omitempty"`
	Procedure    string        `json:"procedure"`
	Settle       time.Duration `json:"-"`
	SetupTimeout time.Duration `json:"-"`
	DrainTimeout time.Duration `json:"-"`
	VerifyAuth   bool          `json:"verify_auth"`
	// IdleSubscribe: idle clients each subscribe to this topic ({i}: the
	// client's index), confirmed by a call.
	IdleSubscribe string `json:"idle_subscribe,omitempty"`
	JSON          bool   `json:"-"`

	// floor
	Rounds      int      `json:"rounds,omitempty"`
	FrameBytes  int      `json:"frame_bytes,omitempty"`
	Handshakes  int      `json:"handshakes,omitempty"`
	FloorCPU    int      `json:"floor_cpu,omitempty"`
	FloorPhases []string `json:"floor_phases,omitempty"`
	// WithFloor: a gateway scenario measures the floor first, in the same
	// run, and reports its figures also as ratios to it.
	WithFloor bool `json:"with_floor,omitempty"`
	// FloorPairs is the delivery floor's loopback pairs: --conns in the
	// floor scenario, --floor-pairs with --with-floor.
	FloorPairs int `json:"floor_pairs,omitempty"`
	// FloorRoundGap is a pause between the delivery phases' rounds: with
	// reading peers (writev-read) and a gap of about a second, every
	// reader is asleep when its write lands, as a subscriber is at one
	// event per second.
	FloorRoundGap  time.Duration `json:"-"`
	FloorRoundGapS float64       `json:"floor_round_gap_s,omitempty"`

	// Seconds, for the JSON report.
	DurationS     float64 `json:"duration_s"`
	SettleS       float64 `json:"settle_s"`
	SetupTimeoutS float64 `json:"setup_timeout_s"`
	DrainTimeoutS float64 `json:"drain_timeout_s"`

	sourceIPs []net.IP
	targets   []target // parsed --target, with their metrics and pid
	dialAddr  string   // host:port of the first target
	port      int
}

// target is one gateway the tool connects to.
type target struct {
	url      string // ws:// URL
	dialAddr string // host:port
	port     int
	metrics  string // /metrics URL or ""
	pid      int    // 0: found from the listening port
}

// Upper bounds that keep every run finite.
const (
	maxConns       = 200000
	maxDuration    = time.Hour
	maxPublishRate = 100000
	maxPayload     = 60000
	maxTargets     = 16
	maxExtraPIDs   = 16
	defaultMetrics = "http://127.0.0.1:9090/metrics"
)

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("wsgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sources, targets, metrics, pids, extraPIDs string
	fs.StringVar(&targets, "target", "ws://127.0.0.1:8080/", "gateway websocket URL (loopback only); broadcast: several replicas, comma-separated (subscribers round-robin, the publisher on the first)")
	fs.StringVar(&c.Scenario, "scenario", "", "idle | connect | broadcast | rpc | floor")
	fs.IntVar(&c.Conns, "conns", 100, "connections (idle, broadcast subscribers, rpc clients), handshakes (connect) or loopback pairs (floor)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured phase: hold (idle), publish (broadcast), call (rpc), upper bound (connect)")
	fs.Float64Var(&c.Rate, "rate", 0, "connect: handshakes/s; rpc: total calls/s; idle/broadcast: connections opened/s (0 = as fast as possible)")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "handshakes in flight at once")
	fs.StringVar(&sources, "sources", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4", "local source addresses, used round-robin (127.0.0.0/8)")
	fs.StringVar(&c.SessionDir, "session-dir", "", "seed sess_<id> files here (the gateway's session.files.path); empty = sessions already exist")
	fs.StringVar(&c.SessionRedis, "session-redis", "", "seed the sessions into the Redis at this loopback host:port instead (SETEX <prefix>wsgbench<i>; the gateway's session.store redis)")
	fs.StringVar(&c.RedisPrefix, "session-redis-prefix", defaultRedisPrefix, "--session-redis: key prefix (the gateway's session.redis.prefix; sf_s is Symfony's RedisSessionHandler's)")
	fs.DurationVar(&c.RedisTTL, "session-redis-ttl", defaultRedisTTL, "--session-redis: TTL of the seeded keys (whole seconds)")
	fs.IntVar(&c.SessionIDs, "session-ids", 0, "distinct session ids bench<i> to use and seed (default: enough for every client)")
	fs.StringVar(&c.Cookie, "cookie", "PHPSESSID", "session cookie name (session.cookie)")
	fs.StringVar(&metrics, "metrics", defaultMetrics, "gateway /metrics URL (loopback; empty = none); with several --target one per target, comma-separated, and none by default")
	fs.StringVar(&pids, "gateway-pid", "", "gateway process id (default: the process listening on the target port); with several --target one per target, comma-separated")
	fs.StringVar(&extraPIDs, "extra-pid", "", "other processes whose CPU over the measured window to report (e.g. redis-server), comma-separated pids")
	fs.Float64Var(&c.PublishRate, "publish-rate", 1, "broadcast: publishes/s (deliveries/s = this × --conns)")
	fs.IntVar(&c.PayloadBytes, "payload-bytes", 100, "broadcast: bytes of the published event (its JSON text)")
	fs.StringVar(&c.Topic, "topic", "acme/channel/bench", "broadcast: topic URI (served by acme.topic)")
	fs.StringVar(&c.Procedure, "procedure", "sample/sum", "URI every CALL goes to (rpc, auth checks): acme.rpc's sample/sum, or a route to an upstream answering sum like wsgate-bench upstream-echo")
	fs.DurationVar(&c.Settle, "settle", 0, "idle: wait after the last connection before sampling (default 10s); broadcast: quiet period ending the join storm (default 1s)")
	fs.DurationVar(&c.SetupTimeout, "setup-timeout", 5*time.Minute, "bound of the setup phase (connecting, subscribing)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 5*time.Second, "broadcast: wait for outstanding deliveries after the last publish")
	fs.BoolVar(&c.VerifyAuth, "verify-auth", false, "idle/connect: make one sample/sum call per connection to check it is authenticated (broadcast and rpc always check)")
	fs.StringVar(&c.IdleSubscribe, "idle-subscribe", "", "idle: each client subscribes to this topic ({i}: its index, e.g. acme/relay/user{i}) and confirms it with a call, so the figures are per subscribed connection")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	fs.IntVar(&c.Rounds, "rounds", 100, "floor: writes to each pair in the delivery phases")
	fs.IntVar(&c.FrameBytes, "frame-bytes", 112, "floor: bytes of the websocket frame written per delivery, header included (112 = a 100-byte event and its header, as issue 19 measured)")
	fs.IntVar(&c.Handshakes, "handshakes", 20000, "floor: connections served in the handshake phase (--concurrency clients at a time)")
	fs.IntVar(&c.FloorCPU, "floor-cpu", defaultFloorCPU, "floor: pin the measuring thread (writer, server) to this CPU, e.g. the gateway's; -1 = leave it where the process runs")
	fs.BoolVar(&c.WithFloor, "with-floor", false, "idle/connect/broadcast/rpc: measure the kernel floor first, in the same run (--floor-pairs, --rounds, --handshakes, --floor-cpu, --floor-phases), and report the gateway's figures also as ratios to it")
	fs.DurationVar(&c.FloorRoundGap, "floor-round-gap", 0, "floor: pause between the delivery phases' rounds (not measured; e.g. 1s with writev-read, so every reader is asleep when its write lands)")
	fs.IntVar(&c.FloorPairs, "floor-pairs", 9000, "--with-floor: loopback pairs of the delivery floor (the floor scenario takes --conns)")
	floorPhaseList := fs.String("floor-phases", strings.Join(defaultFloorPhases, ","), "floor: phases to run, of "+strings.Join(floorPhases, ",")+" (writev-read: writev with the peers reading; writev-wake: every write waking a sleeping reader)")
	var err error
	if err = fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	frameSet := false
	fs.Visit(func(f *flag.Flag) { frameSet = frameSet || f.Name == "frame-bytes" })
	switch c.Scenario {
	case "idle", "connect", "broadcast", "rpc":
		if c.WithFloor {
			if c.Scenario == "broadcast" && !frameSet {
				// The floor writes the frame the subscribers get.
				c.FrameBytes = broadcastFrameBytes(c.Topic, c.PayloadBytes)
			}
			if c.FloorPairs < 1 || c.FloorPairs > maxConns {
				return nil, fmt.Errorf("--floor-pairs must be 1..%d", maxConns)
			}
			if err := c.checkFloor(*floorPhaseList); err != nil {
				return nil, err
			}
		} else {
			c.FloorPairs = 0
		}
	case "floor":
		if c.WithFloor {
			return nil, errors.New("--with-floor is for the gateway scenarios: the floor scenario is the floor")
		}
		c.FloorPairs = c.Conns
		if err := c.checkFloor(*floorPhaseList); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("--scenario must be idle, connect, broadcast, rpc or floor, not %q", c.Scenario)
	}
	if c.Conns < 1 || c.Conns > maxConns {
		return nil, fmt.Errorf("--conns must be 1..%d", maxConns)
	}
	if c.Duration < 0 || c.Duration > maxDuration {
		return nil, fmt.Errorf("--duration must be 0..%s", maxDuration)
	}
	if c.Concurrency < 1 || c.Concurrency > 10000 {
		return nil, errors.New("--concurrency must be 1..10000")
	}
	if c.Rate < 0 || c.PublishRate <= 0 || c.PublishRate > maxPublishRate {
		return nil, fmt.Errorf("--rate must be ≥ 0, --publish-rate 0..%d", maxPublishRate)
	}
	if c.PayloadBytes < minPayload || c.PayloadBytes > maxPayload {
		return nil, fmt.Errorf("--payload-bytes must be %d..%d", minPayload, maxPayload)
	}
	if c.SetupTimeout <= 0 || c.SetupTimeout > maxDuration || c.DrainTimeout <= 0 || c.DrainTimeout > maxDuration || c.Settle < 0 || c.Settle > maxDuration {
		return nil, errors.New("--setup-timeout, --drain-timeout and --settle must be positive and at most an hour")
	}
	if c.Settle == 0 {
		c.Settle = time.Second
		if c.Scenario == "idle" {
			c.Settle = 10 * time.Second
		}
	}
	if c.SessionIDs < 0 || c.SessionIDs > maxConns+16 {
		return nil, errors.New("--session-ids out of range")
	}
	if c.SessionIDs == 0 {
		c.SessionIDs = c.clientsNeeded()
	}
	if err := c.checkSessionRedis(); err != nil {
		return nil, err
	}
	if c.Cookie == "" || strings.ContainsAny(c.Cookie, "=; \t\r\n,") {
		return nil, fmt.Errorf("--cookie %q is not a cookie name", c.Cookie)
	}
	if c.Procedure == "" || strings.ContainsAny(c.Procedure, "\"\\ \t\r\n") {
		return nil, fmt.Errorf("--procedure %q is not a plain URI", c.Procedure)
	}
	if !strings.HasPrefix(c.Topic, "acme/channel/") && !strings.HasPrefix(c.Topic, "acme/relay/") && c.Scenario == "broadcast" {
		// Only the acme.topic and acme.relay handlers relay publishes as
		// {"msg": event}.
		fmt.Fprintf(stderr, "warning: topic %q may not be served by acme.topic or acme.relay\n", c.Topic)
	}
	if c.IdleSubscribe != "" && (c.Scenario != "idle" || strings.ContainsAny(c.IdleSubscribe, "\"\\ \t\r\n")) {
		return nil, fmt.Errorf("--idle-subscribe %q: a plain topic URI, for the idle scenario", c.IdleSubscribe)
	}
	metricsSet := false
	fs.Visit(func(f *flag.Flag) { metricsSet = metricsSet || f.Name == "metrics" })
	if err := c.parseTargets(targets, metrics, metricsSet, pids); err != nil {
		return nil, err
	}
	if c.ExtraPIDs, err = parsePIDs("--extra-pid", extraPIDs, maxExtraPIDs); err != nil {
		return nil, err
	}
	for _, s := range strings.Split(sources, ",") {
		s = strings.TrimSpace(s)
		ip := net.ParseIP(s)
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return nil, fmt.Errorf("--sources: %q is not an IPv4 loopback address", s)
		}
		c.Sources = append(c.Sources, s)
		c.sourceIPs = append(c.sourceIPs, ip)
	}
	c.DurationS = c.Duration.Seconds()
	c.SettleS = c.Settle.Seconds()
	c.SetupTimeoutS = c.SetupTimeout.Seconds()
	c.DrainTimeoutS = c.DrainTimeout.Seconds()
	return c, nil
}

// checkFloor validates the floor scenario's flags.
func (c *config) checkFloor(phases string) error {
	var err error
	if c.FloorPhases, err = parseFloorPhases(phases); err != nil {
		return err
	}
	if c.Rounds < 1 || c.Rounds > maxRounds {
		return fmt.Errorf("--rounds must be 1..%d", maxRounds)
	}
	if c.FrameBytes < minFrameBytes || c.FrameBytes > maxFrameBytes {
		return fmt.Errorf("--frame-bytes must be %d..%d", minFrameBytes, maxFrameBytes)
	}
	if c.Handshakes < 1 || c.Handshakes > maxHandshakes {
		return fmt.Errorf("--handshakes must be 1..%d", maxHandshakes)
	}
	if c.FloorRoundGap < 0 || c.FloorRoundGap > time.Minute {
		return errors.New("--floor-round-gap must be 0..1m")
	}
	c.FloorRoundGapS = c.FloorRoundGap.Seconds()
	if c.FloorCPU < -1 || c.FloorCPU >= 1024 {
		return errors.New("--floor-cpu must be -1 (none) or a CPU number")
	}
	return nil
}

// checkSessionRedis validates the Redis seeding flags. Like every address
// the tool talks to, the Redis must be on loopback: the tool writes keys
// there.
func (c *config) checkSessionRedis() error {
	if c.SessionRedis == "" {
		c.RedisPrefix = "" // not reported without --session-redis
		return nil
	}
	if c.SessionDir != "" {
		return errors.New("--session-dir and --session-redis: seed one store, not both")
	}
	host, port, err := net.SplitHostPort(c.SessionRedis)
	if err != nil {
		return fmt.Errorf("--session-redis %q: not host:port: %w", c.SessionRedis, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("--session-redis %q: bad port", c.SessionRedis)
	}
	if !loopbackHost(host) {
		return fmt.Errorf("--session-redis %q: not a loopback address", c.SessionRedis)
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, " \t\r\n*?[]\\") {
		// Empty would be read as sf_s by the gateway; glob characters
		// would make a cleanup's SCAN pattern match other keys.
		return fmt.Errorf("--session-redis-prefix %q: empty, or has blanks or glob characters", c.RedisPrefix)
	}
	if c.RedisTTL < time.Second || c.RedisTTL%time.Second != 0 {
		return fmt.Errorf("--session-redis-ttl %s: whole seconds, at least one", c.RedisTTL)
	}
	return nil
}

// clientsNeeded is the number of distinct clients a run opens (broadcast adds
// its publisher).
func (c *config) clientsNeeded() int {
	if c.Scenario == "broadcast" {
		return c.Conns + 1
	}
	return c.Conns
}

// parseTargets fills c.targets from the comma-separated --target, --metrics
// and --gateway-pid lists. Several targets are for broadcast only, and each
// then needs its own metrics URL and pid when they are given; --metrics left
// at its default means none for several targets (the default names one port).
func (c *config) parseTargets(targets, metrics string, metricsSet bool, pids string) error {
	urls, err := splitList("--target", targets, maxTargets)
	if err != nil {
		return err
	}
	if len(urls) == 0 {
		return errors.New("--target must name at least one ws:// URL")
	}
	n := len(urls)
	if n > 1 && c.Scenario != "broadcast" {
		return fmt.Errorf("several --target (%d) are for the broadcast scenario only", n)
	}
	var murls []string
	switch {
	case metrics == "":
	case n > 1 && !metricsSet:
		// The default is one gateway's port: no metrics for several.
	default:
		if murls, err = splitList("--metrics", metrics, maxTargets); err != nil {
			return err
		}
		if len(murls) != n {
			return fmt.Errorf("--metrics lists %d URLs for %d targets: give one per target (or \"\" for none)", len(murls), n)
		}
		for _, m := range murls {
			u, err := url.Parse(m)
			if err != nil || u.Scheme != "http" || !loopbackHost(u.Hostname()) {
				return fmt.Errorf("--metrics %q must be an http:// URL on a loopback address", m)
			}
		}
	}
	pl, err := parsePIDs("--gateway-pid", pids, maxTargets)
	if err != nil {
		return err
	}
	if len(pl) != 0 && len(pl) != n {
		return fmt.Errorf("--gateway-pid lists %d pids for %d targets: give one per target (or none)", len(pl), n)
	}
	c.targets = make([]target, n)
	seen := map[string]bool{}
	for i, u := range urls {
		t, err := checkTarget(u)
		if err != nil {
			return err
		}
		if seen[t.dialAddr] {
			return fmt.Errorf("--target %s is listed twice", t.dialAddr)
		}
		seen[t.dialAddr] = true
		if murls != nil {
			t.metrics = murls[i]
		}
		if pl != nil {
			t.pid = pl[i]
		}
		c.targets[i] = t
	}
	first := c.targets[0]
	c.Target, c.dialAddr, c.port, c.Metrics, c.GatewayPID = first.url, first.dialAddr, first.port, first.metrics, first.pid
	if n > 1 {
		c.Targets, c.MetricsURLs, c.GatewayPIDs = urls, murls, pl
	}
	return nil
}

// splitList splits a comma-separated flag value, trimming spaces; an empty
// value is an empty list, an empty item an error.
func splitList(name, v string, limit int) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > limit {
		return nil, fmt.Errorf("%s: at most %d items", name, limit)
	}
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" {
			return nil, fmt.Errorf("%s %q: empty item", name, v)
		}
	}
	return parts, nil
}

// parsePIDs parses a comma-separated list of positive process ids; "" and
// "0" (the single-target flag's old default) are none.
func parsePIDs(name, v string, limit int) ([]int, error) {
	if strings.TrimSpace(v) == "0" {
		return nil, nil
	}
	parts, err := splitList(name, v, limit)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, p := range parts {
		pid, err := strconv.Atoi(p)
		if err != nil || pid < 1 {
			return nil, fmt.Errorf("%s: %q is not a process id", name, p)
		}
		out = append(out, pid)
	}
	return out, nil
}

// checkTarget accepts only ws:// URLs whose host is a loopback address.
func checkTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return target{}, fmt.Errorf("--target %q must be a ws:// URL", raw)
	}
	if !loopbackHost(u.Hostname()) {
		return target{}, fmt.Errorf("--target %q: only loopback targets (127.0.0.0/8) are allowed", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return target{}, fmt.Errorf("--target %q: bad port", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return target{url: raw, port: p, dialAddr: net.JoinHostPort(host, fmt.Sprint(p))}, nil
}

// loopbackHost reports whether host is "localhost" or an IPv4 address in
// 127.0.0.0/8 (no name resolution: names could point elsewhere).
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() != nil && ip.IsLoopback()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "upstream-echo" {
		return runUpstreamEcho(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "wsgate-bench:", err)
		}
		return 2
	}
	raiseNoFile(stderr)
	if cfg.SessionDir != "" && cfg.Scenario != "floor" {
		if err := seedSessions(cfg.SessionDir, cfg.SessionIDs); err != nil {
			fmt.Fprintln(stderr, "wsgate-bench: seeding sessions:", err)
			return 1
		}
	}
	if cfg.SessionRedis != "" && cfg.Scenario != "floor" {
		if err := seedRedisSessions(ctx, cfg.SessionRedis, cfg.RedisPrefix, cfg.SessionIDs, cfg.RedisTTL); err != nil {
			fmt.Fprintln(stderr, "wsgate-bench: seeding sessions:", err)
			return 1
		}
	}
	b := newBench(cfg, stderr)
	rep, err := b.run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate-bench:", err)
		if rep == nil {
			return 1
		}
	}
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "wsgate-bench:", err)
			return 1
		}
	} else {
		rep.writeText(stdout)
	}
	if err != nil || rep.ErrorsTotal > 0 {
		return 1
	}
	return 0
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit.
func raiseNoFile(stderr io.Writer) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			fmt.Fprintln(stderr, "wsgate-bench: raising RLIMIT_NOFILE:", err)
		}
	}
}
