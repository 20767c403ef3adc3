package wamp

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/wsgate/wsgate/wamp/handler"
)

// Pattern-based subscriptions (WAMP v2 advanced profile): SUBSCRIBE with
// the option match "prefix" or "wildcard".
//
// Components. WAMP separates URI components with "."; wsgate's topics are
// routed on "/"-separated segments (GosPubSubRouterBundle), so a wildcard
// pattern's components are its "/"-separated segments: an empty segment
// matches any one non-empty segment ("user//inbox" matches
// "user/alice/inbox", "public/" matches "public/chat"). A prefix pattern
// is a plain string prefix, as the spec says ("user/" matches
// "user/alice" and "user/alice/inbox").
//
// Access. A pattern subscription is accepted without a route (it names no
// topic), and every event is checked when it is delivered through it: the
// concrete topic must match a topic route whose access rules (Roles,
// Anonymous) and whose handler's handler.SubscribeAuthorizer admit the
// client's current identity, exactly the checks an exact SUBSCRIBE of that
// topic passes. So a pattern never delivers an event of a topic the client
// could not subscribe to directly. The decision is kept per session and
// topic (topicGrants: at most maxGrantsPerSession topics, cleared when
// full) and thrown away as a whole when the identity changes
// (Reidentify replaces the identity pointer the cache was made for), so
// a steady fan-out costs one map lookup per pattern subscriber.
//
// Handlers. A pattern subscription runs no handler callback: no
// OnSubscribe nor OnUnsubscribe (there is no topic to name, and an
// upstream or presence handler would announce a join the app cannot
// interpret), it starts no PeriodicTopic timer and handler.TopicRef.Count
// does not count it. It receives what handlers broadcast, pushes and
// relayed events alike.
//
// Cost. Patterns are indexed so that a publish does not compare its topic
// with every pattern: prefixes by length (one map lookup per distinct
// prefix length), wildcards by segment count (compared only with the
// patterns of the topic's segment count). Distinct patterns are bounded
// node-wide (Limits.MaxPatterns); pattern subscriptions count against
// Limits.MaxSubscriptions like exact ones.

// Match policies of the SUBSCRIBE option "match".
const (
	matchExact    = "exact"
	matchPrefix   = "prefix"
	matchWildcard = "wildcard"
)

// errURITooManyPatterns answers a pattern SUBSCRIBE refused at
// Limits.MaxPatterns.
const errURITooManyPatterns = "wsgate.error.too_many_patterns"

// maxGrantsPerSession bounds a session's cached access decisions.
const maxGrantsPerSession = 256

// subscribeOptions are the SUBSCRIBE options the node honours.
type subscribeOptions struct {
	// match is matchExact, matchPrefix or matchWildcard.
	match string
	// getRetained asks for the topic's retained event (event retention).
	getRetained bool
}

// parseSubscribeOptions reads SUBSCRIBE options; an error is the client's
// (ERROR wamp.error.invalid_argument), not a violation. Unknown options
// are ignored, as the spec asks of routers.
func parseSubscribeOptions(dict json.RawMessage) (subscribeOptions, error) {
	o := subscribeOptions{match: matchExact}
	if isEmptyContainer(dict) {
		return o, nil
	}
	var raw struct {
		Match       *string `json:"match"`
		GetRetained *bool   `json:"get_retained"`
	}
	if err := json.Unmarshal(dict, &raw); err != nil {
		return o, fmt.Errorf("SUBSCRIBE options: %w", err)
	}
	if raw.Match != nil {
		switch *raw.Match {
		case matchExact, matchPrefix, matchWildcard:
			o.match = *raw.Match
		default:
			return o, fmt.Errorf("SUBSCRIBE option match %.32q is not exact, prefix nor wildcard", *raw.Match)
		}
	}
	if raw.GetRetained != nil {
		o.getRetained = *raw.GetRetained
	}
	return o, nil
}

