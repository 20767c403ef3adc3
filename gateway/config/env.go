package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that sets a configuration key.
const EnvPrefix = "WSGATE_"

// Key is one settable key: its YAML path and environment variable.
type Key struct {
	Path string // e.g. "session.files.gc_maxlifetime"
	Env  string // e.g. "WSGATE_SESSION_FILES_GC_MAXLIFETIME"
	Type string // Go type of the value
}

// Keys lists every key of Config, depth first in declaration order.
// Maps (routes) are single keys whose environment value is YAML.
func Keys() []Key {
	var keys []Key
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
		keys = append(keys, Key{Path: path, Env: EnvName(path), Type: t.String()})
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
	byEnv := map[string]Key{}
	for _, k := range Keys() {
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
			return nil, &Error{Key: key.Path, Source: "from " + name, Reason: "value too large"}
		}
		node, err := envNode(key, value)
		if err != nil {
			return nil, &Error{Key: key.Path, Value: value, Source: "from " + name, Reason: err.Error()}
		}
		d.markEnv(node, name)
		setPath(root, strings.Split(key.Path, "."), node)
	}
	return unknown, nil
}

func envNode(key Key, value string) (*yaml.Node, error) {
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
