package wamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/wamp/handler"
)

// subscribeAs subscribes s to each uri in its own protocol, discards what
// comes back (SUBSCRIBED, join broadcasts) and returns the v2
// subscription ids by URI (empty for v1).
func subscribeAs(t *testing.T, s *Session, p *fakePeer, uris ...string) map[string]uint64 {
	t.Helper()
	ids := map[string]uint64{}
	for i, uri := range uris {
		msg := `[5,"` + uri + `"]`
		if s.Protocol() == ProtocolV2JSON {
			msg = `[32,` + strconv.Itoa(100+i) + `,{},"` + uri + `"]`
		}
		if err := s.Handle(context.Background(), []byte(msg)); err != nil {
			t.Fatalf("subscribe %s: %v", uri, err)
		}
		got := p.take()
		if s.Protocol() == ProtocolV2JSON {
			if len(got) == 0 {
				t.Fatalf("subscribe %s: no answer", uri)
			}
			var m []json.Number
			d := json.NewDecoder(strings.NewReader(string(got[0])))
			d.UseNumber()
			if d.Decode(&m) != nil || len(m) != 3 || m[0] != "33" {
				t.Fatalf("subscribe %s: got %q, want SUBSCRIBED", uri, got)
			}
			id, _ := strconv.ParseUint(string(m[2]), 10, 64)
			ids[uri] = id
		}
	}
	return ids
}

