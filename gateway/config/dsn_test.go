package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// mysqlWant is what the go-sql-driver/mysql DSN made of a PDO DSN or
// Doctrine URL must say, read back by the driver's own parser.
type mysqlWant struct {
	user, pass, net, addr, db, charset string
}

func TestParsePDODSNMySQL(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, user, pass string
		form                  string
		want                  mysqlWant
	}{
		{"pdo tcp", "mysql:host=db;port=3306;dbname=app;charset=utf8mb4", "app", "s3cret", formPDO,
			mysqlWant{"app", "s3cret", "tcp", "db:3306", "app", "utf8mb4"}},
		{"pdo default port", "mysql:host=db;dbname=app", "", "", formPDO, mysqlWant{"", "", "tcp", "db:3306", "app", ""}},
		{"pdo unix socket", "mysql:unix_socket=/run/mysqld/mysqld.sock;dbname=app", "root", "", formPDO,
			mysqlWant{"root", "", "unix", "/run/mysqld/mysqld.sock", "app", ""}},
		{"pdo socket with localhost", "mysql:host=localhost;unix_socket=/tmp/m.sock;dbname=app", "", "", formPDO,
			mysqlWant{"", "", "unix", "/tmp/m.sock", "app", ""}},
		{"pdo ipv6 bracketed", "mysql:host=[::1];port=3307;dbname=app", "", "", formPDO, mysqlWant{"", "", "tcp", "[::1]:3307", "app", ""}},
		{"pdo ipv6 bare", "mysql:host=::1;dbname=app", "", "", formPDO, mysqlWant{"", "", "tcp", "[::1]:3306", "app", ""}},
		{"pdo spaces and trailing semicolon", "mysql: host = db ; dbname = app ;", "", "", formPDO, mysqlWant{"", "", "tcp", "db:3306", "app", ""}},
		{"pdo user in dsn", "mysql:host=db;dbname=app;user=u;password=p", "", "", formPDO, mysqlWant{"u", "p", "tcp", "db:3306", "app", ""}},
		{"pdo db_username wins", "mysql:host=db;dbname=app;user=u;password=p", "v", "q", formPDO, mysqlWant{"v", "q", "tcp", "db:3306", "app", ""}},
		{"pdo password with specials", "mysql:host=db;dbname=app", "u", "p@ss/w:rd(x)?", formPDO, mysqlWant{"u", "p@ss/w:rd(x)?", "tcp", "db:3306", "app", ""}},
		{"doctrine", "mysql://app:s3cret@db:3306/app?serverVersion=8.0&charset=utf8mb4", "", "", formDoctrine,
			mysqlWant{"app", "s3cret", "tcp", "db:3306", "app", "utf8mb4"}},
		{"doctrine encoded password", "mysql://app:p%40ss%2Fw%3Ard%23@db/app", "", "", formDoctrine,
			mysqlWant{"app", "p@ss/w:rd#", "tcp", "db:3306", "app", ""}},
		{"doctrine mariadb", "mariadb://root@127.0.0.1:3307/test?serverVersion=10.11.2-MariaDB", "", "", formDoctrine,
			mysqlWant{"root", "", "tcp", "127.0.0.1:3307", "test", ""}},
		{"doctrine pdo-mysql", "pdo-mysql://u:p@db/app", "", "", formDoctrine, mysqlWant{"u", "p", "tcp", "db:3306", "app", ""}},
		{"doctrine ipv6", "mysql://u:p@[::1]:3306/app", "", "", formDoctrine, mysqlWant{"u", "p", "tcp", "[::1]:3306", "app", ""}},
		{"doctrine unix socket", "mysql://u:p@localhost/app?unix_socket=/run/mysqld/mysqld.sock", "", "", formDoctrine,
			mysqlWant{"u", "p", "unix", "/run/mysqld/mysqld.sock", "app", ""}},
		{"go dsn unchanged", "root@tcp(127.0.0.1:3306)/test", "", "", formDriver, mysqlWant{"root", "", "tcp", "127.0.0.1:3306", "test", ""}},
		{"go dsn of user mysql", "mysql:pw@tcp(db:3306)/app", "", "", formDriver, mysqlWant{"mysql", "pw", "tcp", "db:3306", "app", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePDODSN(tc.dsn, tc.user, tc.pass)
			if err != nil {
				t.Fatal(err)
			}
			if got.form != tc.form {
				t.Errorf("form %q, want %q", got.form, tc.form)
			}
			if tc.form == formDriver && got.dsn != tc.dsn {
				t.Errorf("driver DSN rewritten: %q", got.dsn)
			}
			if tc.form != formDriver && got.store != StorePDOMySQL {
				t.Errorf("store %q", got.store)
			}
			cfg, err := mysql.ParseDSN(got.dsn)
			if err != nil {
				t.Fatalf("%q does not parse: %v", got.dsn, err)
			}
			w := tc.want
			if cfg.User != w.user || cfg.Passwd != w.pass || cfg.Net != w.net || cfg.Addr != w.addr || cfg.DBName != w.db {
				t.Errorf("%q → %s:%s@%s(%s)/%s, want %+v", got.dsn, cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName, w)
			}
			// The charset reaches the driver, which sends SET NAMES.
			if w.charset != "" && !strings.Contains(got.dsn, "charset="+w.charset) {
				t.Errorf("%q lacks charset %s", got.dsn, w.charset)
			}
		})
	}
}

