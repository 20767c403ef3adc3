package storage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/test/testenv"
)

// Benchmarks of lookups per store and of a revalidation pass over 15k
// connections. Each reports, besides ns/op, the CPU the gateway process
// (client-cores) and the database server processes (server-cores) used per
// wall-clock second: a lookup "bounded by the server" shows server-cores
// near what the server can give while client-cores stays lower.
//
//	go test -run '^$' -bench . -benchmem ./storage/

const (
	benchSessions = 15000
	benchBatch    = 500
)

// benchData is a typical 1 KiB serialized Symfony session.
var benchData = bytes.Repeat([]byte("_sf2_attributes|a:1:{s:4:\"user\";s:5:\"alice\";}"), 30)[:1024]

func benchIDs() []string {
	ids := make([]string, benchSessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("benchsession%08d", i)
	}
	return ids
}

// cpuMeter measures the CPU time of this process and of the named server
// processes (by /proc/<pid>/comm) between start and stop.
type cpuMeter struct {
	servers          []string
	wall             time.Time
	self, serverTick int64
}

func clockTicks(names []string) int64 {
	var total int64
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		match := false
		for _, n := range names {
			match = match || strings.HasPrefix(name, n)
		}
		if !match {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the ")" of comm: state is field 3; utime, stime
		// are fields 14 and 15.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + s
		}
	}
	return total
}

func selfCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func startCPU(servers ...string) *cpuMeter {
	return &cpuMeter{servers: servers, wall: time.Now(), self: selfCPU(), serverTick: clockTicks(servers)}
}

func (m *cpuMeter) report(b *testing.B) {
	wall := time.Since(m.wall).Seconds()
	if wall <= 0 {
		return
	}
	self := float64(selfCPU() - m.self)
	b.ReportMetric(self/1e9/wall, "client-cores")
	// CPU per op does not depend on how much of the machine others use.
	b.ReportMetric(self/float64(b.N), "client-cpu-ns/op")
	if len(m.servers) > 0 {
		// Linux's USER_HZ is 100.
		b.ReportMetric(float64(clockTicks(m.servers)-m.serverTick)/100/wall, "server-cores")
	}
}

// benchRedisStore loads the sessions under a fresh prefix and opens a store.
func benchRedisStore(b *testing.B, cache bool) (*RedisStore, []string) {
	addr := testenv.Redis(b)
	prefix := uniqueName(b, "wsgate_b_") + "sf_s"
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		deleteRedisPrefix(b, admin, context.Background(), prefix)
		admin.Close()
	})
	ids := benchIDs()
	cmds := make(rueidis.Commands, 0, len(ids))
	for _, id := range ids {
		cmds = append(cmds, admin.B().Set().Key(prefix+id).Value(rueidis.BinaryString(benchData)).Ex(time.Hour).Build())
	}
	for _, r := range admin.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			b.Fatal(err)
		}
	}
	return openTestRedis(b, RedisOptions{Addrs: []string{addr}, Prefix: prefix, ClientCache: cache, CacheBytes: 64 << 20, LookupTimeout: 10 * time.Second}), ids
}

// warm reads every id once, in batches, to fill the client-side cache.
func warm(b *testing.B, s SessionStore, ids []string) {
	for j := 0; j < len(ids); j += benchBatch {
		if _, err := s.ReadMany(context.Background(), ids[j:min(j+benchBatch, len(ids))]); err != nil {
			b.Fatal(err)
		}
	}
}

