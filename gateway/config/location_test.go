package config

import (
	"strings"
	"testing"
)

// TestPDOServer: the location names the server and database of every DSN
// form and never the user or password.
func TestPDOServer(t *testing.T) {
	for _, tc := range []struct {
		name, yaml     string
		addr, database string
	}{
		{"mysql PDO DSN", "session: {store: pdo_mysql, pdo: {dsn: 'mysql:host=db.local;port=3307;dbname=app', db_username: u, db_password: s3cret}}\n", "db.local:3307", "app"},
		{"mysql Doctrine URL", "session: {store: pdo_mysql, pdo: {dsn: 'mysql://u:s3cret@db.local/app?serverVersion=8.0'}}\n", "db.local:3306", "app"},
		{"mysql socket", "session: {store: pdo_mysql, pdo: {dsn: 'mysql:unix_socket=/run/mysqld/mysqld.sock;dbname=app', db_password: s3cret}}\n", "/run/mysqld/mysqld.sock", "app"},
		{"pgsql PDO DSN", "session: {store: pdo_pgsql, pdo: {dsn: 'pgsql:host=pg.local;port=5433;dbname=app', db_password: s3cret}}\n", "pg.local:5433", "app"},
		{"pgsql Doctrine URL", "session: {store: pdo_pgsql, pdo: {dsn: 'postgresql://u:s3cret@pg.local:5433/app?serverVersion=15&charset=utf8'}}\n", "pg.local:5433", "app"},
		{"pgsql pgx URL", "session: {store: pdo_pgsql, pdo: {dsn: 'postgres://u:s3cret@pg.local/app'}}\n", "pg.local", "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), "t.yaml", nil)
			if err != nil {
				t.Fatal(err)
			}
			addr, db := cfg.Session.PDO.Server(cfg.Session.Store)
			if addr != tc.addr || db != tc.database {
				t.Errorf("Server() = %q, %q; want %q, %q", addr, db, tc.addr, tc.database)
			}
			if strings.Contains(addr+db, "s3cret") {
				t.Errorf("the password leaks: %q %q", addr, db)
			}
		})
	}
}
