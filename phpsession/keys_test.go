package phpsession

import (
	"os"
	"reflect"
	"testing"
)

// SecurityKeys names every _security_* attribute with the token's class
// and the firewall name the token carries, across Symfony generations
// and serialize handlers.
func TestSecurityKeys(t *testing.T) {
	const (
		upt   = classUsernamePasswordToken
		anon  = classAnonymousToken
		swtch = classSwitchUserToken
		post  = classPostAuthenticationToken
		guard = classPostAuthGuardToken
	)
	r, err := NewReader(Options{Format: FormatAuto, Firewalls: []string{"main"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fixture string
		want    []SecurityToken
	}{
		{"upt_inmemory_roles", []SecurityToken{{"_security_main", upt, "main"}}},
		{"anonymous_token", []SecurityToken{{"_security_main", anon, ""}}},
		{"switch_user", []SecurityToken{{"_security_main", swtch, "main"}}},
		{"m_switch_user_igbinary", []SecurityToken{{"_security_main", swtch, "main"}}},
		{"post_authentication", []SecurityToken{{"_security_main", post, "main"}}},
		{"legacy_sf34_guard_php", []SecurityToken{{"_security_main", guard, "main"}}},
		{"legacy_sf28_upt_php", []SecurityToken{{"_security_main", upt, "main"}}},
		{"two_firewalls", []SecurityToken{{"_security_main", upt, "main"}, {"_security_admin", upt, "admin"}}},
		{"no_token", nil},
	} {
		data, err := os.ReadFile("testdata/" + tc.fixture + ".sess")
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.SecurityKeys(data)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: SecurityKeys = %+v, %v; want %+v", tc.fixture, got, err, tc.want)
		}
	}
	if _, err := r.SecurityKeys([]byte("garbage|")); err == nil {
		t.Error("an undecodable record must be an error")
	}
}

func TestFirewallResultNoToken(t *testing.T) {
	for _, tc := range []struct {
		fr   FirewallResult
		want bool
	}{
		{FirewallResult{Firewall: "main", Reason: "no _sf2_attributes"}, true},
		{FirewallResult{Firewall: "main", Reason: "no _security_main attribute"}, true},
		{FirewallResult{Firewall: "main", Reason: "AnonymousToken"}, false},
		{FirewallResult{Firewall: "main", Reason: "token not authenticated"}, false},
		{FirewallResult{Firewall: "main", Authenticated: true}, false},
	} {
		if got := tc.fr.NoToken(); got != tc.want {
			t.Errorf("%+v: NoToken = %v", tc.fr, got)
		}
	}
}
