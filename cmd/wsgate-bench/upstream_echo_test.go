package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/upstream"
)

const echoSecret = "bench-secret-0123456789abcdef"

// echoPost sends body to the echo as the gateway would, signed with secret
// at time at, and returns the status and reply.
func echoPost(t *testing.T, h http.Handler, secret string, at time.Time, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if _, err := upstream.SignRequest(req, []byte(secret), []byte(body), at, nil); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

func TestEchoUpstream(t *testing.T) {
	h := newEchoUpstream([]byte(echoSecret), slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	const user = `"caller":{"anonymous":false,"user_identifier":"bench1"}`
	for _, tc := range []struct {
		name   string
		secret string
		at     time.Time
		body   string
		status int
		reply  string
	}{
		{"sum", echoSecret, now, `{"kind":"call","method":"sum","args":[1,2],` + user + `}`, 200, `{"result":3}`},
		{"sum of one array", echoSecret, now, `{"kind":"call","method":"sum","args":[[1,2.5]],` + user + `}`, 200, `{"result":3.5}`},
		{"anonymous", echoSecret, now, `{"kind":"call","method":"sum","args":[1],"caller":{"anonymous":true}}`, 200, `{"error":{"code":403,"desc":"You must be authenticated to use this function.","uri":"app.error.auth"}}`},
		{"unknown method", echoSecret, now, `{"kind":"call","method":"nope",` + user + `}`, 200, `{"error":{"code":404,"desc":"Unknown method \"nope\"","uri":"app.error.not_found"}}`},
		{"subscribe", echoSecret, now, `{"kind":"subscribe",` + user + `}`, 200, `{"allow":true}`},
		{"publish", echoSecret, now, `{"kind":"publish","event":1,` + user + `}`, 200, `{}`},
		{"wrong secret", "another-secret-0123456789abcdef", now, `{"kind":"call","method":"sum","args":[1,2],` + user + `}`, 401, "unauthorized"},
		{"stale", echoSecret, now.Add(-10 * time.Minute), `{"kind":"call","method":"sum","args":[1,2],` + user + `}`, 401, "unauthorized"},
		{"unknown kind", echoSecret, now, `{"kind":"other",` + user + `}`, 400, "unknown kind"},
	} {
		status, reply := echoPost(t, h, tc.secret, tc.at, tc.body)
		if status != tc.status || reply != tc.reply {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, status, reply, tc.status, tc.reply)
		}
	}
	// A body tampered with after signing is refused.
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"kind":"subscribe"}`))
	if _, err := upstream.SignRequest(req, []byte(echoSecret), []byte(`{"kind":"publish"}`), now, nil); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Errorf("tampered body: status %d, want 401", rec.Code)
	}
}

func TestUpstreamEchoFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"no secret", "", []string{"--listen", "127.0.0.1:0"}},
		{"short secret", "short", []string{"--listen", "127.0.0.1:0"}},
		{"not loopback", echoSecret, []string{"--listen", "0.0.0.0:0"}},
		{"bad flag", echoSecret, []string{"--nope"}},
	} {
		t.Setenv("BENCH_TEST_SECRET", tc.env)
		var errOut bytes.Buffer
		args := append([]string{"upstream-echo", "--secret-env", "BENCH_TEST_SECRET"}, tc.args...)
		if code := run(context.Background(), args, &bytes.Buffer{}, &errOut); code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", tc.name, code, errOut.String())
		}
	}
}

func TestCallResult(t *testing.T) {
	for msg, want := range map[string]string{
		`[3,"7",{"result":3}]`:         "ok",
		`[3,"7",3]`:                    "ok",
		`[3,"7",[3]]`:                  "ok",
		`[3,"7",[3,3]]`:                "bad_result",
		`[3,"7",33]`:                   "bad_result",
		`[3,"7",{"result":4}]`:         "bad_result",
		`[3,"7",{"error":true}]`:       "auth_failure",
		`[4,"7","sample/sum","x",{}]`:  "call_error",
		`[3,"8",3]`:                    "",
		`[8,"acme/channel/x",{"a":3}]`: "",
	} {
		if got := callResult([]byte(msg), "7"); got != want {
			t.Errorf("callResult(%s) = %q, want %q", msg, got, want)
		}
	}
}
