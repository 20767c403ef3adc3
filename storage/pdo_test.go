package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// symfonyTableSQL is PdoSessionHandler::createTable() for MySQL, verbatim
// but for the names and the data column type.
const symfonyTableSQL = "CREATE TABLE %s (%s VARBINARY(128) NOT NULL PRIMARY KEY, %s %s NOT NULL, %s INTEGER UNSIGNED NOT NULL, %s INTEGER UNSIGNED NOT NULL) COLLATE utf8mb4_bin, ENGINE = InnoDB"

// mysqlTable is a sessions table a test created and drops when it ends.
type mysqlTable struct {
	db                          *sql.DB
	name                        string // as used in SQL, already quoted
	table                       string // as given to PDOOptions
	id, data, lifetime, modTime string
}

// uniqueName returns prefix plus random hex, so parallel runs and leftovers
// from killed runs never collide.
func uniqueName(t testing.TB, prefix string) string { return testenv.UniqueName(t, prefix) }

// createSessionTable creates a Symfony sessions table with a unique name
// (optionally schema-qualified with the connection's database) and the given
// column names and data type.
func createSessionTable(t testing.TB, db *sql.DB, qualified bool, dataType string, cols ...string) mysqlTable {
	t.Helper()
	if len(cols) == 0 {
		cols = []string{"sess_id", "sess_data", "sess_lifetime", "sess_time"}
	}
	tb := mysqlTable{db: db, id: cols[0], data: cols[1], lifetime: cols[2], modTime: cols[3]}
	tb.table = uniqueName(t, "wsgate_sessions_")
	tb.name = "`" + tb.table + "`"
	if qualified {
		var schema string
		if err := db.QueryRow("SELECT DATABASE()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		tb.table = schema + "." + tb.table
		tb.name = "`" + schema + "`." + tb.name
	}
	q := fmt.Sprintf(symfonyTableSQL, tb.name, tb.id, tb.data, dataType, tb.lifetime, tb.modTime)
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP TABLE IF EXISTS " + tb.name); err != nil {
			t.Errorf("drop table %s: %v", tb.name, err)
		}
	})
	return tb
}

// insertRow writes a row with explicit lifetime and time columns.
func (tb mysqlTable) insertRow(t testing.TB, id string, data []byte, lifetime, modTime int64) {
	t.Helper()
	q := fmt.Sprintf("INSERT INTO %s (`%s`, `%s`, `%s`, `%s`) VALUES (?, ?, ?, ?)",
		tb.name, tb.id, tb.data, tb.lifetime, tb.modTime)
	if _, err := tb.db.Exec(q, id, data, lifetime, modTime); err != nil {
		t.Fatalf("insert session row: %v", err)
	}
}

// writeSymfony54 writes a row as Symfony >= 4.4 does (doWrite/updateTimestamp):
// sess_lifetime = time() + gc_maxlifetime, sess_time = time().
func (tb mysqlTable) writeSymfony54(t testing.TB, id string, data []byte, at time.Time, maxLifetime time.Duration) {
	t.Helper()
	tb.insertRow(t, id, data, at.Unix()+int64(maxLifetime/time.Second), at.Unix())
}

// writeLegacy writes a row as Symfony < 4.4 did: sess_lifetime holds
// gc_maxlifetime in seconds, and the expiry is sess_lifetime + sess_time.
func (tb mysqlTable) writeLegacy(t testing.TB, id string, data []byte, at time.Time, maxLifetime time.Duration) {
	t.Helper()
	tb.insertRow(t, id, data, int64(maxLifetime/time.Second), at.Unix())
}

// openTestMySQL opens a PDOStore on tb with a pinned clock.
func openTestMySQL(t testing.TB, o PDOOptions, now time.Time) *PDOStore {
	t.Helper()
	if o.DSN == "" {
		o.DSN = testenv.MariaDBDSN()
	}
	s, err := OpenMySQL(o)
	if err != nil {
		t.Fatalf("OpenMySQL: %v", err)
	}
	s.now = func() time.Time { return now }
	t.Cleanup(func() { s.Close() })
	return s
}

