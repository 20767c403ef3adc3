package wamp

import (
	"iter"
	"slices"
)

// userIndex is the node's sessions by user name (Node.byUser). Most users
// have one session on a node, so the first sits in one, a map of
// pointers, and a user's others in more, which holds entries only for
// users with several. A map of slices cost ≈ 110 B per connection at
// 15,000 idle ones (docs/benchmarks.md, issue 19). Guarded by Node.mu.
type userIndex struct {
	one  map[string]*Session
	more map[string][]*Session
}

func newUserIndex() userIndex {
	return userIndex{one: map[string]*Session{}, more: map[string][]*Session{}}
}

// add indexes s under user, unless it is there already.
func (x *userIndex) add(user string, s *Session) {
	first, ok := x.one[user]
	if !ok {
		x.one[user] = s
		return
	}
	if first == s || slices.Contains(x.more[user], s) {
		return
	}
	x.more[user] = append(x.more[user], s)
}

// remove takes s from user's sessions and reports whether it was there.
func (x *userIndex) remove(user string, s *Session) bool {
	first, ok := x.one[user]
	if !ok {
		return false
	}
	more := x.more[user]
	i := len(more) - 1
	if first == s {
		if i < 0 {
			delete(x.one, user)
			return true
		}
		x.one[user] = more[i]
	} else if i = slices.Index(more, s); i < 0 {
		return false
	}
	last := len(more) - 1
	more[i], more[last] = more[last], nil
	if last == 0 {
		delete(x.more, user)
	} else {
		x.more[user] = more[:last]
	}
	return true
}

// count is how many sessions user has.
func (x *userIndex) count(user string) int {
	if _, ok := x.one[user]; !ok {
		return 0
	}
	return 1 + len(x.more[user])
}

// of yields user's sessions.
func (x *userIndex) of(user string) iter.Seq[*Session] {
	return func(yield func(*Session) bool) {
		first, ok := x.one[user]
		if !ok || !yield(first) {
			return
		}
		for _, s := range x.more[user] {
			if !yield(s) {
				return
			}
		}
	}
}

// all yields every indexed session.
func (x *userIndex) all() iter.Seq[*Session] {
	return func(yield func(*Session) bool) {
		for _, s := range x.one {
			if !yield(s) {
				return
			}
		}
		for _, set := range x.more {
			for _, s := range set {
				if !yield(s) {
					return
				}
			}
		}
	}
}
