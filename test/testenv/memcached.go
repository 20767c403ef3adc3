package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// MemcachedAddr is the host:port of the loopback memcached test server;
// WSGATE_TEST_MEMCACHED_ADDR overrides it.
func MemcachedAddr() string {
	if v := os.Getenv("WSGATE_TEST_MEMCACHED_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:11211"
}

// Memcached checks that the test memcached server answers and returns its
// address, or skips/fails t.
func Memcached(t testing.TB) string {
	t.Helper()
	addr := MemcachedAddr()
	if !answersVersion(addr) {
		Missing(t, "memcached at "+addr, TCPReachable(addr))
	}
	return addr
}

// MemcachedServer is a private memcached a test started on a free loopback
// port, so that it can kill and restart it.
type MemcachedServer struct {
	// Addr is "127.0.0.1:<port>"; it stays the same across restarts.
	Addr string
	t    testing.TB
	bin  string
	port int
	dir  string
	proc process
}

// StartMemcached starts memcached (WSGATE_TEST_MEMCACHED_SERVER overrides
// the binary) on a free loopback port, waits until it answers, and stops it
// when the test ends. A missing binary skips/fails t.
func StartMemcached(t testing.TB) *MemcachedServer {
	t.Helper()
	bin := os.Getenv("WSGATE_TEST_MEMCACHED_SERVER")
	if bin == "" {
		bin = "memcached"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		Missing(t, "memcached binary", err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &MemcachedServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, bin: path, port: port, dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start (re)starts the server on its port and waits up to 5s for it to
// answer.
func (s *MemcachedServer) Start() {
	s.t.Helper()
	// -U 0: no UDP port to collide with; -u: memcached refuses to run as
	// root without it.
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "0", "-m", "16"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	cmd := exec.Command(s.bin, args...)
	// A file, not a buffer: it is read while the server may still write.
	log, err := os.Create(filepath.Join(s.dir, "memcached.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	s.proc.start(s.t, "memcached at "+s.Addr, cmd, func() bool { return answersVersion(s.Addr) },
		func() string { b, _ := os.ReadFile(log.Name()); return string(b) })
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. Killing a stopped server does nothing.
func (s *MemcachedServer) Kill() { s.proc.kill() }

// answersVersion reports whether a memcached server answers "version" at
// addr.
func answersVersion(addr string) bool { return answers(addr, "version\r\n", "VERSION") }