// newMySQLFixture runs the contract against Symfony's table, with rows
// written by write (the 5.4 way or the legacy way).
func newMySQLFixture(write func(tb mysqlTable, t testing.TB, id string, data []byte, at time.Time, ml time.Duration)) func(t *testing.T) sessionFixture {
	return func(t *testing.T) sessionFixture {
		t.Helper()
		db := testenv.MariaDB(t)
		tb := createSessionTable(t, db, false, "BLOB")
		const maxLifetime = 1440 * time.Second
		now := pinnedNow()
		s := openTestMySQL(t, PDOOptions{Table: tb.table, MaxSize: 1024, LookupTimeout: 10 * time.Second}, now)
		return sessionFixture{
			store:       s,
			maxLifetime: maxLifetime,
			maxSize:     1024,
			put: func(t *testing.T, id string, data []byte, age time.Duration) {
				t.Helper()
				write(tb, t, id, data, now.Add(-age), maxLifetime)
			},
		}
	}
}

func TestMySQLStoreContract(t *testing.T) {
	t.Run("symfony 5.4 rows", func(t *testing.T) {
		testSessionStoreContract(t, newMySQLFixture(mysqlTable.writeSymfony54))
	})
	t.Run("legacy rows", func(t *testing.T) {
		testSessionStoreContract(t, newMySQLFixture(mysqlTable.writeLegacy))
	})
}

// TestMySQLStoreExpiry pins PdoSessionHandler::doRead's rule on raw column
// values: expiry = sess_lifetime, plus sess_time when sess_lifetime <=
// MAX_LIFETIME (315576000); expired iff expiry < now.
func TestMySQLStoreExpiry(t *testing.T) {
	db := testenv.MariaDB(t)
	tb := createSessionTable(t, db, false, "BLOB")
	now := pinnedNow()
	s := openTestMySQL(t, PDOOptions{Table: tb.table}, now)
	n := now.Unix()
	tests := []struct {
		name              string
		lifetime, modTime int64
		wantErr           error
	}{
		{"5.4: expires in a second", n + 1, n - 1439, nil},
		{"5.4: expires now", n, n - 1440, nil},
		{"5.4: expired a second ago", n - 1, n - 1441, ErrExpired},
		{"5.4: sess_time is ignored", n + 60, 0, nil},
		{"legacy: 1440s lifetime, written now", 1440, n, nil},
		{"legacy: at the edge", 1440, n - 1440, nil},
		{"legacy: a second past", 1440, n - 1441, ErrExpired},
		{"legacy: MAX_LIFETIME is still a duration", symfonyMaxLifetime, n - symfonyMaxLifetime, nil},
		{"legacy: MAX_LIFETIME a second past", symfonyMaxLifetime, n - symfonyMaxLifetime - 1, ErrExpired},
		{"MAX_LIFETIME+1 is a timestamp in 1980", symfonyMaxLifetime + 1, n, ErrExpired},
		{"zero lifetime and time", 0, 0, ErrExpired},
	}
	data := []byte("a|i:1;")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("expiry%02d", i)
			tb.insertRow(t, id, data, tt.lifetime, tt.modTime)
			got, err := s.Read(context.Background(), id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read = %q, %v; want %v", got, err, tt.wantErr)
			}
			if tt.wantErr == nil && !bytes.Equal(got, data) {
				t.Fatalf("Read = %q, want %q", got, data)
			}
		})
	}
}

// TestMySQLStoreMediumBlob: tables altered to MEDIUMBLOB hold sessions over
// BLOB's 64 KiB; they must come back byte for byte.
func TestMySQLStoreMediumBlob(t *testing.T) {
	db := testenv.MariaDB(t)
	tb := createSessionTable(t, db, false, "MEDIUMBLOB")
	now := pinnedNow()
	s := openTestMySQL(t, PDOOptions{Table: tb.table}, now)
	big := make([]byte, 200<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	tb.writeSymfony54(t, "bigSession01", big, now, time.Hour)
	got, err := s.Read(context.Background(), "bigSession01")
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("Read returned %d bytes, not the %d written", len(got), len(big))
	}

	small := openTestMySQL(t, PDOOptions{Table: tb.table, MaxSize: 64 << 10}, now)
	if _, err := small.Read(context.Background(), "bigSession01"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read over MaxSize = %v; want ErrTooLarge", err)
	}
}

