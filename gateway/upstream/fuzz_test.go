package upstream

import (
	"encoding/json"
	"testing"
)

// FuzzParseReply checks that parseReply never panics and that what it
// accepts satisfies the rules the handlers rely on.
func FuzzParseReply(f *testing.F) {
	kinds := []string{KindCall, KindSubscribe, KindPublish, KindUnsubscribe, KindLeave}
	seeds := []string{
		`{"result": 6}`, `{"result": null}`, `{"result": {"a": [1, 2]}}`,
		`{"error": {"uri": "app.error.auth", "desc": "no", "code": 403, "details": {"x": 1}}}`,
		`{"error": null}`, `{"error": 1}`,
		`{"allow": true}`, `{"allow": false, "reason": "private"}`, `{"allow": "yes"}`,
		`{}`, `{"drop": true}`, `{"drop": false}`, `{"event": {"text": "hi", "by": "a"}}`, `{"event": null}`,
		`{"drop": true, "event": 1}`, `{"Result": 1}`, `{"result": 1, "result": 2}`,
		`[]`, `null`, ``, `{"result": 1} x`, "{\"result\": \"\xff\"}", ` {"result":1} `,
		// leave: {} or an error, nothing else
		`{"error": {"uri": "app.error.gone", "desc": "left already"}}`, `{"reason": "x"}`, `{"topics": []}`,
	}
	for _, s := range seeds { // every seed for every kind
		for k := range kinds {
			f.Add(uint8(k), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		kind := kinds[int(k)%len(kinds)]
		r, err := parseReply(kind, body)
		if err != nil {
			if r != nil {
				t.Fatal("reply and error")
			}
			return
		}
		if r.Error != nil {
			he := r.Error.handlerError()
			if he.Desc == "" {
				t.Fatal("empty error description")
			}
			if he.Details != nil {
				if _, err := json.Marshal(he.Details); err != nil {
					t.Fatalf("details not encodable: %v", err)
				}
			}
			return
		}
		switch kind {
		case KindUnsubscribe, KindLeave:
			if r.hasResult || r.hasEvent || r.Allow != nil || r.Drop || r.Reason != "" {
				t.Fatalf("%s reply with fields: %+v", kind, r)
			}
		case KindCall:
			if !r.hasResult || !json.Valid(r.Result) {
				t.Fatalf("call reply without a valid result: %q", r.Result)
			}
		case KindSubscribe:
			if r.Allow == nil {
				t.Fatal("subscribe reply without allow")
			}
		case KindPublish:
			if r.Drop && r.hasEvent {
				t.Fatal("drop and event")
			}
			if r.hasEvent && !json.Valid(r.Event) {
				t.Fatalf("invalid event %q", r.Event)
			}
		}
	})
}
