package upstream

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

func leaveSubs(routes ...string) []handler.Subscription {
	var subs []handler.Subscription
	for i, r := range routes {
		req := handler.Request{Route: r, URI: "chat/room" + string(rune('1'+i))}
		if i == 0 {
			req.Attributes = map[string]string{"room": "room1"}
		}
		subs = append(subs, handler.Subscription{Topic: &fakeTopic{}, Request: req})
	}
	return subs
}

// Without NotifyUnsubscribe a leave costs nothing: no request.
func TestLeaveOff(t *testing.T) {
	var hits atomic.Int32
	srv, _ := server(t, func(w http.ResponseWriter, r *received) {
		hits.Add(1)
		jsonReply(`{}`)(w, r)
	})
	u := newUp(t, srv.URL, nil)
	if err := u.OnUnsubscribeBatch(context.Background(), fakeClient{}, handler.LeaveDisconnect, leaveSubs("chat", "chat")); err != nil || hits.Load() != 0 {
		t.Fatalf("err %v, %d requests", err, hits.Load())
	}
	// Nor with it, for an empty list (the node never sends one).
	u = newUp(t, srv.URL, func(c *Config) { c.NotifyUnsubscribe = true })
	if err := u.OnUnsubscribeBatch(context.Background(), fakeClient{}, handler.LeaveDisconnect, nil); err != nil || hits.Load() != 0 {
		t.Fatalf("empty: err %v, %d requests", err, hits.Load())
	}
}

// One signed POST of kind "leave" for all the topics, in the documented
// shape, reported to the observer under the topics' route.
func TestLeaveWire(t *testing.T) {
	srv, got := server(t, jsonReply(`{}`))
	obs := &recordingObserver{}
	u := newUp(t, srv.URL, func(c *Config) { c.NotifyUnsubscribe = true; c.Observer = obs })
	c := fakeClient{headers: map[string]string{"Cookie": "PHPSESSID=abc"}}
	if err := u.OnUnsubscribeBatch(context.Background(), c, handler.LeaveDisconnect, leaveSubs("chat", "chat")); err != nil {
		t.Fatal(err)
	}
	r := <-got // signature verified by server
	want := `{"kind":"leave","reason":"disconnect","topics":[` +
		`{"uri":"chat/room1","route":"chat","attributes":{"room":"room1"}},` +
		`{"uri":"chat/room2","route":"chat","attributes":{}}],` +
		`"caller":{"firewall":"main","user_identifier":"alice","roles":["ROLE_USER"],"anonymous":false,` +
		`"wamp_session_id":"sess-1","conn_id":"conn-1","extra":{"plan":"gold"}}}`
	if string(r.Raw) != want {
		t.Fatalf("body\n%s\nwant\n%s", r.Raw, want)
	}
	if r.Header.Get("Cookie") != "PHPSESSID=abc" || r.Header.Get(HeaderSignedHeaders) != "cookie" {
		t.Fatalf("headers %v", r.Header)
	}
	if len(got) != 0 {
		t.Fatal("more than one request")
	}
	// Topics of several routes: labelled "" (no single route's).
	if err := u.OnUnsubscribeBatch(context.Background(), fakeClient{anon: true}, handler.LeaveRevoked, leaveSubs("chat", "news")); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Body.Kind != KindLeave || !r.Body.Caller.Anonymous {
		t.Fatalf("second leave %s", r.Raw)
	}
	if seen := obs.take(); len(seen) != 2 || seen[0] != "app chat leave ok" || seen[1] != "app  leave ok" {
		t.Fatalf("observed %q", seen)
	}
}

func TestLeaveReplies(t *testing.T) {
	for _, tc := range []struct {
		reply string
		code  int
		desc  string
	}{
		{`{}`, 0, ""},
		{`{"error": {"uri": "app.error.gone", "desc": "nope", "code": 410}}`, 410, "nope"},
		{`{"result": 1}`, 502, `unexpected field "result"`},
		{`{"drop": true}`, 502, `unexpected field "drop"`},
	} {
		srv, _ := server(t, jsonReply(tc.reply))
		u := newUp(t, srv.URL, func(c *Config) { c.NotifyUnsubscribe = true })
		err := u.OnUnsubscribeBatch(context.Background(), fakeClient{}, handler.LeaveDisconnect, leaveSubs("chat"))
		if tc.code == 0 {
			if err != nil {
				t.Fatalf("%s: %v", tc.reply, err)
			}
			continue
		}
		wantError(t, err, tc.code, "", tc.desc)
	}
}

// A leave takes slots like any request: the route's when all its topics
// share one route, only the upstream's otherwise; when none is free it is
// dropped as busy, without a request.
func TestLeaveConcurrency(t *testing.T) {
	var leaves atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	srv, _ := server(t, func(w http.ResponseWriter, r *received) {
		if r.Body.Kind == KindLeave {
			leaves.Add(1)
			jsonReply(`{}`)(w, r)
			return
		}
		entered <- struct{}{}
		<-release
		jsonReply(`{"result": 1}`)(w, r)
	})
	t.Cleanup(func() { close(release) }) // before the server's own cleanup
	u := newUp(t, srv.URL, func(c *Config) {
		c.NotifyUnsubscribe = true
		c.MaxConcurrent = 2
		c.QueueWait = -1
		c.Routes = map[string]RouteLimits{"chat": {MaxConcurrent: 1}}
	})
	ctx := context.Background()
	chatCall := handler.Request{Route: "chat", URI: "chat/x", Attributes: map[string]string{"method": "x"}}
	done := callAsync(u, chatCall)
	<-entered
	// The chat route's one slot is taken: a chat-only leave is busy ...
	err := u.OnUnsubscribeBatch(ctx, fakeClient{}, handler.LeaveDisconnect, leaveSubs("chat", "chat"))
	wantError(t, err, 503, URIBusy, "upstream busy")
	// ... one spanning routes takes only an upstream slot, and goes out.
	if err := u.OnUnsubscribeBatch(ctx, fakeClient{}, handler.LeaveDisconnect, leaveSubs("chat", "news")); err != nil {
		t.Fatalf("mixed-route leave: %v", err)
	}
	// With the upstream's slots all taken, any leave is busy.
	done2 := callAsync(u, handler.Request{Route: "news", URI: "news/x", Attributes: map[string]string{"method": "x"}})
	<-entered
	err = u.OnUnsubscribeBatch(ctx, fakeClient{}, handler.LeaveDisconnect, leaveSubs("chat", "news"))
	wantError(t, err, 503, URIBusy, "upstream busy")
	if n := leaves.Load(); n != 1 {
		t.Fatalf("%d leaves reached the app, want 1", n)
	}
	release <- struct{}{}
	release <- struct{}{}
	for _, d := range []<-chan error{done, done2} {
		select {
		case err := <-d:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("held call never ended")
		}
	}
}
