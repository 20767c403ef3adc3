package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/phpsession"
	"github.com/wsgate/wsgate/storage"
)

// inspectOutput is `session inspect`'s JSON: the gateway.Resolution, as
// always (scripts read its fields: keep them), and around it the whole
// story: where the gateway looked, which _security_* keys it read next to
// the firewall names the session's tokens carry, and why an id is invalid.
type inspectOutput struct {
	gateway.Resolution
	// InvalidID says why the id cannot be a session id (status
	// invalid_id).
	InvalidID string `json:"invalid_id_reason,omitempty"`
	// Lookup is where the session was looked for.
	Lookup lookup `json:"lookup"`
	// KeysRead are the configured firewalls' attributes, with the token
	// found under each.
	KeysRead []keyRead `json:"keys_read"`
}

// lookup says where the configured store keeps the session. Secrets (a
// DSN, a password) are left out: the output ends up in tickets.
type lookup struct {
	Store    string   `json:"store"`
	Path     string   `json:"path,omitempty"`      // files: save_path/sess_<id>
	Addrs    []string `json:"addrs,omitempty"`     // redis
	DB       *int     `json:"db,omitempty"`        // redis
	Prefix   *string  `json:"prefix,omitempty"`    // redis
	Key      string   `json:"key,omitempty"`       // redis: prefix + id
	Table    string   `json:"table,omitempty"`     // pdo
	IDColumn string   `json:"id_column,omitempty"` // pdo
	Server   string   `json:"server,omitempty"`    // pdo: host:port or socket, never user or password
	Database string   `json:"database,omitempty"`  // pdo
}

// String is the lookup in one line, for a person: where a session that
// was not found was looked for.
func (l lookup) String() string {
	switch {
	case l.Path != "":
		return fmt.Sprintf("store %s, file %s", l.Store, l.Path)
	case l.Table != "":
		return fmt.Sprintf("store %s, server %s, database %s, table %s (column %s)", l.Store, orDefault(l.Server), orDefault(l.Database), l.Table, l.IDColumn)
	case l.DB != nil:
		return fmt.Sprintf("store %s, server %s, db %d, key %s", l.Store, strings.Join(l.Addrs, ","), *l.DB, l.Key)
	case l.Key != "":
		return fmt.Sprintf("store %s, server %s, key %s", l.Store, strings.Join(l.Addrs, ","), l.Key)
	}
	return "store " + l.Store
}

func orDefault(s string) string {
	if s == "" {
		return "(driver default)"
	}
	return s
}

// keyRead is one configured firewall: the session attribute read for it
// and the firewall name inside the token found there ("" when there is
// none or its layout has none).
type keyRead struct {
	Firewall      string `json:"firewall"`
	Key           string `json:"key"`
	Found         bool   `json:"found"`
	TokenClass    string `json:"token_class,omitempty"`
	TokenFirewall string `json:"token_firewall,omitempty"`
}

// sessionInspect prints what the gateway recovers from one session as JSON
// (inspectOutput). Its output is read by scripts: keep it stable.
func sessionInspect(args []string, stdout, stderr io.Writer) int {
	cfg, rest, code, ok := loadConfig("session inspect", 1, operandsLast(args), stdout, stderr)
	if !ok {
		return code
	}
	res, err := gateway.NewSessionResolver(cfg.Session, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	defer res.Close()
	id := rest[0]
	r, err := res.Inspect(context.Background(), id)
	if err != nil {
		// Only a store failure gets here: a missing, expired or undecodable
		// session is a status in the output.
		fmt.Fprintln(stderr, err)
		return exitUnavailable
	}
	out := inspectOutput{Resolution: r, Lookup: lookupOf(cfg.Session, id), KeysRead: keysRead(cfg.Session.Firewalls, r.SecurityKeys)}
	switch r.Status {
	case gateway.StatusInvalidID:
		out.InvalidID = invalidIDReason(id)
	case gateway.StatusNotFound:
		// The JSON's lookup says it too; this line is for the person
		// reading the terminal (stdout may go to jq or a file).
		fmt.Fprintf(stderr, "session not found; looked in %s\n", out.Lookup)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(out)
	return exitOK
}

// operandsLast lets a session id that begins with '-' (PHP ids may) be
// given without "--": the only flags are --config (-config) with its
// value and -h/--help; everything else is an operand, moved after a "--"
// so that the flag package does not take it for a flag.
func operandsLast(args []string) []string {
	var flags, operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			operands = append(operands, args[i+1:]...)
			i = len(args)
		case a == "-config" || a == "--config":
			flags = append(flags, a)
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		case strings.HasPrefix(a, "-config=") || strings.HasPrefix(a, "--config=") ||
			a == "-h" || a == "-help" || a == "--help":
			flags = append(flags, a)
		default:
			operands = append(operands, a)
		}
	}
	return append(append(flags, "--"), operands...)
}

// lookupOf is where the configured store looks for id.
func lookupOf(c config.SessionConfig, id string) lookup {
	l := lookup{Store: c.Store}
	switch c.Store {
	case config.StoreFiles:
		// "N;[MODE;]/path" save_path: N levels of one-character
		// directories, as PHP's files handler.
		dir, depth, err := storage.ParseSavePath(c.Files.Path)
		if err != nil {
			dir, depth = c.Files.Path, 0 // config check names the key
		}
		elems := []string{dir}
		for i := 0; i < depth && i < len(id); i++ {
			elems = append(elems, id[i:i+1])
		}
		l.Path = filepath.Join(append(elems, "sess_"+id)...)
	case config.StorePDOMySQL, config.StorePDOPgSQL:
		l.Table, l.IDColumn = c.PDO.Table, c.PDO.IDColumn
		l.Server, l.Database = c.PDO.Server(c.Store)
	case config.StoreRedis:
		db, prefix := c.Redis.DB, c.Redis.Prefix
		l.Addrs, l.DB, l.Prefix, l.Key = c.Redis.Addrs, &db, &prefix, prefix+id
	case config.StoreMemcached:
		prefix := c.Memcached.Prefix
		l.Addrs, l.Prefix, l.Key = c.Memcached.Addrs, &prefix, prefix+id
	}
	return l
}

// keysRead pairs each configured firewall's attribute with the token the
// session holds under it.
func keysRead(firewalls []string, held []phpsession.SecurityToken) []keyRead {
	out := make([]keyRead, len(firewalls))
	for i, fw := range firewalls {
		out[i] = keyRead{Firewall: fw, Key: phpsession.SecurityKeyPrefix + fw}
		for _, h := range held {
			if h.Key == out[i].Key {
				out[i].Found, out[i].TokenClass, out[i].TokenFirewall = true, h.Class, h.Firewall
			}
		}
	}
	return out
}

// invalidIDReason says which of storage.ValidSessionID's rules id breaks
// (PHP's: 1 to 256 characters of a-z A-Z 0-9 , -), or that the store
// refused it for its own reasons.
func invalidIDReason(id string) string {
	if id == "" {
		return "empty"
	}
	if len(id) > storage.MaxSessionIDLength {
		return fmt.Sprintf("length %d exceeds %d", len(id), storage.MaxSessionIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ',' || c == '-') {
			return fmt.Sprintf("character %q at offset %d is not one of a-z A-Z 0-9 , -", c, i)
		}
	}
	return "the store refuses it (files: not longer than the save_path depth)"
}
