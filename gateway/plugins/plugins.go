// Package plugins loads wsgate handler plugins: Go plugins
// (go build -buildmode=plugin) listed under `plugins:` in the gateway
// config, each adding RPC and topic handlers to the handler registry
// before the WAMP node is built.
//
// # Writing a plugin
//
// A plugin is a package main that imports github.com/wsgate/wsgate/wamp/handler
// (and whatever else it needs) and exports one function named Register:
//
//	package main
//
//	import "github.com/wsgate/wsgate/wamp/handler"
//
//	// Register adds this plugin's handlers; the gateway calls it once at
//	// start-up.
//	func Register(r *handler.Registry) error {
//		if err := r.AddRPC(myRPC{}); err != nil {
//			return err
//		}
//		return r.AddTopic(myTopic{clients: r.Clients()})
//	}
//
//	func main() {} // ignored; lets `go build ./...` link the package
//
// Register may also be a variable of that function type
// (var Register = func(r *handler.Registry) error { ... }). Any other type
// is refused with an error naming the plugin and the type found.
// examples/acme/plugin is a complete plugin.
//
// # Building it
//
// Go only loads a plugin whose shared packages are byte-for-byte the ones
// of the gateway binary: the same Go version, the same build flags (-race,
// -trimpath, tags, GOEXPERIMENT, ...) and the same version of wsgate and of
// every module both use. Build the plugin from the gateway's own module (or
// a module pinning the same wsgate version) with the gateway's flags:
//
//	go build -buildmode=plugin -o handlers.so ./path/to/plugin        # gateway built plainly
//	go build -race -buildmode=plugin -o handlers.so ./path/to/plugin  # gateway built with -race
//
// A plugin that does not match fails the start with an error naming the
// plugin, the mismatch Go reports and how to rebuild it (ErrMismatch).
// Plugins need cgo (CGO_ENABLED=1 and a C compiler) on both sides and are
// supported on Linux, FreeBSD and macOS only.
package plugins

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"plugin"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Symbol is the name every plugin exports: a func(*handler.Registry) error
// (or a variable of that type) the gateway calls once at start-up.
const Symbol = "Register"

// RegisterFunc is the type of a plugin's Register.
type RegisterFunc = func(*handler.Registry) error

// ErrMismatch is wrapped by the error of a plugin that was built against
// a different wsgate (or another version of a shared module) or with
// another Go version or other build flags than the gateway.
var ErrMismatch = errors.New("built against a different wsgate or with other build flags")

// ErrUnsupported is wrapped when this gateway binary cannot load plugins at
// all: it was built without cgo, or for a platform Go has no plugins on.
var ErrUnsupported = errors.New("this gateway binary cannot load Go plugins (it must be built with CGO_ENABLED=1 on Linux, FreeBSD or macOS)")

// Error is the error of one plugin: its path as configured and what went
// wrong. Unwrap gives the cause, which errors.Is matches against
// ErrMismatch and ErrUnsupported.
type Error struct {
	// Path is the plugin's path as listed in the config.
	Path string
	// Err is the cause.
	Err error
}

// Error names the plugin and the cause.
func (e *Error) Error() string {
	return fmt.Sprintf("plugin %q: %v", e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// mismatchError carries Go's own message under ErrMismatch, the build
// settings in which the plugin and the gateway differ, and the advice to
// rebuild.
type mismatchError struct{ goErr, diff string }

func (e *mismatchError) Error() string {
	diff := ""
	if e.diff != "" {
		diff = "; plugin vs gateway: " + e.diff
	}
	return fmt.Sprintf("%v (%s%s); rebuild it with the same Go version, flags (-race) and wsgate version as the gateway, which is %s",
		ErrMismatch, e.goErr, diff, gatewayBuild())
}

func (e *mismatchError) Is(target error) bool { return target == ErrMismatch }

// gatewayBuild describes how the running gateway was built, for the
// mismatch advice.
func gatewayBuild() string {
	race := "without -race"
	if raceEnabled {
		race = "with -race"
	}
	return runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + " " + race
}

// Load opens the plugins at paths, in order, and calls each one's Register
// with reg. It stops at the first failure and returns an *Error naming
// that plugin; handlers added by the plugins before it stay in reg, so the
// caller should not start serving after an error. Relative paths are
// relative to the working directory (config.Load has already made a config
// file's relative to the file). An empty list loads nothing.
//
// Load must run before reg is handed to the WAMP node (which freezes it).
// A plugin stays loaded for the life of the process: Go cannot unload one,
// and opening the same file again returns the same plugin.
func Load(paths []string, reg *handler.Registry) error {
	seen := make(map[string]string, len(paths))
	for _, p := range paths {
		if p == "" {
			return &Error{Path: p, Err: errors.New("empty plugin path")}
		}
		if abs, err := filepath.Abs(p); err == nil {
			if first, dup := seen[abs]; dup {
				return &Error{Path: p, Err: fmt.Errorf("listed twice (also as %q)", first)}
			}
			seen[abs] = p
		}
		if err := load(p, reg); err != nil {
			return &Error{Path: p, Err: err}
		}
	}
	return nil
}

// load opens one plugin and calls its Register.
func load(path string, reg *handler.Registry) error {
	// plugin.Open reports a missing file as an opaque dlopen or realpath
	// failure; say it plainly.
	if _, err := os.Stat(path); err != nil {
		return err
	}
	p, err := plugin.Open(path)
	if err != nil {
		return openError(path, err)
	}
	sym, err := p.Lookup(Symbol)
	if err != nil {
		return fmt.Errorf("exports no %s function: a wsgate plugin must export func %s(*handler.Registry) error", Symbol, Symbol)
	}
	var register RegisterFunc
	switch f := sym.(type) {
	case RegisterFunc:
		register = f
	case *RegisterFunc:
		register = *f
	default:
		return fmt.Errorf("%s has type %T, want func(*handler.Registry) error (github.com/wsgate/wsgate/wamp/handler)", Symbol, sym)
	}
	if register == nil {
		return fmt.Errorf("%s is a nil function variable", Symbol)
	}
	if err := callRegister(register, reg); err != nil {
		return fmt.Errorf("%s: %w", Symbol, err)
	}
	return nil
}

// callRegister calls a plugin's Register, turning a panic into an error so
// that a broken plugin fails the start with its name instead of a stack.
func callRegister(register RegisterFunc, reg *handler.Registry) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panicked: %v", v)
		}
	}()
	return register(reg)
}

