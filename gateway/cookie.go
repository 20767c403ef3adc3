package gateway

import "bytes"

// PHP's request parsing bounds at their php.ini defaults: they decide which
// cookies $_COOKIE holds at all, so the session cookie the gateway picks
// must be bounded the same way.
const (
	// phpMaxInputVars is max_input_vars: PHP stops reading the Cookie
	// header after this many cookies (empty names aside).
	phpMaxInputVars = 1000
	// phpMaxNesting is max_input_nesting_level: a cookie name with more
	// [..] levels removes the whole variable from $_COOKIE.
	phpMaxNesting = 64
)

// sessionCookie finds the session id in a request's Cookie headers exactly
// as PHP does (main/php_variables.c, php_default_treat_data for
// PARSE_COOKIE and php_register_variable_ex): the id is $_COOKIE[name]
// when that is a string, or there is none. What Go's net/http would
// accept is beside the point: an id PHP never sees is a session PHP never
// resumed, and resolving it would name a user the app does not.
//
// PHP's rules, which RFC 6265 parsers (Go's among them) do not share:
//   - only ';' separates cookies; a ',' is part of the value;
//   - leading whitespace (C isspace) of a name is skipped, nothing else
//     is trimmed: "abc " and "\"abc\"" are the values, spaces and quotes
//     included (so an id PHP's session module would reject);
//   - names are not url-decoded; ' ' and '.' in a name become '_', and a
//     '[' opens an array ("PHPSESSID[]=x" makes $_COOKIE[name] an array,
//     replacing a string; a '[' without ']' becomes '_');
//   - values are rawurldecode()d ("%41" is "A", '+' stays);
//   - the first cookie of a name wins;
//   - after phpMaxInputVars cookies the rest are ignored, and a name
//     nested deeper than phpMaxNesting levels deletes the variable;
//   - the header is a C string: it ends at a NUL byte.
//
// A request with several Cookie header lines is read as one header joined
// with "; " (what nginx hands PHP-FPM; browsers send one line, RFC 6265
// §5.4): feed each line in order. The zero value is not ready: use
// newSessionCookie.
type sessionCookie struct {
	name  string
	count int    // cookies PHP counted against max_input_vars
	state int    // cookieAbsent, cookieString or cookieArray
	value string // the decoded value while state is cookieString
	done  bool   // max_input_vars reached or a NUL seen: PHP stopped reading
}

// The states of $_COOKIE[name].
const (
	cookieAbsent = iota
	cookieString
	cookieArray
)

func newSessionCookie(name string) sessionCookie { return sessionCookie{name: name} }

// feed reads one Cookie header line. header may be reused by the caller
// after the call: the value kept is a copy.
func (c *sessionCookie) feed(header []byte) {
	if c.done {
		return
	}
	if i := bytes.IndexByte(header, 0); i >= 0 {
		header, c.done = header[:i], true
	}
	for len(header) > 0 {
		var tok []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			tok, header = header[:i], header[i+1:]
		} else {
			tok, header = header, nil
		}
		for len(tok) > 0 && isCSpace(tok[0]) {
			tok = tok[1:]
		}
		if len(tok) == 0 || tok[0] == '=' {
			continue // not counted: PHP skips these before counting
		}
		if c.count++; c.count > phpMaxInputVars {
			c.done = true
			return
		}
		name, value, _ := bytes.Cut(tok, []byte("="))
		switch phpCookieName(name, c.name) {
		case nameString:
			if c.state == cookieAbsent { // the first one wins
				c.state = cookieString
				c.value = decodeCookieValue(value)
			}
		case nameArray:
			c.state, c.value = cookieArray, ""
		case nameDeleted:
			c.state, c.value = cookieAbsent, ""
		}
	}
}

// id returns the session id PHP reads, or false when $_COOKIE[name] is
// not a string.
func (c *sessionCookie) id() (string, bool) {
	if c.state != cookieString {
		return "", false
	}
	return c.value, true
}

// isCSpace is C's isspace in the "C" locale.
func isCSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}

// What registering a cookie named raw does to $_COOKIE[want].
const (
	nameOther   = iota // another variable
	nameString         // sets it to the value, unless it exists
	nameArray          // makes it an array (replacing a string)
	nameDeleted        // removes it (nesting deeper than phpMaxNesting)
)

// phpCookieName tells what PHP's php_register_variable_ex does with a
// cookie named raw as far as the variable want is concerned, without
// allocating: the name is mangled (leading spaces dropped, ' ' and '.'
// to '_') up to its first '['; a '[' with a ']' after it makes an array
// of the part before, one without makes it '_' and the rest of the name
// mangled alike ('[' too).
func phpCookieName(raw []byte, want string) int {
	for len(raw) > 0 && raw[0] == ' ' {
		raw = raw[1:]
	}
	br := bytes.IndexByte(raw, '[')
	if br < 0 {
		if mangledEqual(raw, want, false) {
			return nameString
		}
		return nameOther
	}
	if br == 0 {
		return nameOther // an empty variable name is dropped
	}
	base, rest := raw[:br], raw[br+1:]
	close := bytes.IndexByte(rest, ']')
	if close < 0 {
		// Not an index: the '[' becomes '_' and the rest is mangled.
		if len(want) == br+1+len(rest) && mangledEqual(base, want[:br], false) &&
			want[br] == '_' && mangledEqual(rest, want[br+1:], true) {
			return nameString
		}
		return nameOther
	}
	if !mangledEqual(base, want, false) {
		return nameOther
	}
	// An array. Each further "[" right after a "]" is one more level;
	// PHP deletes the variable on entering level phpMaxNesting+1.
	level := 1
	rest = rest[close+1:]
	for len(rest) > 0 && rest[0] == '[' {
		if level++; level > phpMaxNesting {
			return nameDeleted
		}
		close = bytes.IndexByte(rest[1:], ']')
		if close < 0 {
			break // a '[' without ']' deeper down: still an array
		}
		rest = rest[1+close+1:]
	}
	return nameArray
}

// mangledEqual reports whether raw, with ' ' and '.' (and '[' when
// brackets) replaced by '_', equals want.
func mangledEqual(raw []byte, want string, brackets bool) bool {
	if len(raw) != len(want) {
		return false
	}
	for i, b := range raw {
		if b == ' ' || b == '.' || brackets && b == '[' {
			b = '_'
		}
		if b != want[i] {
			return false
		}
	}
	return true
}

// decodeCookieValue is PHP's php_raw_url_decode (rawurldecode): %XX with
// two hex digits is that byte, anything else, '+' included, is itself.
func decodeCookieValue(s []byte) string {
	if bytes.IndexByte(s, '%') < 0 {
		return string(s)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

func unhex(b byte) byte {
	switch {
	case b <= '9':
		return b - '0'
	case b <= 'F':
		return b - 'A' + 10
	default:
		return b - 'a' + 10
	}
}

// SessionCookie is the session id a handshake reads from its Cookie
// header lines for the session cookie name: PHP's $_COOKIE[name] when that
// is a string (see sessionCookie). test/cookie_php_test.go checks it
// against PHP itself.
func SessionCookie(name string, lines ...string) (string, bool) {
	c := newSessionCookie(name)
	for _, l := range lines {
		c.feed([]byte(l))
	}
	return c.id()
}