func TestMySQLStoreCustomNames(t *testing.T) {
	db := testenv.MariaDB(t)
	tb := createSessionTable(t, db, true, "BLOB", "id", "payload", "expires_at", "touched_at")
	now := pinnedNow()
	s := openTestMySQL(t, PDOOptions{
		Table: tb.table, IDColumn: "id", DataColumn: "payload",
		LifetimeColumn: "expires_at", TimeColumn: "touched_at",
	}, now)
	tb.writeSymfony54(t, "customNames01", []byte("x|b:1;"), now, time.Hour)
	got, err := s.Read(context.Background(), "customNames01")
	if err != nil || string(got) != "x|b:1;" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	if !strings.Contains(tb.table, ".") {
		t.Fatalf("table %q is not schema-qualified", tb.table)
	}
}

func TestOpenMySQLRejectsBadConfig(t *testing.T) {
	dsn := "root@tcp(127.0.0.1:3306)/test"
	tests := []struct {
		name string
		o    PDOOptions
	}{
		{"injection in table", PDOOptions{DSN: dsn, Table: "sessions; DROP TABLE users"}},
		{"backtick in table", PDOOptions{DSN: dsn, Table: "sess`ions"}},
		{"two dots", PDOOptions{DSN: dsn, Table: "a.b.c"}},
		{"empty schema", PDOOptions{DSN: dsn, Table: ".sessions"}},
		{"empty table after schema", PDOOptions{DSN: dsn, Table: "test."}},
		{"space in column", PDOOptions{DSN: dsn, IDColumn: "sess id"}},
		{"dash in column", PDOOptions{DSN: dsn, DataColumn: "sess-data"}},
		{"dot in column", PDOOptions{DSN: dsn, LifetimeColumn: "t.sess_lifetime"}},
		{"comment in column", PDOOptions{DSN: dsn, TimeColumn: "sess_time/**/"}},
		{"non-ASCII column", PDOOptions{DSN: dsn, TimeColumn: "séss"}},
		{"65-char identifier", PDOOptions{DSN: dsn, Table: strings.Repeat("t", 65)}},
		{"bad DSN", PDOOptions{DSN: "not a dsn"}},
		{"negative pool", PDOOptions{DSN: dsn, MaxOpenConns: -1}},
		{"negative timeout", PDOOptions{DSN: dsn, LookupTimeout: -time.Second}},
		{"negative max size", PDOOptions{DSN: dsn, MaxSize: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenMySQL(tt.o)
			if err == nil {
				s.Close()
				t.Fatalf("OpenMySQL(%+v) succeeded", tt.o)
			}
		})
	}

	s, err := OpenMySQL(PDOOptions{DSN: dsn})
	if err != nil {
		t.Fatalf("OpenMySQL with defaults: %v", err)
	}
	defer s.Close()
	want := "SELECT CASE WHEN LENGTH(`sess_data`) <= ? THEN `sess_data` END, LENGTH(`sess_data`), `sess_lifetime`, `sess_time` FROM `sessions` WHERE `sess_id` = ?"
	if s.query != want {
		t.Errorf("query = %s\nwant    %s", s.query, want)
	}
	if s.lookupTimeout != DefaultPDOLookupTimeout || s.maxSize != DefaultMaxSize {
		t.Errorf("defaults: timeout %v, max size %d", s.lookupTimeout, s.maxSize)
	}
}

