// Command wsgate is the websocket gateway for PHP Symfony applications.
//
//	wsgate serve [--config FILE]
//	wsgate config check [--config FILE]
//	wsgate session inspect [--config FILE] SESSION_ID
//	wsgate version
//	wsgate [VERB] --help
//
// Without --config the embedded default configuration is used. Every key can
// also be set from the environment (WSGATE_SESSION_COOKIE=... style); see
// docs/configuration.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/gateway/plugins"
	"github.com/wsgate/wsgate/wamp/builtin"
	"github.com/wsgate/wsgate/wamp/handler"
)

// Exit codes.
const (
	exitOK          = 0
	exitUsage       = 1 // bad arguments or configuration
	exitUnavailable = 2 // the session store could not be read
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// verb is one subcommand: what its --help prints.
type verb struct {
	name     string // "config check"
	synopsis string // after "wsgate "
	summary  string // one line, for `wsgate --help`
	operands string // what the operands are, "" for none
	examples []string
	config   bool // takes --config
}

// verbs are the subcommands, in the order `wsgate --help` lists them.
var verbs = []verb{
	{
		name: "serve", synopsis: "serve [--config FILE]", config: true,
		summary: "run the gateway until SIGTERM or SIGINT, then drain",
		examples: []string{
			"wsgate serve                                  # the embedded default config",
			"wsgate serve --config /etc/wsgate/wsgate.yaml",
			"WSGATE_LISTEN=0.0.0.0:8080 wsgate serve --config wsgate.yaml   # a key from the environment",
		},
	},
	{
		name: "config check", synopsis: "config check [--config FILE]", config: true,
		summary: "validate the config, its routes and plugins; exit 1 naming the bad key",
		examples: []string{
			"wsgate config check --config wsgate.yaml",
			"wsgate config check --config examples/acme/routes.yaml   # after make plugins; from any directory",
		},
	},
	{
		name: "session inspect", synopsis: "session inspect [--config FILE] SESSION_ID", config: true,
		summary:  "print as JSON what the gateway reads from one PHP session, and where it looked",
		operands: "SESSION_ID is the value of the session cookie (PHPSESSID); one beginning with - needs no --",
		examples: []string{
			"wsgate session inspect --config wsgate.yaml 3v5k9c2hq0m1f8r4t6u7w",
			"wsgate session inspect --config wsgate.yaml \"$(cat cookie.txt)\" | jq .lookup",
		},
	},
	{
		name: "version", synopsis: "version", summary: "print the version",
		examples: []string{"wsgate version"},
	},
}

// Exit statuses, the same for every verb: see the top-level help.
const exitStatuses = `exit status: 0 ok (and --help); 1 bad arguments or configuration;
2 the session store could not be read (session inspect)
`

// topUsage is `wsgate --help`: every verb with its summary.
func topUsage() string {
	var b strings.Builder
	b.WriteString("wsgate, the websocket gateway for PHP Symfony applications\n\nusage:\n")
	for _, v := range verbs {
		fmt.Fprintf(&b, "  wsgate %-44s %s\n", v.synopsis, v.summary)
	}
	b.WriteString(`
Without --config the embedded default configuration is used; every key can
also be set from the environment (WSGATE_SESSION_COOKIE=...); relative paths
in a config file are taken from the file's directory. docs/configuration.md
lists the keys.

examples:
  wsgate serve --config wsgate.yaml
  wsgate config check --config wsgate.yaml
  wsgate session inspect --config wsgate.yaml SESSION_ID
  wsgate serve --help

`)
	b.WriteString(exitStatuses)
	return b.String()
}

// help is `wsgate <verb> --help`: synopsis, flags, operands, examples.
func (v verb) help(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: wsgate %s\n\n%s\n", v.synopsis, v.summary)
	if fs != nil {
		b.WriteString("\nflags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
	}
	if v.operands != "" {
		fmt.Fprintf(&b, "\n%s\n", v.operands)
	}
	b.WriteString("\nexamples:\n")
	for _, e := range v.examples {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	b.WriteString("\n" + exitStatuses)
	return b.String()
}

func verbNamed(name string) verb {
	for _, v := range verbs {
		if v.name == name {
			return v
		}
	}
	panic("no verb " + name)
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage())
		return exitUsage
	}
	switch args[0] {
	case "version", "--version", "-v":
		if len(args) > 1 {
			if isHelp(args[1]) && len(args) == 2 {
				fmt.Fprint(stdout, verbNamed("version").help(nil))
				return exitOK
			}
			fmt.Fprint(stderr, verbNamed("version").help(nil))
			return exitUsage
		}
		fmt.Fprintln(stdout, "wsgate", gateway.Version)
		return exitOK
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "config":
		if len(args) > 1 && args[1] == "check" {
			return configCheck(args[2:], stdout, stderr)
		}
	case "session":
		if len(args) > 1 && args[1] == "inspect" {
			return sessionInspect(args[2:], stdout, stderr)
		}
	case "help", "--help", "-h", "-help":
		// `wsgate help config check` is `wsgate config check --help`.
		if len(args) > 1 {
			for _, v := range verbs {
				if strings.Join(args[1:], " ") == v.name {
					return run(append(strings.Fields(v.name), "--help"), stdout, stderr)
				}
			}
			fmt.Fprint(stderr, topUsage())
			return exitUsage
		}
		fmt.Fprint(stdout, topUsage())
		return exitOK
	}
	fmt.Fprint(stderr, topUsage())
	return exitUsage
}

// loadConfig parses the verb's flags (--config) and, unless they asked for
// help, checks that exactly operands positional arguments follow and loads
// the config. code is the exit status when ok is false: exitOK after
// --help (printed to stdout), exitUsage otherwise (printed to stderr).
func loadConfig(name string, operands int, args []string, stdout, stderr io.Writer) (cfg config.Config, rest []string, code int, ok bool) {
	v := verbNamed(name)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", "YAML configuration `FILE` (default: the embedded default); its relative paths are taken from its directory")
	var errb strings.Builder
	fs.SetOutput(&errb)
	fs.Usage = func() {} // the help below, once, to the right stream
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, v.help(fs))
			return cfg, nil, exitOK, false
		}
		fmt.Fprintf(stderr, "wsgate %s: %v\n\n%s", name, err, v.help(fs))
		return cfg, nil, exitUsage, false
	}
	if fs.NArg() != operands {
		fmt.Fprintf(stderr, "wsgate %s: want %d operand(s), got %d\n\n%s", name, operands, fs.NArg(), v.help(fs))
		return cfg, nil, exitUsage, false
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, nil, exitUsage, false
	}
	return cfg, fs.Args(), exitOK, true
}

