package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// TestSQLStoresKilledAndRestarted cuts the database away under each SQL
// store mid-test: lookups fail fast with ErrUnavailable while it is gone
// (with pooled connections dead underneath), and the store recovers by
// itself within seconds of its return.
func TestSQLStoresKilledAndRestarted(t *testing.T) {
	type sqlCase struct {
		name  string
		setup func(t *testing.T, proxy func(target string) string) SessionStore
	}
	cases := []sqlCase{
		{"mysql", func(t *testing.T, proxy func(string) string) SessionStore {
			db := testenv.MariaDB(t)
			tb := createSessionTable(t, db, false, "BLOB")
			now := pinnedNow()
			tb.writeSymfony54(t, "outage01", []byte("a|i:1;"), now, time.Hour)
			addr := proxy("127.0.0.1:3306")
			return openTestMySQL(t, PDOOptions{DSN: "root@tcp(" + addr + ")/test", Table: tb.table, LookupTimeout: 500 * time.Millisecond}, now)
		}},
		{"postgres", func(t *testing.T, proxy func(string) string) SessionStore {
			pool := testenv.PostgreSQL(t)
			tb := createPgTable(t, pool, false)
			now := pinnedNow()
			tb.insertRow(t, "outage01", []byte("a|i:1;"), now.Unix()+3600, now.Unix())
			addr := proxy("127.0.0.1:5432")
			return openTestPostgres(t, PDOOptions{DSN: "postgres://postgres@" + addr + "/test?sslmode=disable", Table: tb.table, LookupTimeout: 500 * time.Millisecond}, now)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p *testenv.Proxy
			s := tc.setup(t, func(target string) string { p = testenv.StartProxy(t, target); return p.Addr() })
			ctx := context.Background()
			// Several pooled connections, all of which will die.
			var wg sync.WaitGroup
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if got, err := s.Read(ctx, "outage01"); err != nil || string(got) != "a|i:1;" {
						t.Errorf("Read = %q, %v", got, err)
					}
				}()
			}
			wg.Wait()

			p.Cut()
			for i := 0; i < 5; i++ {
				start := time.Now()
				_, err := s.Read(ctx, "outage01")
				took := time.Since(start)
				if !errors.Is(err, ErrUnavailable) || took > time.Second {
					t.Fatalf("Read while cut = %v after %v; want ErrUnavailable fast", err, took)
				}
				if i == 0 {
					t.Logf("down: %v after %v", err, took)
				}
			}
			if _, err := s.ReadMany(ctx, []string{"outage01"}); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("ReadMany while cut = %v", err)
			}

			p.Restore()
			back := time.Now()
			waitFor(t, 5*time.Second, "recovery", func() bool {
				got, err := s.Read(ctx, "outage01")
				return err == nil && string(got) == "a|i:1;"
			})
			t.Logf("recovered %v after the database came back", time.Since(back))
			res, err := s.ReadMany(ctx, []string{"outage01"})
			if err != nil || string(res["outage01"].Data) != "a|i:1;" {
				t.Fatalf("ReadMany after recovery = %v, %v", res, err)
			}
		})
	}
}

// writeSessionPHP runs test/php/write-session.php and returns the id.
func writeSessionPHP(t *testing.T, in map[string]any) string {
	t.Helper()
	id, _ := writeSessionPHPKey(t, in)
	return id
}

// writeSessionPHPKey runs test/php/write-session.php and returns the id and,
// for the stores that print it, the key the session was written to.
func writeSessionPHPKey(t testing.TB, in map[string]any) (id, key string) {
	t.Helper()
	php := testenv.PHP(t)
	b, _ := json.Marshal(in)
	cmd := exec.Command(php, "../test/php/write-session.php", string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("write-session.php: %v\n%s", err, stderr.String())
	}
	var res struct{ ID, Key string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("write-session.php output %q: %v", out, err)
	}
	return res.ID, res.Key
}

// TestSQLStoresPHPWritten reads sessions written by real PHP through
// Symfony's PdoSessionHandler (its own createTable() schema) on MariaDB and
// PostgreSQL.
func TestSQLStoresPHPWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  string
		open func(t *testing.T, table string) SessionStore
		drop func(t *testing.T, table string)
	}{
		{"mysql", "mysql:host=127.0.0.1;dbname=test",
			func(t *testing.T, table string) SessionStore {
				return openTestMySQL(t, PDOOptions{Table: table}, time.Now())
			},
			func(t *testing.T, table string) {
				db := testenv.MariaDB(t)
				t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS `" + table + "`") })
			}},
		{"postgres", "pgsql:host=127.0.0.1;dbname=test",
			func(t *testing.T, table string) SessionStore {
				return openTestPostgres(t, PDOOptions{Table: table}, time.Now())
			},
			func(t *testing.T, table string) {
				pool := testenv.PostgreSQL(t)
				t.Cleanup(func() { pool.Exec(context.Background(), `DROP TABLE IF EXISTS "`+table+`"`) })
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := uniqueName(t, "wsgate_php_")
			tc.drop(t, table)
			user := "root"
			if tc.name == "postgres" {
				user = "postgres"
			}
			id := writeSessionPHP(t, map[string]any{
				"store": "pdo", "dsn": tc.dsn, "db_user": user, "table": table, "create_table": true,
				"user": "dave", "roles": []string{"ROLE_USER", "ROLE_ADMIN"}, "ttl": 600,
			})
			s := tc.open(t, table)
			got, err := s.Read(context.Background(), id)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !bytes.Contains(got, []byte("_security_main")) || !bytes.Contains(got, []byte(`"dave"`)) {
				t.Fatalf("Read = %q; want dave's Symfony token", got)
			}
			res, err := s.ReadMany(context.Background(), []string{id, strings.ToUpper(id)})
			if err != nil || !bytes.Equal(res[id].Data, got) || !errors.Is(res[strings.ToUpper(id)].Err, ErrNotFound) {
				t.Fatalf("ReadMany = %v, %v", res, err)
			}
		})
	}
}