// openError turns plugin.Open's error into one that says what to do. Go
// formats it as `plugin.Open("<path>"): <cause>`; the path is already in
// *Error, so only the cause is kept.
func openError(path string, err error) error {
	msg := err.Error()
	cause := msg
	if prefix := `plugin.Open("`; strings.HasPrefix(msg, prefix) {
		if i := strings.Index(msg, `"): `); i >= 0 {
			cause = msg[i+len(`"): `):]
		}
	}
	switch {
	case strings.Contains(cause, "plugin: not implemented"):
		return fmt.Errorf("%w: %s", ErrUnsupported, cause)
	case strings.Contains(cause, "built with a different version of package"):
		// Go compares the hash of every package the plugin shares with
		// the gateway: another Go version or -race flag shows up as a
		// runtime package (e.g. internal/runtime/sys), another wsgate as
		// one of its packages (e.g. .../wamp/handler).
		return &mismatchError{goErr: cause, diff: buildDiff(path)}
	case strings.Contains(cause, "plugin already loaded"):
		return fmt.Errorf("%s: another plugin built from the same package is already loaded (the same plugin under two paths?)", cause)
	}
	return errors.New(cause)
}

// module is wsgate's module path, whose version plugin and gateway must
// share.
const module = "github.com/wsgate/wsgate"

// compared are the build settings (debug.BuildSetting keys) that change
// the compiled packages, and so must match between plugin and gateway.
var compared = []string{"-race", "-tags", "-trimpath", "-gcflags", "-asmflags", "GOEXPERIMENT",
	"GOARCH", "GOAMD64", "GOARM64", "GOARM", "GO386", "CGO_ENABLED", "vcs.revision", "vcs.modified"}

// buildDiff lists the Go version, wsgate version and build settings in
// which the plugin file differs from the running gateway, e.g.
// "-race=false vs -race=true", or "" when either build information is
// unavailable or nothing recorded differs (e.g. only the source changed).
func buildDiff(path string) string {
	pi, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	gi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var diffs []string
	if pi.GoVersion != gi.GoVersion {
		diffs = append(diffs, pi.GoVersion+" vs "+gi.GoVersion)
	}
	if pv, gv := wsgateVersion(pi), wsgateVersion(gi); pv != "" && gv != "" && pv != gv {
		diffs = append(diffs, module+"@"+pv+" vs @"+gv)
	}
	settings := func(bi *debug.BuildInfo) map[string]string {
		m := make(map[string]string, len(bi.Settings))
		for _, s := range bi.Settings {
			m[s.Key] = s.Value
		}
		return m
	}
	ps, gs := settings(pi), settings(gi)
	for _, k := range compared {
		if ps[k] != gs[k] {
			diffs = append(diffs, fmt.Sprintf("%s=%s vs %s=%s", k, orFalse(k, ps[k]), k, orFalse(k, gs[k])))
		}
	}
	return strings.Join(diffs, ", ")
}

// orFalse shows an absent boolean flag as false, as go version -m would
// read it.
func orFalse(key, v string) string {
	if v == "" && (key == "-race" || key == "-trimpath") {
		return "false"
	}
	if v == "" {
		return `""`
	}
	return v
}

// wsgateVersion is the version of the wsgate module in a build: the main
// module's when the binary or plugin is built inside wsgate (unversioned
// "(devel)" there, so not compared), else the required version.
func wsgateVersion(bi *debug.BuildInfo) string {
	if bi.Main.Path == module {
		if bi.Main.Version == "(devel)" {
			return ""
		}
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			if d.Replace != nil {
				return d.Replace.Path + "@" + d.Replace.Version
			}
			return d.Version
		}
	}
	return ""
}
