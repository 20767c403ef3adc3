package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		ok     bool
		want   []string // substrings of the output
		absent []string
	}{
		{
			name: "all pass",
			in: `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"noise that must not show\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p"}`,
			ok:     true,
			want:   []string{"ok  \tp\t0.1s", "1 passed, 0 failed, 0 skipped (tests and subtests) in 1 packages; 0 packages failed"},
			absent: []string{"noise"},
		},
		{
			name: "a failure shows its output and fails the run",
			in: `{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: boom\n"}
{"Action":"fail","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}
{"Action":"fail","Package":"p"}`,
			ok:   false,
			want: []string{"b_test.go:9: boom", "FAIL p TestB", "0 passed, 1 failed", "1 packages failed"},
		},
		{
			name: "a skip names its reason",
			in: `{"Action":"run","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:3: memcached not reachable\n"}
{"Action":"output","Package":"p","Test":"TestC","Output":"--- SKIP: TestC (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestC"}
{"Action":"pass","Package":"p"}`,
			ok:   true,
			want: []string{"SKIP p TestC: c_test.go:3: memcached not reachable", "0 passed, 0 failed, 1 skipped"},
		},
		{
			name: "a build failure fails the run",
			in: `{"Action":"build-output","Package":"q","Output":"q/x.go:1: syntax error\n"}
{"Action":"build-fail","Package":"q"}`,
			ok:   false,
			want: []string{"q/x.go:1: syntax error", "FAIL package q"},
		},
		{
			name: "a test that never ended fails the run",
			in: `{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Output":"panic: test timed out after 15m0s\n"}
{"Action":"fail","Package":"p"}`,
			ok:   false,
			want: []string{"panic: test timed out", "UNFINISHED p TestHang"},
		},
		{
			name: "non-JSON lines pass through",
			in:   "go: downloading example.com/x v1.0.0\n" + `{"Action":"pass","Package":"p"}`,
			ok:   true,
			want: []string{"go: downloading example.com/x v1.0.0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s := &summary{out: &out, running: map[string]*test{}, pkgOut: map[string][]string{}}
			if err := s.read(strings.NewReader(tc.in)); err != nil {
				t.Fatal(err)
			}
			if ok := s.report(); ok != tc.ok {
				t.Errorf("report() = %v, want %v\n%s", ok, tc.ok, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out.String(), a) {
					t.Errorf("output has %q:\n%s", a, out.String())
				}
			}
		})
	}
}
