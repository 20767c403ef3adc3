package upstream

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzConnectReply checks that parseConnectReply never panics, keeps its
// errors short, and that every decision it returns satisfies what the
// gateway relies on. Seeds are here and in testdata/fuzz/FuzzConnectReply.
func FuzzConnectReply(f *testing.F) {
	for _, s := range []string{
		`{"accept": true}`, `{"accept": true, "extra": {"plan": "gold", "greeting": "hello alice"}}`,
		`{"accept": true, "extra": null}`, `{"accept": false}`,
		`{"accept": false, "status": 403, "reason": "banned"}`, `{"accept": false, "status": 599}`,
		`{"accept": false, "status": 200}`, `{"accept": false, "reason": "a\nb\u0000\u2028c"}`,
		`{"accept": "true"}`, `{"accept": null}`, `{"Accept": true}`, `{"accept": true, "accept": false}`,
		`{"accept": true, "extra": []}`, `{"accept": true, "extra": {"a": {"b": [1, 2, {"c": null}]}}}`,
		`{"accept": true} trailing`, `{"accept": true}{"accept": false}`, `{"accept": tru`,
		`{}`, `[]`, `null`, ``, `   `, "{\"accept\": false, \"reason\": \"\xff\"}",
		`{"accept": false, "status": 4e2}`, `{"accept": false, "status": -403}`,
		`{"accept": false, "status": 99999999999999999999}`, `{"accept": true, "extra": {"k": 1e999}}`,
		`{"accept": true, "extra": {"s": "\ud800"}}`, `{"accept":false,"reason":"` + strings.Repeat("é", 110) + `"}`,
	} {
		f.Add([]byte(s))
	}
	const maxExtra = 32 // small, so inputs over it stay short to minimise
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := parseConnectReply(body, maxExtra)
		if err != nil {
			if d.Reject || d.Status != 0 || d.Reason != "" || d.Extra != nil {
				t.Fatalf("decision %+v with error %v", d, err)
			}
			// Errors quote at most a shortened field name.
			if len(err.Error()) > 200 || !utf8.ValidString(err.Error()) {
				t.Fatalf("error of %d bytes: %q", len(err.Error()), err)
			}
			return
		}
		if d.Reject {
			if d.Status < 400 || d.Status > 599 || d.Extra != nil {
				t.Fatalf("refusal %+v", d)
			}
			if len(d.Reason) > MaxRejectReasonBytes || !utf8.ValidString(d.Reason) {
				t.Fatalf("reason %q", d.Reason)
			}
			for _, r := range d.Reason {
				if unicode.IsControl(r) {
					t.Fatalf("control character in reason %q", d.Reason)
				}
			}
			return
		}
		if d.Status != 0 || d.Reason != "" {
			t.Fatalf("acceptance %+v", d)
		}
		if d.Extra != nil {
			if len(d.Extra) > maxExtra || d.Extra[0] != '{' || !json.Valid(d.Extra) || !utf8.Valid(d.Extra) {
				t.Fatalf("extra %q", d.Extra)
			}
			// Extra is echoed in the disconnect event: it must encode.
			if _, err := encodeEvent(EventDisconnect, ConnEvent{Extra: d.Extra}); err != nil {
				t.Fatalf("extra %q does not encode: %v", d.Extra, err)
			}
			var buf bytes.Buffer
			if json.Compact(&buf, d.Extra) != nil || !bytes.Equal(buf.Bytes(), d.Extra) {
				t.Fatalf("extra not compact: %q", d.Extra)
			}
		}
	})
}
