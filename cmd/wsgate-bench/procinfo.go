package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

// sample is one look at the gateway process.
type sample struct {
	At          time.Time `json:"at"`
	RSSBytes    int64     `json:"rss_bytes,omitempty"`
	Threads     int       `json:"threads,omitempty"`
	CPUSeconds  *float64  `json:"cpu_seconds,omitempty"` // utime+stime since start
	Goroutines  *float64  `json:"goroutines,omitempty"`
	HeapInuse   *float64  `json:"heap_inuse_bytes,omitempty"`
	Connections *float64  `json:"connections,omitempty"` // wsgate_connections
	Errors      []string  `json:"errors,omitempty"`
}

// gateway reads the gateway's /proc entries and metrics.
type gateway struct {
	pid     int
	metrics string
	hc      *http.Client
}

// take samples the gateway now. Failures are recorded in the sample.
func (g *gateway) take(ctx context.Context) *sample {
	s := &sample{At: time.Now()}
	if g.pid > 0 {
		if rss, threads, err := readStatus(g.pid); err != nil {
			s.Errors = append(s.Errors, err.Error())
		} else {
			s.RSSBytes, s.Threads = rss, threads
		}
		if cpu, err := readCPU(g.pid); err != nil {
			s.Errors = append(s.Errors, err.Error())
		} else {
			s.CPUSeconds = &cpu
		}
	}
	if g.metrics != "" {
		m, err := g.scrape(ctx, "go_goroutines", "go_memstats_heap_inuse_bytes", "wsgate_connections")
		if err != nil {
			s.Errors = append(s.Errors, err.Error())
		} else {
			s.Goroutines = m["go_goroutines"]
			s.HeapInuse = m["go_memstats_heap_inuse_bytes"]
			s.Connections = m["wsgate_connections"]
		}
	}
	return s
}

// readStatus returns VmRSS in bytes and Threads from /proc/<pid>/status.
func readStatus(pid int) (rss int64, threads int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch {
		case k == "VmRSS" && len(f) == 2 && f[1] == "kB":
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/%d/status VmRSS: %w", pid, err)
			}
			rss = kb * 1024
		case k == "Threads" && len(f) == 1:
			threads, _ = strconv.Atoi(f[0])
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, threads, nil
}

// readCPU returns utime+stime of the process (all its threads, live and
// exited) in seconds, from /proc/<pid>/stat.
func readCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: split after
	// the last ')'. Then fields[0] is field 3 (state), utime is field 14.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// selfCPU returns this process' user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// scrape reads the given unlabelled (or summed over labels) metrics from the
// Prometheus text exposition at g.metrics.
func (g *gateway) scrape(ctx context.Context, names ...string) (map[string]*float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.metrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]*float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		rest := line[len(name):]
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		if p := out[name]; p != nil {
			*p += v
		} else {
			out[name] = &v
		}
	}
	return out, sc.Err()
}

// findListener returns the pid of the process holding the IPv4 or IPv6
// socket listening on port, via /proc/net/tcp{,6} (inode) and /proc/*/fd.
func findListener(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A = LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket listens on port %d", port)
	}
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	found := map[int]bool{}
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir(p + "/fd")
		if err != nil {
			continue // not ours to read
		}
		for _, fd := range fds {
			if l, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && inodes[l] {
				found[pid] = true
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no readable process holds the listener on port %d (pass --gateway-pid)", port)
	case 1:
		for pid := range found {
			return pid, nil
		}
	}
	return 0, errors.New("several processes hold the listener (pass --gateway-pid)")
}

// loadAvg returns the 1, 5 and 15 minute load averages from /proc/loadavg,
// or nil where there is none.
func loadAvg() []float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return nil
	}
	out := make([]float64, 0, 3)
	for _, s := range f[:3] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}
