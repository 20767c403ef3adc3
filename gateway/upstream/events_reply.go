package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// parseConnectReply decodes and checks the application's answer to a
// connect event (already cut to the reply size limit by readReply):
//
//	{"accept": true}
//	{"accept": true, "extra": {…} | null}
//	{"accept": false}
//	{"accept": false, "status": 400–599, "reason": "…"}
//
// The body must be one JSON object of valid UTF-8, nothing after it, with a
// boolean "accept", no other fields than these, none twice (encoding/json
// would silently keep the last of duplicate keys and match names without
// regard to case; a reply that the application and the gateway could read
// differently is refused). "extra" must be an object of at most maxExtra
// bytes once compacted. Errors say what is wrong without quoting the body
// beyond a shortened field name.
//
// A refusal's reason is cleaned rather than refused (control characters
// become spaces, it is cut at MaxRejectReasonBytes): failing the reply would
// let OnConnectErrorAccept admit a client the application meant to refuse.
func parseConnectReply(body []byte, maxExtra int) (ConnectDecision, error) {
	body = bytes.Trim(body, " \t\r\n") // JSON whitespace only
	if len(body) == 0 {
		return ConnectDecision{}, errors.New("empty reply body")
	}
	if body[0] != '{' {
		return ConnectDecision{}, errors.New("reply is not a JSON object")
	}
	if !utf8.Valid(body) {
		return ConnectDecision{}, errors.New("reply is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return ConnectDecision{}, fmt.Errorf("malformed reply: %v", err)
	}
	var (
		accept, hasStatus, hasReason, hasExtra bool
		hasAccept                              bool
		d                                      ConnectDecision
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ConnectDecision{}, fmt.Errorf("malformed reply: %v", err)
		}
		key, ok := tok.(string)
		if !ok { // cannot happen inside an object, but never trust
			return ConnectDecision{}, errors.New("malformed reply: object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return ConnectDecision{}, fmt.Errorf("malformed reply: %v", err)
		}
		var seen *bool
		switch key {
		case "accept":
			seen = &hasAccept
		case "status":
			seen = &hasStatus
		case "reason":
			seen = &hasReason
		case "extra":
			seen = &hasExtra
		default:
			return ConnectDecision{}, fmt.Errorf("unexpected field %s", quoteField(key))
		}
		if *seen {
			return ConnectDecision{}, fmt.Errorf("duplicate field %q", key)
		}
		*seen = true
		isNull := string(raw) == "null"
		switch key {
		case "accept":
			if isNull || json.Unmarshal(raw, &accept) != nil {
				return ConnectDecision{}, errors.New(`"accept" must be true or false`)
			}
		case "status":
			if isNull || json.Unmarshal(raw, &d.Status) != nil || d.Status < 400 || d.Status > 599 {
				return ConnectDecision{}, errors.New(`"status" must be an integer from 400 to 599`)
			}
		case "reason":
			if isNull || json.Unmarshal(raw, &d.Reason) != nil {
				return ConnectDecision{}, errors.New(`"reason" must be a string`)
			}
		case "extra":
			if isNull {
				continue
			}
			if raw[0] != '{' {
				return ConnectDecision{}, errors.New(`"extra" must be a JSON object or null`)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return ConnectDecision{}, fmt.Errorf(`"extra": %v`, err)
			}
			if buf.Len() > maxExtra {
				return ConnectDecision{}, fmt.Errorf(`"extra" is %d bytes, more than %d`, buf.Len(), maxExtra)
			}
			d.Extra = json.RawMessage(buf.Bytes())
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return ConnectDecision{}, fmt.Errorf("malformed reply: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ConnectDecision{}, errors.New("data after the reply object")
	}
	if !hasAccept {
		return ConnectDecision{}, errors.New(`reply has no "accept"`)
	}
	if accept {
		if hasStatus || hasReason {
			return ConnectDecision{}, errors.New(`"status" and "reason" go with "accept": false`)
		}
		return ConnectDecision{Extra: d.Extra}, nil
	}
	if hasExtra {
		return ConnectDecision{}, errors.New(`"extra" goes with "accept": true`)
	}
	if d.Status == 0 {
		d.Status = 403
	}
	d.Reject = true
	d.Reason = cleanReason(d.Reason)
	return d, nil
}

// cleanReason makes a refusal's reason safe for a log line and the refused
// handshake's body: control characters become spaces, and it is cut at
// MaxRejectReasonBytes on a character boundary.
func cleanReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxRejectReasonBytes {
		cut := MaxRejectReasonBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

// quoteField quotes an unexpected field name for an error, shortened: it
// comes from the reply.
func quoteField(k string) string {
	if len(k) > 40 {
		k = strings.ToValidUTF8(k[:40], "") + "…"
	}
	return strconv.Quote(k)
}