func TestParsePDODSNPostgres(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, user, pass string
		form                  string
		host                  string
		port                  uint16
		db, wantUser, wantPw  string
		runtime               map[string]string
	}{
		{"pdo", "pgsql:host=db;dbname=app", "app", "s3cret", formPDO, "db", 5432, "app", "app", "s3cret", nil},
		{"pdo port and user in dsn", "pgsql:host=db;port=5433;dbname=app;user=u;password=p", "", "", formPDO, "db", 5433, "app", "u", "p", nil},
		{"pdo db_username wins", "pgsql:host=db;dbname=app;user=u;password=p", "v", "it's \\ q", formPDO, "db", 5432, "app", "v", "it's \\ q", nil},
		{"pdo socket directory", "pgsql:host=/var/run/postgresql;dbname=app", "", "", formPDO, "/var/run/postgresql", 5432, "app", "", "", nil},
		{"pdo quoted libpq value", "pgsql:host=db dbname=app application_name='ws gate'", "", "", formPDO, "db", 5432, "app", "", "", map[string]string{"application_name": "ws gate"}},
		{"pdo ipv6", "pgsql:host=::1;dbname=app", "", "", formPDO, "::1", 5432, "app", "", "", nil},
		{"doctrine postgresql", "postgresql://app:s%40cret@db:5432/app?serverVersion=16&charset=utf8", "", "", formDoctrine, "db", 5432, "app", "app", "s@cret", map[string]string{"client_encoding": "utf8"}},
		{"doctrine pgsql", "pgsql://app:pw@[::1]:5433/app", "", "", formDoctrine, "::1", 5433, "app", "app", "pw", nil},
		{"doctrine sslmode", "pdo-pgsql://app:pw@db/app?sslmode=disable&serverVersion=15", "", "", formDoctrine, "db", 5432, "app", "app", "pw", nil},
		{"pgx url unchanged", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "", "", formDriver, "127.0.0.1", 5432, "test", "postgres", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePDODSN(tc.dsn, tc.user, tc.pass)
			if err != nil {
				t.Fatal(err)
			}
			if got.form != tc.form || got.store != StorePDOPgSQL {
				t.Errorf("form %q store %q, want %q", got.form, got.store, tc.form)
			}
			if tc.form == formDriver && got.dsn != tc.dsn {
				t.Errorf("driver DSN rewritten: %q", got.dsn)
			}
			cfg, err := pgx.ParseConfig(got.dsn)
			if err != nil {
				t.Fatalf("%q does not parse: %v", maskDSN(got.dsn), err)
			}
			if cfg.Host != tc.host || cfg.Port != tc.port || cfg.Database != tc.db {
				t.Errorf("%q → host %q port %d db %q", got.dsn, cfg.Host, cfg.Port, cfg.Database)
			}
			if tc.wantUser != "" && cfg.User != tc.wantUser || cfg.Password != tc.wantPw {
				t.Errorf("%q → user %q password %q", got.dsn, cfg.User, cfg.Password)
			}
			if _, leaked := cfg.RuntimeParams["serverVersion"]; leaked {
				t.Errorf("serverVersion sent to the server: %q", got.dsn)
			}
			for k, v := range tc.runtime {
				if cfg.RuntimeParams[k] != v {
					t.Errorf("%s = %q, want %q", k, cfg.RuntimeParams[k], v)
				}
			}
		})
	}
}

