package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Request kinds, the "kind" of the JSON body.
const (
	KindCall        = "call"
	KindSubscribe   = "subscribe"
	KindPublish     = "publish"
	KindUnsubscribe = "unsubscribe"
	// KindLeave is one request for a client leaving several topics at
	// once (Upstream.OnUnsubscribeBatch).
	KindLeave = "leave"
)

// DefaultMaxReplyBytes is the reply size limit when Config.MaxReplyBytes is 0.
const DefaultMaxReplyBytes = 1 << 20

// reply is the application's JSON answer. Which fields are allowed depends on
// the request kind (see parseReply); unknown fields are an error.
type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *replyError     `json:"error"`
	Allow  *bool           `json:"allow"`
	Reason string          `json:"reason"`
	Drop   bool            `json:"drop"`
	Event  json.RawMessage `json:"event"`

	hasResult bool // "result" was present, even as null
	hasEvent  bool // "event" was present, even as null
}

// replyError is {"error": {...}}: the CALLERROR the application wants.
type replyError struct {
	URI     string          `json:"uri"`
	Desc    string          `json:"desc"`
	Details json.RawMessage `json:"details"`
	Code    int             `json:"code"`
}

// handlerError turns the application's error into the handler SDK's error.
// Details, when given, are sent verbatim; otherwise the gateway builds the
// bundle-shaped details around Code.
func (e *replyError) handlerError() *handler.Error {
	he := &handler.Error{URI: e.URI, Desc: e.Desc, Code: e.Code}
	if len(e.Details) > 0 && string(e.Details) != "null" {
		he.Details = e.Details
	}
	if he.Desc == "" {
		he.Desc = "upstream error"
	}
	return he
}

// errReplyTooLarge is wrapped by readReply when the body exceeds the limit.
var errReplyTooLarge = errors.New("reply too large")

// readReply reads at most limit bytes of body, failing if there are more.
func readReply(body io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", errReplyTooLarge, limit)
	}
	return b, nil
}

// parseReply decodes and checks a reply for a request of the given kind:
//
//   - call: exactly one of "result" (any JSON, null included) or "error";
//   - subscribe: "allow" (a boolean) with an optional "reason", or "error";
//   - publish: at most one of "drop": true, "event" (any JSON) or "error";
//     {} broadcasts the event as published;
//   - unsubscribe, leave: {} or "error".
//
// The body must be a single JSON object with no other fields and nothing
// after it. Errors describe what is wrong without quoting the body.
func parseReply(kind string, body []byte) (*reply, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty reply body")
	}
	if body[0] != '{' {
		return nil, errors.New("reply is not a JSON object")
	}
	// Presence of "result" and "event" matters even when null, which
	// json.RawMessage cannot tell from absence: look at the keys first.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		return nil, fmt.Errorf("reply is not valid JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r reply
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("malformed reply: %v", err)
	}
	_, r.hasResult = keys["result"]
	_, r.hasEvent = keys["event"]
	if r.hasResult && r.Result == nil {
		r.Result = json.RawMessage("null")
	}
	if r.hasEvent && r.Event == nil {
		r.Event = json.RawMessage("null")
	}
	_, hasError := keys["error"]
	if hasError && r.Error == nil {
		return nil, errors.New(`reply "error" must be an object`)
	}
	_, hasDrop := keys["drop"]
	_, hasReason := keys["reason"]
	allowed := map[string]bool{"error": true}
	switch kind {
	case KindCall:
		allowed["result"] = true
		if hasError == r.hasResult {
			return nil, errors.New(`call reply must have exactly one of "result" or "error"`)
		}
	case KindSubscribe:
		allowed["allow"] = true
		allowed["reason"] = true
		if hasError == (r.Allow != nil) {
			return nil, errors.New(`subscribe reply must have exactly one of "allow" or "error"`)
		}
		if hasError && hasReason {
			return nil, errors.New(`subscribe reply: "reason" goes with "allow", not "error"`)
		}
	case KindPublish:
		allowed["drop"] = true
		allowed["event"] = true
		if hasDrop && !r.Drop {
			return nil, errors.New(`publish reply: "drop" must be true when present`)
		}
		n := 0
		for _, b := range []bool{hasError, hasDrop, r.hasEvent} {
			if b {
				n++
			}
		}
		if n > 1 {
			return nil, errors.New(`publish reply may have only one of "drop", "event" or "error"`)
		}
	case KindUnsubscribe, KindLeave:
	default:
		return nil, fmt.Errorf("unknown request kind %q", kind)
	}
	for k := range keys {
		if !allowed[k] {
			return nil, fmt.Errorf("%s reply: unexpected field %q", kind, k)
		}
	}
	return &r, nil
}
