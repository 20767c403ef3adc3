package gateway

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wsgate/wsgate/gateway/config"
	"github.com/wsgate/wsgate/wamp/handler"
)

// appSecurityYAML is a Symfony 6/7 security.yaml: an entity provider by
// e-mail for App\Entity\Member, a dev firewall without security, a shared
// context and a firewall whose context comes from the environment.
const appSecurityYAML = `
imports:
  - { resource: extra.yaml }
security:
  providers:
    members: {entity: {class: App\Entity\Member, property: email}}
  firewalls:
    dev: {pattern: ^/(_(profiler|wdt)|css|images|js)/, security: false}
    shop: {pattern: ^/shop, context: main}
    main: {lazy: true, provider: members}
    partner: {context: '%env(PARTNER_CONTEXT)%'}
    admin: {pattern: ^/admin}
`

func writeSecurityYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "security.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// session.symfony_security_yaml supplies the firewalls (their contexts, in
// file order) unless session.firewalls is given, and each entity
// provider's property, under what is configured by class.
func TestSecurityYAMLReaderOptions(t *testing.T) {
	path := writeSecurityYAML(t, appSecurityYAML)
	for _, tc := range []struct {
		name, yaml string
		firewalls  []string
		byClass    map[string][]string
	}{
		{"firewalls from the file", "session: {symfony_security_yaml: " + path + "}\n",
			[]string{"main", "admin"}, map[string][]string{`App\Entity\Member`: {"email"}}},
		{"explicit firewalls win", "session: {symfony_security_yaml: " + path + ", firewalls: [admin]}\n",
			[]string{"admin"}, map[string][]string{`App\Entity\Member`: {"email"}}},
		{"explicit by class wins", "session: {symfony_security_yaml: " + path + ", user_identifier_properties_by_class: {App\\Entity\\Member: [login], App\\Entity\\Other: [x]}}\n",
			[]string{"main", "admin"}, map[string][]string{`App\Entity\Member`: {"login"}, `App\Entity\Other`: {"x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), "test.yaml", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConfig(cfg, nil); err != nil {
				t.Fatal(err)
			}
			opt, warnings, err := sessionReaderOptions(cfg.Session)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(opt.Firewalls, tc.firewalls) || !reflect.DeepEqual(opt.UserIdentifierPropertiesByClass, tc.byClass) {
				t.Errorf("firewalls %q by class %q, want %q %q", opt.Firewalls, opt.UserIdentifierPropertiesByClass, tc.firewalls, tc.byClass)
			}
			all := strings.Join(warnings, "\n")
			if len(warnings) != 2 || !strings.Contains(all, "imports:") || !strings.Contains(all, "%env(PARTNER_CONTEXT)%") {
				t.Errorf("warnings %q, want the import and the env context", warnings)
			}
		})
	}
}

// A security.yaml that cannot be used fails config check naming the key.
func TestSecurityYAMLConfigCheckErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, tc := range []struct {
		name, path, inMsg string
	}{
		{"missing file", missing, "no such file"},
		{"not YAML", writeSecurityYAML(t, "security: ["), "security.yaml"},
		{"no security section", writeSecurityYAML(t, "framework: {}\n"), "no security: section"},
		{"no session firewall", writeSecurityYAML(t, "security: {firewalls: {dev: {security: false}, api: {stateless: true}}}\n"), "set session.firewalls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte("session: {symfony_security_yaml: "+tc.path+"}\n"), "test.yaml", nil)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckConfig(cfg, nil)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != "session.symfony_security_yaml" || ce.Value != tc.path || !strings.Contains(ce.Reason, tc.inMsg) {
				t.Fatalf("got %v, want key session.symfony_security_yaml mentioning %q", err, tc.inMsg)
			}
		})
	}
}

// The session PHP wrote for App\Entity\Member (username nick-mia, login
// e-mail mia@example.org): without configuration the identity is a guess,
// counted and logged by class and property names; with the app's
// security.yaml it is exact.
func TestBestEffortIdentityAtAdmission(t *testing.T) {
	data, err := os.ReadFile("../phpsession/testdata/entity_username_email.sess")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		yaml     bool
		wantID   string
		wantBest float64
	}{
		{"guessed", false, "nick-mia", 1},
		{"from security.yaml", true, "mia@example.org", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "sess_member1"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := config.Default()
			cfg.Transport.Mode = config.ModeGoroutine
			cfg.Listen = "127.0.0.1:0"
			cfg.Session.Files.Path = dir
			cfg.Session.Files.GCMaxLifetime = 0
			if tc.yaml {
				cfg.Session.SymfonySecurityYAML = writeSecurityYAML(t, appSecurityYAML)
				cfg.Session.Firewalls = nil
			}
			var logs syncBuffer
			addr, srv := serveConfigLog(t, cfg, handler.NewRegistry(), slog.New(slog.NewTextHandler(&logs, nil)))

			res, err := srv.resolver.Resolve(context.Background(), "member1")
			if err != nil || res.Identity().UserIdentifier != tc.wantID {
				t.Fatalf("identity %+v, %v, want %q", res.Identity(), err, tc.wantID)
			}
			for range 2 {
				if _, err := dialRaw(t, addr, map[string][]string{"Cookie": {"PHPSESSID=member1"}}); err != nil {
					t.Fatal(err)
				}
			}
			if got := testutil.ToFloat64(srv.metrics.IdentityBestEffort.WithLabelValues("main")); got != 2*tc.wantBest {
				t.Errorf("wsgate_identity_best_effort_total{firewall=main} = %v, want %v", got, 2*tc.wantBest)
			}
			out := logs.String()
			guessLines := strings.Count(out, "user identifier is a guess")
			if tc.wantBest == 0 {
				if guessLines != 0 {
					t.Errorf("logged a guess: %s", out)
				}
				if !strings.Contains(out, "security.yaml: not used") {
					t.Errorf("security.yaml warnings not logged: %s", out)
				}
				return
			}
			// Once per class, naming class and properties, never values.
			if guessLines != 1 || !strings.Contains(out, `user_class=App\Entity\Member`) ||
				!strings.Contains(out, "chosen=username") || !strings.Contains(out, "candidates=\"[username email]\"") ||
				strings.Contains(out, "mia@example.org") || strings.Contains(out, "nick-mia") {
				t.Errorf("log:\n%s", out)
			}
		})
	}
}

// TestInternedRoles: identities with the same roles share one list (read
// only, its capacity its length, so an append copies); other lists, even
// ones whose names joined would read the same, get their own.
func TestInternedRoles(t *testing.T) {
	a := interned.roles([]string{"ROLE_USER", "ROLE_EDITOR"})
	b := interned.roles([]string{"ROLE_USER", "ROLE_EDITOR"})
	if !slices.Equal(a, []string{"ROLE_USER", "ROLE_EDITOR"}) || &a[0] != &b[0] || cap(a) != len(a) {
		t.Fatalf("a %v b %v: not one shared list", a, b)
	}
	if c := append(a, "ROLE_X"); &c[0] == &a[0] {
		t.Fatal("append wrote into the shared list")
	}
	joined := interned.roles([]string{"ROLE_USER\x01ROLE_EDITOR"})
	split := interned.roles([]string{"ROLE_USER", "\x01ROLE_EDITOR"})
	if len(joined) != 1 || len(split) != 2 {
		t.Fatalf("lists mixed up: %q %q", joined, split)
	}
	if e := interned.roles(nil); e == nil || len(e) != 0 {
		t.Fatalf("no roles: %#v", e)
	}
}
