package cluster

import (
	"context"
	"strings"

	"github.com/redis/rueidis"
)

// Pattern-based subscriptions across replicas (wamp.PatternRelay).
//
// A replica whose clients hold a pattern subscription must hear every
// topic the pattern matches, not only the topics it has exact
// subscribers of. In pub/sub mode it PSUBSCRIBEs a Redis glob over the
// channels, Prefix+"fanout:"+glob: a prefix pattern p is p*, a wildcard
// pattern has * for each empty segment. Redis' * also matches "/", so
// the glob may bring more than the pattern matches: the node filters
// (and checks every delivered topic against the client's access, see
// wamp/pattern.go). A channel matched by an exact SUBSCRIBE and by
// PSUBSCRIBEs arrives once per match, one after the other on the one
// connection; while patterns are watched, such copies are recognised by
// their (origin, topic) sequence number and dropped without being
// counted as duplicates. In streams mode nothing is subscribed: the
// reader already reads every entry and keeps those whose topic a glob
// matches. Sharded pub/sub (a Redis Cluster) has no pattern subscribe:
// Patterns reports false and the node refuses pattern subscriptions with
// a clear error.

// Patterns reports whether this fan-out carries pattern subscriptions:
// not with sharded pub/sub (Redis Cluster), which has no PSUBSCRIBE.
func (f *Fanout) Patterns() bool { return !f.cluster || f.streams }

// WatchPattern tells that a pattern (match "prefix" or "wildcard") got its
// first local subscriber: the topics its glob matches are delivered soon
// after. It never blocks. A pattern that is not relayable is ignored.
func (f *Fanout) WatchPattern(match, pattern string) {
	if relayable(pattern) {
		f.setPatternWant(patternGlob(match, pattern), true)
	}
}

// UnwatchPattern tells that the pattern lost its last local subscriber.
func (f *Fanout) UnwatchPattern(match, pattern string) {
	if relayable(pattern) {
		f.setPatternWant(patternGlob(match, pattern), false)
	}
}

// patternGlob is the Redis glob (without the channel prefix) that covers
// the topics a pattern matches.
func patternGlob(match, pattern string) string {
	var b strings.Builder
	if match == "prefix" {
		escapeGlob(&b, pattern)
		b.WriteByte('*')
		return b.String()
	}
	for i, seg := range strings.Split(pattern, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if seg == "" {
			b.WriteByte('*')
		} else {
			escapeGlob(&b, seg)
		}
	}
	return b.String()
}

// escapeGlob writes s with Redis glob's special characters escaped.
func escapeGlob(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// globMatch reports whether s matches glob, a glob of patternGlob's kind:
// literal bytes (\x escapes one) and *, any run of bytes.
func globMatch(glob, s string) bool {
	// Iterative matching with backtracking to the last star: linear in
	// practice for globs with few stars.
	gi, si := 0, 0
	starG, starS := -1, 0
	for si < len(s) {
		if gi < len(glob) {
			switch c := glob[gi]; {
			case c == '*':
				starG, starS = gi, si
				gi++
				continue
			case c == '\\' && gi+1 < len(glob):
				if glob[gi+1] == s[si] {
					gi += 2
					si++
					continue
				}
			case c == s[si]:
				gi++
				si++
				continue
			}
		}
		if starG < 0 {
			return false
		}
		starS++
		gi, si = starG+1, starS
	}
	for gi < len(glob) && glob[gi] == '*' {
		gi++
	}
	return gi == len(glob)
}

// setPatternWant counts a glob's patterns (several patterns may share
// one) and marks it dirty when it comes or goes.
func (f *Fanout) setPatternWant(glob string, on bool) {
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		return
	}
	if f.pwant == nil {
		f.pwant = map[string]int{}
		f.pdirty = map[string]struct{}{}
	}
	n := f.pwant[glob]
	switch {
	case on:
		f.pwant[glob] = n + 1
	case n <= 1:
		delete(f.pwant, glob)
	default:
		f.pwant[glob] = n - 1
	}
	f.npatterns.Store(int64(len(f.pwant)))
	changed := on && n == 0 || !on && n == 1
	if !changed || f.streams {
		f.mu.Unlock()
		return
	}
	f.pdirty[glob] = struct{}{}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// patternWanted reports whether a watched glob matches topic; f.mu must
// be held.
func (f *Fanout) patternWantedLocked(topic string) bool {
	for g := range f.pwant {
		if globMatch(g, topic) {
			return true
		}
	}
	return false
}

// takePatternDirty is takeDirty for the globs: what to PSUBSCRIBE and
// PUNSUBSCRIBE to bring psubscribed to what is wanted (all: every glob).
func (f *Fanout) takePatternDirty(psubscribed map[string]bool, all bool) (add, drop []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return takeChanges(f.pwant, f.pdirty, psubscribed, all)
}

// applyPatterns sends the PUNSUBSCRIBE and PSUBSCRIBE commands that bring
// the connection's pattern subscriptions to what WatchPattern wants
// (all: a fresh connection, which has none). Called by applyDedicated.
func (f *Fanout) applyPatterns(dc rueidis.DedicatedClient, all bool) error {
	if all || f.psubscribed == nil {
		f.psubscribed = map[string]bool{}
	}
	add, drop := f.takePatternDirty(f.psubscribed, all)
	do := func(globs []string, on bool) error {
		if len(globs) == 0 {
			return nil
		}
		pats := make([]string, len(globs))
		for i, g := range globs {
			pats[i] = escapeGlobPrefix(f.chanPrefix) + g
		}
		var cmd rueidis.Completed
		if on {
			cmd = dc.B().Psubscribe().Pattern(pats...).Build()
		} else {
			cmd = dc.B().Punsubscribe().Pattern(pats...).Build()
		}
		ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
		err := dc.Do(ctx, cmd).Error()
		cancel()
		if err != nil {
			return err
		}
		for _, g := range globs {
			if on {
				f.psubscribed[g] = true
			} else {
				delete(f.psubscribed, g)
			}
		}
		return nil
	}
	if err := do(drop, false); err != nil {
		return err
	}
	return do(add, true)
}

// escapeGlobPrefix escapes the channel prefix for a glob.
func escapeGlobPrefix(p string) string {
	var b strings.Builder
	escapeGlob(&b, p)
	return b.String()
}

// PatternsWatched returns the globs this replica's subscription connection
// has PSUBSCRIBEd (tests; pub/sub mode).
func (f *Fanout) PatternsWatched() int {
	f.procMu.Lock()
	defer f.procMu.Unlock()
	return len(f.psubscribed)
}
