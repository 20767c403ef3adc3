package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/test/testenv"
)

// wsgateBin is the gateway binary built once by TestMain.
var wsgateBin string

// gatewayLDFlags are the -ldflags of every gateway the tests build.
const gatewayLDFlags = "-X github.com/wsgate/wsgate/gateway.Version=e2e"

// TestMain builds the gateway under test and, alongside, the example plugin
// its acme.* routes need, both with testenv.BuildFlags() (-race when these
// tests are), so that the plugin loads into the gateway.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testenv.StartAcmePlugin()
	wsgateBin = filepath.Join(dir, "wsgate")
	if err := testenv.GoBuild(wsgateBin, "../cmd/wsgate", "-ldflags", gatewayLDFlags); err != nil {
		fmt.Fprintln(os.Stderr, "build wsgate:", err)
		testenv.RemoveBuilds()
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	testenv.RemoveBuilds()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// gatewayProcess is a running wsgate binary.
type gatewayProcess struct {
	Addr        string // websocket listener
	MetricsAddr string
	Config      string // path of its config file
	cmd         *exec.Cmd
	stderr      *syncBuffer
	done        chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// acmePluginMark is the placeholder of a config's plugin list that
// startGateway replaces with the path of the example plugin, e.g.
// `plugins: [%ACME_PLUGIN%]` for a config routing acme.* handlers.
const acmePluginMark = "%ACME_PLUGIN%"

// startGateway writes config (YAML with %LISTEN% and %METRICS% placeholders,
// and %ACME_PLUGIN% where the example plugin's path goes) to a file, starts
// `wsgate serve` on it and waits until /readyz answers 200.
// The process is stopped with SIGTERM when the test ends.
//
// The acme handlers are no longer compiled into the gateway: a config that
// routes to acme.* must load the plugin. One that does so without a
// top-level plugins key gets `plugins: [<acme plugin>]` appended (logged),
// so that tests written before the move keep working; a config with its own
// plugins key is left as it is.
func startGateway(t *testing.T, config string) *gatewayProcess {
	t.Helper()
	config = withAcmePlugin(t, config)
	// The free ports are only free when picked: another test process may
	// take one before the gateway binds it. Then pick again.
	for attempt := 1; ; attempt++ {
		g, err := tryStartBin(t, wsgateBin, config)
		if err == nil {
			return g
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying on other ports: %v", err)
	}
}

// withAcmePlugin puts the example plugin's path into config: in place of
// %ACME_PLUGIN%, or as a plugins list appended to a config that routes
// acme.* handlers and has none (see startGateway). It skips t where Go
// plugins cannot be built (fails it under CI).
func withAcmePlugin(t *testing.T, config string) string {
	t.Helper()
	if strings.Contains(config, acmePluginMark) {
		return strings.ReplaceAll(config, acmePluginMark, strconv.Quote(testenv.AcmePlugin(t)))
	}
	if !strings.Contains(config, "handler: acme.") || regexp.MustCompile(`(?m)^plugins:`).MatchString(config) {
		return config
	}
	t.Logf("config routes acme.* without a plugins key: loading the acme example plugin")
	return config + "\nplugins: [" + strconv.Quote(testenv.AcmePlugin(t)) + "]\n"
}

// tryStartBin starts bin serve on config (its %LISTEN% and %METRICS%
// replaced by free loopback addresses) and waits until /readyz answers
// 200; the process is stopped with SIGTERM when the test ends, and its
// log (the end of it, when long) shown when the test failed.
func tryStartBin(t *testing.T, bin, config string) (*gatewayProcess, error) {
	t.Helper()
	g := &gatewayProcess{Addr: freeAddr(t), MetricsAddr: freeAddr(t), stderr: &syncBuffer{}, done: make(chan error, 1)}
	config = strings.ReplaceAll(config, "%LISTEN%", g.Addr)
	config = strings.ReplaceAll(config, "%METRICS%", g.MetricsAddr)
	g.Config = filepath.Join(t.TempDir(), "wsgate.yaml")
	if err := os.WriteFile(g.Config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "serve", "--config", g.Config)
	g.cmd.Env = cleanEnv()
	g.cmd.Stderr = g.stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.done <- g.cmd.Wait() }()
	t.Cleanup(func() {
		g.stop(t)
		if t.Failed() {
			log := g.stderr.String()
			if len(log) > 16<<10 { // a flood's log is long; its end says why
				log = "…" + log[len(log)-16<<10:]
			}
			t.Logf("wsgate log:\n%s", log)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+g.MetricsAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g, nil
			}
		}
		select {
		case err := <-g.done:
			g.done <- err // for the cleanup's stop
			return nil, fmt.Errorf("wsgate exited before ready: %v\n%s", err, g.stderr.String())
		case <-ctx.Done():
			return nil, fmt.Errorf("wsgate not ready after 20s\n%s", g.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gatewayProcess) stop(t *testing.T) error {
	// Exited already (done holds Wait's result): reading cmd.ProcessState
	// here instead would race with the goroutine in Wait.
	select {
	case err := <-g.done:
		g.done <- err
		return err
	default:
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		g.done <- err // let a second stop see it
		return err
	case <-time.After(30 * time.Second):
		g.cmd.Process.Kill()
		t.Errorf("wsgate did not stop within 30s after SIGTERM")
		return <-g.done
	}
}

// cleanEnv drops WSGATE_* variables of the test's own environment so that
// each gateway runs on exactly the config the test wrote.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runWsgate runs a wsgate subcommand and returns stdout, stderr, exit code.
func runWsgate(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsgateBin, args...)
	cmd.Env = cleanEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run wsgate %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// phpSession is a session written by real PHP through Symfony's handlers.
type phpSession struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// writePHPSession runs test/php/write-session.php with spec (see the script
// for its keys) and returns the session it wrote.
func writePHPSession(t *testing.T, spec map[string]any) phpSession {
	t.Helper()
	php := testenv.PHP(t)
	arg, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, "php/write-session.php", string(arg))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("write-session.php %s: %v\n%s", arg, err, errb.String())
	}
	var s phpSession
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.ID == "" {
		t.Fatalf("write-session.php printed %q: %v", out.String(), err)
	}
	return s
}

// TestWithAcmePlugin checks where startGateway puts the example plugin: in
// place of %ACME_PLUGIN%, appended to a config routing acme.* without a
// plugins key, and nowhere else.
func TestWithAcmePlugin(t *testing.T) {
	so := strconv.Quote(testenv.AcmePlugin(t))
	const routes = "routes:\n  rpc:\n    r: {pattern: \"sample/{method}\", handler: acme.rpc}\n"
	for _, tc := range []struct{ name, in, want string }{
		{"placeholder", "plugins: [%ACME_PLUGIN%]\n" + routes, "plugins: [" + so + "]\n" + routes},
		{"appended", routes, routes + "\nplugins: [" + so + "]\n"},
		{"own plugins key", "plugins: [/x.so]\n" + routes, "plugins: [/x.so]\n" + routes},
		{"no acme route", "routes: {}\n", "routes: {}\n"},
	} {
		if got := withAcmePlugin(t, tc.in); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