func TestReidentify(t *testing.T) {
	type tc struct {
		name     string
		before   ClientInfo
		subs     []string
		after    ClientInfo
		dropped  []string // sorted
		user     string   // "$SID" = session id
		anon     bool
		roles    []string
		oldFound bool // FindByUsername(before user) still finds the client
		// then: subscribing here must be refused (deny) or admitted
		denyURI, allowURI string
	}
	cases := []tc{
		{
			name:     "logout downgrades to anonymous",
			before:   ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER"}}},
			subs:     []string{"private/1", "chan/1"},
			after:    ClientInfo{ConnID: "c1", Identity: handler.Identity{Anonymous: true}},
			dropped:  []string{"private/1"},
			user:     "anon-$SID",
			anon:     true,
			denyURI:  "private/2",
			allowURI: "chan/2",
		},
		{
			name:    "expired session with roles drops role and member topics",
			before:  ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_STAFF"}}},
			subs:    []string{"staff/1", "private/1", "chan/1"},
			after:   ClientInfo{ConnID: "c1", Identity: handler.Identity{Firewall: "main"}}, // no user: anonymous
			dropped: []string{"private/1", "staff/1"},
			user:    "anon-$SID",
			anon:    true,
			denyURI: "staff/2",
		},
		{
			name:     "role revoked drops role-restricted topics only",
			before:   ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_ADMIN", "ROLE_USER"}}},
			subs:     []string{"staff/1", "private/1", "chan/1"},
			after:    ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_USER"}}},
			dropped:  []string{"staff/1"},
			user:     "alice",
			roles:    []string{"ROLE_USER"},
			oldFound: true,
			denyURI:  "staff/2",
			allowURI: "private/2",
		},
		{
			name:    "another user who passes every rule keeps everything",
			before:  ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_ADMIN"}}},
			subs:    []string{"staff/1", "private/1"},
			after:   ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "bob", Firewall: "admin", Roles: []string{"ROLE_STAFF"}}},
			dropped: nil,
			user:    "bob",
			roles:   []string{"ROLE_STAFF"},
		},
		{
			name:     "anonymous client logs in",
			before:   ClientInfo{ConnID: "c1", Identity: handler.Identity{Anonymous: true}},
			subs:     []string{"chan/1"},
			after:    ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Firewall: "main", Roles: []string{"ROLE_ADMIN"}}},
			dropped:  nil,
			user:     "alice",
			roles:    []string{"ROLE_ADMIN"},
			allowURI: "staff/1",
		},
	}
	for _, proto := range []Protocol{ProtocolV1, ProtocolV2JSON} {
		for _, c := range cases {
			t.Run(proto.String()+"/"+c.name, func(t *testing.T) {
				f := newFixture(t, accessRoutes)
				var s *Session
				var p *fakePeer
				if proto == ProtocolV2JSON {
					s, p = f.openV2(t, c.before)
				} else {
					s, p = f.open(t, "c1", c.before)
				}
				oldUser := s.UserIdentifier()
				subIDs := subscribeAs(t, s, p, c.subs...)
				f.topic.takeCalls()

				n := s.Reidentify(c.after)
				if n != len(c.dropped) {
					t.Errorf("Reidentify dropped %d, want %d", n, len(c.dropped))
				}

				// Callbacks and messages for the dropped subscriptions.
				var wantCalls, wantMsgs []string
				for _, uri := range c.dropped {
					wantCalls = append(wantCalls, "unsub c1 "+uri)
					if proto == ProtocolV2JSON {
						wantMsgs = append(wantMsgs, fmt.Sprintf(`[35,0,{"subscription":%d,"reason":"wamp.error.not_authorized"}]`, subIDs[uri]))
					}
				}
				if got := f.topic.takeCalls(); strings.Join(got, "|") != strings.Join(wantCalls, "|") {
					t.Errorf("handler calls %q, want %q", got, wantCalls)
				}
				expectMsgs(t, p.take(), wantMsgs, s.ID()) // v1: nothing at all

				// Identity as handlers see it.
				wantUser := strings.ReplaceAll(c.user, "$SID", s.ID())
				if s.UserIdentifier() != wantUser || s.Anonymous() != c.anon || !reflect.DeepEqual(s.Roles(), c.roles) {
					t.Errorf("identity %q anon=%v roles=%q, want %q %v %q", s.UserIdentifier(), s.Anonymous(), s.Roles(), wantUser, c.anon, c.roles)
				}
				if want := c.after.Identity.Firewall; s.Firewall() != want {
					t.Errorf("firewall %q, want %q", s.Firewall(), want)
				}
				if s.ConnID() != "c1" {
					t.Errorf("conn id changed to %q", s.ConnID())
				}

				// The client index follows at once.
				cm := f.node.Clients()
				if got, ok := cm.FindByUsername(wantUser); !ok || got.SessionID() != s.ID() {
					t.Errorf("FindByUsername(%q) = %v, %v", wantUser, got, ok)
				}
				if oldUser != wantUser {
					if _, ok := cm.FindByUsername(oldUser); ok != c.oldFound {
						t.Errorf("FindByUsername(old %q) found=%v, want %v", oldUser, ok, c.oldFound)
					}
					if got := cm.FindAllByUsername(oldUser); (len(got) > 0) != c.oldFound {
						t.Errorf("FindAllByUsername(old %q) = %d clients", oldUser, len(got))
					}
				}
				if got := len(cm.FindByRoles([]string{"ROLE_ADMIN"})); got != boolInt(containsStr(c.roles, "ROLE_ADMIN") && !c.anon) {
					t.Errorf("FindByRoles(ROLE_ADMIN) = %d clients", got)
				}
				if got := len(cm.GetAll(false)); got != boolInt(!c.anon) {
					t.Errorf("GetAll(false) = %d clients, anonymous=%v", got, c.anon)
				}
				if st := f.node.Stats(); st.Sessions[proto] != 1 {
					t.Errorf("stats sessions %v", st.Sessions)
				}

				// Dropped topics deliver nothing any more; kept ones do.
				for _, uri := range c.subs {
					dropped := containsStr(c.dropped, uri)
					if err := f.node.Topic(uri).Broadcast("x", nil, nil); err != nil {
						t.Fatal(err)
					}
					if got := len(p.take()); got != boolInt(!dropped) {
						t.Errorf("broadcast on %s reached the client %d times, dropped=%v", uri, got, dropped)
					}
					if got := f.node.broker.count(uri); got != boolInt(!dropped) {
						t.Errorf("%s has %d subscribers", uri, got)
					}
				}

				// Access rules use the new identity.
				if c.denyURI != "" {
					subscribeAs2(t, s, p, c.denyURI, false)
				}
				if c.allowURI != "" {
					subscribeAs2(t, s, p, c.allowURI, true)
				}
				f.topic.takeCalls()

				// Close unsubscribes what is left, never the dropped ones twice.
				s.Close()
				f.settle(t)
				var kept []string
				for _, uri := range append(append([]string(nil), c.subs...), c.allowURI) {
					if uri != "" && !containsStr(c.dropped, uri) {
						kept = append(kept, "unsub c1 "+uri)
					}
				}
				sort.Strings(kept)
				if got := f.topic.takeCalls(); strings.Join(got, "|") != strings.Join(kept, "|") {
					t.Errorf("calls on Close %q, want %q", got, kept)
				}
				if _, ok := cm.FindByUsername(wantUser); ok {
					t.Error("client still indexed after Close")
				}
				if st := f.node.Stats(); st.Sessions[proto] != 0 || st.Subscriptions != 0 {
					t.Errorf("stats after Close %+v", st)
				}
				if s.Reidentify(c.before) != 0 {
					t.Error("Reidentify after Close dropped something")
				}
				if _, ok := cm.GetClient("c1"); ok {
					t.Error("Reidentify after Close indexed the client again")
				}
			})
		}
	}
}