// checkTopicPattern checks a prefix or wildcard pattern: not empty, no NUL
// byte (see cluster relayable), no "{" or "}" (route placeholders are not
// patterns), and a wildcard pattern with at most maxWildcardSegments
// segments.
func checkTopicPattern(match, pattern string) error {
	switch {
	case pattern == "":
		return errors.New("empty pattern")
	case strings.ContainsAny(pattern, "\x00{}"):
		return errors.New("pattern holds NUL, { or }")
	case match == matchWildcard && strings.Count(pattern, "/") >= maxWildcardSegments:
		return fmt.Errorf("wildcard pattern has more than %d segments", maxWildcardSegments)
	}
	return nil
}

// maxWildcardSegments bounds a wildcard pattern's segments, as the route
// trie bounds a URI's: longer ones would match no route anyway.
const maxWildcardSegments = 64

// patternKey identifies a pattern subscription at router scope: every
// session subscribing to the same pattern with the same policy shares its
// subscription id, so that one EVENT encoding serves them all.
type patternKey struct{ match, pattern string }

// patternState is one pattern with local subscribers.
type patternState struct {
	key patternKey
	// segs are a wildcard pattern's segments, "" for any.
	segs        []string
	subscribers map[*Session]struct{}
	snap        atomic.Pointer[subscriberSnap]
	subID       uint64
}

