package gateway

import (
	"strings"
	"testing"
)

// cookieCases are Cookie headers with what PHP 8.2's $_COOKIE["PHPSESSID"]
// holds for them (as a string; ok false: absent or an array), checked
// against php -S by test/cookie_php_test.go.
var cookieCases = []struct {
	header, want string
	ok           bool
}{
	{"PHPSESSID=abc", "abc", true},
	{"a=1; PHPSESSID=abc; b=2", "abc", true},
	{"a=1;PHPSESSID=abc", "abc", true},
	{"PHPSESSID=first; PHPSESSID=second", "first", true},
	{`PHPSESSID="quoted"`, `"quoted"`, true}, // Go unquotes; PHP does not
	{"PHPSESSID=abc ; x=1", "abc ", true},    // nor trims the value
	{"PHPSESSID=abc\t", "abc\t", true},
	{" \tPHPSESSID=tab", "tab", true},
	{"PHPSESSID =abc", "", false}, // the name is PHPSESSID_
	{"PHPSESSID =abc; PHPSESSID=x", "x", true},
	{"XPHPSESSID=abc", "", false},
	{"PHPSESSIDX=abc", "", false},
	{"PHPSESSID", "", true},
	{"", "", false},
	{"PHPSESSID=", "", true},
	{"PHPSESSID=; PHPSESSID=x", "", true},
	{"=x; PHPSESSID=y", "y", true},
	{";;; ;PHPSESSID=x;;", "x", true},
	{"PHPSESSID=a%41b+c", "aAb+c", true}, // rawurldecode: '+' stays
	{"PHPSESSID=%zz%4", "%zz%4", true},
	{"PHP%53ESSID=abc", "", false},    // names are not decoded
	{"a=1, PHPSESSID=abc", "", false}, // ',' separates nothing
	{"a=1,PHPSESSID=abc", "", false},
	{"PHPSESSID=a, b", "a, b", true},
	{"PHPSESSID=a=b", "a=b", true},
	{"PHPSESSID[]=1; PHPSESSID=2", "", false}, // an array
	{"PHPSESSID=1; PHPSESSID[]=2", "", false}, // an array replaces it
	{"PHPSESSID[x]y=1", "", false},
	{"PHPSESSID[=1; PHPSESSID=2", "2", true}, // PHPSESSID_ first
	{"PHPSESSID]=1", "", false},
	{"[x]=1; PHPSESSID=2", "2", true},
	{"PHPSESSID=1; PHPSESSID" + strings.Repeat("[a]", 64) + "=2", "", false},
	{"PHPSESSID=1; PHPSESSID" + strings.Repeat("[a]", 65) + "=2; PHPSESSID=3", "3", true},
	{strings.Repeat("c=1; ", 999) + "PHPSESSID=ok", "ok", true},
	{strings.Repeat("c=1; ", 1000) + "PHPSESSID=ok", "", false},
	{strings.Repeat(" ; =x; ", 1000) + strings.Repeat("c=1; ", 999) + "PHPSESSID=ok", "ok", true},
	{"PHPSESSID=" + strings.Repeat("a", 8000), strings.Repeat("a", 8000), true},
}

