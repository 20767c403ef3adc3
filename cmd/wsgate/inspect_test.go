package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/test/testenv"
)

// inspect runs `wsgate session inspect` on a files store in dir with the
// given firewalls and returns its decoded JSON.
func inspect(t *testing.T, dir, firewalls string, args ...string) map[string]any {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "wsgate.yaml")
	yaml := "session:\n  firewalls: [" + firewalls + "]\n  files:\n    path: " + dir + "\n    gc_maxlifetime: 0\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(append([]string{"session", "inspect", "--config", cfg}, args...), &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return m
}

func seed(t *testing.T, dir, id, fixture string) {
	t.Helper()
	data, err := os.ReadFile("../../phpsession/testdata/" + fixture + ".sess")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sess_"+id), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSessionInspect(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir, "-dash1", "upt_inmemory_roles")
	t.Run("id beginning with a dash, no --", func(t *testing.T) {
		m := inspect(t, dir, "main", "-dash1")
		if m["status"] != "authenticated" {
			t.Fatalf("status %v: %v", m["status"], m)
		}
		lk := m["lookup"].(map[string]any)
		if lk["store"] != "files" || lk["path"] != filepath.Join(dir, "sess_-dash1") {
			t.Errorf("lookup %v", lk)
		}
	})
	t.Run("with -- too", func(t *testing.T) {
		if m := inspect(t, dir, "main", "--", "-dash1"); m["status"] != "authenticated" {
			t.Fatalf("status %v", m["status"])
		}
	})
	t.Run("firewall key next to the token's firewall", func(t *testing.T) {
		m := inspect(t, dir, "api, main", "-dash1")
		kr, _ := json.Marshal(m["keys_read"])
		want := `[{"firewall":"api","found":false,"key":"_security_api"},` +
			`{"firewall":"main","found":true,"key":"_security_main","token_class":"Symfony\\Component\\Security\\Core\\Authentication\\Token\\UsernamePasswordToken","token_firewall":"main"}]`
		if string(kr) != want {
			t.Errorf("keys_read = %s\nwant %s", kr, want)
		}
		if m2 := inspect(t, dir, "api", "-dash1"); m2["anonymous_reason"] != "no_token_for_firewall" {
			t.Errorf("anonymous_reason %v", m2["anonymous_reason"])
		}
	})
	for _, tc := range []struct{ id, why string }{
		{"abc def", `character ' ' at offset 3`},
		{`"abc"`, `character '"' at offset 0`},
		{strings.Repeat("a", 257), "length 257 exceeds 256"},
	} {
		t.Run("invalid "+tc.why, func(t *testing.T) {
			m := inspect(t, dir, "main", tc.id)
			if m["status"] != "invalid_id" || !strings.Contains(m["invalid_id_reason"].(string), tc.why) {
				t.Errorf("status %v, reason %v; want %q", m["status"], m["invalid_id_reason"], tc.why)
			}
		})
	}
	t.Run("not found says where it looked", func(t *testing.T) {
		m := inspect(t, dir, "main", "nosuch")
		if m["status"] != "not_found" || m["anonymous_reason"] != "not_found" || m["lookup"].(map[string]any)["path"] != filepath.Join(dir, "sess_nosuch") {
			t.Errorf("%v", m)
		}
	})
}

func TestOperandsLast(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-abc", "-- -abc"},
		{"--config f -abc", "--config f -- -abc"},
		{"-abc --config=f", "--config=f -- -abc"},
		{"-- --config", "-- --config"},
		{"--help", "--help --"},
	} {
		if got := strings.Join(operandsLast(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("operandsLast(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSessionInspectNotFoundSaysWhere: on not_found, for every store, the
// JSON's lookup and a line on stderr name where the session was looked
// for (path, server, database, table, key), and no password. Against the
// real services (skipped locally when one is missing, failed under CI).
func TestSessionInspectNotFoundSaysWhere(t *testing.T) {
	const id = "nosuchsession0123"
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string // the session: section
		want  []string                  // in the stderr line
		json  map[string]any            // in lookup
	}{
		{"files", func(t *testing.T) string {
			return "  store: files\n  files: {path: \"1;" + dir + "\"}\n"
		}, []string{"store files, file " + filepath.Join(dir, "n", "sess_"+id)}, map[string]any{"path": filepath.Join(dir, "n", "sess_"+id)}},
		{"pdo_mysql", func(t *testing.T) string {
			db := testenv.MariaDB(t)
			table := testenv.UniqueName(t, "wsgate_inspect_")
			if _, err := db.Exec("CREATE TABLE `" + table + "` (sess_id VARBINARY(128) NOT NULL PRIMARY KEY, sess_data BLOB NOT NULL, sess_lifetime INTEGER UNSIGNED NOT NULL, sess_time INTEGER UNSIGNED NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS `" + table + "`") })
			return "  store: pdo_mysql\n  pdo: {dsn: \"" + testenv.MariaDBDSN() + "\", table: " + table + "}\n"
		}, []string{"store pdo_mysql, server ", ", database ", ", table wsgate_inspect_", "(column sess_id)"}, map[string]any{"id_column": "sess_id"}},
		{"pdo_pgsql", func(t *testing.T) string {
			pool := testenv.PostgreSQL(t)
			table := testenv.UniqueName(t, "wsgate_inspect_")
			if _, err := pool.Exec(context.Background(), "CREATE TABLE "+table+" (sess_id VARCHAR(128) NOT NULL PRIMARY KEY, sess_data BYTEA NOT NULL, sess_lifetime INTEGER NOT NULL, sess_time INTEGER NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
			return "  store: pdo_pgsql\n  pdo: {dsn: \"" + testenv.PostgresDSN() + "\", table: " + table + "}\n"
		}, []string{"store pdo_pgsql, server ", ", database ", ", table wsgate_inspect_"}, map[string]any{"id_column": "sess_id"}},
		{"redis", func(t *testing.T) string {
			return "  store: redis\n  redis: {addrs: [" + testenv.Redis(t) + "], prefix: \"wsgate_inspect_\"}\n"
		}, []string{"store redis, server " + testenv.RedisAddr() + ", db 0, key wsgate_inspect_" + id}, map[string]any{"key": "wsgate_inspect_" + id}},
		{"memcached", func(t *testing.T) string {
			return "  store: memcached\n  memcached: {addrs: [" + testenv.Memcached(t) + "], prefix: \"wsgate_inspect_\"}\n"
		}, []string{"store memcached, server " + testenv.MemcachedAddr() + ", key wsgate_inspect_" + id}, map[string]any{"key": "wsgate_inspect_" + id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "wsgate.yaml")
			if err := os.WriteFile(cfg, []byte("session:\n"+tc.setup(t)), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			if code := run([]string{"session", "inspect", "--config", cfg, id}, &out, &errb); code != exitOK {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var m map[string]any
			if err := json.Unmarshal(out.Bytes(), &m); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			if m["status"] != "not_found" {
				t.Fatalf("status %v", m["status"])
			}
			lk := m["lookup"].(map[string]any)
			if lk["store"] != tc.name {
				t.Errorf("lookup.store %v", lk["store"])
			}
			for k, v := range tc.json {
				if lk[k] != v {
					t.Errorf("lookup.%s = %v, want %v", k, lk[k], v)
				}
			}
			line := errb.String()
			if !strings.HasPrefix(line, "session not found; looked in ") {
				t.Errorf("stderr %q", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr lacks %q: %q", w, line)
				}
			}
			if strings.Contains(line, "(driver default)") {
				t.Errorf("server or database unknown: %q", line)
			}
		})
	}
}
