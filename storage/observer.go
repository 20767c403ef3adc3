package storage

import "time"

// Observer receives what the stores measure, so that the gateway can export
// metrics without this package importing a metrics library. Implementations
// must be safe for concurrent use and cheap: they are called on every lookup,
// on the lookup's goroutine.
type Observer interface {
	// ObserveLookup is called once per Read, ReadMany or Ping: store is the
	// store's kind ("files", "mysql", "postgres", "redis", "memcached"),
	// op is "read", "read_many" or "ping", result is Result(err) of the call's error
	// (for ReadMany the batch error, not the per-id results), d is how long
	// it took, limit wait included.
	ObserveLookup(store, op, result string, d time.Duration)
	// ObserveCache is called by stores with a client-side cache (Redis with
	// ClientCache) once per Read or ReadMany that reached the cache, with how
	// many keys were served from memory and how many went to the server.
	ObserveCache(store string, hits, misses int)
}

// lookupObserver reports one store's lookups to its Observer, if any.
type lookupObserver struct {
	store string
	obs   Observer
}

// observe reports one lookup to the Observer, if any.
func (l lookupObserver) observe(op string, start time.Time, err error) {
	if l.obs != nil {
		l.obs.ObserveLookup(l.store, op, Result(err), time.Since(start))
	}
}

// observeCache reports cache use to the Observer, if any.
func (l lookupObserver) observeCache(hits, misses int) {
	if l.obs != nil && hits+misses > 0 {
		l.obs.ObserveCache(l.store, hits, misses)
	}
}