func TestParsePDODSNErrors(t *testing.T) {
	for _, tc := range []struct{ name, dsn, inMsg string }{
		{"pdo mysql no dbname", "mysql:host=db;port=3306", "names no database"},
		{"pdo mysql no host", "mysql:dbname=app", "neither host nor unix_socket"},
		{"pdo mysql unknown key", "mysql:host=db;dbname=app;sslmode=require", `unknown parameter "sslmode"`},
		{"pdo mysql bad port", "mysql:host=db;port=99999;dbname=app", "port"},
		{"pdo mysql twice", "mysql:host=db;host=db2;dbname=app", "given twice"},
		{"pdo mysql not key=value", "mysql:host=db;app", "not key=value"},
		{"pdo mysql relative socket", "mysql:unix_socket=mysqld.sock;dbname=app", "absolute path"},
		{"pdo mysql host and socket", "mysql:host=db;unix_socket=/tmp/m.sock;dbname=app", "give one"},
		{"pdo mysql bad host", "mysql:host=a b;dbname=app", "not a host name"},
		{"pdo mysql bad charset", "mysql:host=db;dbname=app;charset=utf8'--", "character set"},
		{"pdo pgsql no dbname", "pgsql:host=db", "names no database"},
		{"pdo pgsql unterminated quote", "pgsql:host=db;dbname='app", "closing quote"},
		{"doctrine no dbname", "mysql://u:p@db:3306", "names no database"},
		{"doctrine unknown param", "mysql://u:p@db/app?sslca=/x", `unsupported parameter "sslca"`},
		{"doctrine pg unknown param", "postgresql://u:p@db/app?serverVersion=16&foo=1", `unsupported parameter "foo"`},
		{"doctrine unencoded", "mysql://u:p#w@db/app", "percent-encode"},
		{"doctrine path", "mysql://u:p@db/a/b", "not /dbname"},
		{"unknown scheme", "mongodb://u:p@db/app", `unknown URL scheme "mongodb"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePDODSN(tc.dsn, "", "")
			if err == nil || !strings.Contains(err.Error(), tc.inMsg) {
				t.Fatalf("got %v, want %q", err, tc.inMsg)
			}
		})
	}
}

func TestParseRedisDSN(t *testing.T) {
	for _, tc := range []struct {
		name, dsn string
		want      redisConn
	}{
		{"host only", "redis://cache", redisConn{addrs: []string{"cache:6379"}, mode: "standalone"}},
		{"password and db", "redis://s3cret@cache:6380/3", redisConn{addrs: []string{"cache:6380"}, mode: "standalone", password: "s3cret", db: 3}},
		{"acl user", "redis://app:s3cret@cache", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", username: "app", password: "s3cret"}},
		{"user default", "redis://default:s3cret@cache", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", password: "s3cret"}},
		{"empty user", "redis://:s3cret@cache", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", password: "s3cret"}},
		{"encoded password", "redis://app:p%40ss%2Fw%3A@cache", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", username: "app", password: "p@ss/w:"}},
		{"dbindex", "redis://cache?dbindex=2&timeout=5&lazy=1", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", db: 2}},
		{"path db wins", "redis://cache/4?dbindex=2", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", db: 4}},
		{"ipv6", "redis://[::1]:6379", redisConn{addrs: []string{"[::1]:6379"}, mode: "standalone"}},
		{"auth param", "redis://cache?auth=s3cret", redisConn{addrs: []string{"cache:6379"}, mode: "standalone", password: "s3cret"}},
		{"cluster", "redis:?host[a:7000]&host[b:7001]&host[c]&redis_cluster=1", redisConn{addrs: []string{"a:7000", "b:7001", "c:6379"}, mode: "cluster"}},
		{"cluster with password", "redis://pw@?host[a:7000]&redis_cluster=true", redisConn{addrs: []string{"a:7000"}, mode: "cluster", password: "pw"}},
		{"sentinel", "redis:?host[s1:26379]&host[s2:26379]&redis_sentinel=mymaster&dbindex=1", redisConn{addrs: []string{"s1:26379", "s2:26379"}, mode: "sentinel", master: "mymaster", db: 1}},
		{"sentinel with host", "redis://pw@s1:26379?host[s2:26379]&redis_sentinel=mymaster", redisConn{addrs: []string{"s1:26379", "s2:26379"}, mode: "sentinel", master: "mymaster", password: "pw"}},
		{"valkey", "valkey://cache", redisConn{addrs: []string{"cache:6379"}, mode: "standalone"}},
		{"tls", "rediss://pw@cache:6380/1", redisConn{addrs: []string{"cache:6380"}, mode: "standalone", password: "pw", db: 1, tls: true}},
		{"tls cluster", "rediss:?host[a:7000]&host[b:7001]&redis_cluster=1", redisConn{addrs: []string{"a:7000", "b:7001"}, mode: "cluster", tls: true}},
		{"unix socket", "redis:///var/run/redis.sock", redisConn{addrs: []string{"/var/run/redis.sock"}, mode: "standalone"}},
		{"unix socket with db and password", "redis://pw@/var/run/redis/redis-server.sock?dbindex=3", redisConn{addrs: []string{"/var/run/redis/redis-server.sock"}, mode: "standalone", password: "pw", db: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRedisDSN(tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.addrs, ",") != strings.Join(tc.want.addrs, ",") || got.mode != tc.want.mode || got.master != tc.want.master ||
				got.username != tc.want.username || got.password != tc.want.password || got.db != tc.want.db || got.tls != tc.want.tls {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseRedisDSNErrors(t *testing.T) {
	for _, tc := range []struct{ name, dsn, inMsg string }{
		{"not redis", "tcp://cache:6379", "redis:"},
		{"tls over a unix socket", "rediss:///var/run/redis.sock", "TLS over a Unix socket"},
		{"unix socket in a cluster", "redis:?host[/var/run/redis.sock:]&redis_cluster=1", "Unix socket"},
		{"no host", "redis:?dbindex=1", "names no host"},
		{"bad db path", "redis://cache/x", "not a database number"},
		{"db out of range", "redis://cache/16", "0 to 15"},
		{"db on cluster", "redis:?host[a:7000]&redis_cluster=1&dbindex=1", "only database 0"},
		{"several hosts", "redis:?host[a]&host[b]", "redis_cluster=1 or redis_sentinel"},
		{"cluster and sentinel", "redis:?host[a]&redis_cluster=1&redis_sentinel=m", "both"},
		{"empty master", "redis:?host[a]&redis_sentinel=", "names no master"},
		{"bad cluster flag", "redis:?host[a]&redis_cluster=yes", "want 1 or 0"},
		{"unknown param", "redis://cache?prefix=x", `unknown parameter "prefix"`},
		{"bad port", "redis://cache:0", "port"},
		{"bad escape", "redis://u:p%zz@cache", "bad %-escape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRedisDSN(tc.dsn)
			if err == nil || !strings.Contains(err.Error(), tc.inMsg) {
				t.Fatalf("got %v, want %q", err, tc.inMsg)
			}
		})
	}
}

func TestParseMemcachedDSN(t *testing.T) {
	for _, tc := range []struct{ dsn, want, err string }{
		{"memcached://cache", "cache:11211", ""},
		{"memcached://cache:11212", "cache:11212", ""},
		{"memcached://cache:11211/50", "cache:11211", ""},
		{"memcached://[::1]:11211", "[::1]:11211", ""},
		{"memcached:?host[a:11211]&host[b:11212]=33&host[c]", "a:11211,b:11212,c:11211", ""},
		{"memcached://a?host[b:11212]&binary_protocol=1", "a:11211,b:11212", ""},
		{"memcached://u:p@cache", "", "SASL"},
		{"memcached:///var/run/memcached.sock", "", "Unix socket"},
		{"memcached:?host[/var/run/m.sock:]", "", "Unix socket"},
		{"memcached:", "", "names no host"},
		{"redis://cache", "", "memcached:"},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			got, err := parseMemcachedDSN(tc.dsn)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v %v, want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != tc.want {
				t.Fatalf("got %v %v, want %s", got, err, tc.want)
			}
		})
	}
}

func TestMaskDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mysql://app:s3cret@db:3306/app", "mysql://app:xxxxx@db:3306/app"},
		{"mysql://app:s3@cr@et@db/app", "mysql://app:xxxxx@db/app"},
		{"mysql:host=db;dbname=app;password=s3cret;user=u", "mysql:host=db;dbname=app;password=xxxxx;user=u"},
		{"pgsql:host=db password='s3 cret' dbname=app", "pgsql:host=db password=xxxxx dbname=app"},
		{"app:s3cret@tcp(db:3306)/app", "app:xxxxx@tcp(db:3306)/app"},
		{"redis://s3cret@cache", "redis://xxxxx@cache"},
		{"redis:s3cret@cache", "redis:xxxxx@cache"},
		{"redis://u:s3cret@cache", "redis://u:xxxxx@cache"},
		{"redis://cache?auth=s3cret", "redis://cache?auth=s3cret"}, // not a password= key; see the config test
		{"mysql:host=db;dbname=app", "mysql:host=db;dbname=app"},
	} {
		if got := maskDSN(tc.in); got != tc.want {
			t.Errorf("maskDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A pasted DSN becomes the Go driver's, a bad one fails the load naming
// the key, and no error carries the password.
func TestConfigDSN(t *testing.T) {
	t.Run("pdo dsn and credentials", func(t *testing.T) {
		c, err := Parse([]byte("session: {store: pdo_mysql, pdo: {dsn: \"mysql:host=db;dbname=app\", db_username: app}}\n"), "t.yaml",
			[]string{"WSGATE_SESSION_PDO_DB_PASSWORD=s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := mysql.ParseDSN(c.Session.PDO.DSN)
		if err != nil || cfg.User != "app" || cfg.Passwd != "s3cret" || cfg.Addr != "db:3306" || cfg.DBName != "app" {
			t.Fatalf("%q: %+v %v", c.Session.PDO.DSN, cfg, err)
		}
	})
	t.Run("redis dsn fills the connection", func(t *testing.T) {
		c, err := Parse([]byte("client_storage: {driver: redis, redis: {dsn: \"redis://u:pw@?host[s1:26379]&host[s2:26379]&redis_sentinel=mymaster&dbindex=2\"}}\n"), "t.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		r := c.ClientStorage.Redis
		if strings.Join(r.Addrs, ",") != "s1:26379,s2:26379" || r.Mode != "sentinel" || r.MasterName != "mymaster" || r.Username != "u" || r.Password != "pw" || r.DB != 2 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("redis dsn from the environment", func(t *testing.T) {
		c, err := Parse(nil, "t.yaml", []string{"WSGATE_SESSION_STORE=redis", "WSGATE_SESSION_REDIS_DSN=redis://cache:6380/1"})
		if err != nil {
			t.Fatal(err)
		}
		if r := c.Session.Redis; strings.Join(r.Addrs, ",") != "cache:6380" || r.DB != 1 || r.Mode != "standalone" {
			t.Fatalf("%+v", r)
		}
	})
	for _, tc := range []struct {
		name, yaml string
		env        []string
		key, val   string
		inMsg      string
	}{
		{"php dsn without dbname", "session: {store: pdo_mysql, pdo: {dsn: \"mysql:host=db;password=s3cret\"}}\n", nil,
			"session.pdo.dsn", "mysql:host=db;password=xxxxx", "names no database"},
		{"doctrine url names the line", "session:\n  store: pdo_pgsql\n  pdo:\n    dsn: \"postgresql://app:s3cret@db:5432?serverVersion=16\"\n", nil,
			"session.pdo.dsn", "postgresql://app:xxxxx@db:5432?serverVersion=16", "t.yaml line 4"},
		{"store disagrees", "session: {store: pdo_mysql, pdo: {dsn: \"pgsql:host=db;dbname=app\"}}\n", nil,
			"session.pdo.dsn", "pgsql:host=db;dbname=app", "is a PostgreSQL DSN but session.store is pdo_mysql"},
		{"store disagrees doctrine", "session: {store: pdo_pgsql, pdo: {dsn: \"mariadb://u:s3cret@db/app\"}}\n", nil,
			"session.pdo.dsn", "mariadb://u:xxxxx@db/app", "set session.store to pdo_mysql"},
		{"bad go dsn now fails the check", "session: {store: pdo_mysql, pdo: {dsn: \"app:s3cret@db:3306/app\"}}\n", nil,
			"session.pdo.dsn", "app:xxxxx@db:3306/app", "go-sql-driver/mysql DSN"},
		{"db_username with a doctrine url", "session: {store: pdo_mysql, pdo: {dsn: \"mysql://u@db/app\", db_username: v}}\n", nil,
			"session.pdo.db_username", "", "PDO DSN"},
		{"db_password with a go dsn", "session: {store: pdo_mysql, pdo: {dsn: \"u@tcp(db)/app\"}}\n", []string{"WSGATE_SESSION_PDO_DB_PASSWORD=s3cret"},
			"session.pdo.db_password", "", "PDO DSN"},
		{"pdo dsn from env", "", []string{"WSGATE_SESSION_STORE=pdo_pgsql", "WSGATE_SESSION_PDO_DSN=pgsql:host=db;password=s3cret"},
			"session.pdo.dsn", "pgsql:host=db;password=xxxxx", "from WSGATE_SESSION_PDO_DSN"},
		{"redis dsn and addrs", "session: {store: redis, redis: {dsn: \"redis://s3cret@cache\", addrs: [\"cache:6379\"]}}\n", nil,
			"session.redis.dsn", "redis://xxxxx@cache", "conflicts with session.redis.addrs"},
		{"redis dsn and password", "push: {redis_channel: c, redis: {dsn: \"redis://cache\"}}\n", []string{"WSGATE_PUSH_REDIS_PASSWORD=s3cret"},
			"push.redis.dsn", "redis://cache", "conflicts with push.redis.password"},
		{"redis dsn and tls", "cluster: {redis: {dsn: \"rediss://u:s3cret@cache:6380\", tls: true}}\n", nil,
			"cluster.redis.dsn", "rediss://u:xxxxx@cache:6380", "conflicts with cluster.redis.tls"},
		{"redis socket in a cluster", "client_storage: {driver: redis, redis: {addrs: [\"/run/redis.sock\"], mode: cluster}}\n", nil,
			"client_storage.redis.addrs", "/run/redis.sock", "standalone only"},
		{"php dsn in redis", "client_storage: {redis: {dsn: \"tcp://cache:6379\"}}\n", nil,
			"client_storage.redis.dsn", "tcp://cache:6379", "redis:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := expectConfigError(t, tc.yaml, tc.env, tc.key, tc.val, tc.inMsg)
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%q shows the password", err)
			}
		})
	}
}

// FuzzParseDSN holds the parsers to: no panic; a DSN they accept is one
// the Go driver parses to the same connection; an error never shows the
// password given beside the DSN.
func FuzzParseDSN(f *testing.F) {
	for _, s := range []string{
		"mysql:host=db;port=3306;dbname=app;charset=utf8mb4",
		"mysql:unix_socket=/run/mysqld/mysqld.sock;dbname=app",
		"pgsql:host=db;dbname=app",
		"pgsql:host=db dbname='a\\'b'",
		"mysql://user:p%40ss@db:3306/app?serverVersion=8.0&charset=utf8mb4",
		"postgresql://u:p@[::1]:5432/app?serverVersion=16",
		"root@tcp(127.0.0.1:3306)/test",
		"redis://u:p@cache:6379/1",
		"redis:?host[a:6379]&host[b:6379]&redis_cluster=1",
		"redis:?host[a:26379]&redis_sentinel=m&dbindex=3",
		"redis:///var/run/redis.sock",
		"memcached:?host[a:11211]&host[b:11211]",
		"memcached://cache:11211/10",
	} {
		f.Add(s)
	}
	const secret = "Zq9-fuzz-secret"
	f.Fuzz(func(t *testing.T, dsn string) {
		if tgt, err := parsePDODSN(dsn, "u", secret); err == nil {
			if tgt.form != formDriver && tgt.store == StorePDOMySQL {
				cfg, err := mysql.ParseDSN(tgt.dsn)
				if err != nil {
					t.Fatalf("%q → %q does not parse: %v", dsn, tgt.dsn, err)
				}
				if tgt.form == formPDO && (cfg.User != "u" || cfg.Passwd != secret) {
					t.Fatalf("%q → %q lost the credentials", dsn, tgt.dsn)
				}
			}
		} else if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the password: %v", err)
		}
		if r, err := parseRedisDSN(dsn); err == nil {
			if len(r.addrs) == 0 || r.db < 0 || r.db > 15 {
				t.Fatalf("%q → %+v", dsn, r)
			}
			if (&RedisConnConfig{Addrs: r.addrs, Mode: r.mode, MasterName: r.master, DB: r.db}).Validate("k") != nil {
				t.Fatalf("%q → %+v fails Validate", dsn, r)
			}
		}
		if addrs, err := parseMemcachedDSN(dsn); err == nil {
			for _, a := range addrs {
				if hostPort("k", a) != nil {
					t.Fatalf("%q → %q", dsn, a)
				}
			}
		}
		_ = maskDSN(dsn)
	})
}

// TestRedisDSNTLSAndSocket: rediss: and a Unix socket path reach the
// storage's connection options.
func TestRedisDSNTLSAndSocket(t *testing.T) {
	cfg, err := Parse([]byte("session: {store: redis, redis: {dsn: \"rediss://s3cret@cache:6380/2\"}}\nclient_storage: {driver: redis, redis: {dsn: \"redis:///run/redis.sock\"}}\n"), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Session.Redis.Options()
	if !o.TLS || o.Password != "s3cret" || o.DB != 2 || len(o.Addrs) != 1 || o.Addrs[0] != "cache:6380" {
		t.Errorf("session redis options %+v", o)
	}
	if _, err := o.WithDefaults(); err != nil {
		t.Errorf("session redis options refused by storage: %v", err)
	}
	if co := o.ClientOption(); co.TLSConfig == nil {
		t.Error("rediss: gave no TLS config to the client")
	}
	c := cfg.ClientStorage.Redis.Options()
	if c.TLS || len(c.Addrs) != 1 || c.Addrs[0] != "/run/redis.sock" {
		t.Errorf("client storage redis options %+v", c)
	}
	if _, err := c.WithDefaults(); err != nil {
		t.Errorf("socket refused by storage: %v", err)
	}
	if co := c.ClientOption(); co.DialCtxFn == nil {
		t.Error("a Unix socket address got no dialer")
	}
}

// TestMemcachedDSN: session.memcached.dsn fills the addresses, and
// conflicts with them.
func TestMemcachedDSN(t *testing.T) {
	cfg, err := Parse([]byte("session: {store: memcached, memcached: {dsn: \"memcached://cache:11212\"}}\n"), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Session.Memcached.Addrs; len(got) != 1 || got[0] != "cache:11212" {
		t.Errorf("addrs %v", got)
	}
	_, err = Parse([]byte("session: {store: memcached, memcached: {dsn: \"memcached://cache\", addrs: [\"cache:11211\"]}}\n"), "t.yaml", nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "session.memcached.dsn" || !strings.Contains(err.Error(), "conflicts") {
		t.Errorf("dsn and addrs: %v", err)
	}
	_, err = Parse([]byte("session: {store: memcached, memcached: {dsn: \"redis://cache\"}}\n"), "t.yaml", nil)
	if !errors.As(err, &ce) || ce.Key != "session.memcached.dsn" {
		t.Errorf("a redis DSN for memcached: %v", err)
	}
}
