package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// test/setup-helm.sh --wait is what the chart tests call: it must never
// build (that would run inside this package's -timeout) and must say what
// to do when there is no helm; a helm named by WSGATE_HELM or on PATH is
// used as it is.
func TestChartSetupHelmWait(t *testing.T) {
	// A PATH without any helm, and an empty cache.
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "helm")); err != nil {
			dirs = append(dirs, d)
		}
	}
	cache := t.TempDir()
	run := func(extra ...string) (string, string, error) {
		cmd := exec.Command("bash", "setup-helm.sh", "--wait")
		cmd.Env = append(os.Environ(), append([]string{"PATH=" + strings.Join(dirs, string(filepath.ListSeparator)), "XDG_CACHE_HOME=" + cache, "WSGATE_HELM="}, extra...)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	out, errOut, err := run()
	if err == nil || out != "" || !strings.Contains(errOut, "no helm") || !strings.Contains(errOut, "bash test/setup-helm.sh") {
		t.Errorf("--wait without helm: err %v, stdout %q, stderr %q: want exit 1 saying how to get one", err, out, errOut)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "wsgate-test")); len(entries) != 0 {
		t.Errorf("--wait created %v: it must not start a build", entries)
	}

	fake := filepath.Join(t.TempDir(), "helm")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho fake\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := run("WSGATE_HELM=" + fake); err != nil || strings.TrimSpace(out) != fake {
		t.Errorf("--wait with WSGATE_HELM: err %v, stdout %q, stderr %q: want %s", err, out, errOut, fake)
	}
	// A finished build in the cache is found.
	bin := filepath.Join(cache, "wsgate-test", "helm-"+setupHelmVersion(t), "helm")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := run(); err != nil || strings.TrimSpace(out) != bin {
		t.Errorf("--wait with a cached build: err %v, stdout %q, stderr %q: want %s", err, out, errOut, bin)
	}
}

// setupHelmVersion reads HELM_VERSION from setup-helm.sh.
func setupHelmVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("setup-helm.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "HELM_VERSION="); ok {
			return v
		}
	}
	t.Fatal("no HELM_VERSION= in setup-helm.sh")
	return ""
}
