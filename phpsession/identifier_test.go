package phpsession

import (
	"fmt"
	"os"
	"reflect"
	"testing"
)

// TestIdentifierAmbiguity checks when a user object's identifier is a
// guess: only without properties configured for its class, and only when
// another tried property holds a different non-empty value.
func TestIdentifierAmbiguity(t *testing.T) {
	const class = `App\Entity\Member`
	priv := func(name string) string { return ser("\x00" + class + "\x00" + name) }
	user := func(props ...string) string { return objectOf(class, props...) }
	// A Serializable (C:) user whose payload is a keyed array.
	keyed := func(entries string, n int) string {
		payload := fmt.Sprintf("a:%d:{%s}", n, entries)
		return fmt.Sprintf(`C:%d:"%s":%d:{%s}`, len(class), class, len(payload), payload)
	}
	tests := []struct {
		name    string
		user    string
		idProps []string
		byClass map[string][]string
		wantID  string
		want    []IdentifierCandidate // nil: not ambiguous
	}{
		{
			name:   "username and email differ: username chosen, best effort",
			user:   user(priv("username"), ser("nick"), priv("email"), ser("mia@example.org")),
			wantID: "nick",
			want:   []IdentifierCandidate{{"username", "nick"}, {"email", "mia@example.org"}},
		},
		{
			name:   "username and email equal: not ambiguous",
			user:   user(priv("username"), ser("mia@example.org"), priv("email"), ser("mia@example.org")),
			wantID: "mia@example.org",
		},
		{
			name:   "only email",
			user:   user(priv("id"), "i:5;", priv("email"), ser("mia@example.org")),
			wantID: "mia@example.org",
		},
		{
			name:   "empty email does not count",
			user:   user(priv("username"), ser("nick"), priv("email"), ser("")),
			wantID: "nick",
		},
		{
			name:   "null and non-string properties do not count",
			user:   user(priv("username"), ser("nick"), priv("email"), "N;", ser("userIdentifier"), "a:0:{}"),
			wantID: "nick",
		},
		{
			name:   "three candidates, one equal to the chosen",
			user:   user(ser("userIdentifier"), ser("u1"), priv("username"), ser("u1"), priv("email"), ser("e1")),
			wantID: "u1",
			want:   []IdentifierCandidate{{"userIdentifier", "u1"}, {"email", "e1"}},
		},
		{
			name:    "integer candidate in decimal",
			user:    user(priv("login"), ser("nick"), priv("id"), "i:4711;"),
			idProps: []string{"login", "id"},
			wantID:  "nick",
			want:    []IdentifierCandidate{{"login", "nick"}, {"id", "4711"}},
		},
		{
			name:    "configured by class: exact, not best effort",
			user:    user(priv("username"), ser("nick"), priv("email"), ser("mia@example.org")),
			byClass: map[string][]string{class: {"email"}},
			wantID:  "mia@example.org",
		},
		{
			name:    "configured by class with several properties: the first present wins, no guess",
			user:    user(priv("username"), ser("nick"), priv("email"), ser("mia@example.org")),
			byClass: map[string][]string{class: {"login", "username", "email"}},
			wantID:  "nick",
		},
		{
			name:    "another class configured: this one is still a guess",
			user:    user(priv("username"), ser("nick"), priv("email"), ser("mia@example.org")),
			byClass: map[string][]string{`App\Entity\Other`: {"email"}},
			wantID:  "nick",
			want:    []IdentifierCandidate{{"username", "nick"}, {"email", "mia@example.org"}},
		},
		{
			name:    "Serializable user with keyed payload",
			user:    keyed(ser("username")+ser("nick")+ser("email")+ser("mia@example.org"), 2),
			idProps: []string{"username", "email"},
			wantID:  "nick",
			want:    []IdentifierCandidate{{"username", "nick"}, {"email", "mia@example.org"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(Options{Firewalls: []string{"main"}, UserIdentifierProperties: tt.idProps, UserIdentifierPropertiesByClass: tt.byClass})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Read(session(1, securityEntry("main", uptOf(tt.user, "b:1;", roleList("ROLE_USER")))))
			if err != nil {
				t.Fatal(err)
			}
			tok := res.Firewalls[0].Token
			if tok == nil {
				t.Fatalf("not authenticated: %+v", res.Firewalls[0])
			}
			if tok.UserIdentifier != tt.wantID {
				t.Errorf("identifier %q, want %q", tok.UserIdentifier, tt.wantID)
			}
			if !reflect.DeepEqual(tok.IdentifierCandidates, tt.want) {
				t.Errorf("candidates %+v, want %+v", tok.IdentifierCandidates, tt.want)
			}
			if tok.BestEffort != (tt.want != nil) {
				t.Errorf("BestEffort %v, want %v", tok.BestEffort, tt.want != nil)
			}
			wantChosen := ""
			if tt.want != nil {
				wantChosen = tt.want[0].Property
			}
			if tok.Chosen() != wantChosen {
				t.Errorf("Chosen %q, want %q", tok.Chosen(), wantChosen)
			}
		})
	}
}

// TestIdentifierAmbiguityFixture reads the session real PHP and Symfony
// wrote for App\Entity\Member (username "nick-mia", e-mail
// "mia@example.org", getUserIdentifier() the e-mail) without the class
// configured: the default properties pick the username, which is wrong, and
// the result must say it is a guess. TestFixtures reads the same session
// with the class configured and gets the e-mail.
func TestIdentifierAmbiguityFixture(t *testing.T) {
	data, err := os.ReadFile("testdata/entity_username_email.sess")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(Options{Firewalls: []string{"main"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	tok := res.Firewalls[0].Token
	want := []IdentifierCandidate{{"username", "nick-mia"}, {"email", "mia@example.org"}}
	if tok == nil || tok.UserIdentifier != "nick-mia" || !tok.BestEffort || !reflect.DeepEqual(tok.IdentifierCandidates, want) {
		t.Fatalf("token %+v, want the username guessed, best effort, candidates %v", tok, want)
	}
	// The full decode (used when the fast scan cannot decide) says the same.
	r.noScan = true
	res, err = r.Read(data)
	if err != nil || !reflect.DeepEqual(res.Firewalls[0].Token.IdentifierCandidates, want) {
		t.Fatalf("full decode: %+v, %v", res.Firewalls[0].Token, err)
	}
}
