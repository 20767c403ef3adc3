package upstream

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var signNow = time.Unix(1_700_000_000, 0)

// signedRequest is a request signed as the gateway signs one forwarding
// Cookie and X-Forwarded-User, of which the client sent only Cookie.
func signedRequest(t *testing.T, body string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Cookie", "PHPSESSID=abc; theme=dark")
	if _, err := SignRequest(r, testSecret, []byte(body), signNow, []string{"X-Forwarded-User", "cookie"}); err != nil {
		t.Fatal(err)
	}
	return r
}

// The wire format, spelled out: a change to the string to sign must be a
// deliberate change of this test, of the PHP example and of the README.
func TestSignatureV2KnownAnswer(t *testing.T) {
	s, err := newSigner(testSecret, []string{"X-Forwarded-User", "cookie"})
	if err != nil {
		t.Fatal(err)
	}
	if s.list != "cookie,x-forwarded-user" {
		t.Fatalf("signed list %q, want lower case and sorted", s.list)
	}
	const id = "00112233445566778899aabbccddeeff"
	body := []byte(`{"kind":"call"}`)
	got := macV2(testSecret, "1700000000", id, s.list, s.lower, []string{"PHPSESSID=abc", ""}, body)
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte("wsgate-v2\n" +
		"1700000000\n" +
		"00112233445566778899aabbccddeeff\n" +
		"cookie,x-forwarded-user\n" +
		"cookie:PHPSESSID=abc\n" +
		"x-forwarded-user:\n" +
		`{"kind":"call"}`))
	if want := m.Sum(nil); !hmac.Equal(got, want) {
		t.Fatalf("mac %x, want %x", got, want)
	}

	// A literal request (the seed testdata/fuzz/FuzzVerifyRequest/
	// valid_cookie) verifies.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set(HeaderTimestamp, "1700000000")
	r.Header.Set(HeaderRequestID, id)
	r.Header.Set(HeaderSignedHeaders, "cookie")
	r.Header.Set(HeaderSignature, "v2=87848f885f644e69b997e902bd879e7490828fa3e0b9e809a51af62dfbb860b1")
	r.Header.Set("Cookie", "PHPSESSID=abc")
	if got, err := VerifyRequest(testSecret, r, []byte(`{"kind":"call","args":[1,2]}`), signNow, 0); err != nil || got != id {
		t.Fatalf("known request: %q %v", got, err)
	}
}

func TestSignRequestHeaders(t *testing.T) {
	r := signedRequest(t, `{"a":1}`)
	h := r.Header
	if h.Get(HeaderTimestamp) != "1700000000" {
		t.Errorf("timestamp %q", h.Get(HeaderTimestamp))
	}
	if id := h.Get(HeaderRequestID); !validRequestID(id) {
		t.Errorf("request id %q, want 32 lower-case hex digits", id)
	}
	if l := h.Get(HeaderSignedHeaders); l != "cookie,x-forwarded-user" {
		t.Errorf("signed headers %q", l)
	}
	if sig := h.Get(HeaderSignature); !strings.HasPrefix(sig, "v2=") || len(sig) != 3+64 || !isLowerHex(sig[3:]) {
		t.Errorf("signature %q", sig)
	}
	if _, ok := h["X-Forwarded-User"]; ok {
		t.Error("an absent forwarded header was sent")
	}
	// Every request gets its own id, hence its own signature.
	r2 := signedRequest(t, `{"a":1}`)
	if r2.Header.Get(HeaderRequestID) == h.Get(HeaderRequestID) || r2.Header.Get(HeaderSignature) == h.Get(HeaderSignature) {
		t.Error("two requests share an id or a signature")
	}
	for _, bad := range [][]string{{"Bad Header"}, {"Host"}, {"X-Wsgate-Request-Id"}} {
		if _, err := SignRequest(httptest.NewRequest("POST", "/", nil), testSecret, nil, signNow, bad); err == nil {
			t.Errorf("SignRequest(%q) signed", bad)
		}
	}
	twice := httptest.NewRequest("POST", "/", nil)
	twice.Header.Add("Cookie", "a=1")
	twice.Header.Add("Cookie", "b=2")
	if _, err := SignRequest(twice, testSecret, nil, signNow, []string{"Cookie"}); err == nil {
		t.Error("a header with two values was signed")
	}
	ctl := httptest.NewRequest("POST", "/", nil)
	ctl.Header["Cookie"] = []string{"a=1\r\nX-Evil: 1"}
	if _, err := SignRequest(ctl, testSecret, nil, signNow, []string{"Cookie"}); err == nil {
		t.Error("a value with CR LF was signed")
	}
}

