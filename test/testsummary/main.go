// Command testsummary reads `go test -json` on standard input and prints
// what a person reading a CI log needs: each package's result line, the
// whole output of every test that failed (and of a package that failed to
// build or crashed), and at the end a summary: a table of each package's
// passed, failed and skipped tests (subtests included) and time, then
// every skipped test with the reason it gave, every failed one, and the
// totals. It exits 1 when anything failed, so that
// `go test -json ./... | testsummary` fails a build as `go test` would.
//
// Usage (the Makefile's gotest target):
//
//	set -o pipefail; go test -json ./... | go run ./test/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64 // seconds, on a package's or test's pass/fail/skip
}

// pkgStats is one package's line of the summary table.
type pkgStats struct {
	passed, failed, skipped int
	result                  string // "ok", "FAIL", "no test files"
	elapsed                 float64
}

// test is what is kept of one test (or subtest) until it ends.
type test struct {
	output []string
}

// summary accumulates the run.
type summary struct {
	out      io.Writer
	running  map[string]*test // by package + "\x00" + test name
	pkgOut   map[string][]string
	passed   int
	failed   []string
	skipped  []string // "name: reason"
	badPkgs  []string
	packages int
	pkgs     map[string]*pkgStats
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, running: map[string]*test{}, pkgOut: map[string][]string{}, pkgs: map[string]*pkgStats{}}
}

// pkg is the stats of the named package, created on first use.
func (s *summary) pkg(name string) *pkgStats {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgStats{}
		s.pkgs[name] = p
	}
	return p
}

func main() {
	s := newSummary(os.Stdout)
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if !s.report() {
		os.Exit(1)
	}
}

// read consumes the event stream. Lines that are not JSON (a build error
// printed before test2json took over) are passed through.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(s.out, string(line))
			continue
		}
		s.event(e)
	}
	return sc.Err()
}

func key(pkg, name string) string { return pkg + "\x00" + name }

func (s *summary) event(e event) {
	if e.Test == "" {
		s.packageEvent(e)
		return
	}
	k := key(e.Package, e.Test)
	t := s.running[k]
	if t == nil {
		t = &test{}
		s.running[k] = t
	}
	switch e.Action {
	case "output":
		t.output = append(t.output, e.Output)
	case "pass":
		s.passed++
		s.pkg(e.Package).passed++
		delete(s.running, k)
	case "skip":
		s.skipped = append(s.skipped, e.Package+" "+e.Test+": "+skipReason(t.output))
		s.pkg(e.Package).skipped++
		delete(s.running, k)
	case "fail":
		s.failed = append(s.failed, e.Package+" "+e.Test)
		s.pkg(e.Package).failed++
		// A parent's output holds only its own lines; subtests print
		// theirs when they end. Print the failing test's lines now.
		fmt.Fprintf(s.out, "--- output of failed %s %s\n", e.Package, e.Test)
		for _, l := range t.output {
			fmt.Fprint(s.out, l)
		}
		delete(s.running, k)
	}
}

func (s *summary) packageEvent(e event) {
	switch e.Action {
	case "output", "build-output":
		s.pkgOut[e.Package] = append(s.pkgOut[e.Package], e.Output)
	case "pass", "skip":
		s.packages++
		p := s.pkg(e.Package)
		p.result, p.elapsed = "ok", e.Elapsed
		if e.Action == "skip" {
			p.result = "no test files"
		}
		s.printResultLine(e.Package)
		delete(s.pkgOut, e.Package)
	case "fail", "build-fail":
		s.packages++
		p := s.pkg(e.Package)
		p.result, p.elapsed = "FAIL", e.Elapsed
		s.badPkgs = append(s.badPkgs, e.Package)
		// A build failure, a panic or a timeout shows here: print it all.
		fmt.Fprintf(s.out, "--- output of failed package %s\n", e.Package)
		for _, l := range s.pkgOut[e.Package] {
			fmt.Fprint(s.out, l)
		}
		delete(s.pkgOut, e.Package)
	}
}

// printResultLine prints the package's "ok ..." or "? ... [no test
// files]" line, as go test does.
func (s *summary) printResultLine(pkg string) {
	for _, l := range s.pkgOut[pkg] {
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "?  ") {
			fmt.Fprint(s.out, l)
			return
		}
	}
}

// skipReason is the last line a skipped test logged before its SKIP line.
func skipReason(output []string) string {
	for i := len(output) - 1; i >= 0; i-- {
		l := strings.TrimSpace(output[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		return l
	}
	return "no reason given"
}

// report prints the summary and returns whether the run passed.
func (s *summary) report() bool {
	// Tests that started and never ended belong to a package that died.
	var unfinished []string
	for k := range s.running {
		unfinished = append(unfinished, strings.Replace(k, "\x00", " ", 1))
	}
	sort.Strings(unfinished)
	fmt.Fprintln(s.out)
	fmt.Fprintln(s.out, "==== test summary ====")
	s.printTable()
	if len(s.skipped) > 0 {
		fmt.Fprintf(s.out, "\n%d skipped, each with its reason:\n", len(s.skipped))
	}
	for _, name := range s.skipped {
		fmt.Fprintln(s.out, "SKIP", name)
	}
	for _, name := range s.failed {
		fmt.Fprintln(s.out, "FAIL", name)
	}
	for _, name := range unfinished {
		fmt.Fprintln(s.out, "UNFINISHED", name)
	}
	for _, pkg := range s.badPkgs {
		fmt.Fprintln(s.out, "FAIL package", pkg)
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped (tests and subtests) in %d packages; %d packages failed\n",
		s.passed, len(s.failed), len(s.skipped), s.packages, len(s.badPkgs))
	return len(s.failed) == 0 && len(s.badPkgs) == 0 && len(unfinished) == 0
}

// printTable prints one line per package, in name order: passed, failed
// and skipped tests (subtests included), the package's result and time.
// Packages without test files are named on one line after it.
func (s *summary) printTable() {
	names := make([]string, 0, len(s.pkgs))
	width := len("package")
	var noTests []string
	for name, p := range s.pkgs {
		if p.result == "no test files" && p.passed+p.failed+p.skipped == 0 {
			noTests = append(noTests, name)
			continue
		}
		names = append(names, name)
		width = max(width, len(name))
	}
	sort.Strings(names)
	sort.Strings(noTests)
	fmt.Fprintf(s.out, "%-*s %7s %7s %7s  %-6s %8s\n", width, "package", "passed", "failed", "skipped", "result", "time")
	for _, name := range names {
		p := s.pkgs[name]
		result := p.result
		if result == "" {
			result = "?" // no package result line: the stream ended early
		}
		fmt.Fprintf(s.out, "%-*s %7d %7d %7d  %-6s %7.1fs\n", width, name, p.passed, p.failed, p.skipped, result, p.elapsed)
	}
	if len(noTests) > 0 {
		fmt.Fprintf(s.out, "no test files: %s\n", strings.Join(noTests, " "))
	}
}
