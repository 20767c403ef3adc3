package upstream

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header names of the signature scheme.
const (
	// HeaderTimestamp carries the request time in Unix seconds.
	HeaderTimestamp = "X-Wsgate-Timestamp"
	// HeaderSignature carries "v1=" followed by the lower-case hex
	// HMAC-SHA256, keyed with the shared secret, of
	// timestamp + "." + body.
	HeaderSignature = "X-Wsgate-Signature"
)

// DefaultReplayWindow is how far from its own clock an application should
// accept a request's timestamp (either way), the guidance of the scheme:
// older requests are refused so that a captured request cannot be replayed
// later. Keep the gateway and application clocks synchronised (NTP).
const DefaultReplayWindow = 300 * time.Second

// Sign returns the X-Wsgate-Signature value for body sent at Unix time ts:
// "v1=" + hex(HMAC-SHA256(secret, "<ts>." + body)).
func Sign(secret []byte, ts int64, body []byte) string {
	return sign(secret, strconv.FormatInt(ts, 10), body)
}

// sign signs the timestamp as it appears in the header.
func sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadTimestamp = errors.New("upstream: missing or malformed " + HeaderTimestamp)
	ErrStale        = errors.New("upstream: request timestamp outside the replay window")
	ErrBadSignature = errors.New("upstream: signature mismatch")
)

// Verify checks a request as an application written in Go would (the PHP
// example does the same): ts and sig are the X-Wsgate-Timestamp and
// X-Wsgate-Signature header values, body the raw request body. The timestamp
// must be within window of now (DefaultReplayWindow when window <= 0) and the
// signature must match, compared in constant time.
func Verify(secret []byte, ts, sig string, body []byte, now time.Time, window time.Duration) error {
	if window <= 0 {
		window = DefaultReplayWindow
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || ts == "" || strings.HasPrefix(ts, "+") {
		return ErrBadTimestamp
	}
	d := now.Sub(time.Unix(sec, 0))
	if d > window || d < -window {
		return ErrStale
	}
	want := sign(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrBadSignature
	}
	return nil
}
