package upstream

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// FuzzVerifyRequest feeds the verifier arbitrary signature headers (the
// timestamp, request id, signed list, signature and a forwarded Cookie)
// and checks that it never panics, fails only with its sentinels, accepts
// only what the MAC vouches for, and that the header parsers round-trip.
// It also signs with the fuzzed list as ForwardHeaders and checks that
// what SignRequest signs VerifyRequest accepts, and that a changed body
// or Cookie is then refused. Seeds are here and in
// testdata/fuzz/FuzzVerifyRequest (valid requests among them, whose MACs
// are of testSecret at signNow).
func FuzzVerifyRequest(f *testing.F) {
	const id = "00112233445566778899aabbccddeeff"
	f.Add("1700000000", id, "cookie", "v2="+strings.Repeat("0", 64), "PHPSESSID=abc", []byte(`{"kind":"call"}`))
	f.Add("1700000000", id, "", "v1=00,v2=zz", "", []byte(``))
	f.Add("", "", "cookie,,x", "v2=", "a\tb", []byte(`{}`))
	f.Add("+1", strings.ToUpper(id), "Cookie", " v2=00 , v3=ab ", " x ", []byte(`x`))
	sentinels := []error{ErrBadTimestamp, ErrStale, ErrBadRequestID, ErrBadSignedHeaders, ErrNoSignature, ErrBadSignature}
	f.Fuzz(func(t *testing.T, ts, reqID, list, sig, cookie string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		// Raw assignment: a server hands the app whatever bytes came.
		for k, v := range map[string]string{HeaderTimestamp: ts, HeaderRequestID: reqID, HeaderSignedHeaders: list, HeaderSignature: sig, "Cookie": cookie} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		got, err := VerifyRequest(testSecret, r, body, signNow, 0)
		if err != nil {
			if got != "" {
				t.Fatalf("id %q with error %v", got, err)
			}
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
		} else {
			// Accepted: every part is well formed and the MAC is right.
			names, lerr := parseSignedHeaders(list)
			mac, serr := parseSignature(sig)
			if got != reqID || !validRequestID(got) || !validTimestamp(ts) || lerr != nil || serr != nil {
				t.Fatalf("accepted a malformed request: id %q ts %q list %v sig %v", got, ts, lerr, serr)
			}
			values := make([]string, len(names))
			for i, n := range names {
				values[i] = strings.Trim(r.Header.Get(n), " \t")
			}
			if !hmac.Equal(mac, macV2(testSecret, ts, reqID, list, names, values, body)) {
				t.Fatal("accepted a wrong MAC")
			}
		}

		if names, err := parseSignedHeaders(list); err == nil {
			if strings.Join(names, ",") != list || len(names) > MaxSignedHeaders {
				t.Fatalf("list %q parsed as %q", list, names)
			}
			for i, n := range names {
				if !validToken(n) || strings.ToLower(n) != n || slices.Contains(names[:i], n) {
					t.Fatalf("list %q: bad name %q", list, n)
				}
			}
		}
		if mac, err := parseSignature(sig); err == nil && len(mac) != 32 {
			t.Fatalf("signature %q gave a %d-byte MAC", sig, len(mac))
		}

		// Round trip with the fuzzed list as ForwardHeaders.
		var fwd []string
		if list != "" {
			fwd = strings.Split(list, ",")
		}
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		if cookie != "" {
			req.Header["Cookie"] = []string{cookie}
		}
		sid, err := SignRequest(req, testSecret, body, signNow, fwd)
		if err != nil {
			return // a name that cannot be forwarded, or an invalid value
		}
		if got, err := VerifyRequest(testSecret, req, body, signNow, 0); err != nil || got != sid {
			t.Fatalf("own signature refused: %q %v (list %q)", got, err, req.Header.Get(HeaderSignedHeaders))
		}
		if _, err := VerifyRequest(testSecret, req, append(body[:len(body):len(body)], '!'), signNow, 0); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("changed body: %v", err)
		}
		if slices.Contains(strings.Split(req.Header.Get(HeaderSignedHeaders), ","), "cookie") {
			req.Header.Set("Cookie", req.Header.Get("Cookie")+"x")
			if _, err := VerifyRequest(testSecret, req, body, signNow, 0); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("changed Cookie: %v", err)
			}
		}
	})
}
