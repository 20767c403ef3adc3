package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wsgate/wsgate/test/testenv"
)

// pgSymfonyTableSQL is PdoSessionHandler::createTable() for pgsql, verbatim
// but for the names.
const pgSymfonyTableSQL = `CREATE TABLE %s (%s VARCHAR(128) NOT NULL PRIMARY KEY, %s BYTEA NOT NULL, %s INTEGER NOT NULL, %s INTEGER NOT NULL)`

// pgTable is a sessions table a test created and drops when it ends.
type pgTable struct {
	pool                        *pgxpool.Pool
	name                        string // quoted, as used in SQL
	table                       string // as given to PDOOptions
	id, data, lifetime, modTime string
}

func createPgTable(t testing.TB, pool *pgxpool.Pool, qualified bool, cols ...string) pgTable {
	t.Helper()
	if len(cols) == 0 {
		cols = []string{"sess_id", "sess_data", "sess_lifetime", "sess_time"}
	}
	tb := pgTable{pool: pool, id: cols[0], data: cols[1], lifetime: cols[2], modTime: cols[3]}
	tb.table = uniqueName(t, "wsgate_sessions_")
	tb.name = `"` + tb.table + `"`
	if qualified {
		tb.table = "public." + tb.table
		tb.name = `"public".` + tb.name
	}
	q := fmt.Sprintf(pgSymfonyTableSQL, tb.name, tb.id, tb.data, tb.lifetime, tb.modTime)
	if _, err := pool.Exec(context.Background(), q); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+tb.name); err != nil {
			t.Errorf("drop table %s: %v", tb.name, err)
		}
	})
	return tb
}

func (tb pgTable) insertRow(t testing.TB, id string, data []byte, lifetime, modTime int64) {
	t.Helper()
	q := fmt.Sprintf(`INSERT INTO %s (%q, %q, %q, %q) VALUES ($1, $2, $3, $4)`, tb.name, tb.id, tb.data, tb.lifetime, tb.modTime)
	if _, err := tb.pool.Exec(context.Background(), q, id, data, lifetime, modTime); err != nil {
		t.Fatalf("insert session row: %v", err)
	}
}

func openTestPostgres(t testing.TB, o PDOOptions, now time.Time) *PostgresStore {
	t.Helper()
	if o.DSN == "" {
		o.DSN = testenv.PostgresDSN()
	}
	s, err := OpenPostgres(o)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	s.now = func() time.Time { return now }
	t.Cleanup(func() { s.Close() })
	return s
}

func newPgFixture(legacy bool) func(t *testing.T) sessionFixture {
	return func(t *testing.T) sessionFixture {
		t.Helper()
		pool := testenv.PostgreSQL(t)
		tb := createPgTable(t, pool, false)
		const maxLifetime = 1440 * time.Second
		now := pinnedNow()
		s := openTestPostgres(t, PDOOptions{Table: tb.table, MaxSize: 1024, LookupTimeout: 10 * time.Second}, now)
		return sessionFixture{
			store:       s,
			maxLifetime: maxLifetime,
			maxSize:     1024,
			put: func(t *testing.T, id string, data []byte, age time.Duration) {
				t.Helper()
				at := now.Add(-age).Unix()
				if legacy {
					tb.insertRow(t, id, data, int64(maxLifetime/time.Second), at)
				} else {
					tb.insertRow(t, id, data, at+int64(maxLifetime/time.Second), at)
				}
			},
		}
	}
}

func TestPostgresStoreContract(t *testing.T) {
	t.Run("symfony 5.4 rows", func(t *testing.T) { testSessionStoreContract(t, newPgFixture(false)) })
	t.Run("legacy rows", func(t *testing.T) { testSessionStoreContract(t, newPgFixture(true)) })
}

// TestPostgresStoreExpiry: the same rule as TestMySQLStoreExpiry.
func TestPostgresStoreExpiry(t *testing.T) {
	pool := testenv.PostgreSQL(t)
	tb := createPgTable(t, pool, false)
	now := pinnedNow()
	s := openTestPostgres(t, PDOOptions{Table: tb.table}, now)
	n := now.Unix()
	tests := []struct {
		name              string
		lifetime, modTime int64
		wantErr           error
	}{
		{"5.4: expires now", n, n - 1440, nil},
		{"5.4: expired a second ago", n - 1, n - 1441, ErrExpired},
		{"legacy: at the edge", 1440, n - 1440, nil},
		{"legacy: a second past", 1440, n - 1441, ErrExpired},
		{"legacy: MAX_LIFETIME is still a duration", symfonyMaxLifetime, n - symfonyMaxLifetime, nil},
		{"MAX_LIFETIME+1 is a timestamp in 1980", symfonyMaxLifetime + 1, n, ErrExpired},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("expiry%02d", i)
			tb.insertRow(t, id, []byte("a|i:1;"), tt.lifetime, tt.modTime)
			if _, err := s.Read(context.Background(), id); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read = %v; want %v", err, tt.wantErr)
			}
		})
	}
}

