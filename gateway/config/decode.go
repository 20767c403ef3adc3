package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wsgate/wsgate/wamp"
)

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
	return &Error{Key: key, Value: value, Source: src, Reason: reason}
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
