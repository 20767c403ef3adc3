package phpsession

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// ser renders a PHP string the way serialize() does.
func ser(s string) string { return fmt.Sprintf("s:%d:\"%s\";", len(s), s) }

// roleList renders a list of role strings.
func roleList(roles ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "a:%d:{", len(roles))
	for i, r := range roles {
		fmt.Fprintf(&b, "i:%d;%s", i, ser(r))
	}
	return b.String() + "}"
}

// abstractData is AbstractToken::__serialize() of Symfony 5.4.
func abstractData(user, authenticated, roles string) string {
	return "a:5:{i:0;" + user + "i:1;" + authenticated + "i:2;N;i:3;a:0:{}i:4;" + roles + "}"
}

func objectOf(class string, props ...string) string {
	return fmt.Sprintf("O:%d:\"%s\":%d:{%s}", len(class), class, len(props)/2, strings.Join(props, ""))
}

func uptOf(user, authenticated, roles string) string {
	return objectOf(classUsernamePasswordToken, "i:0;", "N;", "i:1;", ser("main"), "i:2;", abstractData(user, authenticated, roles))
}

// session wraps AttributeBag entries (already serialized key/value pairs)
// into a php-handler session record like Symfony writes.
func session(n int, entries string) []byte {
	return []byte(fmt.Sprintf("_sf2_attributes|a:%d:{%s}_sf2_meta|a:3:{s:1:\"u\";i:1;s:1:\"c\";i:1;s:1:\"l\";i:0;}", n, entries))
}

func securityEntry(fw, token string) string { return ser("_security_"+fw) + ser(token) }

