package testenv

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
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
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
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
	s := &MemcachedServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, bin: path, port: port}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start (re)starts the server on its port and waits up to 5s for it to
// answer.
func (s *MemcachedServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("memcached at %s already running", s.Addr)
	}
	// -U 0: no UDP port to collide with; -u: memcached refuses to run as
	// root without it.
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "0", "-m", "16"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	cmd := exec.Command(s.bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start memcached: %v", err)
	}
	s.cmd = cmd
	exit := make(chan struct{})
	s.exit = exit
	go func() { _ = cmd.Wait(); close(exit) }()
	deadline := time.Now().Add(5 * time.Second)
	for !answersVersion(s.Addr) {
		select {
		case <-exit:
			s.cmd = nil
			s.t.Fatalf("memcached at %s exited", s.Addr)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("memcached at %s did not come up", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. Killing a stopped server does nothing.
func (s *MemcachedServer) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// answersVersion reports whether a memcached server answers "version" at
// addr.
func answersVersion(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("version\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 8)
	n, _ := c.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "VERSION")
}
