package upstream

// The request signature, scheme v2. Every request the gateway sends to the
// application (upstream calls, subscribes, publishes, unsubscribes, leaves,
// and connection events) carries
//
//	X-Wsgate-Timestamp:      <Unix seconds>
//	X-Wsgate-Request-Id:     <32 lower-case hex digits: 128 random bits, new for every request>
//	X-Wsgate-Signed-Headers: <forwarded header names, lower case, sorted, joined by ",">
//	X-Wsgate-Signature:      v2=<lower-case hex HMAC-SHA256(secret, string to sign)>
//
// where the string to sign is
//
//	"wsgate-v2" LF
//	<timestamp> LF
//	<request id> LF
//	<signed headers, exactly as in X-Wsgate-Signed-Headers> LF
//	<name> ":" <value> LF     one line per name of the list, in its order
//	<raw body>
//
// Signed-Headers lists every configured forward header, whether or not the
// client sent it: a header the client did not send is signed with the empty
// value, so one added on the way breaks the signature, as does one dropped,
// changed, repeated or renamed. A value is the header's field value without
// leading and trailing spaces and tabs. Nothing before the body can contain
// an LF (digits, hex, header names, header field values), and the number of
// header lines is fixed by the list, so the string is unambiguous.
//
// v2 replaces v1 ("v1=" + HMAC(secret, timestamp + "." + body)), which
// covered neither the forwarded headers nor a request id. The gateway sends
// v2 only: an application that still checks v1 refuses every request (401),
// loudly, instead of silently accepting forged headers and replays. Upgrade
// the application first (accept either while gateways are mixed), then the
// gateways, then drop v1 from the application.
//
// The signature proves the request came from the gateway unchanged; it
// says nothing about where the forwarded values came from. They are what
// the websocket client sent in its handshake, unless a trusted proxy in
// front of the gateway sets them and strips the client's own copies. The
// caller's identity is the "caller" of the body, which the gateway read
// from the PHP session.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header names of the signature scheme.
const (
	// HeaderTimestamp carries the request time in Unix seconds.
	HeaderTimestamp = "X-Wsgate-Timestamp"
	// HeaderRequestID carries the request's id: 32 lower-case hex digits
	// (128 random bits), new for every request. An application refuses a
	// second request with an id it has already accepted within the replay
	// window.
	HeaderRequestID = "X-Wsgate-Request-Id"
	// HeaderSignedHeaders lists, lower case, sorted and joined by ",", the
	// forwarded handshake headers the signature covers ("" for none).
	HeaderSignedHeaders = "X-Wsgate-Signed-Headers"
	// HeaderSignature carries "v2=" and the lower-case hex HMAC-SHA256,
	// keyed with the shared secret, of the string to sign (package
	// documentation of sign.go, or examples/php-upstream/README.md).
	HeaderSignature = "X-Wsgate-Signature"
)

// DefaultReplayWindow is how far from its own clock an application should
// accept a request's timestamp (either way), the guidance of the scheme:
// older requests are refused so that a captured request cannot be replayed
// later, and the request ids seen within the window are remembered so that
// it cannot be replayed sooner either. Keep the gateway and application
// clocks synchronised (NTP).
const DefaultReplayWindow = 300 * time.Second

// MaxSignedHeaders bounds the names in X-Wsgate-Signed-Headers: New and
// NewEvents refuse more forward headers, VerifyRequest refuses a longer list.
const MaxSignedHeaders = 32

// maxSignatureEntries bounds the comma-separated "vN=..." entries of
// X-Wsgate-Signature the verifier looks at.
const maxSignatureEntries = 8

const (
	sigV2Prefix  = "v2="
	stringTagV2  = "wsgate-v2\n"
	requestIDLen = 32 // hex digits
)

// Errors of VerifyRequest, one per reason a request is refused.
var (
	ErrBadTimestamp = errors.New("upstream: missing or malformed " + HeaderTimestamp)
	ErrStale        = errors.New("upstream: request timestamp outside the replay window")
	ErrBadRequestID = errors.New("upstream: missing or malformed " + HeaderRequestID)
	// ErrBadSignedHeaders: the list is not lower-case header names joined
	// by ",", holds a name twice or more than MaxSignedHeaders names.
	ErrBadSignedHeaders = errors.New("upstream: malformed " + HeaderSignedHeaders)
	// ErrNoSignature: X-Wsgate-Signature is missing, malformed or has no
	// v2 entry (a gateway older than the v2 scheme sends v1 only).
	ErrNoSignature = errors.New("upstream: no valid v2 signature in " + HeaderSignature)
	// ErrBadSignature: the signature does not match: another secret, or
	// the body, a signed header, the timestamp, the id or the list changed
	// on the way.
	ErrBadSignature = errors.New("upstream: signature mismatch")
)

