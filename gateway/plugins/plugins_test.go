package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/gateway/plugins"
	"github.com/wsgate/wsgate/test/testenv"
	"github.com/wsgate/wsgate/wamp"
	"github.com/wsgate/wsgate/wamp/handler"
)

const (
	acmePlugin    = "github.com/wsgate/wsgate/examples/acme/plugin"
	badsigPlugin  = "github.com/wsgate/wsgate/gateway/plugins/testdata/badsig"
	varfuncPlugin = "github.com/wsgate/wsgate/gateway/plugins/testdata/varfunc"
)

// buildDir holds the plugins built by this test run; each variant is built
// once and shared by the tests.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type built struct {
	path string
	err  error
}

var (
	buildMu sync.Mutex
	builds  = map[string]built{}
)

// requireToolchain skips the test (fails it under CI=true) when plugins
// cannot be built or loaded here: they need cgo and a C compiler.
func requireToolchain(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "darwin" {
		t.Skipf("Go plugins are not supported on %s", runtime.GOOS)
	}
	if testing.CoverMode() != "" {
		// Coverage instruments the shared packages in the test binary
		// only, so no plugin built by `go build` could match it.
		t.Skip("plugins cannot match a coverage-instrumented test binary")
	}
	out, err := exec.Command("go", "env", "CGO_ENABLED", "CC").Output()
	if err != nil {
		testenv.Missing(t, "go toolchain", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 1 || fields[0] != "1" {
		testenv.Missing(t, "cgo (go env CGO_ENABLED=1)", fmt.Errorf("CGO_ENABLED=%q", strings.Join(fields, " ")))
	}
	cc := "gcc"
	if len(fields) > 1 {
		cc = fields[1]
	}
	if _, err := exec.LookPath(cc); err != nil {
		testenv.Missing(t, "C compiler "+cc, err)
	}
}

// testBuildFlags returns the flags this test binary was built with that
// change compiled packages (other than -race, which raceTest gives), so
// that `go test -tags x` or `-trimpath` builds matching plugins.
// Environment settings (GOFLAGS, GOEXPERIMENT, GOAMD64, ...) reach the
// child go command by themselves.
func testBuildFlags() []string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	var flags []string
	for _, s := range bi.Settings {
		switch s.Key {
		case "-tags", "-gcflags", "-asmflags":
			flags = append(flags, s.Key+"="+s.Value)
		case "-trimpath":
			flags = append(flags, "-trimpath="+s.Value)
		}
	}
	return flags
}

// buildPlugin builds pkg with -buildmode=plugin, with -race when race is
// true, once per test run, and returns the .so's path.
func buildPlugin(t *testing.T, pkg string, race bool) string {
	t.Helper()
	requireToolchain(t)
	name := filepath.Base(pkg)
	if race {
		name += "-race"
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	b, ok := builds[name]
	if !ok {
		b.path = filepath.Join(buildDir, name+".so")
		args := []string{"build", "-buildmode=plugin"}
		if race {
			args = append(args, "-race")
		}
		args = append(args, testBuildFlags()...)
		if race != raceTest {
			// Go refuses a second plugin with the plugin path (by default
			// the import path) of one already loaded, before it compares
			// packages: give the mismatched build its own, so that it
			// reports the mismatch whichever test loads first.
			args = append(args, "-ldflags=-pluginpath="+pkg+".mismatch")
		}
		args = append(args, "-o", b.path, pkg)
		start := time.Now()
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("go %s: %v", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
		}
		builds[name] = b
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// TestLoadAcme builds the example plugin with this test binary's flags,
// loads it, and checks its handlers are registered.
func TestLoadAcme(t *testing.T) {
	so := buildPlugin(t, acmePlugin, raceTest)
	reg := handler.NewRegistry()
	if err := plugins.Load([]string{so}, reg); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.RPC("acme.rpc"); !ok {
		t.Errorf("acme.rpc not registered; RPCs: %v", reg.RPCNames())
	}
	for _, name := range []string{"acme.topic", "acme.relay"} {
		if _, ok := reg.Topic(name); !ok {
			t.Errorf("%s not registered; topics: %v", name, reg.TopicNames())
		}
	}
	// Loading the same plugin into another registry registers again:
	// the gateway may build its registry more than once (config check,
	// then serve).
	again := handler.NewRegistry()
	if err := plugins.Load([]string{so}, again); err != nil {
		t.Fatalf("second load: %v", err)
	}
	if _, ok := again.RPC("acme.rpc"); !ok {
		t.Error("second load: acme.rpc not registered")
	}
	// The same file listed twice is a config mistake, not a duplicate
	// handler error deep inside a plugin.
	err := plugins.Load([]string{so, so}, handler.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("plugin listed twice: got %v", err)
	}
}

// TestServeAcme loads the example plugin into the real gateway and speaks
// WAMP to the handlers it brought: a CALL to acme.rpc and a SUBSCRIBE to
// acme.topic.
func TestServeAcme(t *testing.T) {
	so := buildPlugin(t, acmePlugin, raceTest)
	reg := handler.NewRegistry()
	if err := plugins.Load([]string{so}, reg); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Transport.Mode = config.ModeGoroutine
	cfg.Listen = "127.0.0.1:0"
	cfg.Session.Files.Path = t.TempDir()
	cfg.Routes.RPC = map[string]wamp.RouteConfig{"acme_rpc": {Pattern: "sample/{method}", Handler: "acme.rpc"}}
	cfg.Routes.Topics = map[string]wamp.RouteConfig{"acme_topic": {Pattern: "acme/channel/{room}", Handler: "acme.topic"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Handlers: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	d := ws.Dialer{Protocols: []string{"wamp"}, Timeout: 5 * time.Second}
	nc, br, _, err := d.Dial(context.Background(), "ws://"+ln.Addr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	// br holds what the server sent right behind its 101 (the WELCOME),
	// when any.
	var rw io.ReadWriter = nc
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{br, nc}
	}
	read := func() string {
		t.Helper()
		msg, err := wsutil.ReadServerText(rw)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(msg)
	}
	send := func(msg string) {
		t.Helper()
		if err := wsutil.WriteClientText(nc, []byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if m := read(); !strings.HasPrefix(m, "[0,") {
		t.Fatalf("want WELCOME, got %s", m)
	}
	// The anonymous client gets the bundle sample's refusal as a
	// CALLRESULT: acme.rpc's Sum answered.
	send(`[2,"c1","sample/sum",1,2]`)
	if m, want := read(), `[3,"c1",{"error":true,"msg":"You must be authenticated to use this function."}]`; m != want {
		t.Errorf("CALL sample/sum: got %s, want %s", m, want)
	}
	// acme.topic announces the subscriber to itself.
	send(`[5,"acme/channel/plug"]`)
	if m := read(); !strings.HasPrefix(m, `[8,"acme/channel/plug",{"msg":"`) || !strings.HasSuffix(m, ` has joined acme/channel/plug"}]`) {
		t.Errorf("SUBSCRIBE acme/channel/plug: got %s", m)
	}
}

// TestLoadMissing names the plugin whose file does not exist.
func TestLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.so")
	err := plugins.Load([]string{path}, handler.NewRegistry())
	var perr *plugins.Error
	if !errors.As(err, &perr) || perr.Path != path {
		t.Fatalf("got %v, want a *plugins.Error for %s", err, path)
	}
	if !strings.Contains(err.Error(), `plugin "`+path+`"`) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %q should name the plugin and say it does not exist", err)
	}
	if err := plugins.Load(nil, handler.NewRegistry()); err != nil {
		t.Errorf("no plugins: %v", err)
	}
}

// TestLoadNotAPlugin names a file that is not a shared object.
func TestLoadNotAPlugin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "text.so")
	if err := os.WriteFile(path, []byte("not an ELF file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	requireToolchain(t) // a gateway without cgo says "not implemented" instead
	err := plugins.Load([]string{path}, handler.NewRegistry())
	if err == nil || !strings.HasPrefix(err.Error(), `plugin "`+path+`": `) {
		t.Fatalf("got %v, want an error naming %s", err, path)
	}
	if errors.Is(err, plugins.ErrMismatch) {
		t.Errorf("a broken file is no build mismatch: %v", err)
	}
	t.Log(err)
}

// TestLoadRaceMismatch loads the example plugin built with the opposite
// -race flag: the start must fail naming the plugin and the mismatch.
func TestLoadRaceMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin a second time; run without -short")
	}
	so := buildPlugin(t, acmePlugin, !raceTest)
	reg := handler.NewRegistry()
	err := plugins.Load([]string{so}, reg)
	if err == nil {
		t.Fatal("a plugin built with the opposite -race flag loaded")
	}
	t.Log(err)
	if !errors.Is(err, plugins.ErrMismatch) {
		t.Errorf("error is not ErrMismatch: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`plugin "` + so + `": built against a different wsgate or with other build flags (`,
		"rebuild it with the same Go version, flags (-race) and wsgate version as the gateway",
		runtime.Version(),
		fmt.Sprintf("plugin vs gateway: -race=%t vs -race=%t", !raceTest, raceTest),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if names := reg.RPCNames(); len(names) != 0 {
		t.Errorf("failed plugin registered %v", names)
	}
}

// TestLoadBadSignature loads a plugin whose Register has the wrong type.
func TestLoadBadSignature(t *testing.T) {
	so := buildPlugin(t, badsigPlugin, raceTest)
	err := plugins.Load([]string{so}, handler.NewRegistry())
	if err == nil {
		t.Fatal("a plugin with a wrong Register signature loaded")
	}
	t.Log(err)
	msg := err.Error()
	for _, want := range []string{`plugin "` + so + `"`, "Register has type func(*handler.Registry)", "want func(*handler.Registry) error"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

// TestLoadVarAndRegisterError loads a plugin whose Register is a function
// variable, then loads it into a registry where its handler name is taken:
// Register's own error comes back naming the plugin.
func TestLoadVarAndRegisterError(t *testing.T) {
	so := buildPlugin(t, varfuncPlugin, raceTest)
	reg := handler.NewRegistry()
	if err := plugins.Load([]string{so}, reg); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.RPC("varfunc.rpc"); !ok {
		t.Fatalf("varfunc.rpc not registered; RPCs: %v", reg.RPCNames())
	}
	err := plugins.Load([]string{so}, reg)
	if err == nil {
		t.Fatal("registering varfunc.rpc twice succeeded")
	}
	t.Log(err)
	if want := `plugin "` + so + `": Register: `; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q should start with %q", err, want)
	}
}
