package test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// runWsgateIn runs the gateway binary with the working directory dir.
func runWsgateIn(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsgateBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run wsgate %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestAcmeRoutesConfigCheckFromAnotherDirectory: the repository's
// examples/acme/routes.yaml passes `wsgate config check` run from any
// directory, because its plugins: path is taken from the file's
// directory. The file is checked as committed, in a copy of the
// repository's layout (examples/acme/, bin/plugins/acme.so) whose plugin
// is the one built for these tests.
func TestAcmeRoutesConfigCheckFromAnotherDirectory(t *testing.T) {
	root := t.TempDir()
	routes, err := os.ReadFile("../examples/acme/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "examples", "acme"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "examples", "acme", "routes.yaml"), routes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin", "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(root, "bin", "plugins", "acme.so")
	if err := os.Symlink(testenv.AcmePlugin(t), so); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	for _, tc := range []struct{ name, dir, config string }{
		{"from the repository root, relative", root, "examples/acme/routes.yaml"},
		{"from the file's directory", filepath.Join(root, "examples", "acme"), "routes.yaml"},
		{"from elsewhere, absolute", elsewhere, filepath.Join(root, "examples", "acme", "routes.yaml")},
		{"from elsewhere, relative", filepath.Join(root, "bin"), "../examples/acme/routes.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errb, code := runWsgateIn(t, tc.dir, "config", "check", "--config", tc.config)
			if code != 0 || strings.TrimSpace(out) != "config ok" {
				t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errb)
			}
		})
	}
	t.Run("without the plugin it names the path it resolved", func(t *testing.T) {
		if err := os.Remove(so); err != nil {
			t.Fatal(err)
		}
		_, errb, code := runWsgateIn(t, elsewhere, "config", "check", "--config", filepath.Join(root, "examples", "acme", "routes.yaml"))
		if code != 1 || !strings.Contains(errb, so) {
			t.Fatalf("exit %d, want 1 naming %s; stderr %s", code, so, errb)
		}
	})
}

// TestCLIHelpE2E: the binary's --help of every verb exits 0 with flags and
// examples on stdout; a bad flag exits 1 with the reason on stderr.
func TestCLIHelpE2E(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"config", "check", "--help"}, {"session", "inspect", "--help"}, {"version", "--help"}} {
		out, errb, code := runWsgate(t, nil, args...)
		if code != 0 || errb != "" || !strings.Contains(out, "examples:") || !strings.Contains(out, "usage:") {
			t.Errorf("%v: exit %d, stderr %q, stdout %s", args, code, errb, out)
		}
		if len(args) > 1 && args[0] != "version" && !strings.Contains(out, "-config FILE") {
			t.Errorf("%v: no flags listed: %s", args, out)
		}
	}
	out, errb, code := runWsgate(t, nil, "serve", "--nosuch")
	if code != 1 || out != "" || !strings.Contains(errb, "flag provided but not defined: -nosuch") {
		t.Errorf("bad flag: exit %d, stdout %q, stderr %s", code, out, errb)
	}
}

// TestBuildInfoAndStartBlockE2E: /metrics has wsgate_build_info = 1 with
// the -ldflags version, the Go version and a revision; the log has the one
// start block with the listeners and routes.
func TestBuildInfoAndStartBlockE2E(t *testing.T) {
	g := startGateway(t, `
listen: "%LISTEN%"
metrics: {listen: "%METRICS%"}
session: {store: files, files: {path: "`+t.TempDir()+`"}}
routes:
  topics:
    public: {pattern: "public/{channel}", handler: wsgate.relay}
`)
	resp, err := http.Get("http://" + g.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	re := regexp.MustCompile(`(?m)^wsgate_build_info\{goversion="(go[^"]+)",revision="([^"]+)",version="e2e"\} 1$`)
	m := re.FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no wsgate_build_info with version e2e in /metrics:\n%s", grepLines(string(body), "wsgate_build_info"))
	}
	t.Logf("wsgate_build_info goversion=%s revision=%s", m[1], m[2])
	log := g.stderr.String()
	var block string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="wsgate serving"`) {
			block = l
		}
	}
	for _, want := range []string{"listen.ws=" + g.Addr, "listen.metrics=" + g.MetricsAddr, "session_store.driver=files",
		`routes.topic="[public: public/{channel} → wsgate.relay]"`, "handlers.builtin=\"[wsgate.push wsgate.relay wsgate.user]\""} {
		if !strings.Contains(block, want) {
			t.Errorf("start block lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, "level=WARN") {
		t.Errorf("a serving config warned:\n%s", log)
	}
}
