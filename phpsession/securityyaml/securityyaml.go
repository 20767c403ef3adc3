// Package securityyaml reads what wsgate needs from a Symfony app's
// config/packages/security.yaml: the firewall names and the session
// context each one stores its token under (_security_<context>), and the
// property each Doctrine entity provider loads its users by, which is the
// property getUserIdentifier() returns for that user class.
//
// It is a package of its own so that phpsession stays standard-library
// only. It reads the file as data, never runs anything the file names, and
// resolves nothing Symfony resolves at container build time: %env()%
// values, %parameters%, imports: and when@<env>: sections are reported in
// Config.Warnings, and values holding them are not used. Only a file that
// cannot be read or is not a YAML mapping with a security: section is an
// error.
package securityyaml

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds the file: a security.yaml is a few KiB.
const maxFileSize = 1 << 20

// Config is what wsgate learns from one security.yaml.
type Config struct {
	// Firewalls are the firewalls of security.firewalls, in file order.
	Firewalls []Firewall
	// Providers are the user providers of security.providers, in file order.
	Providers []Provider
	// Warnings are what the file holds that could not be used as is, each
	// naming its place (e.g. "security.firewalls.main.context: %env(CTX)% is
	// resolved by Symfony at runtime; the firewall is skipped").
	Warnings []string
}

// Firewall is one entry of security.firewalls.
type Firewall struct {
	// Name is the firewall's key.
	Name string
	// Context is its `context:` ("" when it has none: the context is the
	// name).
	Context string
	// Provider is its `provider:`, "" when not given.
	Provider string
	// Pattern is its `pattern:` (informational).
	Pattern string
	// Disabled is `security: false` (e.g. the dev firewall): no token.
	Disabled bool
	// Stateless is `stateless: true`: the token is never stored in the
	// session.
	Stateless bool
	// Unknown is set when a value the session key depends on (context,
	// security, stateless) is resolved by Symfony at runtime (%env()%,
	// %parameter%): the firewall's session key is not known.
	Unknown bool
}

// SessionContext is the name ContextListener stores this firewall's token
// under, as _security_<SessionContext>: its context, or its name.
func (f Firewall) SessionContext() string {
	if f.Context != "" {
		return f.Context
	}
	return f.Name
}

// StoresToken reports whether the firewall keeps a token in the session.
func (f Firewall) StoresToken() bool { return !f.Disabled && !f.Stateless && !f.Unknown }

// Provider is one entry of security.providers.
type Provider struct {
	// Name is the provider's key.
	Name string
	// Kind is the provider type: entity, memory, chain, ldap, id (a
	// service), or "" when unknown.
	Kind string
	// Class is an entity provider's `class:` (FQCN without leading
	// backslash), "" otherwise or when not usable.
	Class string
	// Property is an entity provider's `property:`, "" when the provider
	// loads users through its repository (the identifier property is then
	// not known from the file).
	Property string
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("security.yaml: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("security.yaml: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("security.yaml: %s is larger than %d bytes", path, maxFileSize)
	}
	return Parse(data)
}

// Parse reads a security.yaml's contents.
func Parse(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("security.yaml: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("security.yaml: not a YAML mapping")
	}
	c := &Config{}
	var sec *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i].Value, root.Content[i+1]
		switch {
		case k == "security":
			sec = v
		case k == "imports":
			c.warn("imports: %d file(s) not read; what they add to security: is not known", max(len(v.Content), 1))
		case strings.HasPrefix(k, "when@"):
			if _, ok := get(v, "security"); ok {
				c.warn("%s.security: applies only in that environment; not applied", k)
			}
		}
	}
	if sec == nil {
		return nil, errors.New("security.yaml: no security: section")
	}
	if sec.Kind != yaml.MappingNode {
		return nil, errors.New("security.yaml: security: is not a mapping")
	}
	if p, ok := get(sec, "providers"); ok {
		c.providers(p)
	}
	fw, ok := get(sec, "firewalls")
	if !ok {
		c.warn("security.firewalls: none")
	} else {
		c.firewalls(fw)
	}
	return c, nil
}

func (c *Config) warn(format string, args ...any) {
	c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...))
}

// get returns the value of key in mapping n.
func get(n *yaml.Node, key string) (*yaml.Node, bool) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1], true
		}
	}
	return nil, false
}