// handlers is the registry of the built-in handlers (wamp/builtin:
// wsgate.relay, wsgate.user, wsgate.push) and those the configured plugins
// bring. The built-in ones go first, so a plugin cannot take their names;
// other Go handlers come from `plugins:` (the acme examples are
// examples/acme/plugin, `make plugins`), and the gateway adds the
// `upstreams:` ones itself.
func handlers(cfg config.Config) (*handler.Registry, error) {
	reg := handler.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		return nil, err
	}
	if err := plugins.Load(cfg.Plugins, reg); err != nil {
		return nil, fmt.Errorf("load plugins: %w", err)
	}
	return reg, nil
}

func newLogger(cfg config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level)) // validated by the config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, _, code, ok := loadConfig("serve", 0, args, stdout, stderr)
	if !ok {
		return code
	}
	reg, err := handlers(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := gateway.Run(ctx, cfg, gateway.Options{Logger: log, Handlers: reg}); err != nil {
		log.Error("gateway stopped", "err", err)
		return exitUsage
	}
	return exitOK
}

func configCheck(args []string, stdout, stderr io.Writer) int {
	cfg, _, code, ok := loadConfig("config check", 0, args, stdout, stderr)
	if !ok {
		return code
	}
	reg, err := handlers(cfg)
	if err == nil {
		err = gateway.CheckConfig(cfg, reg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	fmt.Fprintln(stdout, "config ok")
	return exitOK
}
