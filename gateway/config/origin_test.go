package config

import "testing"

func TestOriginPolicy(t *testing.T) {
	p, err := NewOriginPolicy(OriginsConfig{Allowed: []string{
		"https://app.example.com", "*.example.net", "https://*.secure.example.org", "localhost", "http://dev.local:8000",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin, host string
		want         bool
	}{
		{"", "gw.example.com", true},                                 // not a browser
		{"https://gw.example.com", "gw.example.com", true},           // same origin
		{"https://gw.example.com", "gw.example.com:443", true},       // default port
		{"http://gw.example.com:8080", "gw.example.com:8080", true},  // same origin with port
		{"http://gw.example.com:8081", "gw.example.com:8080", false}, // other port is another origin
		{"https://app.example.com", "gw.example.com", true},          // exact
		{"http://app.example.com", "gw.example.com", false},          // exact includes scheme
		{"https://a.example.net", "gw", true},                        // wildcard, any scheme
		{"http://a.b.example.net:3000", "gw", true},                  // wildcard, any port
		{"https://example.net", "gw", false},                         // wildcard is subdomains only
		{"https://evilexample.net", "gw", false},                     // not a subdomain
		{"https://x.secure.example.org", "gw", true},                 // scheme wildcard
		{"http://x.secure.example.org", "gw", false},                 // wrong scheme
		{"http://localhost:5173", "gw", true},                        // bare host as in the bundle
		{"http://dev.local:8000", "gw", true},                        // host with port
		{"http://dev.local:9000", "gw", false},                       // other port
		{"null", "gw", false},                                        // opaque origin
		{"file://", "gw", false},                                     // not http
		{"https://evil.example.org", "gw.example.com", false},        // foreign
		{"https://APP.example.com", "gw.example.com", true},          // case-insensitive host
	} {
		if got := p.Allowed(tc.origin, tc.host); got != tc.want {
			t.Errorf("Allowed(%q, %q) = %v, want %v", tc.origin, tc.host, got, tc.want)
		}
	}
	any, _ := NewOriginPolicy(OriginsConfig{AllowAny: true})
	if !any.Allowed("https://evil.example.org", "gw") {
		t.Error("allow_any refused an origin")
	}
}
