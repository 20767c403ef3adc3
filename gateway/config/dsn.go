package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"
)

// This file accepts connection settings as the Symfony app writes them, so
// that an operator can paste them: session.pdo.dsn as PdoSessionHandler
// takes it (a PDO DSN, with db_username/db_password) or as Doctrine's
// DATABASE_URL, and a dsn key on every Redis connection as Symfony's cache
// and session components write REDIS_URL. Load turns them into the fields
// the rest of wsgate already uses (the Go driver DSN, addrs, mode, ...)
// before Validate, so nothing downstream knows where they came from.

// Forms of session.pdo.dsn.
const (
	formDriver   = "driver DSN"   // go-sql-driver/mysql or pgx, as before
	formPDO      = "PDO DSN"      // mysql:host=db;dbname=app, pgsql:host=db;dbname=app
	formDoctrine = "Doctrine URL" // mysql://user:pass@db:3306/app?serverVersion=8.0
)

// pdoTarget is what a session.pdo.dsn leads to.
type pdoTarget struct {
	form  string // formDriver, formPDO or formDoctrine
	store string // StorePDOMySQL or StorePDOPgSQL when the DSN names its driver, else ""
	dsn   string // what storage.OpenMySQL or storage.OpenPostgres takes
}

// Doctrine's URL schemes (its driver scheme aliases, with "-" for "_" as
// DsnParser allows), by the store they need. postgres:// and postgresql://
// are also pgx's own URLs.
var doctrineSchemes = map[string]string{
	"mysql": StorePDOMySQL, "mysql2": StorePDOMySQL, "mariadb": StorePDOMySQL, "mysqli": StorePDOMySQL,
	"pdo-mysql": StorePDOMySQL, "pdo_mysql": StorePDOMySQL,
	"pgsql": StorePDOPgSQL, "postgres": StorePDOPgSQL, "postgresql": StorePDOPgSQL,
	"pdo-pgsql": StorePDOPgSQL, "pdo_pgsql": StorePDOPgSQL,
}

// pdoMySQLKeys are the parameters PDO_MYSQL reads from its DSN.
var pdoMySQLKeys = map[string]bool{"host": true, "port": true, "dbname": true, "unix_socket": true, "charset": true, "user": true, "password": true}

// parsePDODSN recognises dsn's form and returns the Go driver DSN it
// means. user and password are PdoSessionHandler's db_username and
// db_password: with a PDO DSN they win over user=/password= in the DSN,
// as PDO's constructor arguments do. A driver DSN is returned unchanged.
func parsePDODSN(dsn, user, password string) (pdoTarget, error) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || !schemeRe.MatchString(scheme) {
		return pdoTarget{form: formDriver, dsn: dsn}, nil
	}
	lower := strings.ToLower(scheme)
	if strings.HasPrefix(rest, "//") {
		store, known := doctrineSchemes[lower]
		if !known {
			return pdoTarget{}, fmt.Errorf("unknown URL scheme %q: want mysql://, mariadb://, pdo-mysql://, postgresql://, pgsql:// (Doctrine), a PDO DSN (mysql:host=…;dbname=…, pgsql:host=…;dbname=…) or a driver DSN (user:password@tcp(host:3306)/dbname)", scheme)
		}
		if store == StorePDOMySQL {
			out, err := doctrineMySQL(dsn)
			return pdoTarget{form: formDoctrine, store: store, dsn: out}, err
		}
		return doctrinePostgres(dsn, lower)
	}
	switch lower {
	case "mysql":
		// user:password@tcp(...)/db with the user "mysql" is a driver DSN;
		// a PDO DSN starts with one of PDO_MYSQL's own parameters.
		if k, _, _ := strings.Cut(rest, "="); !pdoMySQLKeys[strings.TrimSpace(k)] {
			return pdoTarget{form: formDriver, store: StorePDOMySQL, dsn: dsn}, nil
		}
		out, err := pdoMySQL(rest, user, password)
		return pdoTarget{form: formPDO, store: StorePDOMySQL, dsn: out}, err
	case "pgsql":
		out, err := pdoPostgres(rest, user, password)
		return pdoTarget{form: formPDO, store: StorePDOPgSQL, dsn: out}, err
	}
	return pdoTarget{form: formDriver, dsn: dsn}, nil
}