// signer signs the requests of one Upstream or Events: one secret and one
// list of forwarded headers. It is immutable after newSigner.
type signer struct {
	secret []byte
	// forward are the canonical header names (Cookie), in the order of
	// lower; lower are the same names lower-cased and sorted, the signed
	// list, and list is lower joined by ",".
	forward []string
	lower   []string
	list    string
}

// newSigner checks names (ForwardHeaders: valid, forwardable, at most
// MaxSignedHeaders once de-duplicated) and builds the signer.
func newSigner(secret []byte, names []string) (*signer, error) {
	canon, err := canonForwardHeaders(names)
	if err != nil {
		return nil, err
	}
	if len(canon) > MaxSignedHeaders {
		return nil, fmt.Errorf("%d headers, at most %d can be forwarded", len(canon), MaxSignedHeaders)
	}
	slices.SortFunc(canon, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	s := &signer{secret: append([]byte(nil), secret...), forward: canon}
	for _, n := range canon {
		s.lower = append(s.lower, strings.ToLower(n))
	}
	s.list = strings.Join(s.lower, ",")
	return s, nil
}

// sign copies the forwarded headers from src (nil: none) onto h, then sets
// the timestamp, a fresh request id, the signed list and the signature of
// body at now. It returns the request id. A value src reports that is not
// a valid header field value (control characters) is neither sent nor
// signed, as if absent, so the request still goes out.
func (s *signer) sign(h http.Header, src HeaderSource, now time.Time, body []byte) string {
	values := make([]string, len(s.forward))
	for i, name := range s.forward {
		h.Del(name)
		if src == nil {
			continue
		}
		if v, ok := fieldValue(src.HandshakeHeader(name)); ok && v != "" {
			h.Set(name, v)
			values[i] = v
		}
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	id := newRequestID()
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderRequestID, id)
	h.Set(HeaderSignedHeaders, s.list)
	h.Set(HeaderSignature, sigV2Prefix+hex.EncodeToString(macV2(s.secret, ts, id, s.list, s.lower, values, body)))
	return id
}

// newRequestID returns 128 random bits in hex. crypto/rand.Read does not
// fail (since Go 1.24 the program crashes if the system's generator does).
func newRequestID() string {
	var b [requestIDLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// macV2 is the HMAC of the v2 string to sign; values[i] belongs to names[i].
func macV2(secret []byte, ts, id, list string, names, values []string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	writeStringToSign(m, ts, id, list, names, values, body)
	return m.Sum(nil)
}

func writeStringToSign(w hash.Hash, ts, id, list string, names, values []string, body []byte) {
	io.WriteString(w, stringTagV2)
	io.WriteString(w, ts)
	io.WriteString(w, "\n")
	io.WriteString(w, id)
	io.WriteString(w, "\n")
	io.WriteString(w, list)
	io.WriteString(w, "\n")
	for i, n := range names {
		io.WriteString(w, n)
		io.WriteString(w, ":")
		io.WriteString(w, values[i])
		io.WriteString(w, "\n")
	}
	w.Write(body)
}

// fieldValue trims spaces and tabs around v, as HTTP servers do, and
// reports whether the rest is a valid field value (RFC 9110: no control
// characters but tab, so no CR, LF or NUL).
func fieldValue(v string) (string, bool) {
	v = strings.Trim(v, " \t")
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return "", false
		}
	}
	return v, true
}

// SignRequest signs r, whose body is body, as the gateway does at time now,
// covering the headers of r named in signed (as configured in
// ForwardHeaders; those r lacks are signed as absent). It sets the
// timestamp, a fresh request id, the signed list and the signature, and
// returns the id. It is for tests and for tools that stand in for the
// gateway; the gateway itself signs through Upstream and Events. It fails
// when a name cannot be forwarded, or a named header has several values or
// an invalid value.
func SignRequest(r *http.Request, secret, body []byte, now time.Time, signed []string) (string, error) {
	s, err := newSigner(secret, signed)
	if err != nil {
		return "", fmt.Errorf("upstream: sign: %w", err)
	}
	src := HeaderMap{}
	for _, name := range s.forward {
		vals := r.Header.Values(name)
		if len(vals) > 1 {
			return "", fmt.Errorf("upstream: sign: header %s has %d values, want one", name, len(vals))
		}
		if len(vals) == 1 {
			v, ok := fieldValue(vals[0])
			if !ok {
				return "", fmt.Errorf("upstream: sign: header %s has an invalid value", name)
			}
			src[name] = v
		}
	}
	return s.sign(r.Header, src, now, body), nil
}

// VerifyRequest checks a request as an application written in Go would
// (examples/php-upstream does the same in PHP): r's headers and body, the
// raw request body already read. The timestamp must be within window of
// now (DefaultReplayWindow when window <= 0) and the v2 signature must
// match, compared in constant time. It returns the request id, which the
// caller must look up and remember: a second request with an id accepted
// within the last 2 × window is a replay and must be refused (409). Only
// the headers named in X-Wsgate-Signed-Headers are covered; read no other
// forwarded header. Each failure wraps one of the Err* sentinels above.
func VerifyRequest(secret []byte, r *http.Request, body []byte, now time.Time, window time.Duration) (string, error) {
	if window <= 0 {
		window = DefaultReplayWindow
	}
	ts, ok := single(r.Header, HeaderTimestamp)
	if !ok || !validTimestamp(ts) {
		return "", ErrBadTimestamp
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return "", ErrStale
	}
	id, ok := single(r.Header, HeaderRequestID)
	if !ok || !validRequestID(id) {
		return "", ErrBadRequestID
	}
	list, ok := single(r.Header, HeaderSignedHeaders)
	if !ok {
		return "", ErrBadSignedHeaders
	}
	names, err := parseSignedHeaders(list)
	if err != nil {
		return "", err
	}
	sigHeader, ok := single(r.Header, HeaderSignature)
	if !ok {
		return "", ErrNoSignature
	}
	got, err := parseSignature(sigHeader)
	if err != nil {
		return "", err
	}
	values := make([]string, len(names))
	for i, n := range names {
		vals := r.Header.Values(n)
		switch len(vals) {
		case 0:
		case 1:
			values[i] = strings.Trim(vals[0], " \t")
		default:
			return "", fmt.Errorf("%w: signed header %s sent %d times", ErrBadSignature, n, len(vals))
		}
	}
	if !hmac.Equal(got, macV2(secret, ts, id, list, names, values, body)) {
		return "", ErrBadSignature
	}
	return id, nil
}

// single returns the only value of the named header, "" when absent; ok is
// false when it was sent more than once.
func single(h http.Header, name string) (string, bool) {
	vals := h.Values(name)
	switch len(vals) {
	case 0:
		return "", true
	case 1:
		return vals[0], true
	}
	return "", false
}

// validTimestamp: 1 to 19 decimal digits, nothing else (no sign, no
// spaces), which also fits an int64.
func validTimestamp(s string) bool {
	if len(s) == 0 || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validRequestID: exactly 32 lower-case hex digits.
func validRequestID(s string) bool {
	return len(s) == requestIDLen && isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseSignedHeaders splits the X-Wsgate-Signed-Headers value: "" is no
// header; otherwise lower-case header names (RFC 9110 tokens) joined by
// "," without spaces, none twice, at most MaxSignedHeaders. The order is
// not checked (the gateway sorts; the list is signed as sent).
func parseSignedHeaders(list string) ([]string, error) {
	if list == "" {
		return nil, nil
	}
	if strings.Count(list, ",") >= MaxSignedHeaders {
		return nil, fmt.Errorf("%w: more than %d names", ErrBadSignedHeaders, MaxSignedHeaders)
	}
	names := strings.Split(list, ",")
	for i, n := range names {
		if !validToken(n) || strings.ToLower(n) != n {
			return nil, fmt.Errorf("%w: name %d is not a lower-case header name", ErrBadSignedHeaders, i+1)
		}
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("%w: %s listed twice", ErrBadSignedHeaders, n)
		}
	}
	return names, nil
}

// parseSignature finds the v2 MAC in an X-Wsgate-Signature value: entries
// "v<digits>=<lower-case hex>" joined by "," (spaces around them allowed),
// at most maxSignatureEntries, exactly one of them v2 with 64 hex digits.
// Other versions are skipped, so a later gateway may send v2 beside a v3.
func parseSignature(v string) ([]byte, error) {
	if v == "" {
		return nil, fmt.Errorf("%w: header missing", ErrNoSignature)
	}
	if strings.Count(v, ",") >= maxSignatureEntries {
		return nil, fmt.Errorf("%w: more than %d entries", ErrNoSignature, maxSignatureEntries)
	}
	var mac []byte
	for _, e := range strings.Split(v, ",") {
		e = strings.Trim(e, " \t")
		ver, val, ok := strings.Cut(e, "=")
		if !ok || len(ver) < 2 || len(ver) > 4 || ver[0] != 'v' || !validTimestamp(ver[1:]) ||
			val == "" || len(val) > 128 || len(val)%2 != 0 || !isLowerHex(val) {
			return nil, fmt.Errorf("%w: malformed entry", ErrNoSignature)
		}
		if ver != "v2" {
			continue
		}
		if mac != nil {
			return nil, fmt.Errorf("%w: two v2 entries", ErrNoSignature)
		}
		if len(val) != 2*sha256.Size {
			return nil, fmt.Errorf("%w: v2 entry is not %d hex digits", ErrNoSignature, 2*sha256.Size)
		}
		mac, _ = hex.DecodeString(val) // checked above
	}
	if mac == nil {
		return nil, fmt.Errorf("%w: no v2 entry", ErrNoSignature)
	}
	return mac, nil
}