func TestReaderTokens(t *testing.T) {
	inMemory := objectOf(`Symfony\Component\Security\Core\User\InMemoryUser`,
		ser("\x00Symfony\\Component\\Security\\Core\\User\\User\x00username"), ser("alice"))
	appUser := objectOf(`App\Entity\User`,
		ser("\x00App\\Entity\\User\x00id"), "i:7;",
		ser("\x00*\x00email"), ser("a@example.org"))
	tests := []struct {
		name      string
		token     string
		idProps   []string
		want      *Token
		reason    string
		errIs     error
		reasonHas string
	}{
		{
			name:  "UsernamePasswordToken with InMemoryUser",
			token: uptOf(inMemory, "b:1;", roleList("ROLE_USER", "ROLE_ADMIN")),
			want:  &Token{Class: classUsernamePasswordToken, UserIdentifier: "alice", UserClass: `Symfony\Component\Security\Core\User\InMemoryUser`, Roles: []string{"ROLE_USER", "ROLE_ADMIN"}, Layout: LayoutSerialize},
		},
		{
			name:  "custom user class found by protected email",
			token: uptOf(appUser, "b:1;", roleList("ROLE_USER")),
			want:  &Token{Class: classUsernamePasswordToken, UserIdentifier: "a@example.org", UserClass: `App\Entity\User`, Roles: []string{"ROLE_USER"}, Layout: LayoutSerialize},
		},
		{
			name:    "configured identifier property, integer value",
			token:   uptOf(appUser, "b:1;", roleList()),
			idProps: []string{"id"},
			want:    &Token{Class: classUsernamePasswordToken, UserIdentifier: "7", UserClass: `App\Entity\User`, Roles: []string{}, Layout: LayoutSerialize},
		},
		{
			name:      "user without identifier property",
			token:     uptOf(objectOf(`App\Anon`, ser("x"), "i:1;"), "b:1;", roleList()),
			errIs:     ErrUnsupportedToken,
			reasonHas: `user class App\Anon has none of the identifier properties`,
		},
		{
			name:  "plain string user",
			token: uptOf(ser("bob"), "b:1;", roleList("ROLE_USER")),
			want:  &Token{Class: classUsernamePasswordToken, UserIdentifier: "bob", UserClass: "string", Roles: []string{"ROLE_USER"}, Layout: LayoutSerialize},
		},
		{
			name: "application token class: parent data found by Symfony's append-last rule",
			token: objectOf(`App\Security\ApiToken`, "i:0;", ser("key|123"), "i:1;",
				abstractData(ser("svc"), "b:1;", roleList("ROLE_API"))),
			want: &Token{Class: `App\Security\ApiToken`, UserIdentifier: "svc", UserClass: "string", Roles: []string{"ROLE_API"}, Layout: LayoutSerialize, BestEffort: true},
		},
		{
			name:   "not authenticated",
			token:  uptOf(inMemory, "b:0;", roleList()),
			reason: "token not authenticated",
		},
		{
			name:   "no user",
			token:  uptOf("N;", "b:1;", roleList()),
			reason: "token has no user",
		},
		{
			name:   "AnonymousToken",
			token:  objectOf(classAnonymousToken, "i:0;", ser("secret"), "i:1;", abstractData(ser("anon."), "b:1;", roleList())),
			reason: "AnonymousToken",
		},
		{
			name:   "NullToken",
			token:  objectOf(classNullToken),
			reason: "NullToken",
		},
		{
			name:  "user via object back-reference",
			token: objectOf(`App\Token`, "i:0;", inMemory, "i:1;", abstractData("r:2;", "b:1;", roleList("ROLE_USER"))),
			want:  &Token{Class: `App\Token`, UserIdentifier: "alice", UserClass: `Symfony\Component\Security\Core\User\InMemoryUser`, Roles: []string{"ROLE_USER"}, Layout: LayoutSerialize, BestEffort: true},
		},
		{
			name:  "Role objects (Symfony < 4.3) in roleNames",
			token: uptOf(ser("bob"), "b:1;", "a:1:{i:0;"+objectOf(`Symfony\Component\Security\Core\Role\Role`, ser("\x00Symfony\\Component\\Security\\Core\\Role\\Role\x00role"), ser("ROLE_USER"))+"}"),
			want:  &Token{Class: classUsernamePasswordToken, UserIdentifier: "bob", UserClass: "string", Roles: []string{"ROLE_USER"}, Layout: LayoutSerialize},
		},
		{
			name:      "role of an unexpected kind",
			token:     uptOf(ser("bob"), "b:1;", "a:1:{i:0;i:5;}"),
			errIs:     ErrUnsupportedToken,
			reasonHas: "role 0 is a int",
		},
		{
			name:      "Serializable C: token whose payload is no token data",
			token:     fmt.Sprintf(`C:%d:"%s":6:{a:0:{}}`, len(classUsernamePasswordToken), classUsernamePasswordToken),
			errIs:     ErrUnsupportedToken,
			reasonHas: "no AbstractToken data",
		},
		{
			name:      "Serializable C: token with an opaque payload",
			token:     fmt.Sprintf(`C:%d:"%s":3:{abc}`, len(classUsernamePasswordToken), classUsernamePasswordToken),
			errIs:     ErrUnsupportedToken,
			reasonHas: "payload is not a serialized array",
		},
		{
			name:      "object without AbstractToken data",
			token:     objectOf(`App\Weird`, "i:0;", "i:1;"),
			errIs:     ErrUnsupportedToken,
			reasonHas: "no AbstractToken data",
		},
		{
			name:      "authenticated flag of the wrong type",
			token:     objectOf(`App\Weird`, "i:0;", "a:5:{i:0;N;i:1;i:1;i:2;N;i:3;a:0:{}i:4;a:0:{}}"),
			errIs:     ErrUnsupportedToken,
			reasonHas: "no AbstractToken data",
		},
		{
			name:      "user of an unexpected kind",
			token:     uptOf("i:5;", "b:1;", roleList()),
			errIs:     ErrUnsupportedToken,
			reasonHas: "user is a int",
		},
		{
			name:      "token is a scalar",
			token:     "i:1;",
			errIs:     ErrUnsupportedToken,
			reasonHas: "token is a int",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(Options{Firewalls: []string{"main"}, UserIdentifierProperties: tt.idProps})
			if err != nil {
				t.Fatal(err)
			}
			res, err := r.Read(session(1, securityEntry("main", tt.token)))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			fr := res.Firewalls[0]
			if fr.Firewall != "main" {
				t.Errorf("firewall %q", fr.Firewall)
			}
			if tt.want != nil {
				if !fr.Authenticated || fr.Reason != "" || fr.Err != nil || !reflect.DeepEqual(normalizeResult([]FirewallResult{fr})[0].Token, tt.want) {
					t.Fatalf("got %+v token %+v, want %+v", fr, fr.Token, tt.want)
				}
				return
			}
			if fr.Authenticated || fr.Token != nil {
				t.Fatalf("authenticated: %+v", fr)
			}
			if tt.reason != "" && fr.Reason != tt.reason {
				t.Errorf("reason %q, want %q", fr.Reason, tt.reason)
			}
			if tt.reasonHas != "" && !strings.Contains(fr.Reason, tt.reasonHas) {
				t.Errorf("reason %q does not contain %q", fr.Reason, tt.reasonHas)
			}
			if tt.errIs != nil && !errors.Is(fr.Err, tt.errIs) {
				t.Errorf("err %v, want %v", fr.Err, tt.errIs)
			}
			if tt.errIs == nil && fr.Err != nil {
				t.Errorf("unexpected err %v", fr.Err)
			}
		})
	}
}

