package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestBroadcastAcrossReplicas runs two gateways sharing the local Redis
// (client storage and cluster fan-out, under a prefix of its own whose keys
// it deletes) and a broadcast spread over both: the publisher's replica
// delivers locally, the other through Redis, and each one's share is counted.
func TestBroadcastAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two gateways")
	}
	redisAddr := testenv.Redis(t) // skipped without Redis, except under CI
	rdb, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rdb.Close) // after the key cleanup below
	var rnd [6]byte
	rand.Read(rnd[:])
	prefix := "wsgate-bench-test-" + hex.EncodeToString(rnd[:]) + ":"
	leftKeys := func() []string {
		keys, err := rdb.Do(context.Background(), rdb.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		if err != nil {
			t.Errorf("listing %s* keys: %v", prefix, err)
		}
		return keys
	}
	// Registered first, so it runs after the gateways are stopped.
	t.Cleanup(func() {
		for _, k := range leftKeys() {
			rdb.Do(context.Background(), rdb.B().Del().Key(k).Build())
		}
		if keys := leftKeys(); len(keys) > 0 {
			t.Errorf("keys left in Redis: %q", keys)
		}
	})

	dir := t.TempDir()
	bin, plugin := buildGateway(t, dir)
	sessDir := filepath.Join(dir, "sessions")
	if err := os.MkdirAll(sessDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var targets, metrics, pids string
	for i := range 2 {
		wsAddr, metricsAddr := freePort(t), freePort(t)
		cfg := fmt.Sprintf(`listen: %q
allow_anonymous: false
session:
  store: files
  files: {path: %q, gc_maxlifetime: 0}
limits: {idle_timeout: 10m}
metrics: {listen: %q}
log: {level: warn}
client_storage:
  driver: redis
  ttl: 30s
  prefix: %q
  redis: {addrs: [%q]}
cluster: {fanout: redis, prefix: %q}
plugins: [%q]
routes:
  rpc:
    acme_rpc: {pattern: "sample/{method}", handler: acme.rpc}
  topics:
    acme_relay: {pattern: "acme/relay/{room}", handler: acme.relay}
`, wsAddr, sessDir, metricsAddr, prefix, redisAddr, prefix, plugin)
		gw := startGateway(t, bin, filepath.Join(dir, fmt.Sprintf("wsgate%d.yaml", i)), cfg, metricsAddr)
		sep := map[bool]string{true: "", false: ","}[i == 0]
		targets += sep + "ws://" + wsAddr + "/"
		metrics += sep + "http://" + metricsAddr + "/metrics"
		pids += sep + fmt.Sprint(gw.Process.Pid)
	}

	const conns, rate = 20, 10
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"--scenario", "broadcast", "--target", targets, "--metrics", metrics, "--gateway-pid", pids,
		"--extra-pid", fmt.Sprint(os.Getpid()), "--session-dir", sessDir, "--sources", "127.0.0.1,127.0.0.2",
		"--topic", "acme/relay/bench", "--conns", fmt.Sprint(conns), "--publish-rate", fmt.Sprint(rate), "--duration", "1s",
		"--settle", "500ms", "--json"}, &out, &errOut)
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, output %q, stderr %s: %v", code, out.String(), errOut.String(), err)
	}
	if code != 0 || rep.ErrorsTotal != 0 {
		t.Fatalf("exit %d, errors %v, stderr %s", code, rep.Errors, errOut.String())
	}
	r := rep.Results
	if r.Subscribers != conns || r.Published != rate || r.Delivered != rate*conns || r.Lost != 0 || r.Delivery.Count != rate*conns {
		t.Errorf("broadcast totals: %+v", r)
	}
	if len(rep.Gateways) != 2 {
		t.Fatalf("%d gateway reports, want 2", len(rep.Gateways))
	}
	var cpu float64
	for i, g := range rep.Gateways {
		if g.Subscribers != conns/2 || g.Delivered != rate*conns/2 || g.Lost != 0 || g.Delivery == nil || g.Delivery.Count != uint64(g.Delivered) {
			t.Errorf("gateway %d: %+v", i, g)
		}
		if g.Publisher != (i == 0) || g.PIDSource != "flag" {
			t.Errorf("gateway %d: publisher %v, pid source %q", i, g.Publisher, g.PIDSource)
		}
		if g.CPUSeconds == nil || g.Before == nil || g.After == nil || g.After.Connections == nil {
			t.Fatalf("gateway %d: samples missing: %+v", i, g)
		}
		// Each replica holds its subscribers (and the first the publisher).
		if want := float64(conns/2) + map[bool]float64{true: 1}[i == 0]; *g.After.Connections != want {
			t.Errorf("gateway %d: %v connections, want %v", i, *g.After.Connections, want)
		}
		cpu += *g.CPUSeconds
	}
	if rep.GatewayCPUSeconds == nil || *rep.GatewayCPUSeconds != cpu {
		t.Errorf("gateway CPU %v, want the sum %v", rep.GatewayCPUSeconds, cpu)
	}
	if len(rep.OtherProcesses) != 1 || rep.OtherProcesses[0].CPUSeconds == nil {
		t.Errorf("extra process: %+v", rep.OtherProcesses)
	}
}
