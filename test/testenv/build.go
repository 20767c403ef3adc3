package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// AcmePluginPkg is the example plugin (examples/acme/plugin): the acme.rpc,
// acme.topic and acme.relay handlers the end-to-end tests route to. The
// gateway binary no longer compiles them in.
const AcmePluginPkg = "github.com/wsgate/wsgate/examples/acme/plugin"

// BuildFlags are the go build flags of every binary and plugin the tests
// build: -race when this test binary is race-enabled, and its -tags,
// -trimpath, -gcflags and -asmflags. A Go plugin loads only into a gateway
// whose shared packages were compiled exactly the same way, so the gateway
// under test and the plugins it loads must both be built with these.
// Environment settings (GOFLAGS, GOEXPERIMENT, GOAMD64, CGO_ENABLED, ...)
// reach the child go command by themselves.
func BuildFlags() []string {
	var flags []string
	if RaceEnabled {
		flags = append(flags, "-race")
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return flags
	}
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

// GoBuild runs `go build BuildFlags() extra... -o out pkg` and returns its
// output in the error when it fails. pkg is an import path or a path
// relative to the working directory.
func GoBuild(out, pkg string, extra ...string) error {
	return goBuild(BuildFlags(), out, pkg, extra...)
}

// plainFlags are BuildFlags without -race.
func plainFlags() []string {
	var flags []string
	for _, f := range BuildFlags() {
		if f != "-race" {
			flags = append(flags, f)
		}
	}
	return flags
}

func goBuild(flags []string, out, pkg string, extra ...string) error {
	args := append([]string{"build"}, flags...)
	args = append(args, extra...)
	args = append(args, "-o", out, pkg)
	// A -race build of the gateway or a plugin takes a minute or two on a
	// cold cache; the bound only keeps a wedged toolchain from hanging the
	// test binary until its own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

var acme struct {
	once sync.Once
	done chan struct{}
	dir  string
	path string
	err  error  // the build's failure
	why  string // non-empty: plugins cannot be built here (a missing service)
}

func init() { acme.done = make(chan struct{}) }

// StartAcmePlugin starts building the example plugin in the background,
// once per process, so that a TestMain can overlap it with the gateway
// build. AcmePlugin waits for it (and starts it when nobody did).
func StartAcmePlugin() {
	acme.once.Do(func() {
		go func() {
			defer close(acme.done)
			if why := pluginSupport(); why != "" {
				acme.why = why
				return
			}
			dir, err := os.MkdirTemp("", "wsgate-plugin-")
			if err != nil {
				acme.err = fmt.Errorf("plugin build directory: %w", err)
				return
			}
			acme.dir = dir
			path := filepath.Join(dir, "acme.so")
			if err := GoBuild(path, AcmePluginPkg, "-buildmode=plugin"); err != nil {
				acme.err = fmt.Errorf("building the acme example plugin: %w", err)
				return
			}
			acme.path = path
		}()
	})
}

// AcmePlugin returns the path of the example plugin built with
// BuildFlags() (built once per test process, into a temporary directory
// that RemoveBuilds deletes). When this machine cannot build or load Go
// plugins (no cgo or C compiler, or a coverage build) t is skipped, or
// failed under CI; a failing build fails t.
func AcmePlugin(t testing.TB) string {
	t.Helper()
	StartAcmePlugin()
	<-acme.done
	if acme.why != "" {
		Missing(t, "Go plugins", fmt.Errorf("%s", acme.why))
	}
	if acme.err != nil {
		t.Fatal(acme.err)
	}
	return acme.path
}

var plain struct {
	once            sync.Once
	dir             string
	gateway, plugin string
	err             error
	why             string
}

// PlainBuilds returns a gateway binary (from gatewayPkg, with ldflags) and
// the example plugin, both built without the race detector but otherwise
// with BuildFlags(), once per test process, into a temporary directory that
// RemoveBuilds deletes. Tests that bound the gateway's memory use them: the
// race detector's shadow memory grows with every byte the process ever
// touched and would dwarf the bounds (a flood that costs a plain gateway
// 1 MiB costs a race-enabled one over 100 MiB). Plugins missing skip or
// fail t as AcmePlugin does.
func PlainBuilds(t testing.TB, gatewayPkg string, ldflags string) (gateway, plugin string) {
	t.Helper()
	plain.once.Do(func() {
		if plain.why = pluginSupport(); plain.why != "" {
			return
		}
		dir, err := os.MkdirTemp("", "wsgate-plain-")
		if err != nil {
			plain.err = fmt.Errorf("plain build directory: %w", err)
			return
		}
		plain.dir = dir
		gw, so := filepath.Join(dir, "wsgate"), filepath.Join(dir, "acme.so")
		var wg sync.WaitGroup
		var gwErr, soErr error
		wg.Add(2)
		go func() { defer wg.Done(); gwErr = goBuild(plainFlags(), gw, gatewayPkg, "-ldflags", ldflags) }()
		go func() { defer wg.Done(); soErr = goBuild(plainFlags(), so, AcmePluginPkg, "-buildmode=plugin") }()
		wg.Wait()
		if plain.err = errors.Join(gwErr, soErr); plain.err == nil {
			plain.gateway, plain.plugin = gw, so
		}
	})
	if plain.why != "" {
		Missing(t, "Go plugins", fmt.Errorf("%s", plain.why))
	}
	if plain.err != nil {
		t.Fatal(plain.err)
	}
	return plain.gateway, plain.plugin
}

// RemoveBuilds deletes what AcmePlugin and PlainBuilds built, after waiting
// for a build in flight. Call it at the end of TestMain; it does nothing
// when nothing was started.
func RemoveBuilds() {
	plain.once.Do(func() {})
	if plain.dir != "" {
		os.RemoveAll(plain.dir)
	}
	started := true
	acme.once.Do(func() { started = false; close(acme.done) })
	if !started {
		return
	}
	<-acme.done
	if acme.dir != "" {
		os.RemoveAll(acme.dir)
	}
}

// pluginSupport returns why Go plugins cannot be built and loaded here, or
// "" when they can.
func pluginSupport() string {
	switch runtime.GOOS {
	case "linux", "freebsd", "darwin":
	default:
		return "Go plugins are not supported on " + runtime.GOOS
	}
	out, err := exec.Command("go", "env", "CGO_ENABLED", "CC").Output()
	if err != nil {
		return fmt.Sprintf("go env: %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 1 || fields[0] != "1" {
		return fmt.Sprintf("plugins need cgo, go env CGO_ENABLED=%q", strings.Join(fields, " "))
	}
	cc := "gcc"
	if len(fields) > 1 {
		cc = fields[1]
	}
	if _, err := exec.LookPath(cc); err != nil {
		return fmt.Sprintf("plugins need the C compiler %s: %v", cc, err)
	}
	return ""
}