func TestVerifyRequest(t *testing.T) {
	const body = `{"kind":"call","args":[1]}`
	for _, tc := range []struct {
		name   string
		body   string // "" means body
		secret string // "" means testSecret
		now    time.Time
		mod    func(h http.Header)
		want   error // nil: accepted
	}{
		{name: "valid", mod: func(http.Header) {}},
		{name: "an unlisted header added (not covered: apps must not read it)", mod: func(h http.Header) { h.Set("X-Real-Ip", "1.2.3.4") }},
		{name: "spaces around a value (servers trim them)", mod: func(h http.Header) { h.Set("Cookie", " PHPSESSID=abc; theme=dark\t") }},
		{name: "at the window's edge", now: signNow.Add(DefaultReplayWindow)},
		{name: "at the window's other edge", now: signNow.Add(-DefaultReplayWindow)},
		{name: "unknown versions beside v2", mod: func(h http.Header) { h.Set(HeaderSignature, "v3=abcd, "+h.Get(HeaderSignature)+" ,v1=00") }},

		{name: "body tampered", body: `{"kind":"call","args":[2]}`, want: ErrBadSignature},
		{name: "body empty", body: " ", want: ErrBadSignature},
		{name: "wrong secret", secret: "another-secret-0123456789", want: ErrBadSignature},
		{name: "listed header changed", mod: func(h http.Header) { h.Set("Cookie", "PHPSESSID=stolen") }, want: ErrBadSignature},
		{name: "listed header added", mod: func(h http.Header) { h.Set("X-Forwarded-User", "jdoe") }, want: ErrBadSignature},
		{name: "listed header removed", mod: func(h http.Header) { h.Del("Cookie") }, want: ErrBadSignature},
		{name: "listed header repeated", mod: func(h http.Header) { h.Add("Cookie", "PHPSESSID=abc; theme=dark") }, want: ErrBadSignature},
		{name: "name dropped from the list", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "cookie") }, want: ErrBadSignature},
		{name: "name added to the list", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "cookie,x-forwarded-user,x-real-ip") }, want: ErrBadSignature},
		{name: "list reordered", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "x-forwarded-user,cookie") }, want: ErrBadSignature},
		{name: "list emptied", mod: func(h http.Header) { h.Del(HeaderSignedHeaders) }, want: ErrBadSignature},
		{name: "request id changed", mod: func(h http.Header) { h.Set(HeaderRequestID, strings.Repeat("0", 32)) }, want: ErrBadSignature},
		{name: "timestamp changed", now: signNow, mod: func(h http.Header) { h.Set(HeaderTimestamp, "1700000001") }, want: ErrBadSignature},
		{name: "signature of another request", mod: func(h http.Header) { h.Set(HeaderSignature, "v2="+strings.Repeat("ab", 32)) }, want: ErrBadSignature},

		{name: "stale", now: signNow.Add(DefaultReplayWindow + time.Second), want: ErrStale},
		{name: "from the future", now: signNow.Add(-DefaultReplayWindow - time.Second), want: ErrStale},

		{name: "no timestamp", mod: func(h http.Header) { h.Del(HeaderTimestamp) }, want: ErrBadTimestamp},
		{name: "signed timestamp", mod: func(h http.Header) { h.Set(HeaderTimestamp, "+1700000000") }, want: ErrBadTimestamp},
		{name: "fractional timestamp", mod: func(h http.Header) { h.Set(HeaderTimestamp, "1700000000.5") }, want: ErrBadTimestamp},
		{name: "huge timestamp", mod: func(h http.Header) { h.Set(HeaderTimestamp, "99999999999999999999") }, want: ErrBadTimestamp},
		{name: "two timestamps", mod: func(h http.Header) { h.Add(HeaderTimestamp, "1700000000") }, want: ErrBadTimestamp},

		{name: "no request id", mod: func(h http.Header) { h.Del(HeaderRequestID) }, want: ErrBadRequestID},
		{name: "short request id", mod: func(h http.Header) { h.Set(HeaderRequestID, "abc") }, want: ErrBadRequestID},
		{name: "upper-case request id", mod: func(h http.Header) { h.Set(HeaderRequestID, strings.ToUpper(h.Get(HeaderRequestID))) }, want: ErrBadRequestID},
		{name: "two request ids", mod: func(h http.Header) { h.Add(HeaderRequestID, h.Get(HeaderRequestID)) }, want: ErrBadRequestID},

		{name: "upper-case list", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "Cookie,x-forwarded-user") }, want: ErrBadSignedHeaders},
		{name: "empty name in the list", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "cookie,,x-forwarded-user") }, want: ErrBadSignedHeaders},
		{name: "space in the list", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "cookie, x-forwarded-user") }, want: ErrBadSignedHeaders},
		{name: "name listed twice", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, "cookie,cookie") }, want: ErrBadSignedHeaders},
		{name: "list too long", mod: func(h http.Header) { h.Set(HeaderSignedHeaders, longList(MaxSignedHeaders+1)) }, want: ErrBadSignedHeaders},
		{name: "two lists", mod: func(h http.Header) { h.Add(HeaderSignedHeaders, "cookie") }, want: ErrBadSignedHeaders},

		{name: "no signature", mod: func(h http.Header) { h.Del(HeaderSignature) }, want: ErrNoSignature},
		{name: "v1 only (an old gateway)", mod: func(h http.Header) { h.Set(HeaderSignature, "v1="+strings.Repeat("ab", 32)) }, want: ErrNoSignature},
		{name: "short v2", mod: func(h http.Header) { h.Set(HeaderSignature, h.Get(HeaderSignature)[:40]) }, want: ErrNoSignature},
		{name: "upper-case v2", mod: func(h http.Header) { h.Set(HeaderSignature, "v2="+strings.ToUpper(h.Get(HeaderSignature)[3:])) }, want: ErrNoSignature},
		{name: "two v2", mod: func(h http.Header) { h.Set(HeaderSignature, h.Get(HeaderSignature)+","+h.Get(HeaderSignature)) }, want: ErrNoSignature},
		{name: "garbage entry", mod: func(h http.Header) { h.Set(HeaderSignature, h.Get(HeaderSignature)+",sha256") }, want: ErrNoSignature},
		{name: "no version", mod: func(h http.Header) { h.Set(HeaderSignature, h.Get(HeaderSignature)[3:]) }, want: ErrNoSignature},
		{name: "too many entries", mod: func(h http.Header) {
			h.Set(HeaderSignature, strings.Repeat("v3=00,", maxSignatureEntries)+h.Get(HeaderSignature))
		}, want: ErrNoSignature},
		{name: "two signature headers", mod: func(h http.Header) { h.Add(HeaderSignature, h.Get(HeaderSignature)) }, want: ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := signedRequest(t, body)
			if tc.mod != nil {
				tc.mod(r.Header)
			}
			b, secret, now := body, testSecret, tc.now
			if tc.body != "" {
				b = tc.body
			}
			if tc.secret != "" {
				secret = []byte(tc.secret)
			}
			if now.IsZero() {
				now = signNow
			}
			id, err := VerifyRequest(secret, r, []byte(b), now, 0)
			if tc.want == nil {
				if err != nil || id != r.Header.Get(HeaderRequestID) {
					t.Fatalf("refused (%v) or wrong id %q", err, id)
				}
				return
			}
			if !errors.Is(err, tc.want) || id != "" {
				t.Fatalf("got id %q, error %v; want %v", id, err, tc.want)
			}
		})
	}
}

