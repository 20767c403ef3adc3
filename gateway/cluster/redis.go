package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Pauses of everything here that (re)connects to Redis.
const (
	// minBackoff and maxBackoff bound the pause between two attempts to
	// (re)connect a subscription: it doubles after each failure and starts
	// again from minBackoff once a subscription worked.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// reconnectPause is the least time between two attempts to create a
	// publishing client while Redis cannot be reached; publishes in
	// between fail at once with the last error.
	reconnectPause = 250 * time.Millisecond
)

// errClosed is what a publish that finds no client during Close reports.
var errClosed = errors.New("closed")

// checkNodeID checks a replica's NodeID: it travels in every message, as the
// envelope's origin, and names the subscription connections.
func checkNodeID(node string) error {
	switch {
	case node == "":
		return errors.New("empty")
	case len(node) > fanoutMaxIDLen:
		return fmt.Errorf("%d bytes, at most %d", len(node), fanoutMaxIDLen)
	}
	return nil
}

// waitStopped waits for the goroutines wg counts, at most as long as their
// longest stop can take: a client being created (dial, bounded by timeout
// per address of opt tried), then one command within timeout, then
// rueidis' own close of a silent connection (1s). It fails if they are
// still running then (they still stop, later).
func waitStopped(wg *sync.WaitGroup, opt rueidis.ClientOption, timeout time.Duration) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	limit := time.Duration(len(opt.InitAddress)+1)*timeout + 2*time.Second
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("goroutines still running after %v", limit)
	}
}

// link is what Fanout and Control share of their options, checked and
// with defaults filled in.
type link struct {
	redis   storage.RedisOptions // connection fields, with their defaults
	client  rueidis.ClientOption // for a client of redis
	cluster bool                 // a Redis Cluster: sharded pub/sub
	prefix  string               // of every channel name
	log     *slog.Logger
}

// newLink checks the options Fanout and Control share and fills in their
// defaults: prefix storage.DefaultClientPrefix (the client storage's),
// logger slog.Default(). Errors name the field.
func newLink(redis storage.RedisOptions, prefix, node string, log *slog.Logger) (link, error) {
	ro, opt, err := redisClient(redis)
	if err != nil {
		return link{}, fmt.Errorf("Redis: %w", err)
	}
	if err := checkNodeID(node); err != nil {
		return link{}, fmt.Errorf("NodeID: %w", err)
	}
	if prefix == "" {
		prefix = storage.DefaultClientPrefix
	}
	if log == nil {
		log = slog.Default()
	}
	return link{redis: ro, client: opt, cluster: ro.Mode == storage.RedisCluster, prefix: prefix, log: log}, nil
}

// redisClient checks o's connection fields and returns them with their
// defaults (Mode and LookupTimeout are what callers read) and the rueidis
// configuration of a client that connects as the stores do, without
// client-side caching: pub/sub has nothing to cache. o's session-reading
// fields are ignored.
func redisClient(o storage.RedisOptions) (storage.RedisOptions, rueidis.ClientOption, error) {
	o.Prefix, o.ClientCache = "", false
	o, err := o.WithDefaults()
	if err != nil {
		return o, rueidis.ClientOption{}, err
	}
	return o, o.ClientOption(), nil
}

// cloneClientOption returns a copy of o that shares no slice with it, for a
// second client of the same configuration.
func cloneClientOption(o rueidis.ClientOption) rueidis.ClientOption {
	o.InitAddress = slices.Clone(o.InitAddress)
	return o
}
