#!/usr/bin/env bash
# Installs and starts what wsgate's tests talk to, when it is missing:
# MariaDB (root, no password, database `test`), PostgreSQL (trust auth on
# loopback, database `test`), Redis on 6379, Memcached on 11211, PHP 8.2 CLI
# with Debian's Symfony 5.4 packages and the redis and memcached extensions.
# Idempotent: on a machine that has everything it only checks (under a
# second; no apt-get), whatever packages brought the commands. Debian 12
# (bookworm), run as root.
#
# `--print-missing` prints the packages it would install and exits.
#
# Under CI=true a service that still does not answer afterwards fails the
# run (exit 1): a CI run that silently skips integration tests proves nothing.
set -uo pipefail

log() { printf 'setup-services: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# What is needed, detected by what the tests run (a command, a PHP
# extension, a file), not by Debian package name: psql may come from
# postgresql-client-16 or a PGDG package, mysql from mysql-client, php from
# sury.org's php8.2. Each check names the package(s) that provide it on
# Debian 12; apt-get runs only for checks that fail, so a second run on a
# set-up machine reads a few files and asks nothing of apt.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have_any() { local c; for c in "$@"; do have "$c" && return 0; done; return 1; }
pg_server() { have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
php_ok() { have php && php -r 'exit(PHP_VERSION_ID >= 80200 ? 0 : 1);' 2>/dev/null; }
php_ext() { php_ok && php -r "exit(extension_loaded('$1') ? 0 : 1);" 2>/dev/null; }
symfony_file() { [ -f "/usr/share/php/Symfony/Component/$1/autoload.php" ]; }

missing=()
need() { # packages..., then -- and the check
  local pkgs=()
  while [ "$1" != -- ]; do pkgs+=("$1"); shift; done; shift
  "$@" || missing+=("${pkgs[@]}")
}
need mariadb-server -- have_any mariadbd mysqld
need mariadb-client -- have_any mysql mariadb
need mariadb-client -- have mysqladmin
need postgresql -- pg_server
need postgresql-client -- have psql
need postgresql-client -- have pg_isready
need redis-server -- have redis-server
need redis-tools -- have redis-cli
need memcached -- have memcached
need php8.2-cli -- php_ok
need php8.2-mysql -- php_ext pdo_mysql
need php8.2-pgsql -- php_ext pdo_pgsql
need php8.2-redis -- php_ext redis
need php8.2-memcached -- php_ext memcached
need php-symfony-http-foundation -- symfony_file HttpFoundation
need php-symfony-security-core -- symfony_file Security/Core
need php-symfony-security-http -- symfony_file Security/Http
if [ "${1:-}" = --print-missing ]; then
  # What would be installed, and nothing else (test/setup_services_test.go).
  printf '%s\n' "${missing[@]}" | sort -u | grep -v '^$' || true
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  # One package may serve two checks (mariadb-client: mysql, mysqladmin).
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  log "$name does not answer"; return 1
}

# MariaDB
if ! mysqladmin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
  if ! mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1; then
    log "starting MariaDB"
    as_root install -d -o mysql -g mysql /run/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for "MariaDB socket" mysqladmin --protocol=socket -uroot ping
  fi
  # Debian's root logs in by unix socket only; the tests connect over TCP.
  as_root mysql --protocol=socket -uroot -e "
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    FLUSH PRIVILEGES;" || log "could not grant root@127.0.0.1"
fi
mysql -uroot -h127.0.0.1 -e "CREATE DATABASE IF NOT EXISTS test" >/dev/null 2>&1 || true

# PostgreSQL
if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  log "starting PostgreSQL"
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -n "$ver" ]; then
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
      as_root sed -i '1i local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    wait_for PostgreSQL pg_isready -q -h 127.0.0.1
  fi
fi
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1 ||
  psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true

# Redis
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  as_root install -d /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

# Memcached: Debian's package starts it through systemd, which a container
# has not; start it by hand then, loopback only, as the memcache user.
mc_version() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211 && printf "version\r\n" >&3 && head -c 7 <&3 | grep -q VERSION' 2>/dev/null; }
if ! mc_version; then
  log "starting Memcached"
  as_root memcached -d -u memcache -l 127.0.0.1 -p 11211 -m 64
  wait_for Memcached mc_version
fi

# Final check: what the tests will find.
status=0
check() { local name=$1; shift; if "$@" >/dev/null 2>&1; then log "$name ok"; else log "$name UNAVAILABLE"; status=1; fi; }
check MariaDB mysql -uroot -h127.0.0.1 test -e "SELECT 1"
check PostgreSQL psql -h 127.0.0.1 -U postgres -d test -c "SELECT 1"
check Redis redis-cli -h 127.0.0.1 -p 6379 ping
check Memcached mc_version
check PHP php -r 'require "/usr/share/php/Symfony/Component/HttpFoundation/autoload.php"; require "/usr/share/php/Symfony/Component/Security/Core/autoload.php";'
check PHP-memcached php -r 'exit(extension_loaded("memcached") ? 0 : 1);'
if [ $status != 0 ]; then
  case "${CI:-}" in true|1) log "CI=true: a missing service is a failure"; exit 1 ;; esac
  log "some services are missing: their tests will be skipped"
fi
exit 0
