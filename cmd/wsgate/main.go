// Command wsgate is the websocket gateway for PHP Symfony applications.
//
//	wsgate serve [--config FILE]
//	wsgate config check [--config FILE]
//	wsgate session inspect [--config FILE] SESSION_ID
//	wsgate version
//
// Without --config the embedded default configuration is used. Every key can
// also be set from the environment (WSGATE_SESSION_COOKIE=... style); see
// docs/configuration.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
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

const usage = `usage:
  wsgate serve [--config FILE]
  wsgate config check [--config FILE]
  wsgate session inspect [--config FILE] SESSION_ID
  wsgate version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "wsgate", gateway.Version)
		return exitOK
	case "serve":
		return serve(args[1:], stderr)
	case "config":
		if len(args) > 1 && args[1] == "check" {
			return configCheck(args[2:], stdout, stderr)
		}
	case "session":
		if len(args) > 1 && args[1] == "inspect" {
			return sessionInspect(args[2:], stdout, stderr)
		}
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprint(stderr, usage)
	return exitUsage
}

// loadConfig parses the --config flag, checks that exactly operands
// positional arguments follow (named in usage), and loads the config.
func loadConfig(name, usage string, operands int, args []string, stderr io.Writer) (config.Config, []string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML configuration file (default: the embedded default)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, nil, false
	}
	if fs.NArg() != operands {
		fmt.Fprintf(stderr, "usage: wsgate %s\n", usage)
		return config.Config{}, nil, false
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return cfg, nil, false
	}
	return cfg, fs.Args(), true
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

func serve(args []string, stderr io.Writer) int {
	cfg, _, ok := loadConfig("serve", "serve [--config FILE]", 0, args, stderr)
	if !ok {
		return exitUsage
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
	cfg, _, ok := loadConfig("config check", "config check [--config FILE]", 0, args, stderr)
	if !ok {
		return exitUsage
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