// subscribeAs2 subscribes to uri and checks it is admitted or refused by
// the access rules.
func subscribeAs2(t *testing.T, s *Session, p *fakePeer, uri string, admitted bool) {
	t.Helper()
	msg := `[5,"` + uri + `"]`
	if s.Protocol() == ProtocolV2JSON {
		msg = `[32,7,{},"` + uri + `"]`
	}
	if err := s.Handle(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := p.take()
	refused := len(got) == 1 && (strings.HasPrefix(string(got[0]), `[8,32,7,{},"wamp.error.not_authorized"`) ||
		strings.HasPrefix(string(got[0]), `[4,"`+uri+`","`+uri+`","Access denied"`))
	if refused == admitted {
		t.Errorf("subscribe %s after Reidentify: got %q, want admitted=%v", uri, got, admitted)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gatedTopic blocks OnSubscribe (route "gsub") and OnPublish until its gate
// is released, and records every callback.
type gatedTopic struct {
	entered chan string
	gate    chan struct{}
	failSub bool

	mu    sync.Mutex
	calls []string
}

func (*gatedTopic) Name() string { return "test.gated" }

func (g *gatedTopic) record(s string) {
	g.mu.Lock()
	g.calls = append(g.calls, s)
	g.mu.Unlock()
}

func (g *gatedTopic) takeCalls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.calls
	g.calls = nil
	return out
}

func (g *gatedTopic) OnSubscribe(_ context.Context, c handler.Client, ref handler.TopicRef, req handler.Request) error {
	if req.Route == "gsub" {
		g.entered <- "sub " + ref.ID()
		<-g.gate
	}
	g.record("sub " + ref.ID())
	if req.Route == "gsub" && g.failSub {
		return errors.New("refused")
	}
	return nil
}

func (g *gatedTopic) OnUnsubscribe(_ context.Context, _ handler.Client, ref handler.TopicRef, _ handler.Request) error {
	g.record("unsub " + ref.ID())
	return nil
}

func (g *gatedTopic) OnPublish(_ context.Context, _ handler.Client, ref handler.TopicRef, _ handler.Request, _ json.RawMessage, _, _ []string) error {
	g.entered <- "pub " + ref.ID()
	<-g.gate
	g.record("pub " + ref.ID())
	return nil
}

func gatedFixture(t *testing.T) (*fixture, *gatedTopic) {
	g := &gatedTopic{entered: make(chan string, 1), gate: make(chan struct{})}
	f := newFixture(t, func(c *NodeConfig) {
		accessRoutes(c)
		c.CallTimeout = -1
		if err := c.Handlers.AddTopic(g); err != nil {
			t.Fatal(err)
		}
		c.Routes.Topics["gpriv"] = RouteConfig{Pattern: "gpriv/{x}", Handler: "test.gated", Anonymous: boolp(false)}
		c.Routes.Topics["gsub"] = RouteConfig{Pattern: "gsub/{x}", Handler: "test.gated", Anonymous: boolp(false)}
		c.Routes.Topics["gpub"] = RouteConfig{Pattern: "gpub/{x}", Handler: "test.gated"}
	})
	return f, g
}

func waitEntered(t *testing.T, g *gatedTopic, want string) {
	t.Helper()
	select {
	case got := <-g.entered:
		if got != want {
			t.Fatalf("entered %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s never started", want)
	}
}

// TestReidentifyDuringHandle: while the reader runs a handler, Reidentify
// returns at once with delivery stopped and the index updated, and leaves
// OnUnsubscribe to the reader, so one client's callbacks never overlap.
func TestReidentifyDuringHandle(t *testing.T) {
	for _, proto := range []Protocol{ProtocolV1, ProtocolV2JSON} {
		t.Run(proto.String(), func(t *testing.T) {
			f, g := gatedFixture(t)
			info := ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_USER"}}}
			var s *Session
			var p *fakePeer
			if proto == ProtocolV2JSON {
				s, p = f.openV2(t, info)
			} else {
				s, p = f.open(t, "c1", info)
			}
			ids := subscribeAs(t, s, p, "gpriv/1")
			g.takeCalls()

			pub := `[7,"gpub/1","e"]`
			if proto == ProtocolV2JSON {
				pub = `[16,9,{},"gpub/1",["e"]]`
			}
			done := make(chan error, 1)
			go func() { done <- s.Handle(context.Background(), []byte(pub)) }()
			waitEntered(t, g, "pub gpub/1")

			if n := s.Reidentify(ClientInfo{ConnID: "c1", Identity: handler.Identity{Anonymous: true}}); n != 1 {
				t.Errorf("dropped %d, want 1", n)
			}
			if f.node.broker.count("gpriv/1") != 0 {
				t.Error("still subscribed while the reader is busy")
			}
			if _, ok := f.node.Clients().FindByUsername("alice"); ok {
				t.Error("alice still indexed")
			}
			if got := g.takeCalls(); len(got) != 0 {
				t.Errorf("callbacks ran beside the reader's handler: %q", got)
			}
			var want []string
			if proto == ProtocolV2JSON {
				// SUBSCRIBED was out long ago: the revocation is sent at once.
				want = []string{fmt.Sprintf(`[35,0,{"subscription":%d,"reason":"wamp.error.not_authorized"}]`, ids["gpriv/1"])}
			}
			expectMsgs(t, p.take(), want, s.ID())

			close(g.gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got, want := g.takeCalls(), []string{"pub gpub/1", "unsub gpriv/1"}; !reflect.DeepEqual(got, want) {
				t.Errorf("calls %q, want %q", got, want)
			}
			s.Close()
			f.settle(t) // Close's callbacks run off the caller
			if got := g.takeCalls(); len(got) != 0 {
				t.Errorf("Close repeated callbacks: %q", got)
			}
		})
	}
}

// TestReidentifyDuringSubscribe: a subscription dropped while its
// OnSubscribe runs is completed by the reader after it: OnUnsubscribe
// follows OnSubscribe and the v2 revocation follows SUBSCRIBED; if
// OnSubscribe fails, only its own failure is reported.
func TestReidentifyDuringSubscribe(t *testing.T) {
	for _, proto := range []Protocol{ProtocolV1, ProtocolV2JSON} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/failSub=%v", proto, fail), func(t *testing.T) {
				f, g := gatedFixture(t)
				g.failSub = fail
				info := ClientInfo{ConnID: "c1", Identity: handler.Identity{UserIdentifier: "alice"}}
				var s *Session
				var p *fakePeer
				if proto == ProtocolV2JSON {
					s, p = f.openV2(t, info)
				} else {
					s, p = f.open(t, "c1", info)
				}
				sub := `[5,"gsub/1"]`
				if proto == ProtocolV2JSON {
					sub = `[32,5,{},"gsub/1"]`
				}
				done := make(chan error, 1)
				go func() { done <- s.Handle(context.Background(), []byte(sub)) }()
				waitEntered(t, g, "sub gsub/1")
				if n := s.Reidentify(ClientInfo{ConnID: "c1", Identity: handler.Identity{Anonymous: true}}); n != 1 {
					t.Errorf("dropped %d, want 1", n)
				}
				close(g.gate)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				subID := f.node.subSeq.Load()
				var wantCalls, wantMsgs []string
				switch {
				case !fail:
					wantCalls = []string{"sub gsub/1", "unsub gsub/1"}
					if proto == ProtocolV2JSON {
						wantMsgs = []string{
							fmt.Sprintf(`[33,5,%d]`, subID),
							fmt.Sprintf(`[35,0,{"subscription":%d,"reason":"wamp.error.not_authorized"}]`, subID),
						}
					}
				case proto == ProtocolV2JSON:
					wantCalls = []string{"sub gsub/1"}
					wantMsgs = []string{
						fmt.Sprintf(`[33,5,%d]`, subID),
						fmt.Sprintf(`[35,0,{"subscription":%d,"reason":"wamp.error.runtime_error"}]`, subID),
					}
				default:
					wantCalls = []string{"sub gsub/1"}
					wantMsgs = []string{`[4,"gsub/1","gsub/1","refused",{"code":500,"topic":{},"request":{},"event":"onSubscribe"}]`}
				}
				if got := g.takeCalls(); !reflect.DeepEqual(got, wantCalls) {
					t.Errorf("calls %q, want %q", got, wantCalls)
				}
				expectMsgs(t, p.take(), wantMsgs, s.ID())
				if f.node.broker.count("gsub/1") != 0 {
					t.Error("dropped subscription still in the broker")
				}
				s.Close()
				f.settle(t) // Close's callbacks run off the caller
				if got := g.takeCalls(); len(got) != 0 {
					t.Errorf("Close repeated callbacks: %q", got)
				}
			})
		}
	}
}

