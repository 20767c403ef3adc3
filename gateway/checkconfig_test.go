package gateway

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/gateway/config"
)

// upstreams.<name>.routes must name routes that use that upstream: a
// misspelt route would otherwise silently keep the upstream's limits.
func TestUpstreamRouteLimitsConfig(t *testing.T) {
	base := `
upstreams:
  app: {url: "http://127.0.0.1:1/", secret: 0123456789abcdef, routes: {%s}}
  other: {url: "http://127.0.0.1:1/", secret: 0123456789abcdef}
routes:
  rpc:
    report: {pattern: "app/report", handler: upstream.app}
    misc: {pattern: "misc/{method}", handler: upstream.other}
  topics:
    chat: {pattern: "chat/{room}", handler: upstream.app}
`
	for _, tc := range []struct {
		routes   string
		key, val string // "" when it is accepted
		inMsg    string
	}{
		{"report: {timeout: 30s, max_concurrent: 2}, chat: {max_concurrent: 8}", "", "", ""},
		{"reprot: {timeout: 30s}", "upstreams.app.routes", "reprot", "names no route"},
		{"misc: {timeout: 30s}", "upstreams.app.routes", "misc", "upstream.app"},
		{"report: {max_concurrent: -1}", "upstreams.app.routes.report.max_concurrent", "-1", "must not be negative"},
		{"report: {timeout: -3s}", "upstreams.app.routes.report.timeout", "-3s", "must not be negative"},
	} {
		cfg, err := config.Parse([]byte(fmt.Sprintf(base, tc.routes)), "test.yaml", nil)
		if err == nil {
			err = CheckConfig(cfg, nil)
		}
		if tc.key == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.routes, err)
			}
			continue
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || ce.Value != tc.val || !strings.Contains(err.Error(), tc.inMsg) {
			t.Errorf("%s: got %v, want key %q value %q mentioning %q", tc.routes, err, tc.key, tc.val, tc.inMsg)
		}
	}
}

// A field gateway/upstream rejects comes back under its section's key,
// with the value, never the secret.
func TestUpstreamFieldErrorsNested(t *testing.T) {
	for _, tc := range []struct {
		yaml, key, val, inMsg string
	}{
		{`{url: "ftp://app/", secret: 0123456789abcdef}`, "upstreams.app.url", "ftp://app/", `got "ftp"`},
		{`{url: "http://app/", secret: short-secret}`, "upstreams.app.secret", "", "is 12 bytes, want at least 16"},
		{`{url: "http://app/", secret: 0123456789abcdef, timeout: -1s}`, "upstreams.app.timeout", "-1s", "must not be negative"},
		{`{url: "http://app/", secret: 0123456789abcdef, forward_headers: [Host]}`, "upstreams.app.forward_headers", "", "cannot be forwarded"},
	} {
		cfg, err := config.Parse([]byte("upstreams: {app: "+tc.yaml+"}\n"), "test.yaml", nil)
		if err == nil {
			err = CheckConfig(cfg, nil)
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key || ce.Value != tc.val || !strings.Contains(ce.Reason, tc.inMsg) || strings.Contains(err.Error(), "short-secret") {
			t.Errorf("%s: got %v, want key %q value %q mentioning %q", tc.yaml, err, tc.key, tc.val, tc.inMsg)
		}
	}
	getenv := func(string) string { return "too-short" }
	_, err := newEvents(config.EventsConfig{URL: "http://app/", SecretEnv: "S", Connect: true}, getenv, nil, nil)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "events.secret" || strings.Contains(err.Error(), "too-short") {
		t.Errorf("short events secret: got %v, want key events.secret", err)
	}
}
