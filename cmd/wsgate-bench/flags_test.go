package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// TestTargetFlags checks how --target, --metrics, --gateway-pid and
// --extra-pid lists are parsed: one target as before, several (broadcast
// only) each with its own metrics URL and pid.
func TestTargetFlags(t *testing.T) {
	type want struct {
		dial    []string // targets' host:port
		metrics []string // per target, "" = none
		pids    []int    // per target, 0 = from the listening port
		extra   []int
	}
	const m1, m2, m3 = "http://127.0.0.1:9091/metrics", "http://127.0.0.1:9092/metrics", "http://127.0.0.1:9093/metrics"
	three := "ws://127.0.0.1:8081/,ws://127.0.0.1:8082/,ws://127.0.0.1:8083/"
	for _, tc := range []struct {
		name    string
		args    []string
		want    *want  // nil: must be refused
		errLike string // part of the refusal
	}{
		{name: "defaults", args: []string{"--scenario", "rpc"},
			want: &want{dial: []string{"127.0.0.1:8080"}, metrics: []string{defaultMetrics}, pids: []int{0}}},
		{name: "one target, pid and metrics as before", args: []string{"--scenario", "idle", "--target", "ws://localhost:8085/", "--gateway-pid", "42", "--metrics", m1},
			want: &want{dial: []string{"127.0.0.1:8085"}, metrics: []string{m1}, pids: []int{42}}},
		{name: "pid 0 means find it", args: []string{"--scenario", "idle", "--gateway-pid", "0"},
			want: &want{dial: []string{"127.0.0.1:8080"}, metrics: []string{defaultMetrics}, pids: []int{0}}},
		{name: "no metrics", args: []string{"--scenario", "idle", "--metrics", ""},
			want: &want{dial: []string{"127.0.0.1:8080"}, metrics: []string{""}, pids: []int{0}}},
		{name: "three replicas, no metrics by default", args: []string{"--scenario", "broadcast", "--target", three},
			want: &want{dial: []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}, metrics: []string{"", "", ""}, pids: []int{0, 0, 0}}},
		{name: "three replicas with metrics, pids and spaces", args: []string{"--scenario", "broadcast", "--target", three,
			"--metrics", m1 + ", " + m2 + "," + m3, "--gateway-pid", "11, 12,13", "--extra-pid", "99"},
			want: &want{dial: []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}, metrics: []string{m1, m2, m3}, pids: []int{11, 12, 13}, extra: []int{99}}},
		{name: "extra pids on one target", args: []string{"--scenario", "rpc", "--extra-pid", "7,8"},
			want: &want{dial: []string{"127.0.0.1:8080"}, metrics: []string{defaultMetrics}, pids: []int{0}, extra: []int{7, 8}}},

		{name: "several targets outside broadcast", args: []string{"--scenario", "rpc", "--target", three}, errLike: "broadcast scenario only"},
		{name: "metrics count differs", args: []string{"--scenario", "broadcast", "--target", three, "--metrics", m1}, errLike: "one per target"},
		{name: "pid count differs", args: []string{"--scenario", "broadcast", "--target", three, "--gateway-pid", "1,2"}, errLike: "one per target"},
		{name: "pid not a number", args: []string{"--scenario", "broadcast", "--gateway-pid", "abc"}, errLike: "not a process id"},
		{name: "negative extra pid", args: []string{"--scenario", "broadcast", "--extra-pid", "-3"}, errLike: "not a process id"},
		{name: "empty item", args: []string{"--scenario", "broadcast", "--target", "ws://127.0.0.1:8081/,,ws://127.0.0.1:8082/"}, errLike: "empty item"},
		{name: "same target twice", args: []string{"--scenario", "broadcast", "--target", "ws://127.0.0.1:8081/,ws://localhost:8081/"}, errLike: "twice"},
		{name: "one target not loopback", args: []string{"--scenario", "broadcast", "--target", "ws://127.0.0.1:8081/,ws://10.0.0.1:8082/"}, errLike: "loopback"},
		{name: "one metrics not loopback", args: []string{"--scenario", "broadcast", "--target", "ws://127.0.0.1:8081/,ws://127.0.0.1:8082/",
			"--metrics", m1 + ",http://10.0.0.1:9090/metrics"}, errLike: "loopback"},
		{name: "no target", args: []string{"--scenario", "broadcast", "--target", " "}, errLike: "at least one"},
		{name: "too many targets", args: []string{"--scenario", "broadcast", "--target", strings.Repeat("ws://127.0.0.1:1/,", maxTargets) + "ws://127.0.0.1:2/"}, errLike: "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, &bytes.Buffer{})
			if tc.want == nil {
				if err == nil {
					t.Fatalf("accepted %q", tc.args)
				}
				if !strings.Contains(err.Error(), tc.errLike) {
					t.Fatalf("error %q, want one saying %q", err, tc.errLike)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got want
			for _, tg := range c.targets {
				got.dial = append(got.dial, tg.dialAddr)
				got.metrics = append(got.metrics, tg.metrics)
				got.pids = append(got.pids, tg.pid)
			}
			got.extra = c.ExtraPIDs
			if !reflect.DeepEqual(&got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, *tc.want)
			}
			// The first target is what the single-target fields say.
			first := c.targets[0]
			if c.Target != first.url || c.dialAddr != first.dialAddr || c.port != first.port || c.Metrics != first.metrics || c.GatewayPID != first.pid {
				t.Errorf("first-target fields %q %q %d %q %d disagree with %+v", c.Target, c.dialAddr, c.port, c.Metrics, c.GatewayPID, first)
			}
			if several := len(c.targets) > 1; several != (c.Targets != nil) {
				t.Errorf("Targets %q with %d targets", c.Targets, len(c.targets))
			}
		})
	}
}
