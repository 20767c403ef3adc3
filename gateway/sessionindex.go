package gateway

import "slices"

// sessionClients is Server.bySession: the clients of each watched PHP
// session id. An id has one connection, sometimes a few (tabs): the first
// sits in one, a map of pointers, and an id's others in more, which holds
// only ids with several. A map of slices cost ≈ 110 B per idle connection
// at 15,000 (docs/benchmarks.md, issue 19). Guarded by Server.watchMu.
type sessionClients struct {
	one  map[string]*client
	more map[string][]*client
}

func newSessionClients() sessionClients {
	return sessionClients{one: map[string]*client{}, more: map[string][]*client{}}
}

// add indexes c under id (a client is added once, by watchClient).
func (x *sessionClients) add(id string, c *client) {
	if _, ok := x.one[id]; !ok {
		x.one[id] = c
		return
	}
	x.more[id] = append(x.more[id], c)
}

// remove takes c from id's clients and reports whether it was there.
func (x *sessionClients) remove(id string, c *client) bool {
	first, ok := x.one[id]
	if !ok {
		return false
	}
	more := x.more[id]
	i := len(more) - 1
	if first == c {
		if i < 0 {
			delete(x.one, id)
			return true
		}
		x.one[id] = more[i]
	} else if i = slices.Index(more, c); i < 0 {
		return false
	}
	last := len(more) - 1
	more[i], more[last] = more[last], nil
	if last == 0 {
		delete(x.more, id)
	} else {
		x.more[id] = more[:last]
	}
	return true
}

// appendOf appends id's clients to dst.
func (x *sessionClients) appendOf(dst []*client, id string) []*client {
	if c, ok := x.one[id]; ok {
		dst = append(dst, c)
		dst = append(dst, x.more[id]...)
	}
	return dst
}

// appendAll appends every indexed client to dst.
func (x *sessionClients) appendAll(dst []*client) []*client {
	for _, c := range x.one {
		dst = append(dst, c)
	}
	for _, set := range x.more {
		dst = append(dst, set...)
	}
	return dst
}