func longList(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("x-h%d", i)
	}
	return strings.Join(names, ",")
}

// The verifier is stateless: a replayed request verifies again, with the
// same id, and refusing it is the caller's job (as the PHP example and
// ExampleVerifyRequest do). Here the caller's seen-set refuses it.
func TestReplayIsRefusedByTheCaller(t *testing.T) {
	const body = `{"kind":"publish"}`
	r := signedRequest(t, body)
	seen := map[string]bool{}
	accept := func() error {
		id, err := VerifyRequest(testSecret, r, []byte(body), signNow.Add(time.Minute), 0)
		if err != nil {
			return err
		}
		if seen[id] {
			return errors.New("replay")
		}
		seen[id] = true
		return nil
	}
	if err := accept(); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	if err := accept(); err == nil || err.Error() != "replay" {
		t.Fatalf("second delivery: %v, want refused as a replay", err)
	}
	// After the window the replay is stale, so the seen-set may forget it.
	if _, err := VerifyRequest(testSecret, r, []byte(body), signNow.Add(DefaultReplayWindow+time.Second), 0); !errors.Is(err, ErrStale) {
		t.Fatalf("replay after the window: %v", err)
	}
}

// A Go application's handler: verify, then refuse ids already seen.
func ExampleVerifyRequest() {
	secret := []byte("0123456789abcdef-example")
	seen := map[string]time.Time{} // a real app: a shared store with expiry, e.g. Redis SET NX EX
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := []byte(`{"kind":"subscribe"}`) // io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		id, err := VerifyRequest(secret, r, body, time.Now(), DefaultReplayWindow)
		if err != nil {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if _, dup := seen[id]; dup {
			http.Error(w, `{"error":"replayed request"}`, http.StatusConflict)
			return
		}
		seen[id] = time.Now() // forget after 2 × DefaultReplayWindow
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"allow":true}`)
	})

	req := httptest.NewRequest(http.MethodPost, "/", nil)
	if _, err := SignRequest(req, secret, []byte(`{"kind":"subscribe"}`), time.Now(), nil); err != nil {
		panic(err)
	}
	for range 2 {
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 200
	// 409
}

func TestNewRefusesTooManyForwardHeaders(t *testing.T) {
	names := strings.Split(longList(MaxSignedHeaders+1), ",")
	if _, err := New("app", Config{URL: "http://x/", Secret: testSecret, ForwardHeaders: names}, nil); err == nil || !strings.Contains(err.Error(), "forward_headers:") {
		t.Errorf("New: %v", err)
	}
	if _, err := NewEvents(EventsConfig{URL: "http://x/", Secret: testSecret, Connect: true, ForwardHeaders: names}, nil, nil); err == nil || !strings.Contains(err.Error(), "forward_headers:") {
		t.Errorf("NewEvents: %v", err)
	}
	if _, err := New("app", Config{URL: "http://x/", Secret: testSecret, ForwardHeaders: names[:MaxSignedHeaders]}, nil); err != nil {
		t.Errorf("New with %d: %v", MaxSignedHeaders, err)
	}
}

// A handshake value that is not a valid field value is neither sent nor
// signed, so the request still goes out and verifies.
func TestSignerDropsInvalidValues(t *testing.T) {
	s, err := newSigner(testSecret, []string{"Cookie", "X-Real-Ip"})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	body := []byte(`{}`)
	id := s.sign(r.Header, HeaderMap{"Cookie": "a=1\nX-Evil: 1", "X-Real-Ip": " 203.0.113.7 "}, signNow, body)
	if _, ok := r.Header["Cookie"]; ok {
		t.Fatalf("invalid Cookie sent: %q", r.Header["Cookie"])
	}
	if got := r.Header.Get("X-Real-Ip"); got != "203.0.113.7" {
		t.Fatalf("X-Real-Ip %q, want it trimmed", got)
	}
	if got, err := VerifyRequest(testSecret, r, body, signNow, 0); err != nil || got != id {
		t.Fatalf("verify: %q %v", got, err)
	}
	// A HeaderSource that is nil (disconnect events) signs every name as
	// absent, and a stale value already on the header is removed.
	r.Header.Set("Cookie", "left=over")
	s.sign(r.Header, nil, signNow, body)
	if _, ok := r.Header["Cookie"]; ok {
		t.Fatal("Cookie kept without a source")
	}
	if _, err := VerifyRequest(testSecret, r, body, signNow, 0); err != nil {
		t.Fatal(err)
	}
}