// schemeRe is a URL scheme or PDO driver prefix (RFC 3986 §3.1, plus "_"
// for Doctrine's pdo_mysql).
var schemeRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+._-]*$`)

// pdoMySQL turns the body of a PDO_MYSQL DSN (host=db;port=3306;dbname=app)
// into a go-sql-driver/mysql DSN.
func pdoMySQL(body, user, password string) (string, error) {
	params, err := pdoParams(body, pdoMySQLKeys, "PDO MySQL takes host, port, dbname, unix_socket, charset, user and password")
	if err != nil {
		return "", err
	}
	if user == "" {
		user = params["user"]
	}
	if password == "" {
		password = params["password"]
	}
	return mysqlDSN(mysqlParts{
		host: params["host"], port: params["port"], socket: params["unix_socket"],
		db: params["dbname"], charset: params["charset"], user: user, password: password,
	})
}

// pdoParams splits a PDO DSN body at ";" into key=value pairs, as PDO's
// php_pdo_parse_data_source does; known lists the keys the driver reads.
func pdoParams(body string, known map[string]bool, want string) (map[string]string, error) {
	params := map[string]string{}
	for _, seg := range strings.Split(body, ";") {
		if strings.TrimSpace(seg) == "" {
			continue
		}
		k, v, ok := strings.Cut(seg, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", strings.TrimSpace(maskDSN(seg)))
		}
		if known != nil && !known[k] {
			return nil, fmt.Errorf("unknown parameter %q (%s)", k, want)
		}
		if _, dup := params[k]; dup {
			return nil, fmt.Errorf("parameter %q given twice", k)
		}
		params[k] = strings.TrimSpace(v)
	}
	return params, nil
}

// mysqlParts is a MySQL connection as PDO and Doctrine describe it.
type mysqlParts struct {
	host, port, socket, db, charset, user, password string
}

var charsetRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// mysqlDSN builds the go-sql-driver/mysql DSN of p with the driver's own
// formatter, so that every character of a password survives.
func mysqlDSN(p mysqlParts) (string, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = p.user, p.password
	switch {
	case p.socket != "":
		// PDO_MYSQL takes the socket for host localhost; wsgate whenever it
		// is given, as Doctrine passes it on.
		if !strings.HasPrefix(p.socket, "/") {
			return "", fmt.Errorf("unix_socket %q is not an absolute path", p.socket)
		}
		if p.host != "" && p.host != "localhost" {
			return "", fmt.Errorf("names both host %q and unix_socket: give one", p.host)
		}
		cfg.Net, cfg.Addr = "unix", p.socket
	case p.host == "":
		// PHP would use its compiled-in default socket, whose path
		// wsgate cannot know.
		return "", errors.New("names neither host nor unix_socket")
	default:
		host, err := dsnHost(p.host)
		if err != nil {
			return "", err
		}
		port, err := portOr(p.port, "3306")
		if err != nil {
			return "", err
		}
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(host, port)
	}
	if p.db == "" {
		return "", errors.New("names no database (dbname)")
	}
	if strings.ContainsAny(p.db, "/?") {
		return "", fmt.Errorf("database name %q contains / or ?", p.db)
	}
	cfg.DBName = p.db
	if p.charset != "" {
		if !charsetRe.MatchString(p.charset) {
			return "", fmt.Errorf("charset %q is not a character set name", p.charset)
		}
		if err := cfg.Apply(mysql.Charset(p.charset, "")); err != nil {
			return "", fmt.Errorf("charset %q: %w", p.charset, err)
		}
	}
	return cfg.FormatDSN(), nil
}

// dsnHost checks a host name or IP address, taking IPv6 with or without
// brackets.
func dsnHost(h string) (string, error) {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
		if net.ParseIP(h) == nil {
			return "", fmt.Errorf("host [%s] is not an IPv6 address", h)
		}
		return h, nil
	}
	if net.ParseIP(h) != nil {
		return h, nil
	}
	if !hostRe.MatchString(h) {
		return "", fmt.Errorf("host %q is not a host name or IP address", h)
	}
	return h, nil
}

var hostRe = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$`)

