package config

import (
	"errors"
	"net/url"
	"strings"
)

// originPattern is one entry of origins.allowed.
type originPattern struct {
	scheme   string // "" matches http and https
	host     string // lower case host[:port], without the "*." of a wildcard
	wildcard bool   // host is a suffix: "*.example.com" matches "a.example.com"
}

// parseOriginPattern accepts "https://app.example.com", "app.example.com"
// (any scheme, as Ratchet's OriginCheck compares hosts only, so bundle
// configs carry over), "*.example.com" and "https://*.example.com".
func parseOriginPattern(s string) (originPattern, error) {
	var p originPattern
	rest := strings.ToLower(strings.TrimSpace(s))
	if scheme, after, ok := strings.Cut(rest, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return p, errors.New("scheme must be http or https")
		}
		p.scheme, rest = scheme, after
	}
	if strings.HasPrefix(rest, "*.") {
		p.wildcard, rest = true, rest[2:]
	}
	if rest == "" || strings.ContainsAny(rest, "/*?#@ ") {
		return p, errors.New(`want an origin like "https://app.example.com", a host, or "*.example.com"`)
	}
	p.host = rest
	return p, nil
}

func (p originPattern) match(scheme, host string) bool {
	if p.scheme != "" && p.scheme != scheme {
		return false
	}
	if !strings.Contains(p.host, ":") {
		host = hostOnly(host) // a pattern without a port allows any port
	}
	if p.wildcard {
		return strings.HasSuffix(host, "."+p.host)
	}
	return host == p.host
}

func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}

// OriginPolicy decides whether a browser Origin may open a websocket. It
// is the compiled origins: section, kept here beside the pattern syntax
// that Validate checks, so that what is accepted and what it means cannot
// part.
type OriginPolicy struct {
	allowAny bool
	patterns []originPattern
}

// NewOriginPolicy compiles the origins configuration.
func NewOriginPolicy(c OriginsConfig) (*OriginPolicy, error) {
	p := &OriginPolicy{allowAny: c.AllowAny}
	for _, s := range c.Allowed {
		op, err := parseOriginPattern(s)
		if err != nil {
			return nil, &Error{Key: "origins.allowed", Value: s, Reason: err.Error()}
		}
		p.patterns = append(p.patterns, op)
	}
	return p, nil
}

// Allowed reports whether a handshake with this Origin header (empty when
// absent) to this Host header may proceed. Without an Origin the client is
// not a browser and carries no ambient cookie, so there is nothing to
// protect; with one, it must be the gateway's own host or be allowed.
func (p *OriginPolicy) Allowed(origin, host string) bool {
	if origin == "" || p.allowAny {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" and other opaque origins
	}
	oh := strings.ToLower(u.Host)
	if strings.EqualFold(oh, host) || strings.EqualFold(hostOnly(oh), hostOnly(host)) && sameDefaultPort(u.Scheme, oh, host) {
		return true
	}
	for _, pat := range p.patterns {
		if pat.match(u.Scheme, oh) {
			return true
		}
	}
	return false
}

// sameDefaultPort treats "https://h" and Host "h:443" as the same origin.
func sameDefaultPort(scheme, originHost, reqHost string) bool {
	port := func(h, def string) string {
		if hostOnly(h) != h {
			return h[len(hostOnly(h))+1:]
		}
		return def
	}
	def := "80"
	if scheme == "https" {
		def = "443"
	}
	return port(originHost, def) == port(reqHost, def)
}
