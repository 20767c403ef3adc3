package config_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/storage"
	"github.com/wsgate/wsgate/test/testenv"
)

// The DSN a PHP app gives PdoSessionHandler, pasted into session.pdo.dsn,
// opens the real store and reads a session row: the whole path from the
// config key to the driver, against the test MariaDB and PostgreSQL.
func TestPDODSNOpensRealStores(t *testing.T) {
	const id, data = "dsnsession0123456789abcdef", "_sf2_attributes|a:0:{}"
	read := func(t *testing.T, s storage.SessionStore) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := s.Read(ctx, id)
		if err != nil || string(got) != data {
			t.Fatalf("Read: %q %v", got, err)
		}
	}
	load := func(t *testing.T, yaml string, env ...string) config.PDOConfig {
		t.Helper()
		c, err := config.Parse([]byte(yaml), "t.yaml", env)
		if err != nil {
			t.Fatal(err)
		}
		return c.Session.PDO
	}
	now := time.Now().Unix()

	t.Run("mysql", func(t *testing.T) {
		db := testenv.MariaDB(t)
		test, err := mysql.ParseDSN(testenv.MariaDBDSN())
		if err != nil {
			t.Fatal(err)
		}
		if test.Net != "tcp" {
			t.Skipf("test database %q is not on TCP", test.Addr)
		}
		host, port, _ := net.SplitHostPort(test.Addr)
		table := testenv.UniqueName(t, "wsgate_dsn_")
		if _, err := db.Exec("CREATE TABLE `" + table + "` (sess_id VARBINARY(128) NOT NULL PRIMARY KEY, sess_data BLOB NOT NULL, sess_lifetime INTEGER UNSIGNED NOT NULL, sess_time INTEGER UNSIGNED NOT NULL) COLLATE utf8mb4_bin, ENGINE = InnoDB"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS `" + table + "`") })
		if _, err := db.Exec("INSERT INTO `"+table+"` VALUES (?, ?, ?, ?)", id, data, now+1440, now); err != nil {
			t.Fatal(err)
		}
		userinfo := url.User(test.User)
		if test.Passwd != "" {
			userinfo = url.UserPassword(test.User, test.Passwd)
		}
		pdo := fmt.Sprintf("mysql:host=%s;port=%s;dbname=%s;charset=utf8mb4", host, port, test.DBName)
		doctrine := fmt.Sprintf("mysql://%s@%s/%s?serverVersion=10.11.0-MariaDB&charset=utf8mb4", userinfo, net.JoinHostPort(host, port), test.DBName)
		for _, tc := range []struct {
			name, yaml string
			env        []string
		}{
			{"pdo dsn", fmt.Sprintf("session: {store: pdo_mysql, pdo: {dsn: %q, db_username: %s, table: %s}}\n", pdo, test.User, table),
				[]string{"WSGATE_SESSION_PDO_DB_PASSWORD=" + test.Passwd}},
			{"doctrine url", fmt.Sprintf("session: {store: pdo_mysql, pdo: {dsn: %q, table: %s}}\n", doctrine, table), nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := load(t, tc.yaml, tc.env...)
				s, err := storage.OpenMySQL(storage.PDOOptions{DSN: p.DSN, Table: p.Table})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				read(t, s)
			})
		}
	})

	t.Run("postgres", func(t *testing.T) {
		pool := testenv.PostgreSQL(t)
		test, err := pgx.ParseConfig(testenv.PostgresDSN())
		if err != nil {
			t.Fatal(err)
		}
		table := testenv.UniqueName(t, "wsgate_dsn_")
		ctx := context.Background()
		if _, err := pool.Exec(ctx, `CREATE TABLE "`+table+`" (sess_id VARCHAR(128) NOT NULL PRIMARY KEY, sess_data BYTEA NOT NULL, sess_lifetime INTEGER NOT NULL, sess_time INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pool.Exec(context.Background(), `DROP TABLE IF EXISTS "`+table+`"`) })
		if _, err := pool.Exec(ctx, `INSERT INTO "`+table+`" VALUES ($1, $2, $3, $4)`, id, []byte(data), now+1440, now); err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(int(test.Port))
		dsn := fmt.Sprintf("pgsql:host=%s;port=%s;dbname=%s;sslmode=disable", test.Host, port, test.Database)
		p := load(t, fmt.Sprintf("session: {store: pdo_pgsql, pdo: {dsn: %q, db_username: %s, table: %s}}\n", dsn, test.User, table),
			"WSGATE_SESSION_PDO_DB_PASSWORD="+test.Password)
		s, err := storage.OpenPostgres(storage.PDOOptions{DSN: p.DSN, Table: p.Table})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		read(t, s)
	})
}
