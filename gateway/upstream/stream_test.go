package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// CANCEL cancels the call's ctx; the HTTP request to the application
// made with it ends there, and the application sees its request context
// end.
func TestCancelAbortsRequest(t *testing.T) {
	arrived := make(chan struct{}, 1)
	gone := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			gone <- struct{}{}
		case <-time.After(10 * time.Second):
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"result":"too late"}`)
		}
	}))
	defer srv.Close()
	obs := &recordingObserver{}
	u := newUp(t, srv.URL, func(c *Config) { c.Timeout = 20 * time.Second; c.Observer = obs })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := u.Call(ctx, fakeClient{}, callReq, json.RawMessage(`[1]`))
		done <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("call ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not end at the cancel")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the application's request context did not end")
	}
	if got := obs.take(); len(got) != 1 || got[0] != "app app_rpc call "+OutcomeCanceled {
		t.Fatalf("observed %q, want the call %s", got, OutcomeCanceled)
	}
}

// ndjsonServer answers every call with body as application/x-ndjson,
// flushing after each line, and records the Accept header.
func ndjsonServer(t *testing.T, body string, accept chan<- string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if accept != nil {
			accept <- r.Header.Get("Accept")
		}
		w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
		for _, line := range strings.SplitAfter(body, "\n") {
			io.WriteString(w, line)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamedCall(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		max      int64
		progress []string
		result   string
		errCode  int
		errDesc  string
	}{
		{"progress then result", "{\"progress\":1}\n{\"progress\":{\"a\":2}}\n{\"result\":\"done\"}\n", 0, []string{`1`, `{"a":2}`}, `"done"`, 0, ""},
		{"no progress", `{"result":[1,2]}`, 0, nil, `[1,2]`, 0, ""},
		{"blank lines skipped", "\n{\"progress\":null}\r\n\n{\"result\":null}\n\n", 0, []string{`null`}, `null`, 0, ""},
		{"app error after progress", "{\"progress\":1}\n{\"error\":{\"uri\":\"app.error.x\",\"desc\":\"no\",\"code\":409}}\n", 0, []string{`1`}, "", 409, "no"},
		{"no final line", "{\"progress\":1}\n", 0, []string{`1`}, "", 502, "no final reply"},
		{"line after the final", "{\"result\":1}\n{\"progress\":2}\n", 0, nil, "", 502, "after the final reply"},
		{"progress with other fields", "{\"progress\":1,\"result\":2}\n", 0, nil, "", 502, `only "progress"`},
		{"not an object", "[1]\n", 0, nil, "", 502, "not a JSON object"},
		{"invalid final", "{\"progress\":1}\n{\"allow\":true}\n", 0, []string{`1`}, "", 502, "invalid streamed reply"},
		{"line too long", "{\"progress\":\"" + strings.Repeat("x", 100) + "\"}\n{\"result\":1}\n", 64, nil, "", 502, "larger than 64 bytes"},
		{"lines fit", "{\"progress\":\"" + strings.Repeat("x", 40) + "\"}\n{\"result\":1}\n", 64, []string{`"` + strings.Repeat("x", 40) + `"`}, `1`, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accept := make(chan string, 1)
			srv := ndjsonServer(t, tc.body, accept)
			u := newUp(t, srv.URL, func(c *Config) { c.MaxReplyBytes = tc.max })
			var got []string
			ctx := handler.WithProgress(context.Background(), func(v any) error {
				b, err := json.Marshal(v)
				got = append(got, string(b))
				return err
			})
			res, err := u.Call(ctx, fakeClient{}, callReq, nil)
			if a := <-accept; a != "application/json, application/x-ndjson" {
				t.Errorf("Accept %q", a)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.progress) {
				t.Errorf("progress %q, want %q", got, tc.progress)
			}
			if tc.errCode != 0 {
				wantError(t, err, tc.errCode, "", tc.errDesc)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(res); string(b) != tc.result {
				t.Fatalf("result %s, want %s", b, tc.result)
			}
		})
	}
}

// Without receive_progress the request accepts only JSON, and a stream the
// application sends anyway is read with its progress dropped.
func TestStreamWithoutProgress(t *testing.T) {
	accept := make(chan string, 1)
	srv := ndjsonServer(t, "{\"progress\":1}\n{\"result\":2}\n", accept)
	u := newUp(t, srv.URL, nil)
	res, err := u.Call(context.Background(), fakeClient{}, callReq, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := <-accept; a != "application/json" {
		t.Errorf("Accept %q", a)
	}
	if b, _ := json.Marshal(res); string(b) != `2` {
		t.Fatalf("result %s", b)
	}
}

// Progress lines are bounded.
func TestStreamProgressLines(t *testing.T) {
	body := strings.Repeat("{\"progress\":0}\n", 3) + "{\"result\":1}\n"
	n := 0
	count := func(json.RawMessage) error { n++; return nil }
	if _, err := readStream(strings.NewReader(body), 100, 3, count); err != nil || n != 3 {
		t.Fatalf("3 lines at a bound of 3: %v, %d sent", err, n)
	}
	n = 0
	if _, err := readStream(strings.NewReader(body), 100, 2, count); !errors.Is(err, errStream) || n != 2 {
		t.Fatalf("3 lines at a bound of 2: %v, %d sent", err, n)
	}
}

// After a CANCEL in mode skip (the call's ctx lives on, Progress says the
// call ended), the stream is read to its end: the application is not
// interrupted.
func TestStreamAfterCallEnded(t *testing.T) {
	srv := ndjsonServer(t, "{\"progress\":1}\n{\"progress\":2}\n{\"result\":3}\n", nil)
	u := newUp(t, srv.URL, nil)
	ctx := handler.WithProgress(context.Background(), func(any) error { return handler.ErrCallEnded })
	res, err := u.Call(ctx, fakeClient{}, callReq, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(res); string(b) != `3` {
		t.Fatalf("result %s", b)
	}
}

// FuzzReadStream checks that readStream never panics, respects its
// bounds and hands on only valid JSON.
func FuzzReadStream(f *testing.F) {
	for _, s := range []string{
		"{\"progress\":1}\n{\"result\":2}\n", `{"result":null}`, "{\"progress\":{}}\n{\"error\":{\"desc\":\"x\"}}",
		"\n\n", "", "{\"progress\":1}", "{\"progress\":1,\"x\":2}\n", "{\"result\":1}\n{\"result\":1}\n",
		"{\"progress\":\"\xff\"}\n{\"result\":1}", "[]\n", "{\"progress\":1}\r\n{\"result\":1}\r\n",
		strings.Repeat("{\"progress\":0}\n", 5) + "{\"result\":1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const maxLine, maxProgress = 64, 4
		n := 0
		r, err := readStream(strings.NewReader(string(body)), maxLine, maxProgress, func(p json.RawMessage) error {
			n++
			if !json.Valid(p) || len(p) > maxLine {
				t.Fatalf("progress %q", p)
			}
			return nil
		})
		if n > maxProgress {
			t.Fatalf("%d progress lines past a bound of %d", n, maxProgress)
		}
		if err != nil {
			if r != nil {
				t.Fatal("reply and error")
			}
			return
		}
		if r.Error == nil && (!r.hasResult || !json.Valid(r.Result)) {
			t.Fatalf("final reply without a valid result: %+v", r)
		}
	})
}
