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
			name: "per package: passed, failed, skipped, result, time; every skip with its reason",
			in: `{"Action":"run","Package":"example.com/a","Test":"TestA"}
{"Action":"run","Package":"example.com/a","Test":"TestA/one"}
{"Action":"pass","Package":"example.com/a","Test":"TestA/one"}
{"Action":"run","Package":"example.com/a","Test":"TestA/two"}
{"Action":"output","Package":"example.com/a","Test":"TestA/two","Output":"    a_test.go:7: set WSGATE_X=1 to run this\n"}
{"Action":"output","Package":"example.com/a","Test":"TestA/two","Output":"    --- SKIP: TestA/two (0.00s)\n"}
{"Action":"skip","Package":"example.com/a","Test":"TestA/two"}
{"Action":"pass","Package":"example.com/a","Test":"TestA"}
{"Action":"pass","Package":"example.com/a","Elapsed":1.25}
{"Action":"run","Package":"example.com/bb","Test":"TestB"}
{"Action":"output","Package":"example.com/bb","Test":"TestB","Output":"    b_test.go:9: boom\n"}
{"Action":"fail","Package":"example.com/bb","Test":"TestB"}
{"Action":"run","Package":"example.com/bb","Test":"TestC"}
{"Action":"output","Package":"example.com/bb","Test":"TestC","Output":"    c_test.go:3: PostgreSQL not reachable: dial tcp 127.0.0.1:5432: connect: connection refused\n"}
{"Action":"skip","Package":"example.com/bb","Test":"TestC"}
{"Action":"fail","Package":"example.com/bb","Elapsed":0.5}
{"Action":"skip","Package":"example.com/none"}`,
			ok: false,
			want: []string{
				"package         passed  failed skipped  result     time\n",
				"example.com/a        2       0       1  ok         1.2s\n",
				"example.com/bb       0       1       1  FAIL       0.5s\n",
				"no test files: example.com/none\n",
				"2 skipped, each with its reason:\n",
				"SKIP example.com/a TestA/two: a_test.go:7: set WSGATE_X=1 to run this\n",
				"SKIP example.com/bb TestC: c_test.go:3: PostgreSQL not reachable",
				"FAIL example.com/bb TestB\n",
				"2 passed, 1 failed, 2 skipped (tests and subtests) in 3 packages; 1 packages failed",
			},
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
			s := newSummary(&out)
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
