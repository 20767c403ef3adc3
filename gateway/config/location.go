package config

import (
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Server is where a pdo_* session store connects, for logs and for
// `session inspect`: addr is host:port (or hosts, or a Unix socket path),
// database the database name. The user and password are never part of it,
// so it may be printed and pasted into a ticket. "" where the DSN does not
// say (the driver's default) or does not parse (Validate reports that).
func (c PDOConfig) Server(store string) (addr, database string) {
	switch store {
	case StorePDOMySQL:
		m, err := mysql.ParseDSN(c.DSN)
		if err != nil {
			return "", ""
		}
		return m.Addr, m.DBName
	case StorePDOPgSQL:
		if u, err := url.Parse(c.DSN); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
			return u.Host, strings.TrimPrefix(u.Path, "/")
		}
		pairs, err := parseConninfo(c.DSN)
		if err != nil {
			return "", ""
		}
		var host, port string
		for _, p := range pairs {
			switch p[0] {
			case "host":
				host = p[1]
			case "port":
				port = p[1]
			case "dbname":
				database = p[1]
			}
		}
		addr = host
		if port != "" && !strings.HasPrefix(host, "/") && !strings.Contains(host, ",") {
			addr = host + ":" + port
		}
		return addr, database
	}
	return "", ""
}