func TestReaderSessionShapes(t *testing.T) {
	good := uptOf(ser("bob"), "b:1;", roleList("ROLE_USER"))
	tests := []struct {
		name    string
		data    string
		reasons []string // per firewall main, admin; "" = authenticated
	}{
		{"no attributes bag", `_sf2_meta|a:0:{}`, []string{"no _sf2_attributes", "no _sf2_attributes"}},
		{"empty session", ``, []string{"no _sf2_attributes", "no _sf2_attributes"}},
		{"attributes not an array", `_sf2_attributes|s:1:"x";`, []string{"_sf2_attributes is not an array", "_sf2_attributes is not an array"}},
		{"token not a string", `_sf2_attributes|a:1:{s:14:"_security_main";i:5;}`, []string{"_security_main is not a string but int", "no _security_admin attribute"}},
		{"two firewalls", string(session(2, securityEntry("admin", good)+securityEntry("main", good))), []string{"", ""}},
		{"duplicate bag: last wins", `_sf2_attributes|a:0:{}_sf2_attributes|a:1:{` + securityEntry("main", good) + `}`, []string{"", "no _security_admin attribute"}},
		{"duplicate bag: last wins (empty)", `_sf2_attributes|a:1:{` + securityEntry("main", good) + `}_sf2_attributes|a:0:{}`, []string{"no _security_main attribute", "no _security_admin attribute"}},
		{"duplicate key in bag: last wins", `_sf2_attributes|a:2:{` + securityEntry("main", good) + ser("_security_main") + `N;}`, []string{"_security_main is not a string but null", "no _security_admin attribute"}},
		{"bag reached through R:", `x|a:1:{` + securityEntry("main", good) + `}_sf2_attributes|R:1;`, []string{"", "no _security_admin attribute"}},
		{"token string reached through R:", `_sf2_attributes|a:2:{s:1:"t";` + ser(good) + ser("_security_main") + `R:2;}`, []string{"", "no _security_admin attribute"}},
		{"similar keys are not confused", `_sf2_attributes|a:2:{` + securityEntry("mainx", good) + securityEntry("mai", good) + `}`, []string{"no _security_main attribute", "no _security_admin attribute"}},
	}
	r, err := NewReader(Options{Firewalls: []string{"main", "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := r.Read([]byte(tt.data))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(res.Firewalls) != 2 || res.Firewalls[0].Firewall != "main" || res.Firewalls[1].Firewall != "admin" {
				t.Fatalf("firewalls %+v", res.Firewalls)
			}
			for i, fr := range res.Firewalls {
				if fr.Reason != tt.reasons[i] || fr.Authenticated != (tt.reasons[i] == "") || (fr.Token != nil) != fr.Authenticated {
					t.Errorf("%s: %+v, want reason %q", fr.Firewall, fr, tt.reasons[i])
				}
			}
		})
	}
}