// TestMySQLStoreUnavailable: when the database cannot answer, Read and Ping
// fail fast with ErrUnavailable (the gateway's 503), not with ErrNotFound.
func TestMySQLStoreUnavailable(t *testing.T) {
	// A listener that accepts and never speaks: the driver waits for a
	// handshake that never comes, as with a hung server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	tests := []struct {
		name    string
		dsn     string
		timeout time.Duration
		within  time.Duration
		wantErr error
	}{
		{"connection refused", "root@tcp(127.0.0.1:1)/test", 2 * time.Second, time.Second, nil},
		{"server never answers", "root@tcp(" + ln.Addr().String() + ")/test", 200 * time.Millisecond, 1500 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenMySQL(PDOOptions{DSN: tt.dsn, LookupTimeout: tt.timeout})
			if err != nil {
				t.Fatalf("OpenMySQL must not need the server: %v", err)
			}
			defer s.Close()
			for _, op := range []struct {
				name string
				do   func() error
			}{
				{"Read", func() error { _, err := s.Read(context.Background(), "unavailable01"); return err }},
				{"Ping", func() error { return s.Ping(context.Background()) }},
			} {
				start := time.Now()
				err := op.do()
				took := time.Since(start)
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("%s = %v; want ErrUnavailable", op.name, err)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("%s = %v; want it to wrap %v", op.name, err, tt.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "unavailable01") {
					t.Errorf("%s error %q leaks the session id", op.name, err)
				}
				if took > tt.within {
					t.Errorf("%s took %v; want under %v", op.name, took, tt.within)
				}
			}
		})
	}
}

// TestMySQLStoreMissingTable: a misconfigured table is the store failing
// (503), not every user being logged out (401).
func TestMySQLStoreMissingTable(t *testing.T) {
	testenv.MariaDB(t)
	s := openTestMySQL(t, PDOOptions{Table: uniqueName(t, "wsgate_missing_")}, pinnedNow())
	_, err := s.Read(context.Background(), "missingTable01")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read = %v; want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "missingTable01") {
		t.Errorf("error %q leaks the session id", err)
	}
}

// TestMySQLStoreNeverBlocksOnPHPLocks holds the locks Symfony's
// PdoSessionHandler takes while a PHP request runs, on other connections, and
// shows Read still answers at once with the last committed data: it takes no
// lock and InnoDB's consistent read waits for none.
func TestMySQLStoreNeverBlocksOnPHPLocks(t *testing.T) {
	db := testenv.MariaDB(t)
	tb := createSessionTable(t, db, false, "BLOB")
	now := pinnedNow()
	s := openTestMySQL(t, PDOOptions{Table: tb.table, LookupTimeout: 5 * time.Second}, now)
	committed := []byte("user|s:5:\"alice\";")
	const id = "lockedSession01"
	tb.writeSymfony54(t, id, committed, now, time.Hour)
	ctx := context.Background()

	// Warm the pool and the prepared statement so the timing below is the
	// lookup alone.
	if _, err := s.Read(ctx, id); err != nil {
		t.Fatalf("Read: %v", err)
	}

	// The read must return well inside InnoDB's lock wait timeout (50s by
	// default) and our own 5s; 1s leaves room for a slow CI machine.
	const prompt = time.Second
	readPromptly := func(t *testing.T, want []byte) {
		t.Helper()
		start := time.Now()
		got, err := s.Read(ctx, id)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Read while locked: %v (after %v)", err, took)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Read while locked = %q, want %q", got, want)
		}
		if took > prompt {
			t.Fatalf("Read while locked took %v; want under %v", took, prompt)
		}
	}

	t.Run("lock_mode transactional: SELECT FOR UPDATE and an uncommitted write", func(t *testing.T) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var data []byte
		q := fmt.Sprintf("SELECT `%s` FROM %s WHERE `%s` = ? FOR UPDATE", tb.data, tb.name, tb.id)
		if err := tx.QueryRowContext(ctx, q, id).Scan(&data); err != nil {
			t.Fatalf("SELECT FOR UPDATE: %v", err)
		}
		readPromptly(t, committed)

		// PHP has written new data but not committed yet: we see the
		// committed version, without waiting.
		u := fmt.Sprintf("UPDATE %s SET `%s` = ? WHERE `%s` = ?", tb.name, tb.data, tb.id)
		if _, err := tx.ExecContext(ctx, u, []byte("user|s:3:\"bob\";"), id); err != nil {
			t.Fatalf("UPDATE: %v", err)
		}
		readPromptly(t, committed)
	})

	t.Run("lock_mode advisory: GET_LOCK held", func(t *testing.T) {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 50)", id).Scan(&got); err != nil || got.Int64 != 1 {
			t.Fatalf("GET_LOCK = %v, %v", got, err)
		}
		defer conn.ExecContext(ctx, "SELECT RELEASE_LOCK(?)", id)
		readPromptly(t, committed)
	})
}