// portOr returns p, or def when p is empty, after checking it is a port.
func portOr(p, def string) (string, error) {
	if p == "" {
		return def, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return strconv.Itoa(n), nil
}

// doctrineMySQL turns a Doctrine URL (mysql://user:pass@db:3306/app?
// serverVersion=8.0&charset=utf8mb4) into a go-sql-driver/mysql DSN.
func doctrineMySQL(dsn string) (string, error) {
	u, q, err := parseDoctrineURL(dsn)
	if err != nil {
		return "", err
	}
	p := mysqlParts{host: u.Hostname(), port: u.Port(), user: u.User.Username()}
	p.password, _ = u.User.Password()
	if p.db, err = urlDatabase(u); err != nil {
		return "", err
	}
	for _, kv := range q {
		switch k, v := kv[0], kv[1]; k {
		case "serverVersion", "server_version", "driver":
			// For Doctrine's platform detection only.
		case "charset":
			p.charset = v
		case "unix_socket":
			p.socket = v
		// Doctrine lets the query override the URL's parts.
		case "host":
			p.host = v
		case "port":
			p.port = v
		case "dbname":
			p.db = v
		case "user":
			p.user = v
		case "password":
			p.password = v
		default:
			return "", fmt.Errorf("unsupported parameter %q (wsgate takes serverVersion, charset and unix_socket)", k)
		}
	}
	return mysqlDSN(p)
}

// parseDoctrineURL parses a Doctrine URL and its query, in order, each key
// once. net/url's errors quote the whole URL, password included, so they
// are not passed on.
func parseDoctrineURL(dsn string) (*url.URL, [][2]string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Opaque != "" {
		return nil, nil, errors.New("not a valid URL (percent-encode reserved characters such as @ : / ? # in the user name and password)")
	}
	if u.Fragment != "" {
		return nil, nil, errors.New("has a #fragment: percent-encode # in the password as %23")
	}
	q, err := orderedQuery(u.RawQuery)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, kv := range q {
		if seen[kv[0]] {
			return nil, nil, fmt.Errorf("parameter %q given twice", kv[0])
		}
		seen[kv[0]] = true
	}
	return u, q, nil
}

// urlDatabase is the database a URL's path names ("/app" → "app").
func urlDatabase(u *url.URL) (string, error) {
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return "", fmt.Errorf("path %q is not /dbname", u.Path)
	}
	return db, nil
}