// TestReidentifyRace is for -race: readers handling messages, broadcasts
// and Reidentify flipping identities, all at once on the same sessions. It
// also checks that every client's OnSubscribe/OnUnsubscribe calls
// alternate per topic and balance out, i.e. that callbacks for one client
// never overlapped or repeated.
func TestReidentifyRace(t *testing.T) {
	f := newFixture(t, accessRoutes)
	const clients, rounds = 8, 60
	topics := []string{"private/1", "staff/1", "chan/1"}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // broadcaster and index reader
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, uri := range topics {
				_ = f.node.Topic(uri).Broadcast("tick", nil, nil)
			}
			cm := f.node.Clients()
			cm.FindByUsername("alice")
			cm.FindByRoles([]string{"ROLE_ADMIN"})
			for _, c := range cm.GetAll(true) {
				_ = c.UserIdentifier() + c.Firewall()
				_ = c.Anonymous()
				_ = c.Roles()
			}
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		proto := []Protocol{ProtocolV1, ProtocolV2JSON}[i%2]
		p := &fakePeer{}
		connID := "c" + strconv.Itoa(i)
		s := f.node.OpenProtocol(p, ClientInfo{ConnID: connID, Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_ADMIN"}}}, proto)
		if proto == ProtocolV2JSON {
			if err := s.Handle(context.Background(), []byte(`[1,"realm1",{}]`)); err != nil {
				t.Fatal(err)
			}
		}
		wg.Add(2)
		go func() { // reader
			defer wg.Done()
			ctx := context.Background()
			for j := 0; j < rounds; j++ {
				uri := topics[j%len(topics)]
				var msgs []string
				if proto == ProtocolV2JSON {
					msgs = []string{`[32,1,{},"` + uri + `"]`, `[16,2,{},"` + uri + `",["e"]]`, `[48,3,{},"members/echo",[1]]`}
				} else {
					msgs = []string{`[5,"` + uri + `"]`, `[7,"` + uri + `","e"]`, `[2,"c","members/echo",1]`, `[6,"` + uri + `"]`}
				}
				for _, m := range msgs {
					if err := s.Handle(ctx, []byte(m)); err != nil {
						if errors.Is(err, ErrClosed) {
							return // the revalidation goroutine closed it first
						}
						t.Error(err)
						return
					}
				}
				p.take()
			}
		}()
		go func() { // revalidation
			defer wg.Done()
			for j := 0; j < rounds; j++ {
				if j%2 == 0 {
					s.Reidentify(ClientInfo{ConnID: connID, Identity: handler.Identity{Anonymous: true}})
				} else {
					s.Reidentify(ClientInfo{ConnID: connID, Identity: handler.Identity{UserIdentifier: "alice", Roles: []string{"ROLE_ADMIN"}}})
				}
				_ = s.UserIdentifier()
				time.Sleep(50 * time.Microsecond)
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	f.settle(t) // the unsubscribes Close left

	if st := f.node.Stats(); st.Topics != 0 || st.Subscriptions != 0 || st.Sessions[ProtocolV1] != 0 || st.Sessions[ProtocolV2JSON] != 0 {
		t.Errorf("left over: %+v", st)
	}
	if n := len(f.node.Clients().GetAll(true)); n != 0 {
		t.Errorf("%d clients still indexed", n)
	}
	// Per (client, topic): sub, unsub, sub, unsub, ... ending unsubscribed.
	finishSubscribe := map[string]bool{}
	for _, c := range f.topic.takeCalls() {
		fields := strings.Fields(c)
		if fields[0] != "sub" && fields[0] != "unsub" {
			continue
		}
		key := fields[1] + " " + fields[2]
		if (fields[0] == "sub") == finishSubscribe[key] {
			t.Fatalf("%s: %s while subscribed=%v", key, fields[0], finishSubscribe[key])
		}
		finishSubscribe[key] = fields[0] == "sub"
	}
	for key, on := range finishSubscribe {
		if on {
			t.Errorf("%s: OnSubscribe without OnUnsubscribe", key)
		}
	}
}
