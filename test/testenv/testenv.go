// Package testenv gives tests the real services they need (MariaDB,
// PostgreSQL, Redis, memcached, PHP) and decides what happens when one is missing:
// outside CI the test is skipped with a reason, under CI=true it fails,
// because a CI run that silently skipped its integration tests proves nothing.
package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// service is a failure rather than a skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Missing skips t, or fails it under CI, because the named service is not
// available.
func Missing(t testing.TB, service string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s unavailable: %v", service, err)
	if InCI() {
		t.Fatalf("%s (CI=true: a missing service is a failure; run `make test` to install and start it)", msg)
	}
	t.Skipf("%s (run `make test` to install and start it)", msg)
}

// MariaDBDSN is the go-sql-driver DSN of the loopback MariaDB test database;
// WSGATE_TEST_MYSQL_DSN overrides it.
func MariaDBDSN() string {
	if v := os.Getenv("WSGATE_TEST_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// MariaDB opens the test database and checks that it answers, or skips/fails
// t. The pool is closed when the test ends.
func MariaDB(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(MariaDBDSN())
	if err != nil {
		t.Fatalf("parse WSGATE_TEST_MYSQL_DSN: %v", err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("open mariadb: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		Missing(t, "MariaDB at "+cfg.Addr, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PHP returns the path of the php CLI binary (WSGATE_TEST_PHP overrides it)
// after checking that it runs and that Debian's Symfony packages are present,
// or skips/fails t.
func PHP(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("WSGATE_TEST_PHP")
	if bin == "" {
		bin = "php"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		Missing(t, "php CLI", err)
	}
	const autoload = "/usr/share/php/Symfony/Component/HttpFoundation/autoload.php"
	if _, err := os.Stat(autoload); err != nil {
		Missing(t, "Symfony 5.4 packages (php-symfony-http-foundation, php-symfony-security-core)", err)
	}
	return path
}

// TCPReachable reports whether something listens at addr on loopback; tests
// use it for services they reach through their own clients.
func TCPReachable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}
