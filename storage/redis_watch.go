package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// redisWatchRecheck is how often the watcher compares the nodes it tracks
// with the client's current ones (a cluster gained or lost a node), so
// that a new node's sessions are tracked soon after it serves slots.
const redisWatchRecheck = 10 * time.Second

// errNodesChanged ends one round of tracking when the node list changed:
// no failure, so nobody is told.
var errNodesChanged = errors.New("nodes changed")

// Watch implements ChangeNotifier. Redis pushes every change under the
// prefix anyway (BCAST), so watching an id is only remembering it.
func (s *RedisStore) Watch(id string, since ChangeMark) { s.watch(id, since) }

// Unwatch implements ChangeNotifier.
func (s *RedisStore) Unwatch(id string) { s.unwatch(id) }

// watchLoop keeps tracking connections up until Close, one per node, and
// starts them again after any of them is lost. It owns its connections.
//
// BCAST rather than per-key tracking: Redis then reports every key under
// the prefix without the watcher ever reading it, on a connection of its
// own, so lookups keep their pipelines (and their cache, if any) as they
// were. The price is one push per session write of every user, which the
// watcher drops with one map lookup unless the id is watched.
func (s *RedisStore) watchLoop() {
	defer close(s.watchDone)
	for {
		err := s.trackOnce()
		if err == nil {
			return // Close
		}
		if s.watchErr != nil && !errors.Is(err, errNodesChanged) {
			s.watchErr(fmt.Errorf("redis session store: watch: %w", err))
		}
		t := time.NewTimer(redisReconnectPause)
		select {
		case <-s.watchStop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// trackOnce sets up tracking on every node and waits until one of the
// connections is lost (an error), the node list changed (an error, so the
// loop starts again at once after a pause) or Close (nil).
func (s *RedisStore) trackOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.lookupTimeout)
	c, err := s.conn.get(ctx)
	cancel()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil
		}
		return err
	}
	nodes := c.Nodes()
	var lost []<-chan error
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	for _, addr := range slices.Sorted(maps.Keys(nodes)) {
		dc, release := nodes[addr].Dedicate()
		releases = append(releases, release)
		ch := dc.SetOnInvalidations(s.invalidated)
		// With ClientCache every connection starts with OPTIN tracking,
		// and Redis refuses to switch a tracking connection to BCAST:
		// off first (rueidis turns it off again on release).
		ctx, cancel := context.WithTimeout(context.Background(), s.lookupTimeout)
		err := dc.Do(ctx, dc.B().ClientTracking().Off().Build()).Error()
		if err == nil {
			err = dc.Do(ctx, dc.B().ClientTracking().On().Prefix().Prefix(s.prefix).Bcast().Build()).Error()
		}
		cancel()
		if err != nil {
			return fmt.Errorf("client tracking on %s: %w", addr, err)
		}
		lost = append(lost, ch)
	}
	// Whatever changed while nothing was tracked is unknown.
	s.changedAll()
	recheck := time.NewTicker(redisWatchRecheck)
	defer recheck.Stop()
	anyLost := make(chan error, 1)
	stopWaiting := make(chan struct{})
	defer close(stopWaiting)
	for _, ch := range lost {
		go func() {
			select {
			case err, ok := <-ch:
				if !ok || err == nil {
					err = errors.New("tracking connection closed")
				}
				select {
				case anyLost <- err:
				default:
				}
			case <-stopWaiting:
			}
		}()
	}
	for {
		select {
		case <-s.watchStop:
			return nil
		case err := <-anyLost:
			return fmt.Errorf("tracking connection lost: %w", err)
		case <-recheck.C:
			now := c.Nodes()
			if !slices.Equal(slices.Sorted(maps.Keys(now)), slices.Sorted(maps.Keys(nodes))) {
				return errNodesChanged
			}
		}
	}
}

// invalidated is rueidis' invalidation hook: keys pushed by Redis, or nil
// when Redis flushed its tracking table (FLUSHALL, FLUSHDB), which may
// have removed any session. It runs on rueidis' reading goroutine, so it
// only marks ids.
func (s *RedisStore) invalidated(msgs []rueidis.RedisMessage) {
	if msgs == nil {
		s.changedAll()
		return
	}
	for i := range msgs {
		key, err := msgs[i].ToString()
		if err != nil {
			continue
		}
		if id, ok := strings.CutPrefix(key, s.prefix); ok {
			s.changedID(id)
		}
	}
}
