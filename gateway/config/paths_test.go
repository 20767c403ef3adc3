package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestLoadResolvesPathsAgainstTheFile checks each file key: relative in the
// file → the file's directory; absolute → as written; from a WSGATE_*
// variable → as typed (the working directory's); Parse (no file) → as
// written.
func TestLoadResolvesPathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	confDir := filepath.Join(dir, "conf")
	if err := os.MkdirAll(filepath.Join(confDir, "sessions"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "security.yaml"), []byte("security:\n  firewalls:\n    main: ~\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type paths struct {
		plugins  []string
		security string
		files    string
	}
	for _, tc := range []struct {
		name string
		yaml string
		env  []string
		want paths
	}{
		{
			name: "relative in the file",
			yaml: "plugins: [plugins/a.so, ../b.so]\nsession:\n  symfony_security_yaml: security.yaml\n  files: {path: sessions}\n",
			want: paths{[]string{filepath.Join(confDir, "plugins/a.so"), filepath.Join(dir, "b.so")}, filepath.Join(confDir, "security.yaml"), filepath.Join(confDir, "sessions")},
		},
		{
			name: "save_path with levels and mode",
			yaml: "session:\n  files: {path: \"2;0600;sessions\"}\n",
			want: paths{nil, "", "2;0600;" + filepath.Join(confDir, "sessions")},
		},
		{
			name: "save_path with levels",
			yaml: "session:\n  files: {path: \"1;./sessions\"}\n",
			want: paths{nil, "", "1;" + filepath.Join(confDir, "sessions")},
		},
		{
			name: "absolute stays",
			yaml: "plugins: [/opt/p.so]\nsession:\n  files: {path: /var/lib/php/sessions}\n",
			want: paths{[]string{"/opt/p.so"}, "", "/var/lib/php/sessions"},
		},
		{
			name: "environment stays relative to the working directory",
			yaml: "plugins: [a.so]\nsession:\n  files: {path: sessions}\n",
			env:  []string{"WSGATE_PLUGINS=env/a.so,/abs/b.so", "WSGATE_SESSION_FILES_PATH=var/sessions"},
			want: paths{[]string{"env/a.so", "/abs/b.so"}, "", "var/sessions"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(confDir, "wsgate.yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(file, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			got := paths{cfg.Plugins, cfg.Session.SymfonySecurityYAML, cfg.Session.Files.Path}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	t.Run("a relative --config is taken from the working directory first", func(t *testing.T) {
		wd, _ := os.Getwd()
		t.Cleanup(func() { os.Chdir(wd) })
		if err := os.Chdir(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(confDir, "rel.yaml"), []byte("plugins: [x.so]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(filepath.Join("conf", "rel.yaml"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{filepath.Join(confDir, "x.so")}; !reflect.DeepEqual(cfg.Plugins, want) {
			t.Errorf("plugins %v, want %v", cfg.Plugins, want)
		}
	})
	t.Run("Parse has no file: paths as written", func(t *testing.T) {
		cfg, err := Parse([]byte("plugins: [x.so]\nsession: {files: {path: s}}\n"), "t.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg.Plugins, []string{"x.so"}) || cfg.Session.Files.Path != "s" {
			t.Errorf("plugins %v, files.path %q", cfg.Plugins, cfg.Session.Files.Path)
		}
	})
}
