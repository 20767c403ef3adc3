package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds a configuration file or variable: a config larger
// than this is a mistake, and bounding it keeps the parser's work bounded.
const maxConfigSize = 1 << 20

// Load reads the YAML file at path (the embedded default when path is
// empty), applies the WSGATE_* variables of environ on top, and validates the
// result. Relative paths the file gives (plugins, session.files.path,
// session.symfony_security_yaml) are taken from the file's directory; those
// from the environment stay relative to the working directory (fileKeys).
// Errors are *Error where a key is to blame.
func Load(path string, environ []string) (Config, error) {
	data := DefaultYAML
	source := "embedded default"
	baseDir := ""
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		baseDir = filepath.Dir(abs)
		f, err := os.Open(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		defer f.Close()
		data, err = readBounded(f, maxConfigSize)
		if err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", path, err)
		}
		source = path
	}
	return parse(data, source, baseDir, environ)
}

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// Parse decodes YAML data (source names it in errors), applies the
// WSGATE_* variables of environ and validates the result. Relative paths
// stay relative to the working directory: data has no file to be relative
// to (Load resolves them against its file).
func Parse(data []byte, source string, environ []string) (Config, error) {
	return parse(data, source, "", environ)
}

// parse is Parse with relative file paths of the YAML (not of environ)
// resolved against baseDir when it is not "".
func parse(data []byte, source, baseDir string, environ []string) (Config, error) {
	cfg := Default()
	if len(data) > maxConfigSize {
		return cfg, fmt.Errorf("config: %s is larger than %d bytes", source, maxConfigSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return cfg, fmt.Errorf("config: %s: %w", source, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return cfg, fmt.Errorf("config: %s: want one YAML document", source)
		}
		root = root.Content[0]
	}
	if root.Kind == 0 { // empty file
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	d := &decoder{source: source, envOf: map[*yaml.Node]string{}}
	unknown, err := d.applyEnv(root, environ)
	if err != nil {
		return cfg, err
	}
	d.resolvePaths(root, baseDir)
	if err := d.decode("", root, reflect.ValueOf(&cfg).Elem()); err != nil {
		return cfg, err
	}
	if cfg.Session.SymfonySecurityYAML != "" && !hasPath(root, "session", "firewalls") {
		// Not given: the firewalls come from the app's security.yaml, not
		// from the built-in default [main].
		cfg.Session.Firewalls = nil
	}
	// A secret's variable may carry our prefix (secret_env:
	// WSGATE_UPSTREAM_SECRET is the natural name): it is known once the
	// configuration names it.
	named := cfg.secretVariables()
	for _, name := range unknown {
		if !named[name] {
			return cfg, &Error{Key: name, Source: "environment", Reason: "unknown variable: no configuration key has this name, and no *_env key names it"}
		}
	}
	// Connection settings pasted from the Symfony app become the fields
	// everything downstream reads.
	if err := d.resolveDSNs(root, &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// secretVariables returns the environment variables the *_env keys name.
func (c *Config) secretVariables() map[string]bool {
	named := map[string]bool{}
	add := func(name string) {
		if name != "" {
			named[name] = true
		}
	}
	add(c.API.TokenEnv)
	add(c.Events.SecretEnv)
	for _, u := range c.Upstreams {
		add(u.SecretEnv)
	}
	return named
}

// hasPath reports whether the mapping root holds the key path (after the
// environment was applied to it).
func hasPath(root *yaml.Node, path ...string) bool {
	n := root
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return true
}