func TestPostgresStoreCustomNamesAndBigSession(t *testing.T) {
	pool := testenv.PostgreSQL(t)
	tb := createPgTable(t, pool, true, "id", "payload", "expires_at", "touched_at")
	now := pinnedNow()
	s := openTestPostgres(t, PDOOptions{
		Table: tb.table, IDColumn: "id", DataColumn: "payload",
		LifetimeColumn: "expires_at", TimeColumn: "touched_at",
	}, now)
	big := make([]byte, 300<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	tb.insertRow(t, "customNames01", big, now.Unix()+60, now.Unix())
	got, err := s.Read(context.Background(), "customNames01")
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("Read = %d bytes, %v; want the %d written", len(got), err, len(big))
	}
}

func TestOpenPostgresRejectsBadConfig(t *testing.T) {
	dsn := testenv.PostgresDSN()
	for _, tt := range []struct {
		name string
		o    PDOOptions
	}{
		{"injection in table", PDOOptions{DSN: dsn, Table: `sessions"; DROP TABLE users; --`}},
		{"quote in column", PDOOptions{DSN: dsn, IDColumn: `sess"id`}},
		{"two dots", PDOOptions{DSN: dsn, Table: "a.b.c"}},
		{"bad DSN", PDOOptions{DSN: "postgres://[::1"}},
		{"negative pool", PDOOptions{DSN: dsn, MaxOpenConns: -1}},
		{"negative concurrency", PDOOptions{DSN: dsn, MaxConcurrent: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := OpenPostgres(tt.o); err == nil {
				s.Close()
				t.Fatalf("OpenPostgres(%+v) succeeded", tt.o)
			}
		})
	}
	s, err := OpenPostgres(PDOOptions{DSN: dsn, Table: "app.sessions"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := `SELECT CASE WHEN octet_length("sess_data") <= $1 THEN "sess_data" END, octet_length("sess_data"), "sess_lifetime", "sess_time" FROM "app"."sessions" WHERE "sess_id" = $2`
	if s.query != want {
		t.Errorf("query = %s\nwant    %s", s.query, want)
	}
}

// TestPostgresStoreNeverBlocksOnPHPLocks holds what PdoSessionHandler holds
// during a PHP request on PostgreSQL (SELECT ... FOR UPDATE with an
// uncommitted write for lock_mode transactional, pg_advisory_lock for
// advisory) and shows Read answers at once with the committed data.
func TestPostgresStoreNeverBlocksOnPHPLocks(t *testing.T) {
	pool := testenv.PostgreSQL(t)
	tb := createPgTable(t, pool, false)
	now := pinnedNow()
	s := openTestPostgres(t, PDOOptions{Table: tb.table, LookupTimeout: 5 * time.Second}, now)
	const id = "lockedSession01"
	committed := []byte(`user|s:5:"alice";`)
	tb.insertRow(t, id, committed, now.Unix()+3600, now.Unix())
	ctx := context.Background()
	if _, err := s.Read(ctx, id); err != nil {
		t.Fatal(err)
	}
	readPromptly := func(t *testing.T) {
		t.Helper()
		start := time.Now()
		got, err := s.Read(ctx, id)
		if took := time.Since(start); err != nil || !bytes.Equal(got, committed) || took > time.Second {
			t.Fatalf("Read while locked = %q, %v after %v", got, err, took)
		}
		res, err := s.ReadMany(ctx, []string{id})
		if err != nil || !bytes.Equal(res[id].Data, committed) {
			t.Fatalf("ReadMany while locked = %v, %v", res, err)
		}
	}

	t.Run("FOR UPDATE and an uncommitted write", func(t *testing.T) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		var data []byte
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT %q FROM %s WHERE %q = $1 FOR UPDATE`, tb.data, tb.name, tb.id), id).Scan(&data); err != nil {
			t.Fatal(err)
		}
		readPromptly(t)
		if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %q = $1 WHERE %q = $2`, tb.name, tb.data, tb.id), []byte("bob"), id); err != nil {
			t.Fatal(err)
		}
		readPromptly(t)
	})
	t.Run("pg_advisory_lock held", func(t *testing.T) {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", id); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(ctx, "SELECT pg_advisory_unlock(hashtext($1))", id)
		readPromptly(t)
	})
}

// TestPostgresStoreUnavailable: refused and hung servers fail fast with
// ErrUnavailable; errors carry no session id.
func TestPostgresStoreUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name string
		addr string
	}{
		{"connection refused", "127.0.0.1:1"},
		{"server never answers", blackhole(t)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenPostgres(PDOOptions{DSN: "postgres://postgres@" + tt.addr + "/test?sslmode=disable", LookupTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatalf("OpenPostgres must not need the server: %v", err)
			}
			defer s.Close()
			start := time.Now()
			_, err = s.Read(context.Background(), "unavailable01")
			if took := time.Since(start); !errors.Is(err, ErrUnavailable) || took > time.Second {
				t.Fatalf("Read = %v after %v", err, took)
			}
			if strings.Contains(err.Error(), "unavailable01") {
				t.Errorf("error %q leaks the session id", err)
			}
			if err := s.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Ping = %v", err)
			}
		})
	}
}
