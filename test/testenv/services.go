package testenv

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
)

// PostgresDSN is the pgx connection string of the loopback PostgreSQL test
// database (trust auth, user postgres, database test);
// WSGATE_TEST_POSTGRES_DSN overrides it.
func PostgresDSN() string {
	if v := os.Getenv("WSGATE_TEST_POSTGRES_DSN"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// PostgreSQL opens a pool on the test database and checks that it answers,
// or skips/fails t. The pool is closed when the test ends.
func PostgreSQL(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, PostgresDSN())
	if err != nil {
		t.Fatalf("parse WSGATE_TEST_POSTGRES_DSN: %v", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		Missing(t, "PostgreSQL", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// RedisAddr is the host:port of the loopback Redis test server;
// WSGATE_TEST_REDIS_ADDR overrides it.
func RedisAddr() string {
	if v := os.Getenv("WSGATE_TEST_REDIS_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

// Redis checks that the test Redis server listens and returns its address,
// or skips/fails t.
func Redis(t testing.TB) string {
	t.Helper()
	addr := RedisAddr()
	if err := TCPReachable(addr); err != nil {
		Missing(t, "Redis at "+addr, err)
	}
	return addr
}

// RedisServer is a private redis-server a test started on a free loopback
// port, without persistence, so that it can kill and restart it.
type RedisServer struct {
	// Addr is "127.0.0.1:<port>"; it stays the same across restarts.
	Addr string
	// Port is Addr's port.
	Port int
	t    testing.TB
	bin  string
	dir  string
	args []string
	conf string
	proc process
}

// StartRedis starts redis-server (WSGATE_TEST_REDIS_SERVER overrides the
// binary) on a free port with extra arguments (e.g. "--cluster-enabled",
// "yes"), waits until it answers, and stops it when the test ends. A
// missing binary skips/fails t.
func StartRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	return StartRedisConfig(t, "", extra...)
}

// StartRedisConfig is StartRedis with the text of a config file (e.g. a
// Sentinel's "sentinel monitor ..." lines, with extra "--sentinel"); the
// port, bind address and persistence arguments still apply.
func StartRedisConfig(t testing.TB, config string, extra ...string) *RedisServer {
	t.Helper()
	bin := os.Getenv("WSGATE_TEST_REDIS_SERVER")
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		Missing(t, "redis-server binary", err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Port: port,
		t:    t,
		bin:  path,
		dir:  t.TempDir(),
		args: extra,
	}
	if config != "" {
		// A config file must be redis-server's first argument; Sentinel
		// rewrites it, so it lives in the server's own directory.
		conf := filepath.Join(s.dir, "redis.conf")
		if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		s.conf = conf
	}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Start (re)starts the server on its port and waits up to 5s for it to
// accept connections.
func (s *RedisServer) Start() {
	s.t.Helper()
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(append(args,
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
	), s.args...)
	s.proc.start(s.t, "redis-server at "+s.Addr, exec.Command(s.bin, args...),
		func() bool { return answersPing(s.Addr) },
		func() string { log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log")); return string(log) })
}

// answersPing reports whether a Redis server answers PING at addr.
func answersPing(addr string) bool { return answers(addr, "PING\r\n", "+PONG") }

// answers reports whether the server at addr answers request with a reply
// starting with want, within a second.
func answers(addr, request, want string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(request)); err != nil {
		return false
	}
	buf := make([]byte, len(want))
	n, _ := io.ReadFull(c, buf)
	return string(buf[:n]) == want
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it
// to exit. Killing a stopped server does nothing.
func (s *RedisServer) Kill() { s.proc.kill() }

// Save writes the server's data to dump.rdb in its directory (SAVE), so
// that the next Start loads it: a crash of a Redis with persistence, where
// the keys outlive the outage. Without it a restarted server is empty.
func (s *RedisServer) Save() {
	s.t.Helper()
	if !answers(s.Addr, "SAVE\r\n", "+OK") {
		s.t.Fatalf("redis-server at %s: SAVE did not answer +OK", s.Addr)
	}
}

// Dir is the server's working directory (its log is redis.log there).
func (s *RedisServer) Dir() string { return s.dir }

// FreePort returns a loopback TCP port that was free a moment ago, as was
// the port 10000 above it (a Redis Cluster node's bus port). Ports are
// picked from 10000-22767, below Linux's ephemeral range (32768 and up), so
// that no outgoing connection takes them between the check and the
// server's start.
func FreePort() (int, error) {
	for i := 0; i < 200; i++ {
		p := 10000 + rand.IntN(12768)
		if free(p) && free(p+10000) {
			return p, nil
		}
	}
	return 0, errors.New("find a free port: none free in 200 tries")
}

// free reports whether a loopback TCP port can be listened on.
func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// StartRedisCluster starts masters redis-server nodes in cluster mode (each
// a StartRedis server, stopped when the test ends), joins them with
// redis-cli --cluster create (no replicas), waits until every node says the
// cluster is ok (the first one saying so is not enough: a command routed to
// another may still get CLUSTERDOWN), and returns their addresses. A
// missing redis-server or redis-cli skips t, or fails it under CI=true.
func StartRedisCluster(t testing.TB, masters int) []string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		Missing(t, "redis-cli", err)
	}
	var nodes []string
	for range masters {
		n := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		nodes = append(nodes, n.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, nodes...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ok := func(addr string) bool {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			return false
		}
		defer c.Close()
		info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}
	for _, n := range nodes {
		for !ok(n) {
			if ctx.Err() != nil {
				t.Fatalf("Redis Cluster node %s not ok within 30s", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// Blackhole listens on loopback, accepts connections and never answers:
// a server that hangs. It returns the address; the listener and the
// connections it holds close when the test ends.
func Blackhole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex // guards held
		held []net.Conn
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// UniqueName returns prefix followed by 12 random hex digits, for the keys,
// tables and channels of a test sharing a server with others.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}