// runLookups runs Read in parallel over ids.
func runLookups(b *testing.B, s SessionStore, ids []string, servers ...string) {
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	m := startCPU(servers...)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[int(next.Add(1))%len(ids)]
			if _, err := s.Read(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	m.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkRedisCachedLookup: warm client-side cache, every lookup served
// from memory.
func BenchmarkRedisCachedLookup(b *testing.B) {
	s, ids := benchRedisStore(b, true)
	warm(b, s, ids)
	runLookups(b, s, ids, "redis-server")
}

// BenchmarkRedisLookup: no client-side cache, every lookup a round trip
// (pipelined with the other goroutines' lookups).
func BenchmarkRedisLookup(b *testing.B) {
	s, ids := benchRedisStore(b, false)
	runLookups(b, s, ids, "redis-server")
}

// BenchmarkRedisColdCacheLookup: client-side cache on but every lookup a
// miss (a key never read before), the cost of filling the cache.
func BenchmarkRedisColdCacheLookup(b *testing.B) {
	s, _ := benchRedisStore(b, true)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	m := startCPU("redis-server")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Missing keys: a round trip and a cache fill each.
			if _, err := s.Read(ctx, "cold"+strconv.FormatInt(next.Add(1), 10)); err == nil || Result(err) != ResultNotFound {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	m.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// benchMemcachedStore loads the sessions under a fresh prefix and opens a
// store; the keys are deleted when the benchmark ends.
func benchMemcachedStore(b *testing.B) (*MemcachedStore, []string) {
	addr := testenv.Memcached(b)
	prefix := uniqueName(b, "wsgate_b_") + DefaultMemcachedPrefix
	admin := newMemcachedAdmin(b, addr)
	ids := benchIDs()
	for _, id := range ids {
		admin.set(b, prefix+id, benchData, 0, time.Hour)
	}
	return openTestMemcached(b, MemcachedOptions{Addrs: []string{addr}, Prefix: prefix, LookupTimeout: 10 * time.Second}), ids
}

// BenchmarkMemcachedLookup: every lookup a round trip on a pooled
// connection of its own (memcached's text protocol does not multiplex).
func BenchmarkMemcachedLookup(b *testing.B) {
	s, ids := benchMemcachedStore(b)
	runLookups(b, s, ids, "memcached")
}

func benchMySQLStore(b *testing.B) (*PDOStore, []string) {
	db := testenv.MariaDB(b)
	tb := createSessionTable(b, db, false, "MEDIUMBLOB")
	ids := benchIDs()
	now := time.Now().Unix()
	for i := 0; i < len(ids); i += benchBatch {
		var q strings.Builder
		args := make([]any, 0, 4*benchBatch)
		fmt.Fprintf(&q, "INSERT INTO %s VALUES ", tb.name)
		for j, id := range ids[i:min(i+benchBatch, len(ids))] {
			if j > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?,?,?)")
			args = append(args, id, benchData, now+3600, now)
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			b.Fatal(err)
		}
	}
	return openTestMySQL(b, PDOOptions{Table: tb.table, LookupTimeout: 10 * time.Second}, time.Now()), ids
}

func benchPostgresStore(b *testing.B) (*PostgresStore, []string) {
	pool := testenv.PostgreSQL(b)
	tb := createPgTable(b, pool, false)
	ids := benchIDs()
	now := time.Now().Unix()
	rows := make([][]any, len(ids))
	for i, id := range ids {
		rows[i] = []any{id, benchData, now + 3600, now}
	}
	if _, err := pool.CopyFrom(context.Background(), pgx.Identifier{tb.table}, []string{tb.id, tb.data, tb.lifetime, tb.modTime}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	return openTestPostgres(b, PDOOptions{Table: tb.table, LookupTimeout: 10 * time.Second}, time.Now()), ids
}

func benchFilesStore(b *testing.B) (*FilesStore, []string) {
	dir := b.TempDir()
	ids := benchIDs()
	for _, id := range ids {
		if err := os.WriteFile(filepath.Join(dir, "sess_"+id), benchData, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	s := openFilesStore(b, FilesOptions{Dir: dir})
	return s, ids
}

func BenchmarkMySQLLookup(b *testing.B) {
	s, ids := benchMySQLStore(b)
	runLookups(b, s, ids, "mariadbd", "mysqld")
}

func BenchmarkPostgresLookup(b *testing.B) {
	s, ids := benchPostgresStore(b)
	runLookups(b, s, ids, "postgres")
}

func BenchmarkFilesLookup(b *testing.B) {
	s, ids := benchFilesStore(b)
	runLookups(b, s, ids)
}

// BenchmarkFilesRead: Read of 1 KiB sessions through the store's readers
// ("pool") against the same read on the caller's goroutine ("direct", what
// the store did before it had readers, without its limit), with GOMAXPROCS
// goroutines and with 64 times as many (a handshake burst).
//
//	go test -run '^$' -bench 'FilesRead' -benchmem ./storage/
func BenchmarkFilesRead(b *testing.B) {
	s, ids := benchFilesStore(b)
	for _, p := range []int{1, 64} {
		for _, mode := range []string{"pool", "direct"} {
			b.Run(fmt.Sprintf("%s/goroutines=%dxGOMAXPROCS", mode, p), func(b *testing.B) {
				read := s.Read
				if mode == "direct" {
					read = s.read
				}
				ctx := context.Background()
				var next atomic.Int64
				b.SetParallelism(p)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := read(ctx, ids[int(next.Add(1))%len(ids)]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkRevalidate15k: one op re-reads 15k sessions in batches of 500
// with ReadMany, as the gateway's revalidation does over one interval.
func BenchmarkRevalidate15k(b *testing.B) {
	run := func(b *testing.B, s SessionStore, ids []string, servers ...string) {
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		m := startCPU(servers...)
		for i := 0; i < b.N; i++ {
			for j := 0; j < len(ids); j += benchBatch {
				res, err := s.ReadMany(ctx, ids[j:min(j+benchBatch, len(ids))])
				if err != nil {
					b.Fatal(err)
				}
				if r := res[ids[j]]; r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		}
		b.StopTimer()
		m.report(b)
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e3, "ms/pass")
	}
	b.Run("redis-cached", func(b *testing.B) {
		s, ids := benchRedisStore(b, true)
		warm(b, s, ids)
		run(b, s, ids, "redis-server")
	})
	b.Run("redis", func(b *testing.B) {
		s, ids := benchRedisStore(b, false)
		run(b, s, ids, "redis-server")
	})
	b.Run("memcached", func(b *testing.B) {
		s, ids := benchMemcachedStore(b)
		run(b, s, ids, "memcached")
	})
	b.Run("mysql", func(b *testing.B) {
		s, ids := benchMySQLStore(b)
		run(b, s, ids, "mariadbd", "mysqld")
	})
	b.Run("postgres", func(b *testing.B) {
		s, ids := benchPostgresStore(b)
		run(b, s, ids, "postgres")
	})
	b.Run("files", func(b *testing.B) {
		s, ids := benchFilesStore(b)
		run(b, s, ids)
	})
}
