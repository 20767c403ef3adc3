package securityyaml

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		file      string
		firewalls []string
		props     map[string][]string
		warnings  []string // substrings, one per warning, in order
	}{
		{
			file:      "symfony54.yaml",
			firewalls: []string{"main"},
			props:     map[string][]string{`App\Entity\User`: {"email"}},
		},
		{
			file: "symfony7.yaml",
			// dev: security false; api: stateless; shop and account share
			// the context "shared"; partner's context is an env var.
			firewalls: []string{"shared", "admin", "main"},
			props:     map[string][]string{`App\Entity\Member`: {"email"}},
			warnings: []string{
				"imports: 1 file(s) not read",
				"when@test.security: applies only in that environment",
				"security.providers.admins.entity.property: %env(ADMIN_LOGIN_PROPERTY)% is resolved by Symfony at runtime",
				"security.providers.legacy.entity: no property: App\\Entity\\LegacyUser loads users through its repository",
				"security.firewalls.partner.context: %env(PARTNER_CONTEXT)% is resolved by Symfony at runtime",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			checkLearned(t, c, tt.firewalls, tt.props)
			if len(c.Warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %d %q lacks %q", i, c.Warnings[i], w)
				}
			}
		})
	}
}

// checkLearned checks what c says wsgate should read.
func checkLearned(t *testing.T, c *Config, firewalls []string, props map[string][]string) {
	t.Helper()
	if got := c.SessionFirewalls(); !reflect.DeepEqual(got, firewalls) {
		t.Errorf("SessionFirewalls %q, want %q", got, firewalls)
	}
	if got := c.IdentifierProperties(); !reflect.DeepEqual(got, props) {
		t.Errorf("IdentifierProperties %q, want %q", got, props)
	}
}

func TestFirewallFields(t *testing.T) {
	c, err := Load("testdata/symfony7.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Firewall{
		{Name: "dev", Pattern: "^/(_(profiler|wdt)|css|images|js)/", Disabled: true},
		{Name: "api", Pattern: "^/api", Provider: "members", Stateless: true},
		{Name: "shop", Pattern: "^/shop", Context: "shared", Provider: "members"},
		{Name: "account", Pattern: "^/account", Context: "shared", Provider: "members"},
		{Name: "partner", Pattern: "^/partner", Unknown: true},
		{Name: "admin", Pattern: "^/admin", Provider: "admins"},
		{Name: "main", Provider: "all_users"},
	}
	if !reflect.DeepEqual(c.Firewalls, want) {
		t.Errorf("firewalls\n got %+v\nwant %+v", c.Firewalls, want)
	}
	kinds := map[string]string{}
	for _, p := range c.Providers {
		kinds[p.Name] = p.Kind
	}
	if want := map[string]string{"members": "entity", "admins": "entity", "legacy": "entity", "all_users": "chain", "backend": "memory"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("provider kinds %v, want %v", kinds, want)
	}
}

func TestParseEdgeCases(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		err       string
		firewalls []string
		props     map[string][]string
		warning   string
	}{
		{name: "not yaml", yaml: "security: [", err: "security.yaml: "},
		{name: "not a mapping", yaml: "- a\n", err: "not a YAML mapping"},
		{name: "no security", yaml: "framework: {}\n", err: "no security: section"},
		{name: "security not a mapping", yaml: "security: 1\n", err: "security: is not a mapping"},
		{name: "no firewalls", yaml: "security: {providers: {}}\n", firewalls: nil, props: map[string][]string{}, warning: "security.firewalls: none"},
		{
			name:      "null firewall, percent literal, Doctrine alias, duplicate class",
			yaml:      "security:\n  providers:\n    a: {entity: {class: 'App:User', property: email}}\n    b: {entity: {class: App\\Entity\\U, property: login}}\n    c: {entity: {class: App\\Entity\\U, property: email}}\n  firewalls:\n    main: ~\n    other: {context: '100%%'}\n",
			firewalls: []string{"main", "100%"},
			props:     map[string][]string{`App\Entity\U`: {"login"}},
			warning:   "Doctrine short alias",
		},
		{
			name:      "security and stateless spelled as strings",
			yaml:      "security:\n  firewalls:\n    dev: {security: 'false'}\n    api: {stateless: 'true'}\n    web: {stateless: false}\n",
			firewalls: []string{"web"},
			props:     map[string][]string{},
		},
		{
			name:      "security from a parameter",
			yaml:      "security:\n  firewalls:\n    main: {security: '%kernel.debug%'}\n    web: {}\n",
			firewalls: []string{"web"},
			props:     map[string][]string{},
			warning:   "%kernel.debug% is resolved by Symfony at runtime",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkLearned(t, c, tt.firewalls, tt.props)
			if tt.warning != "" && !strings.Contains(strings.Join(c.Warnings, "\n"), tt.warning) {
				t.Errorf("warnings %q lack %q", c.Warnings, tt.warning)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}
