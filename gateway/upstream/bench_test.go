package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The upstream path's own cost, beside the bare HTTP round trip it
// wraps. Run side by side:
//
//	go test -run '^$' -bench . -benchmem ./gateway/upstream/
//
// BenchmarkCall is a whole forwarded call (request JSON, HMAC, POST on a
// keep-alive loopback connection, reply read and checked) to an app that
// answers at once without checking anything; BenchmarkBareHTTP is the same
// POST of the same bytes with a plain client and no encoding, signing or
// parsing; BenchmarkEncodeSign (JSON, request id, HMAC) and
// BenchmarkParseReply are our two CPU steps without a network;
// BenchmarkVerifyRequest is what a Go application pays to check one.

func benchApp(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"result": 3}`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func BenchmarkCall(b *testing.B) {
	srv := benchApp(b)
	u, err := New("app", Config{URL: srv.URL, Secret: testSecret, Timeout: 5 * time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	params := json.RawMessage(`[1,2]`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.Call(ctx, fakeClient{}, callReq, params); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareHTTP(b *testing.B) {
	srv := benchApp(b)
	u, err := New("app", Config{URL: srv.URL, Secret: testSecret}, nil)
	if err != nil {
		b.Fatal(err)
	}
	payload, err := json.Marshal(u.body("call", fakeClient{}, callReq))
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: NewTransport(4)}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkEncodeSign(b *testing.B) {
	u, err := New("app", Config{URL: "http://127.0.0.1:1/", Secret: testSecret}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		body := u.body("call", fakeClient{}, callReq)
		body.Args = json.RawMessage(`[1,2]`)
		payload, err := json.Marshal(body)
		if err != nil {
			b.Fatal(err)
		}
		u.signer.sign(http.Header{}, fakeClient{}, time.Unix(1_700_000_000, 0), payload)
	}
}

func BenchmarkParseReply(b *testing.B) {
	data := []byte(`{"result": 3}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseReply("call", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRequest(b *testing.B) {
	body := []byte(`{"kind":"call","uri":"app/sum","args":[1,2]}`)
	now := time.Unix(1_700_000_000, 0)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Cookie", "PHPSESSID=abc")
	if _, err := SignRequest(r, testSecret, body, now, []string{"Cookie"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyRequest(testSecret, r, body, now, 0); err != nil {
			b.Fatal(err)
		}
	}
}
