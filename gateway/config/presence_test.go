package config

import "testing"

// A topic route's presence option is read from YAML (and absent means
// off).
func TestRoutePresenceParse(t *testing.T) {
	c, err := Parse([]byte("routes:\n  topics:\n    t: {pattern: \"p/{x}\", handler: h, presence: true}\n    u: {pattern: \"u/{x}\", handler: h}\n"), "t.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Routes.Topics["t"].Presence || c.Routes.Topics["u"].Presence {
		t.Errorf("presence t=%v u=%v, want true false", c.Routes.Topics["t"].Presence, c.Routes.Topics["u"].Presence)
	}
	if _, err := Parse([]byte("routes:\n  topics:\n    t: {pattern: \"p/{x}\", handler: h, presence: maybe}\n"), "t.yaml", nil); err == nil {
		t.Error("presence: maybe accepted")
	}
}