// matches reports whether the wildcard pattern matches a topic split in
// segs (same count, the caller checked).
func (p *patternState) matchesSegs(segs []string) bool {
	for i, want := range p.segs {
		if want == "" {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if want != segs[i] {
			return false
		}
	}
	return true
}

// patternIndex holds the broker's pattern subscriptions; broker.mu guards
// it.
type patternIndex struct {
	byKey map[patternKey]*patternState
	// prefix patterns by prefix, and how many there are of each length,
	// with the lengths sorted in prefixLens.
	prefixes   map[string]*patternState
	lenCount   map[int]int
	prefixLens []int
	// wild are the wildcard patterns by segment count.
	wild map[int][]*patternState
	// n mirrors len(byKey) for the lock-free fast path of a fan-out.
	n atomic.Int64
}

// matchingPatterns appends the patterns matching uri to out; broker.mu
// must be held (read).
func (ix *patternIndex) matchingPatterns(uri string, out []*patternState) []*patternState {
	for _, l := range ix.prefixLens {
		if l > len(uri) {
			break
		}
		if p := ix.prefixes[uri[:l]]; p != nil {
			out = append(out, p)
		}
	}
	if len(ix.wild) > 0 {
		nseg := strings.Count(uri, "/") + 1
		if cands := ix.wild[nseg]; len(cands) > 0 {
			segs := strings.Split(uri, "/")
			for _, p := range cands {
				if p.matchesSegs(segs) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// PatternRelay is a Relay that can also carry the events of topics
// matching a pattern, for pattern-based subscriptions. A node whose Relay
// is not a PatternRelay, or whose PatternRelay says it has no Patterns
// (sharded pub/sub in a Redis Cluster has no pattern subscribe), refuses
// pattern subscriptions: they would silently miss the other replicas'
// events.
type PatternRelay interface {
	Relay
	// Patterns reports whether the relay carries pattern subscriptions.
	Patterns() bool
	// WatchPattern reports that a pattern (match "prefix" or "wildcard")
	// got its first subscriber on this node: from then on the relay must
	// deliver (Node.DeliverRelayed) every topic the pattern matches; more
	// is fine, the node filters. Called with the broker's lock held: it
	// must not block nor call back into the node.
	WatchPattern(match, pattern string)
	// UnwatchPattern reports that the pattern lost its last subscriber on
	// this node, under the same constraints.
	UnwatchPattern(match, pattern string)
}

// patternsAvailable reports whether the node can serve pattern
// subscriptions with relay.
func patternsAvailable(relay Relay) bool {
	if relay == nil {
		return true
	}
	pr, ok := relay.(PatternRelay)
	return ok && pr.Patterns()
}

// addPattern subscribes s to the pattern key and returns its subscription
// id, or 0 when the node is at Limits.MaxPatterns and key is new.
func (b *broker) addPattern(n *Node, key patternKey, s *Session) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	ix := &b.patterns
	p := ix.byKey[key]
	if p == nil {
		if len(ix.byKey) >= n.limits.MaxPatterns {
			return 0
		}
		p = &patternState{key: key, subscribers: map[*Session]struct{}{}, subID: n.subSeq.Add(1)}
		if ix.byKey == nil {
			ix.byKey = map[patternKey]*patternState{}
			ix.prefixes = map[string]*patternState{}
			ix.lenCount = map[int]int{}
			ix.wild = map[int][]*patternState{}
		}
		ix.byKey[key] = p
		ix.n.Store(int64(len(ix.byKey)))
		if key.match == matchPrefix {
			ix.prefixes[key.pattern] = p
			l := len(key.pattern)
			if ix.lenCount[l] == 0 {
				i, _ := slices.BinarySearch(ix.prefixLens, l)
				ix.prefixLens = slices.Insert(ix.prefixLens, i, l)
			}
			ix.lenCount[l]++
		} else {
			p.segs = strings.Split(key.pattern, "/")
			ix.wild[len(p.segs)] = append(ix.wild[len(p.segs)], p)
		}
		if pr, ok := b.relay.(PatternRelay); ok {
			pr.WatchPattern(key.match, key.pattern)
		}
	}
	if _, dup := p.subscribers[s]; !dup {
		p.subscribers[s] = struct{}{}
		b.subscriptions++
		p.snap.Store(nil)
	}
	return p.subID
}

// removePattern unsubscribes s from the pattern key, deleting the pattern
// when it is empty.
func (b *broker) removePattern(key patternKey, s *Session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ix := &b.patterns
	p := ix.byKey[key]
	if p == nil {
		return
	}
	if _, ok := p.subscribers[s]; !ok {
		return
	}
	delete(p.subscribers, s)
	b.subscriptions--
	p.snap.Store(nil)
	if len(p.subscribers) > 0 {
		return
	}
	delete(ix.byKey, key)
	ix.n.Store(int64(len(ix.byKey)))
	if key.match == matchPrefix {
		delete(ix.prefixes, key.pattern)
		l := len(key.pattern)
		if ix.lenCount[l]--; ix.lenCount[l] == 0 {
			delete(ix.lenCount, l)
			if i, ok := slices.BinarySearch(ix.prefixLens, l); ok {
				ix.prefixLens = slices.Delete(ix.prefixLens, i, i+1)
			}
		}
	} else {
		list := ix.wild[len(p.segs)]
		if i := slices.Index(list, p); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(ix.wild, len(p.segs))
		} else {
			ix.wild[len(p.segs)] = list
		}
	}
	if pr, ok := b.relay.(PatternRelay); ok {
		pr.UnwatchPattern(key.match, key.pattern)
	}
}

// patternMatch is one pattern matching a delivered topic, with its
// subscribers.
type patternMatch struct {
	snap  *subscriberSnap
	subID uint64
}

// patternSnapshots returns the subscribers of the patterns matching uri,
// or nil when none match (at once, without a lock, when the node has no
// pattern subscription).
func (b *broker) patternSnapshots(uri string) []patternMatch {
	if b.patterns.n.Load() == 0 {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	var buf [4]*patternState
	ps := b.patterns.matchingPatterns(uri, buf[:0])
	if len(ps) == 0 {
		return nil
	}
	out := make([]patternMatch, len(ps))
	for i, p := range ps {
		snap := p.snap.Load()
		if snap == nil {
			snap = buildSnap(p.subscribers)
			p.snap.Store(snap)
		}
		out[i] = patternMatch{snap: snap, subID: p.subID}
	}
	return out
}

// buildSnap splits subscribers by protocol (see subscriberSnap).
func buildSnap(subscribers map[*Session]struct{}) *subscriberSnap {
	snap := &subscriberSnap{}
	for s := range subscribers {
		ref := subscriberRef{id: s.id, peer: s.peer, s: s}
		switch {
		case s.proto.Binary():
			i := binaryIndex(s.proto)
			snap.v2bin[i] = append(snap.v2bin[i], ref)
		case s.proto.V2():
			snap.v2 = append(snap.v2, ref)
		default:
			snap.v1 = append(snap.v1, ref)
		}
	}
	return snap
}

// deliverPatterns fans the event out to this node's pattern subscribers
// of patterns matching uri that a selects and that may receive uri (see
// Session.mayReceive), with details.topic naming uri. pubID is the
// publication id the exact subscribers got.
func (n *Node) deliverPatterns(uri string, payload []byte, a *Audience, details []byte, pubID uint64) int {
	matches := n.broker.patternSnapshots(uri)
	if len(matches) == 0 {
		return 0
	}
	r, attrs, ok := n.topicRoutes.match(uri)
	if !ok {
		return 0 // nobody could subscribe to uri directly
	}
	req := handler.Request{Route: r.name, URI: uri, Attributes: attrs}
	d := withTopicDetail(details, uri)
	f := newAudienceFilter(a)
	g := grantCheck{route: r, req: &req}
	sent := 0
	for _, m := range matches {
		msg := encodeEventV2(m.subID, pubID, d, payload)
		if c := g.fanout(m.snap.v2, msg, &f); c > 0 {
			n.obs.MessagesOut(ProtocolV2JSON, "EVENT", c)
			sent += c
		}
		for i, subs := range m.snap.v2bin {
			if len(subs) == 0 {
				continue
			}
			allowed := g.filter(subs, &f)
			if len(allowed) > 0 {
				sent += n.fanoutBinary(binaryProtocols[i], allowed, msg, &audienceFilter{})
			}
		}
	}
	return sent
}

// withTopicDetail returns the EVENT details with "topic": uri added (the
// advanced profile's pattern-based subscription detail); nil details are
// {}.
func withTopicDetail(details []byte, uri string) []byte {
	b := make([]byte, 0, 16+len(uri)+len(details))
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, uri)
	if len(details) > 2 { // a non-empty object: its members follow
		b = append(b, ',')
		b = append(b, details[1:]...)
		return b
	}
	return append(b, '}')
}

// grantCheck decides, for one delivered topic, which pattern subscribers
// may receive it.
type grantCheck struct {
	route *route[*topicHandler]
	req   *handler.Request
}

// fanout hands msg to every subscriber f admits and the topic's access
// rules admit.
func (g *grantCheck) fanout(subs []subscriberRef, msg []byte, f *audienceFilter) int {
	sent := 0
	for _, s := range subs {
		if f.any && !f.admits(s.id, s.s) || !s.s.mayReceive(g.route, g.req) {
			continue
		}
		if s.peer.Send(msg) {
			sent++
		}
	}
	return sent
}

// filter returns the subscribers f and the topic's access rules admit.
func (g *grantCheck) filter(subs []subscriberRef, f *audienceFilter) []subscriberRef {
	var out []subscriberRef
	for _, s := range subs {
		if f.any && !f.admits(s.id, s.s) || !s.s.mayReceive(g.route, g.req) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// topicGrants caches a session's access decisions for topics delivered
// through its pattern subscriptions.
type topicGrants struct {
	// mu guards who and ok.
	mu sync.Mutex
	// who is the identity the decisions were made for: a Reidentify
	// stores a new pointer, which empties the cache on next use.
	who *handler.Identity
	ok  map[string]bool
}

// mayReceive reports whether the session may receive an event of
// req.URI, the topic route r matched, through a pattern subscription:
// whether it could subscribe to it directly now (r's access rule and the
// handler's SubscribeAuthorizer). Decisions are cached per identity.
func (s *Session) mayReceive(r *route[*topicHandler], req *handler.Request) bool {
	m := s.more.Load()
	if m == nil { // no pattern subscription (addPatternSub makes it first)
		return false
	}
	g := &m.grants
	who := s.identity.Load()
	g.mu.Lock()
	if g.who != who {
		clear(g.ok)
		g.who = who
	}
	v, hit := g.ok[req.URI]
	g.mu.Unlock()
	if hit {
		return v
	}
	v = r.access.allows(who.Anonymous, who.Roles) && (r.handler.authz == nil || r.handler.authz.MaySubscribe(*who, *req))
	g.mu.Lock()
	if g.who == who {
		if g.ok == nil || len(g.ok) >= maxGrantsPerSession {
			g.ok = make(map[string]bool, 8)
		}
		g.ok[req.URI] = v
	}
	g.mu.Unlock()
	return v
}

// patternSub is one of a session's pattern subscriptions.
type patternSub struct {
	key   patternKey
	subID uint64
}

// addPatternSub adds the session's subscription to key, or returns the
// existing one's id; errTooMany at Limits.MaxSubscriptions, errTooManyPatterns
// at Limits.MaxPatterns.
func (s *Session) addPatternSub(key patternKey) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.more.Load(); m != nil {
		if id, dup := m.patKeys[key]; dup {
			return id, nil
		}
	}
	if s.closing {
		return 0, ErrClosed
	}
	if s.subs.len()+s.patternCount() >= s.node.limits.MaxSubscriptions {
		return 0, errTooMany
	}
	m := s.moreFields() // before the pattern index shows s to fan-outs
	id := s.node.broker.addPattern(s.node, key, s)
	if id == 0 {
		return 0, errTooManyPatterns
	}
	if m.patKeys == nil {
		m.patKeys = map[patternKey]uint64{}
		m.patIDs = map[uint64]patternKey{}
	}
	m.patKeys[key] = id
	m.patIDs[id] = key
	return id, nil
}

var errTooManyPatterns = errors.New("too many distinct patterns on the node")

// takePatternSub removes the pattern subscription with id subID and
// reports whether there was one.
func (s *Session) takePatternSub(subID uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.more.Load()
	if m == nil {
		return false
	}
	key, ok := m.patIDs[subID]
	if !ok {
		return false
	}
	delete(m.patIDs, subID)
	delete(m.patKeys, key)
	s.node.broker.removePattern(key, s)
	return true
}

// dropPatternSubs removes every pattern subscription (cleanup); s.mu must
// be held.
func (s *Session) dropPatternSubs() {
	m := s.more.Load()
	if m == nil {
		return
	}
	for key := range m.patKeys {
		s.node.broker.removePattern(key, s)
	}
	clear(m.patKeys)
	clear(m.patIDs)
}

// subscribePatternV2 answers a SUBSCRIBE with match prefix or wildcard:
// SUBSCRIBED with the pattern's subscription id (the same again for a
// repeated SUBSCRIBE), or ERROR. No handler callback runs (see the top of
// this file).
func (s *Session) subscribePatternV2(m messageV2, o subscribeOptions) error {
	if !s.node.patterns {
		s.sendErrorV2(v2Subscribe, m.reqID, errURIInvalidArgument, "pattern-based subscriptions are not available with this cluster fan-out", nil)
		return nil
	}
	if err := checkTopicPattern(o.match, m.uri); err != nil {
		s.sendErrorV2(v2Subscribe, m.reqID, errURIInvalidURI, err.Error(), nil)
		return nil
	}
	id, err := s.addPatternSub(patternKey{match: o.match, pattern: m.uri})
	switch {
	case errors.Is(err, errTooMany):
		return s.violation(limitErr(LimitSubscriptions, "more than %d subscriptions", s.node.limits.MaxSubscriptions))
	case errors.Is(err, errTooManyPatterns):
		s.node.obs.Limit(LimitPatterns)
		s.logAt(slog.LevelInfo, "wamp: pattern subscription refused: node at max_patterns", "match", o.match)
		s.sendErrorV2(v2Subscribe, m.reqID, errURITooManyPatterns, "too many distinct patterns on this node", nil)
		return nil
	case err != nil:
		return err
	}
	s.send("SUBSCRIBED", encodeIDsV2(v2Subscribed, m.reqID, id))
	return nil
}
