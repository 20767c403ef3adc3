package gateway

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wsgate/wsgate/wamp"
)

// EnvPrefix starts every environment variable that sets a configuration key.
const EnvPrefix = "WSGATE_"

// maxConfigSize bounds a configuration file or variable: a config larger
// than this is a mistake, and bounding it keeps the parser's work bounded.
const maxConfigSize = 1 << 20

// LoadConfig reads the YAML file at path (the embedded default when path is
// empty), applies the WSGATE_* variables of environ on top, and validates the
// result. Errors are *ConfigError where a key is to blame.
func LoadConfig(path string, environ []string) (Config, error) {
	data := DefaultConfigYAML
	source := "embedded default"
	if path != "" {
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
	return ParseConfig(data, source, environ)
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

// ParseConfig decodes YAML data (source names it in errors), applies the
// WSGATE_* variables of environ and validates the result.
func ParseConfig(data []byte, source string, environ []string) (Config, error) {
	cfg := DefaultConfig()
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
	if err := d.decode("", root, reflect.ValueOf(&cfg).Elem()); err != nil {
		return cfg, err
	}
	// A secret's variable may carry our prefix (secret_env:
	// WSGATE_UPSTREAM_SECRET is the natural name): it is known once the
	// configuration names it.
	named := cfg.secretVariables()
	for _, name := range unknown {
		if !named[name] {
			return cfg, &ConfigError{Key: name, Source: "environment", Reason: "unknown variable: no configuration key has this name, and no *_env key names it"}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decoder maps a YAML node tree onto Config strictly: unknown keys, wrong
// kinds, aliases and duplicate keys are errors that name the key. yaml.v3's
// own Decode reports only line numbers, which is not enough for an operator
// who set the value through an environment variable.
type decoder struct {
	source string
	envOf  map[*yaml.Node]string // nodes that came from an environment variable
}

func (d *decoder) errAt(key string, n *yaml.Node, value, reason string) error {
	src := ""
	if env, ok := d.envOf[n]; ok {
		src = "from " + env
	} else if n != nil && n.Line > 0 {
		src = fmt.Sprintf("%s line %d", d.source, n.Line)
	}
	return &ConfigError{Key: key, Value: value, Source: src, Reason: reason}
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	routesType   = reflect.TypeOf(wamp.RoutesConfig{})
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return d.errAt(path, n, "", "YAML anchors and aliases are not supported")
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // an empty value keeps the default
	}
	if v.Kind() == reflect.Pointer {
		// An optional value (e.g. a route's anonymous: true|false): nil
		// unless given.
		elem := reflect.New(v.Type().Elem())
		if err := d.decode(path, n, elem.Elem()); err != nil {
			return err
		}
		v.Set(elem)
		return nil
	}
	switch {
	case v.Type() == durationType:
		return d.decodeDuration(path, n, v)
	case v.Kind() == reflect.Struct:
		return d.decodeStruct(path, n, v)
	case v.Kind() == reflect.Map:
		return d.decodeMap(path, n, v)
	case v.Kind() == reflect.Slice:
		return d.decodeSlice(path, n, v)
	}
	if n.Kind != yaml.ScalarNode {
		return d.errAt(path, n, "", "want a single value, got a "+kindName(n))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Tag != "!!bool" {
			return d.errAt(path, n, n.Value, "not a boolean (true or false)")
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			return d.errAt(path, n, n.Value, "not a boolean (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if n.Tag != "!!int" {
			return d.errAt(path, n, n.Value, "not an integer")
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || v.OverflowInt(i) {
			return d.errAt(path, n, n.Value, "not an integer in range")
		}
		v.SetInt(i)
	default:
		return d.errAt(path, n, n.Value, "unsupported field type "+v.Type().String())
	}
	return nil
}

// decodeDuration takes Go duration strings ("90s", "15m") and, as the
// bundle's ttl does, a bare integer as seconds.
func (d *decoder) decodeDuration(path string, n *yaml.Node, v reflect.Value) error {
	if n.Kind != yaml.ScalarNode {
		return d.errAt(path, n, "", "want a duration, got a "+kindName(n))
	}
	if n.Tag == "!!int" {
		secs, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || secs > int64(1<<63-1)/int64(time.Second) || secs < -int64(1<<63-1)/int64(time.Second) {
			return d.errAt(path, n, n.Value, "not a duration in range")
		}
		v.SetInt(secs * int64(time.Second))
		return nil
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		return d.errAt(path, n, n.Value, `not a duration (e.g. "30s", "15m", or seconds as an integer)`)
	}
	v.SetInt(int64(dur))
	return nil
}

func (d *decoder) decodeStruct(path string, n *yaml.Node, v reflect.Value) error {
	if n.Kind != yaml.MappingNode {
		return d.errAt(path, n, n.Value, "want a mapping of keys, got a "+kindName(n))
	}
	fields := structFields(v.Type())
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			return d.errAt(path, k, "", "keys must be plain words")
		}
		if seen[k.Value] {
			return d.errAt(key, k, "", "key given twice")
		}
		seen[k.Value] = true
		idx, ok := fields[k.Value]
		if !ok {
			return d.errAt(key, k, "", "unknown key"+suggest(k.Value, fields))
		}
		if err := d.decode(key, val, v.FieldByIndex(idx)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeMap(path string, n *yaml.Node, v reflect.Value) error {
	if n.Kind != yaml.MappingNode {
		return d.errAt(path, n, n.Value, "want a mapping, got a "+kindName(n))
	}
	if v.Type().Key().Kind() != reflect.String {
		return d.errAt(path, n, "", "unsupported map key type")
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return d.errAt(path, k, "", "keys must be non-empty plain words")
		}
		key := join(path, k.Value)
		if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			return d.errAt(key, k, "", "key given twice")
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(key, val, elem); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
	return nil
}

func (d *decoder) decodeSlice(path string, n *yaml.Node, v reflect.Value) error {
	if n.Kind != yaml.SequenceNode {
		return d.errAt(path, n, n.Value, "want a list, got a "+kindName(n))
	}
	s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		elem := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(fmt.Sprintf("%s[%d]", path, i), item, elem); err != nil {
			return err
		}
		s = reflect.Append(s, elem)
	}
	v.Set(s)
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	default:
		return "YAML node of another kind"
	}
}

// structFields maps yaml tag names to field index paths; the fields of an
// embedded struct tagged `yaml:",inline"` count as the outer struct's.
func structFields(t reflect.Type) map[string][]int {
	m := make(map[string][]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, idx := range structFields(f.Type) {
				m[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name != "" && name != "-" {
			m[name] = []int{i}
		}
	}
	return m
}

func suggest(key string, fields map[string][]int) string {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// ConfigKey is one settable key: its YAML path and environment variable.
type ConfigKey struct {
	Path string // e.g. "session.files.gc_maxlifetime"
	Env  string // e.g. "WSGATE_SESSION_FILES_GC_MAXLIFETIME"
	Type string // Go type of the value
}

// ConfigKeys lists every key of Config, depth first in declaration order.
// Maps (routes) are single keys whose environment value is YAML.
func ConfigKeys() []ConfigKey {
	var keys []ConfigKey
	var walk func(path string, t reflect.Type)
	walk = func(path string, t reflect.Type) {
		// Routes are one key: route names are the user's, so there is no
		// fixed variable per route; WSGATE_ROUTES takes the whole mapping.
		if t.Kind() == reflect.Struct && t != durationType && t != routesType {
			for i := 0; i < t.NumField(); i++ {
				name, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
				if name == "" && opts == "inline" {
					walk(path, t.Field(i).Type)
					continue
				}
				if name == "" || name == "-" {
					continue
				}
				walk(join(path, name), t.Field(i).Type)
			}
			return
		}
		keys = append(keys, ConfigKey{Path: path, Env: EnvName(path), Type: t.String()})
	}
	walk("", reflect.TypeOf(Config{}))
	return keys
}

// EnvName is the environment variable that sets the key at path:
// "session.cookie" → "WSGATE_SESSION_COOKIE".
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv overlays WSGATE_* variables onto the document. A value is read as
// YAML of the key's type, so scalars are written plainly, lists either as
// "a,b,c" or "[a, b]", and mappings (routes) as YAML flow or JSON. An unknown
// WSGATE_ variable is returned, sorted, for the caller to reject unless a
// *_env key names it: a typo would otherwise be silently ignored.
func (d *decoder) applyEnv(root *yaml.Node, environ []string) (unknown []string, err error) {
	byEnv := map[string]ConfigKey{}
	for _, k := range ConfigKeys() {
		byEnv[k.Env] = k
	}
	sorted := append([]string(nil), environ...)
	sort.Strings(sorted) // deterministic error choice
	for _, kv := range sorted {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, known := byEnv[name]
		if !known {
			unknown = append(unknown, name)
			continue
		}
		if len(value) > maxConfigSize {
			return nil, &ConfigError{Key: key.Path, Source: "from " + name, Reason: "value too large"}
		}
		node, err := envNode(key, value)
		if err != nil {
			return nil, &ConfigError{Key: key.Path, Value: value, Source: "from " + name, Reason: err.Error()}
		}
		d.markEnv(node, name)
		setPath(root, strings.Split(key.Path, "."), node)
	}
	return unknown, nil
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

func envNode(key ConfigKey, value string) (*yaml.Node, error) {
	trimmed := strings.TrimSpace(value)
	if key.Type == "[]string" && !strings.HasPrefix(trimmed, "[") {
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if trimmed != "" {
			for _, item := range strings.Split(trimmed, ",") {
				seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.TrimSpace(item)})
			}
		}
		return seq, nil
	}
	if key.Type == "string" {
		// A string is taken literally: "yes" or "0123" stay what was typed.
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(value), &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}, nil
	}
	return doc.Content[0], nil
}

func (d *decoder) markEnv(n *yaml.Node, env string) {
	d.envOf[n] = env
	for _, c := range n.Content {
		d.markEnv(c, env)
	}
}

// setPath replaces (or creates) the value at path in a mapping tree.
func setPath(m *yaml.Node, path []string, value *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != path[0] {
			continue
		}
		if len(path) == 1 {
			m.Content[i+1] = value
			return
		}
		child := m.Content[i+1]
		if child.Kind != yaml.MappingNode {
			child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			m.Content[i+1] = child
		}
		setPath(child, path[1:], value)
		return
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, value)
		return
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, key, child)
	setPath(child, path[1:], value)
}