func TestCookieValue(t *testing.T) {
	for _, tc := range cookieCases {
		got, ok := SessionCookie("PHPSESSID", tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("SessionCookie(%.60q) = %.60q, %v; want %.60q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
		if ref, rok := phpCookieRef(tc.header, "PHPSESSID"); rok != tc.ok || ref != tc.want {
			t.Errorf("reference model on %.60q = %.60q, %v; want %.60q, %v", tc.header, ref, rok, tc.want, tc.ok)
		}
	}
}

// Names PHP mangles: a configured name can only match what PHP registers.
func TestCookieNameMangling(t *testing.T) {
	for _, tc := range []struct {
		name, header, want string
		ok                 bool
	}{
		{"a_b", "a.b=1", "1", true},
		{"a_b", "a b=1", "1", true},
		{"a.b", "a.b=1", "", false}, // $_COOKIE has a_b: PHP's session never finds a.b
		{"a_b_c", "a[b.c=1", "1", true},
		{"a_b_c", "a[b[c=1", "1", true},
		{"a_", "a[=1", "1", true},
	} {
		got, ok := SessionCookie(tc.name, tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("SessionCookie(%q, %q) = %q, %v; want %q, %v", tc.header, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// Several Cookie lines read as one joined with "; ", as nginx joins them.
func TestCookieLines(t *testing.T) {
	c := newSessionCookie("PHPSESSID")
	c.feed([]byte("a=1"))
	c.feed([]byte("PHPSESSID=first"))
	c.feed([]byte("PHPSESSID=second"))
	if id, ok := c.id(); !ok || id != "first" {
		t.Fatalf("id = %q, %v; want first", id, ok)
	}
	c = newSessionCookie("PHPSESSID")
	c.feed([]byte("PHPSESSID=abc\x00; x=1"))
	c.feed([]byte("PHPSESSID[]=1"))
	if id, ok := c.id(); !ok || id != "abc" {
		t.Fatalf("after a NUL PHP reads no further: id = %q, %v", id, ok)
	}
}

// FuzzCookieValue checks the parser against phpCookieRef, a literal model
// of PHP's C code that builds the whole $_COOKIE, for the session name and
// for the first name in the header; and that splitting a header at a ';'
// into two lines changes nothing.
func FuzzCookieValue(f *testing.F) {
	for _, tc := range cookieCases {
		if len(tc.header) < 200 {
			f.Add(tc.header, "PHPSESSID")
		}
	}
	f.Add("a.b=1; a_b=2", "a_b")
	f.Add("x[y][z]=1; x=2", "x")
	f.Add("  s[ ]=1;s=%41", "s")
	f.Fuzz(func(t *testing.T, header, name string) {
		if name == "" || strings.ContainsAny(name, " .[;=\x00") {
			return // not a name PHP can register (config forbids them too)
		}
		got, ok := SessionCookie(name, header)
		want, wok := phpCookieRef(header, name)
		if ok != wok || got != want {
			t.Fatalf("SessionCookie(%q, %q) = %q, %v; PHP model says %q, %v", header, name, got, ok, want, wok)
		}
		if i := strings.IndexByte(header, ';'); i >= 0 {
			c := newSessionCookie(name)
			c.feed([]byte(header[:i]))
			c.feed([]byte(header[i+1:]))
			if id, iok := c.id(); iok != ok || id != got {
				t.Fatalf("split at ';': %q, %v; whole: %q, %v", id, iok, got, ok)
			}
		}
	})
}

// phpCookieRef models php_default_treat_data(PARSE_COOKIE) and
// php_register_variable_ex of PHP 8.2 step by step, building $_COOKIE as
// nested maps, and returns $_COOKIE[name] when it is a string. It is slow
// and allocates; it is the oracle, not the implementation.
func phpCookieRef(header, name string) (string, bool) {
	if i := strings.IndexByte(header, 0); i >= 0 {
		header = header[:i]
	}
	cookies := map[string]any{}
	count := 0
	for _, tok := range strings.Split(header, ";") {
		tok = strings.TrimLeft(tok, " \t\n\v\f\r")
		if tok == "" || tok[0] == '=' {
			continue
		}
		if count++; count > phpMaxInputVars {
			break
		}
		v, val, _ := strings.Cut(tok, "=")
		registerRef(cookies, v, decodeRef(val))
	}
	s, ok := cookies[name].(string)
	return s, ok
}

func decodeRef(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && len(s)-i >= 3 && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// registerRef is php_register_variable_ex for $_COOKIE.
func registerRef(top map[string]any, v, val string) {
	v = strings.TrimLeft(v, " ")
	var base strings.Builder
	i := 0
	for ; i < len(v) && v[i] != '['; i++ {
		c := v[i]
		if c == ' ' || c == '.' {
			c = '_'
		}
		base.WriteByte(c)
	}
	if base.Len() == 0 {
		return
	}
	if i == len(v) {
		if _, ok := top[base.String()]; !ok {
			top[base.String()] = val
		}
		return
	}
	// Array syntax: walk the levels.
	rest := v[i:] // starts with '['
	table, index := top, base.String()
	for level := 1; ; level++ {
		if level > phpMaxNesting {
			delete(top, base.String())
			return
		}
		inner := rest[1:]
		close := strings.IndexByte(inner, ']')
		if close < 0 {
			if level == 1 {
				// Not an index: the whole name, '[' and all, mangled.
				m := strings.NewReplacer(" ", "_", ".", "_", "[", "_").Replace(inner)
				key := base.String() + "_" + m
				if _, ok := top[key]; !ok {
					top[key] = val
				}
				return
			}
			// Deeper: the previous index takes the value.
			if _, ok := table[index]; !ok {
				table[index] = val
			}
			return
		}
		sub, ok := table[index].(map[string]any)
		if !ok {
			sub = map[string]any{}
			table[index] = sub
		}
		table, index = sub, strings.TrimLeft(inner[:close], " ")
		rest = inner[close+1:]
		if rest == "" || rest[0] != '[' {
			table[index] = val // last level: plain_var in the sub-array
			return
		}
	}
}