// scalar returns the string value of key in mapping n (ok false when
// absent or not a scalar; null is absent). A value Symfony resolves at
// runtime (%env(...)%, %parameter%) is reported under path and not
// returned (unknown true).
func (c *Config) scalar(n *yaml.Node, key, path string) (s string, ok, unknown bool) {
	v, found := get(n, key)
	if !found || v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		if found && v.Kind != yaml.ScalarNode {
			c.warn("%s.%s: not a single value; ignored", path, key)
		}
		return "", false, false
	}
	if isRuntime(v.Value) {
		c.warn("%s.%s: %s is resolved by Symfony at runtime, not known here", path, key, v.Value)
		return "", false, true
	}
	if strings.HasPrefix(v.Tag, "!") && !strings.HasPrefix(v.Tag, "!!") {
		c.warn("%s.%s: tag %s not supported; ignored", path, key, v.Tag)
		return "", false, true
	}
	// Symfony's parameter resolution turns %% into a literal %.
	return strings.ReplaceAll(v.Value, "%%", "%"), true, false
}

// isRuntime reports whether s holds a %env()% or %parameter% reference
// (%% is a literal percent sign).
func isRuntime(s string) bool {
	s = strings.ReplaceAll(s, "%%", "")
	i := strings.IndexByte(s, '%')
	return i >= 0 && strings.IndexByte(s[i+1:], '%') > 0
}

// providers reads security.providers.
func (c *Config) providers(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.warn("security.providers: not a mapping; ignored")
		return
	}
	byClass := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, v := n.Content[i].Value, n.Content[i+1]
		path := "security.providers." + name
		p := Provider{Name: name}
		if v.Kind == yaml.MappingNode && len(v.Content) >= 2 {
			p.Kind = v.Content[0].Value
		}
		if e, ok := get(v, "entity"); ok {
			p.Kind = "entity"
			epath := path + ".entity"
			if class, ok, _ := c.scalar(e, "class", epath); ok {
				class = strings.TrimPrefix(class, `\`)
				if strings.Contains(class, ":") {
					c.warn("%s.class: %s is a Doctrine short alias, not a class name; use the FQCN", epath, class)
				} else {
					p.Class = class
				}
			}
			if prop, ok, unknown := c.scalar(e, "property", epath); ok {
				p.Property = prop
			} else if !unknown && p.Class != "" {
				c.warn("%s: no property: %s loads users through its repository, so its identifier property is not known from the file", epath, p.Class)
			}
			if p.Class != "" && p.Property != "" {
				if prev, dup := byClass[p.Class]; dup && prev != p.Property {
					c.warn("%s: %s is also loaded by property %s by an earlier provider; that one is used", epath, p.Class, prev)
				} else {
					byClass[p.Class] = p.Property
				}
			}
		}
		c.Providers = append(c.Providers, p)
	}
}

// firewalls reads security.firewalls.
func (c *Config) firewalls(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.warn("security.firewalls: not a mapping; ignored")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, v := n.Content[i].Value, n.Content[i+1]
		path := "security.firewalls." + name
		f := Firewall{Name: name}
		if isRuntime(name) {
			c.warn("%s: the firewall name is resolved by Symfony at runtime; skipped", path)
			f.Unknown = true
		}
		f.Pattern, _, _ = c.scalar(v, "pattern", path)
		f.Provider, _, _ = c.scalar(v, "provider", path)
		ctx, _, unknown := c.scalar(v, "context", path)
		f.Context = ctx
		f.Unknown = f.Unknown || unknown
		if s, ok, unknown := c.scalar(v, "security", path); ok {
			f.Disabled = isFalse(s)
		} else {
			f.Unknown = f.Unknown || unknown
		}
		if s, ok, unknown := c.scalar(v, "stateless", path); ok {
			f.Stateless = !isFalse(s)
		} else {
			f.Unknown = f.Unknown || unknown
		}
		c.Firewalls = append(c.Firewalls, f)
	}
}

// isFalse reports whether a YAML scalar is false (Symfony's YAML: false,
// or the strings off/no/0 its config component casts to false).
func isFalse(s string) bool {
	switch strings.ToLower(s) {
	case "false", "off", "no", "0", "":
		return true
	}
	return false
}

// SessionFirewalls returns the session context names of the firewalls that
// store a token in the session (not security: false, not stateless, not
// unknown), each once, in file order: what to read as _security_<name>.
func (c *Config) SessionFirewalls() []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range c.Firewalls {
		if !f.StoresToken() {
			continue
		}
		if ctx := f.SessionContext(); !seen[ctx] {
			seen[ctx] = true
			out = append(out, ctx)
		}
	}
	return out
}

// IdentifierProperties maps each entity provider's user class to its
// `property:`, the first provider's where several load the same class.
func (c *Config) IdentifierProperties() map[string][]string {
	out := map[string][]string{}
	for _, p := range c.Providers {
		if p.Class == "" || p.Property == "" {
			continue
		}
		if _, dup := out[p.Class]; !dup {
			out[p.Class] = []string{p.Property}
		}
	}
	return out
}
