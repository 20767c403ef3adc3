package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupServicesDetectsByCommand: test/setup-services.sh decides what to
// install by the commands, PHP extensions and files the tests use, not by
// Debian package names, so a psql from another package (a PGDG
// postgresql-client-16) does not make it run apt-get again. Checked with
// --print-missing (what it would install) on this machine, under a
// dpkg-query that knows no package, and with psql or php hidden from PATH.
func TestSetupServicesDetectsByCommand(t *testing.T) {
	script, err := filepath.Abs("setup-services.sh")
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, path string) string {
		t.Helper()
		cmd := exec.Command("/bin/bash", script, "--print-missing")
		cmd.Env = append(cleanEnv(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(t, os.Getenv("PATH")); got != "" {
		t.Skipf("this machine lacks what the tests need (run make services): %s", strings.ReplaceAll(got, "\n", " "))
	}
	// A PATH of symlinks to every command of the real one but the hidden.
	without := func(t *testing.T, hidden ...string) string {
		t.Helper()
		dir := t.TempDir()
		skip := map[string]bool{}
		for _, h := range hidden {
			skip[h] = true
		}
		for _, d := range filepath.SplitList(os.Getenv("PATH")) {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if skip[e.Name()] {
					continue
				}
				os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name())) // the first of PATH wins, as in a shell
			}
		}
		return dir
	}
	fake := t.TempDir()
	// dpkg-query and apt-get that would betray a lookup by package name or
	// an install.
	for name, body := range map[string]string{
		"dpkg-query": "#!/bin/sh\necho 'dpkg-query called' >&2\nexit 1\n",
		"apt-get":    "#!/bin/sh\necho 'apt-get called' >&2\nexit 1\n",
	} {
		if err := os.WriteFile(filepath.Join(fake, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"installed under other package names", func(t *testing.T) string { return fake + ":" + os.Getenv("PATH") }, ""},
		{"no psql", func(t *testing.T) string { return fake + ":" + without(t, "psql") }, "postgresql-client"},
		{"no mysqladmin", func(t *testing.T) string { return fake + ":" + without(t, "mysqladmin") }, "mariadb-client"},
		{"no php", func(t *testing.T) string { return fake + ":" + without(t, "php") },
			"php8.2-cli\nphp8.2-memcached\nphp8.2-mysql\nphp8.2-pgsql\nphp8.2-redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, tc.path(t)); got != tc.want {
				t.Errorf("would install %q, want %q", got, tc.want)
			}
		})
	}
}