func TestReaderTokenDecodeErrorOffsets(t *testing.T) {
	r, _ := NewReader(Options{Firewalls: []string{"main"}})
	prefix := `_sf2_attributes|a:1:{s:14:"_security_main";s:5:"`
	data := prefix + `i:1;x";}`
	res, err := r.Read([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	fr := res.Firewalls[0]
	if fr.Authenticated || !errors.Is(fr.Err, ErrMalformed) {
		t.Fatalf("%+v", fr)
	}
	var de *DecodeError
	if !errors.As(fr.Err, &de) || de.Offset != len(prefix)+4 {
		t.Fatalf("err %v: want session offset %d", fr.Err, len(prefix)+4)
	}
	if want := fmt.Sprintf("at byte %d (token in _security_main, byte 4 of it)", len(prefix)+4); !strings.Contains(fr.Reason, want) {
		t.Errorf("reason %q does not contain %q", fr.Reason, want)
	}

	// An S: string has no 1:1 offset mapping; the error stays relative.
	res, _ = r.Read([]byte(`_sf2_attributes|a:1:{s:14:"_security_main";S:5:"i:1;x";}`))
	if !errors.As(res.Firewalls[0].Err, &de) || de.Offset != 4 || de.Context != "token in _security_main" {
		t.Errorf("S: token error: %v", res.Firewalls[0].Err)
	}

	// A token within limits for the session but too deep on its own.
	deep := strings.Repeat("a:1:{i:0;", 70) + "N;" + strings.Repeat("}", 70)
	res, _ = r.Read([]byte(`_sf2_attributes|a:1:{s:14:"_security_main";` + ser(deep) + `}`))
	if !errors.Is(res.Firewalls[0].Err, ErrLimit) {
		t.Errorf("deep token: %v", res.Firewalls[0].Err)
	}
}

func TestReaderErrors(t *testing.T) {
	r, _ := NewReader(Options{Firewalls: []string{"main"}, Limits: Limits{MaxInput: 100}})
	if _, err := r.Read(make([]byte, 101)); !errors.Is(err, ErrLimit) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := r.Read([]byte(`_sf2_attributes|a:1:{`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
	if _, err := r.Read([]byte(`_sf2_attributes|a:0:{}garbage`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
}

func TestNewReaderValidation(t *testing.T) {
	bad := []Options{
		{},
		{Firewalls: []string{}},
		{Firewalls: []string{""}},
		{Firewalls: []string{"main", "main"}},
		{Firewalls: []string{"main"}, Format: "wddx"},
		{Firewalls: []string{"main"}, UserIdentifierPropertiesByClass: map[string][]string{`\App\User`: {"id"}}},
		{Firewalls: []string{"main"}, UserIdentifierPropertiesByClass: map[string][]string{`App\User`: {}}},
		{Firewalls: []string{"main"}, Limits: Limits{MaxDepth: -1}},
		{Firewalls: []string{"main"}, UserIdentifierProperties: []string{"username", ""}},
	}
	for _, o := range bad {
		if _, err := NewReader(o); err == nil {
			t.Errorf("NewReader(%+v) accepted", o)
		}
	}
	for _, f := range []Format{"", FormatPHP, FormatPHPBinary, FormatPHPSerialize, FormatIgbinary, FormatAuto} {
		if _, err := NewReader(Options{Format: f, Firewalls: []string{"main"}}); err != nil {
			t.Errorf("NewReader(format %q): %v", f, err)
		}
	}
	// The caller's slice is copied.
	props := []string{"username"}
	r, _ := NewReader(Options{Firewalls: []string{"main"}, UserIdentifierProperties: props})
	props[0] = "nope"
	res, _ := r.Read(session(1, securityEntry("main", uptOf(objectOf("U", ser("username"), ser("u1")), "b:1;", roleList()))))
	if !res.Firewalls[0].Authenticated {
		t.Errorf("identifier property list was not copied: %+v", res.Firewalls[0])
	}
	if got := DefaultUserIdentifierProperties(); !reflect.DeepEqual(got, []string{"userIdentifier", "username", "email"}) {
		t.Errorf("DefaultUserIdentifierProperties() = %v", got)
	}
}

// TestReaderConcurrent shares one Reader between goroutines (run with -race)
// and checks results do not alias the caller's buffer or each other.
func TestReaderConcurrent(t *testing.T) {
	data, err := os.ReadFile("testdata/two_firewalls.sess")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := NewReader(Options{Firewalls: []string{"main", "admin", "api"}})
	want, err := r.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := append([]byte(nil), data...)
			for i := 0; i < 200; i++ {
				got, err := r.Read(buf)
				if err != nil {
					t.Error(err)
					return
				}
				// Scribbling over the input must not change the result.
				for j := range buf {
					buf[j] ^= 0xff
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent result differs: %+v", got)
					return
				}
				for j := range buf {
					buf[j] ^= 0xff
				}
			}
		}()
	}
	wg.Wait()
}

// TestMessagesStayShort checks that input-controlled text is clipped in
// reasons and errors, so a hostile session cannot flood the logs.
func TestMessagesStayShort(t *testing.T) {
	long := strings.Repeat("A", 10000)
	r, _ := NewReader(Options{Firewalls: []string{"main"}})
	res, err := r.Read(session(1, securityEntry("main", uptOf(objectOf(long), "b:1;", roleList()))))
	if err != nil {
		t.Fatal(err)
	}
	if fr := res.Firewalls[0]; fr.Authenticated || len(fr.Reason) > 400 || !strings.Contains(fr.Reason, "(10000 bytes)") {
		t.Errorf("reason of %d bytes: %.200s", len(fr.Reason), fr.Reason)
	}
	_, err = UnserializeString("i:"+strings.Repeat("9", 10000)+";", Limits{})
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("int overflow error of %d bytes", len(err.Error()))
	}
}

// TestReaderNamespacedAttributeBag: NamespacedAttributeBag stores a key
// with '/' as nested arrays ("a/b" at ['a']['b']); _security_<fw> has no
// '/' for ordinary firewall names and is stored flat, which every other
// test covers.
func TestReaderNamespacedAttributeBag(t *testing.T) {
	tok := uptOf(ser("bob"), "b:1;", roleList("ROLE_USER"))
	data := session(1, ser("_security_api")+"a:1:{"+ser("v2")+ser(tok)+"}")
	r, err := NewReader(Options{Firewalls: []string{"api/v2", "main"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	if fr := res.Firewalls[0]; !fr.Authenticated || fr.Token.UserIdentifier != "bob" {
		t.Errorf("api/v2: %+v", fr)
	}
	if fr := res.Firewalls[1]; fr.Authenticated || fr.Reason != "no _security_main attribute" {
		t.Errorf("main: %+v", fr)
	}
}