// doctrinePostgres turns a Doctrine URL (postgresql://, pgsql://, ...) into
// a pgx keyword/value DSN. A postgres:// or postgresql:// URL without
// Doctrine's own parameters is pgx's own and stays as written.
func doctrinePostgres(dsn, scheme string) (pdoTarget, error) {
	u, q, err := parseDoctrineURL(dsn)
	if err != nil {
		return pdoTarget{}, err
	}
	doctrineOnly := false
	for _, kv := range q {
		switch kv[0] {
		case "serverVersion", "server_version", "charset", "driver":
			doctrineOnly = true
		}
	}
	if (scheme == "postgres" || scheme == "postgresql") && !doctrineOnly {
		return pdoTarget{form: formDriver, store: StorePDOPgSQL, dsn: dsn}, nil
	}
	kv := &pgKeywords{}
	kv.set("host", u.Hostname())
	kv.set("port", u.Port())
	db, err := urlDatabase(u)
	if err != nil {
		return pdoTarget{}, err
	}
	kv.set("dbname", db)
	kv.set("user", u.User.Username())
	pw, _ := u.User.Password()
	kv.set("password", pw)
	for _, pair := range q {
		switch k, v := pair[0], pair[1]; k {
		case "serverVersion", "server_version", "driver":
		case "charset":
			kv.set("client_encoding", v)
		case "host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey",
			"application_name", "connect_timeout", "target_session_attrs", "gssencmode", "options":
			kv.set(k, v)
		default:
			return pdoTarget{}, fmt.Errorf("unsupported parameter %q (wsgate takes serverVersion, charset and libpq's sslmode, sslrootcert, sslcert, sslkey, application_name, connect_timeout, target_session_attrs, options)", k)
		}
	}
	out, err := kv.dsn()
	return pdoTarget{form: formDoctrine, store: StorePDOPgSQL, dsn: out}, err
}

// pdoPostgres turns the body of a PDO_PGSQL DSN into a pgx keyword/value
// DSN. PDO_PGSQL hands libpq the body with ";" read as a space, so any
// libpq keyword is allowed; user and password win as PDO appends them.
func pdoPostgres(body, user, password string) (string, error) {
	pairs, err := parseConninfo(strings.ReplaceAll(body, ";", " "))
	if err != nil {
		return "", err
	}
	kv := &pgKeywords{}
	for _, p := range pairs {
		kv.set(p[0], p[1])
	}
	if user != "" {
		kv.set("user", user)
	}
	if password != "" {
		kv.set("password", password)
	}
	return kv.dsn()
}

// pgKeywords collects libpq keywords in order, a later value replacing an
// earlier one as libpq does.
type pgKeywords struct {
	keys []string
	vals map[string]string
}

func (k *pgKeywords) set(key, val string) {
	if val == "" {
		return
	}
	if key == "database" {
		key = "dbname"
	}
	if k.vals == nil {
		k.vals = map[string]string{}
	}
	if _, ok := k.vals[key]; !ok {
		k.keys = append(k.keys, key)
	}
	k.vals[key] = val
}

// dsn checks the connection and quotes every value for pgx.
func (k *pgKeywords) dsn() (string, error) {
	if k.vals["dbname"] == "" {
		return "", errors.New("names no database (dbname)")
	}
	if h := k.vals["host"]; h != "" && !strings.HasPrefix(h, "/") {
		for _, one := range strings.Split(h, ",") {
			if _, err := dsnHost(one); err != nil {
				return "", err
			}
		}
	}
	if p := k.vals["port"]; p != "" {
		for _, one := range strings.Split(p, ",") {
			if _, err := portOr(one, ""); err != nil {
				return "", err
			}
		}
	}
	var b strings.Builder
	for i, key := range k.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(key)
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(k.vals[key]))
		b.WriteByte('\'')
	}
	return b.String(), nil
}

var pgKeywordRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseConninfo reads libpq's keyword = value list: values are bare words
// or single-quoted with backslash escapes.
func parseConninfo(s string) ([][2]string, error) {
	var pairs [][2]string
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			return pairs, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q is not key=value", firstWord(s))
		}
		key := strings.TrimSpace(s[:eq])
		if !pgKeywordRe.MatchString(key) {
			return nil, fmt.Errorf("%q is not a parameter name", key)
		}
		s = strings.TrimLeft(s[eq+1:], " \t\r\n")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			i, closed := 1, false
			for ; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				} else if s[i] == '\'' {
					closed = true
					break
				}
				val.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf("value of %q lacks its closing quote", key)
			}
			s = s[i+1:]
		} else {
			end := strings.IndexAny(s, " \t\r\n")
			if end < 0 {
				end = len(s)
			}
			val.WriteString(s[:end])
			s = s[end:]
		}
		pairs = append(pairs, [2]string{key, val.String()})
	}
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// redisConn is what a Redis DSN sets of a RedisConnConfig.
type redisConn struct {
	addrs              []string
	mode, master       string
	username, password string
	db                 int
	tls                bool
}

