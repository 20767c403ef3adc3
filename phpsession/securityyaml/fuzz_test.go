package securityyaml

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary files to the security.yaml reader: it must
// return a config or an error, never panic, and what it returns must hold
// together (every session firewall a non-empty name; every class mapped
// to a non-empty property).
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"security: {}\n",
		"security:\n  firewalls:\n    main: {context: shared}\n",
		"security:\n  providers:\n    users: {entity: {class: App\\Entity\\User, property: email}}\n",
		"imports: [{resource: x.yaml}]\nsecurity: {firewalls: {main: {provider: '%env(P)%'}}}\n",
		"security: [1, 2]\n", "", "{", "security:\n  firewalls: null\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		for _, fw := range c.SessionFirewalls() {
			if fw == "" {
				t.Fatalf("empty session firewall from %q", data)
			}
		}
		for class, props := range c.IdentifierProperties() {
			if class == "" || len(props) == 0 || props[0] == "" {
				t.Fatalf("class %q mapped to properties %q from %q", class, props, data)
			}
		}
	})
}