// redisIgnored are Symfony's connection options that tune its own PHP
// client; wsgate's Redis client has its own settings for these.
var redisIgnored = map[string]bool{
	"timeout": true, "read_timeout": true, "retry_interval": true, "tcp_keepalive": true,
	"persistent": true, "persistent_id": true, "lazy": true, "class": true, "failover": true,
	"cluster_command_timeout": true, "cluster_relay_context": true,
}

// parseRedisDSN reads a Redis DSN as Symfony's RedisTrait::createConnection
// does: redis://[[user:]password@]host[:port][/db], redis:?host[a:6379]&
// host[b:6379]&redis_cluster=1, redis_sentinel=<master> (the hosts are the
// Sentinels), ?dbindex=N, rediss: for TLS, and a standalone server's Unix
// socket as redis:///path/to/redis.sock.
func parseRedisDSN(dsn string) (redisConn, error) {
	var r redisConn
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || (scheme != "redis" && scheme != "rediss" && scheme != "valkey" && scheme != "valkeys") {
		return r, errors.New("does not start with redis: or rediss:")
	}
	r.tls = scheme == "rediss" || scheme == "valkeys"
	slashes := strings.HasPrefix(rest, "//")
	rest = strings.TrimPrefix(rest, "//")
	// The credentials are everything before the first "@", as Symfony's
	// pattern takes them: [user:]password@.
	if m := redisAuthRe.FindStringSubmatch(rest); m != nil {
		user, err := unescapeCredential(m[1], "user name")
		if err != nil {
			return r, err
		}
		pw, err := unescapeCredential(m[2], "password")
		if err != nil {
			return r, err
		}
		if user != "default" {
			r.username = user
		}
		r.password = pw
		rest = rest[len(m[0]):]
	}
	u, query, err := symfonyURL(rest, slashes)
	if err != nil {
		return r, err
	}
	var hosts []string
	dbFromPath := false
	if u.Host != "" || u.Path != "" {
		path := u.Path
		if m := redisDBRe.FindStringSubmatch(path); m != nil {
			r.db, _ = strconv.Atoi(m[1])
			dbFromPath = true
			path = path[:len(path)-len(m[0])]
		} else if u.Host != "" && path != "" {
			return r, fmt.Errorf("path %q is not a database number", path)
		}
		switch {
		case u.Host == "" && r.tls:
			return r, errors.New("TLS over a Unix socket: use redis:// for a socket")
		case u.Host == "":
			if !strings.HasPrefix(path, "/") || len(path) < 2 {
				return r, fmt.Errorf("Unix socket %q is not an absolute path", path)
			}
			hosts = append(hosts, path)
		case path != "":
			return r, fmt.Errorf("path %q is not a database number", path)
		default:
			addr, err := joinHostPort(u.Hostname(), u.Port(), "6379")
			if err != nil {
				return r, err
			}
			hosts = append(hosts, addr)
		}
	}
	cluster := false
	sentinel, sentinelSet := "", false
	for _, kv := range query {
		k, v := kv[0], kv[1]
		switch {
		case strings.HasPrefix(k, "host[") && strings.HasSuffix(k, "]"):
			addr, err := symfonyHost(k[len("host["):len(k)-1], "6379")
			if err != nil {
				return r, err
			}
			hosts = append(hosts, addr)
		case k == "dbindex":
			n, err := strconv.Atoi(v)
			if err != nil {
				return r, fmt.Errorf("dbindex %q is not a number", v)
			}
			if !dbFromPath { // the path's number wins, as in Symfony
				r.db = n
			}
		case k == "redis_cluster":
			switch v {
			case "1", "true":
				cluster = true
			case "0", "":
			default:
				return r, fmt.Errorf("redis_cluster %q: want 1 or 0", v)
			}
		case k == "redis_sentinel" || k == "sentinel_master":
			sentinel, sentinelSet = v, true
		case k == "auth":
			if r.password == "" {
				r.password = v
			}
		case redisIgnored[k], strings.HasPrefix(k, "ssl["):
		default:
			return r, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if len(hosts) == 0 {
		return r, errors.New("names no host")
	}
	r.addrs = hosts
	switch {
	case cluster && sentinelSet:
		return r, errors.New("cannot use both redis_cluster and redis_sentinel")
	case cluster:
		r.mode = "cluster"
		if r.db != 0 {
			return r, fmt.Errorf("database %d: a cluster has only database 0", r.db)
		}
	case sentinelSet:
		if sentinel == "" {
			return r, errors.New("redis_sentinel names no master")
		}
		r.mode, r.master = "sentinel", sentinel
	default:
		if len(hosts) > 1 {
			return r, fmt.Errorf("lists %d hosts: add redis_cluster=1 or redis_sentinel=<master> (a client-side sharded RedisArray is not supported)", len(hosts))
		}
		r.mode = "standalone"
	}
	if r.db < 0 || r.db > 15 {
		return r, fmt.Errorf("database %d is not 0 to 15", r.db)
	}
	return r, nil
}

var (
	redisAuthRe = regexp.MustCompile(`^(?:([^:@]*):)?([^@]*)@`)
	redisDBRe   = regexp.MustCompile(`/(\d+)$`)
)

// unescapeCredential percent-decodes a user name or password, as URLs
// carry them.
func unescapeCredential(s, what string) (string, error) {
	out, err := url.PathUnescape(s)
	if err != nil {
		return "", fmt.Errorf("%s has a bad %%-escape", what)
	}
	return out, nil
}

// orderedQuery splits a query into key/value pairs in order: the hosts of
// host[...] keep their order (the first Sentinel is asked first).
func orderedQuery(raw string) ([][2]string, error) {
	var out [][2]string
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		var err1, err2 error
		k, err1 = url.QueryUnescape(k)
		v, err2 = url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, errors.New("query is not valid URL encoding")
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// symfonyHost reads the inside of host[...]: host, host:port, or, with
// port 0 or none after the colon, a Unix socket.
func symfonyHost(h, defPort string) (string, error) {
	host, port := h, defPort
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n == 0 {
			if strings.HasPrefix(host, "/") {
				return "", fmt.Errorf("host[%s]: a Unix socket is not supported: give host:port", h)
			}
		}
	}
	if strings.HasPrefix(host, "/") {
		return "", fmt.Errorf("host[%s]: a Unix socket is not supported: give host:port", h)
	}
	addr, err := joinHostPort(host, port, defPort)
	if err != nil {
		return "", fmt.Errorf("host[%s]: %w", h, err)
	}
	return addr, nil
}

// joinHostPort checks host and port (defPort when empty) and joins them.
func joinHostPort(host, port, defPort string) (string, error) {
	host, err := dsnHost(host)
	if err != nil {
		return "", err
	}
	if port, err = portOr(port, defPort); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}

// symfonyURL parses what follows "redis:" or "memcached:" and the
// credentials the way Symfony does, as a "file:" URL, and its query in
// order. net/url's errors quote the input, so they are not passed on.
func symfonyURL(rest string, slashes bool) (*url.URL, [][2]string, error) {
	raw := "file:" + rest
	if slashes {
		raw = "file://" + rest
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, errors.New("not a valid DSN (percent-encode reserved characters in the password)")
	}
	query, err := orderedQuery(u.RawQuery)
	if err != nil {
		return nil, nil, err
	}
	return u, query, nil
}

// parseMemcachedDSN reads a Memcached DSN as Symfony's
// MemcachedTrait::createConnection does (memcached://host[:port][/weight],
// memcached:?host[a:11211]&host[b:11211]) into host:port addresses.
// Weights and client options are Symfony's client's business and are
// ignored; SASL credentials and Unix sockets are refused.
func parseMemcachedDSN(dsn string) ([]string, error) {
	rest, ok := strings.CutPrefix(dsn, "memcached:")
	if !ok {
		return nil, errors.New("does not start with memcached:")
	}
	slashes := strings.HasPrefix(rest, "//")
	rest = strings.TrimPrefix(rest, "//")
	if at := strings.IndexByte(rest, '@'); at >= 0 && !strings.ContainsAny(rest[:at], "/?") {
		return nil, errors.New("SASL credentials (user:password@) are not supported")
	}
	u, query, err := symfonyURL(rest, slashes)
	if err != nil {
		return nil, err
	}
	var addrs []string
	if u.Host != "" || u.Path != "" {
		if u.Host == "" {
			return nil, errors.New("a Unix socket is not supported: give host:port")
		}
		if p := redisDBRe.ReplaceAllString(u.Path, ""); p != "" { // /weight
			return nil, fmt.Errorf("path %q is not a weight", u.Path)
		}
		addr, err := joinHostPort(u.Hostname(), u.Port(), "11211")
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	for _, kv := range query {
		if k := kv[0]; strings.HasPrefix(k, "host[") && strings.HasSuffix(k, "]") {
			addr, err := symfonyHost(k[len("host["):len(k)-1], "11211")
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, addr)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("names no host")
	}
	return addrs, nil
}

// maskDSN hides the password of a DSN of any form wsgate reads, for error
// messages: URL and Go MySQL userinfo, and password=... parameters.
func maskDSN(s string) string {
	s = passwordParamRe.ReplaceAllString(s, "${1}xxxxx")
	// userinfo: after "scheme:" or "scheme://" (or nothing, for a Go
	// MySQL DSN) up to the last "@" before the path.
	end := strings.LastIndexByte(s, '@')
	if end < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < end {
		start = i + 3
	} else if i := strings.IndexByte(s, ':'); i >= 0 && i < end && schemeRe.MatchString(s[:i]) && (strings.HasPrefix(s, "redis") || strings.HasPrefix(s, "valkey")) {
		start = i + 1
	}
	user, _, hasPass := strings.Cut(s[start:end], ":")
	if !hasPass {
		if strings.HasPrefix(s, "redis") || strings.HasPrefix(s, "valkey") || strings.HasPrefix(s, "memcached") {
			return s[:start] + "xxxxx" + s[end:] // redis://password@host
		}
		return s
	}
	return s[:start] + user + ":xxxxx" + s[end:]
}

var passwordParamRe = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^;&\s]*)`)

// resolveDSNs turns the dsn keys into the fields they stand for, after the
// YAML and the environment, before Validate; root is the document, to
// name the line or variable a bad DSN came from.
func (d *decoder) resolveDSNs(root *yaml.Node, c *Config) error {
	fail := func(key, value, reason string) error {
		return d.errAt(key, nodeAt(root, key), maskDSN(value), reason)
	}
	if err := c.Session.resolvePDO(fail); err != nil {
		return err
	}
	if m := &c.Session.Memcached; m.DSN != "" {
		if len(m.Addrs) > 0 {
			return fail("session.memcached.dsn", m.DSN, "conflicts with session.memcached.addrs: give one")
		}
		addrs, err := parseMemcachedDSN(m.DSN)
		if err != nil {
			return fail("session.memcached.dsn", m.DSN, err.Error())
		}
		m.Addrs = addrs
	}
	for _, r := range []struct {
		key  string
		conn *RedisConnConfig
	}{
		{"session.redis", &c.Session.Redis.RedisConnConfig},
		{"client_storage.redis", &c.ClientStorage.Redis},
		{"push.redis", &c.Push.Redis},
		{"cluster.redis", &c.Cluster.Redis},
	} {
		if err := r.conn.resolveDSN(r.key, fail); err != nil {
			return err
		}
	}
	return nil
}

// resolvePDO rewrites session.pdo.dsn into the Go driver DSN the store
// opens, and checks it with that driver's parser when the store is in use.
func (s *SessionConfig) resolvePDO(fail func(key, value, reason string) error) error {
	p := &s.PDO
	if p.DSN == "" {
		return nil
	}
	const key = "session.pdo.dsn"
	t, err := parsePDODSN(p.DSN, p.DBUsername, p.DBPassword)
	if err != nil {
		return fail(key, p.DSN, err.Error())
	}
	if t.form != formPDO && (p.DBUsername != "" || p.DBPassword != "") {
		cred := "session.pdo.db_username"
		if p.DBUsername == "" {
			cred = "session.pdo.db_password"
		}
		return fail(cred, "", "goes with a PDO DSN (mysql:… or pgsql:…) only: session.pdo.dsn is a "+t.form+", which carries the user and password itself")
	}
	if s.Store != StorePDOMySQL && s.Store != StorePDOPgSQL {
		p.DSN = t.dsn // not in use: checked as far as its form goes
		return nil
	}
	if t.store != "" && t.store != s.Store {
		return fail(key, p.DSN, fmt.Sprintf("is a %s DSN but session.store is %s: set session.store to %s", driverName(t.store), s.Store, t.store))
	}
	switch s.Store {
	case StorePDOMySQL:
		if _, err := mysql.ParseDSN(t.dsn); err != nil {
			// The driver's errors do not echo the password.
			return fail(key, p.DSN, "not a PDO DSN (mysql:host=…;dbname=…), a Doctrine URL (mysql://user:password@host:3306/dbname) or a go-sql-driver/mysql DSN (user:password@tcp(host:3306)/dbname): "+err.Error())
		}
	case StorePDOPgSQL:
		if _, err := pgconn.ParseConfig(t.dsn); err != nil {
			// pgx masks the password in its errors.
			return fail(key, p.DSN, "not a PDO DSN (pgsql:host=…;dbname=…), a Doctrine URL (postgresql://user:password@host:5432/dbname) or a pgx DSN: "+err.Error())
		}
	}
	p.DSN = t.dsn
	return nil
}

func driverName(store string) string {
	if store == StorePDOPgSQL {
		return "PostgreSQL"
	}
	return "MySQL"
}

// resolveDSN fills r from its dsn key; key is the connection's place
// ("session.redis"). A dsn next to the fields it sets is refused, so that
// no value silently wins over another.
func (r *RedisConnConfig) resolveDSN(key string, fail func(key, value, reason string) error) error {
	if r.DSN == "" {
		return nil
	}
	var other string
	switch {
	case len(r.Addrs) > 0:
		other = "addrs"
	case r.Mode != "" && r.Mode != "standalone":
		other = "mode"
	case r.MasterName != "":
		other = "master_name"
	case r.Username != "":
		other = "username"
	case r.Password != "":
		other = "password"
	case r.DB != 0:
		other = "db"
	case r.TLS:
		other = "tls"
	}
	if other != "" {
		return fail(key+".dsn", r.DSN, "conflicts with "+key+"."+other+": give the connection either as dsn or as addrs, mode, master_name, username, password, db and tls")
	}
	c, err := parseRedisDSN(r.DSN)
	if err != nil {
		return fail(key+".dsn", r.DSN, err.Error())
	}
	r.Addrs, r.Mode, r.MasterName = c.addrs, c.mode, c.master
	r.Username, r.Password, r.DB, r.TLS = c.username, c.password, c.db, c.tls
	return nil
}

// nodeAt finds the value node at a dotted key path in a mapping tree, or
// nil.
func nodeAt(n *yaml.Node, path string) *yaml.Node {
	for _, part := range strings.Split(path, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}
