package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// runSubscriber (standalone, sentinel) owns the subscription client and
// its dedicated connection: it subscribes what Watch asked for, unsubscribes
// what Unwatch asked for, and when the connection is lost it PINGs Redis
// every fanoutProbeEvery and, the moment Redis answers, reconnects and
// subscribes every watched topic again. Messages published between the
// loss and the resubscription are lost for this replica (Redis pub/sub
// keeps nothing for absent subscribers); the receivers count them from the
// holes in the sequence numbers once messages flow again.
func (f *Fanout) runSubscriber() {
	defer f.wg.Done()
	client := f.newSubscriberClient()
	if client == nil {
		return
	}
	defer client.Close()
	for f.ctx.Err() == nil {
		err := f.serveDedicated(client)
		if f.ctx.Err() != nil {
			return
		}
		f.subLost(err)
		if !f.awaitRedis(client) {
			return
		}
	}
}

// awaitRedis PINGs Redis through client every fanoutProbeEvery until it
// answers (true) or Close (false).
func (f *Fanout) awaitRedis(client rueidis.Client) bool {
	for {
		if !f.sleep(fanoutProbeEvery) {
			return false
		}
		ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
		err := client.Do(ctx, client.B().Ping().Build()).Error()
		cancel()
		if err == nil {
			return true
		}
		if f.ctx.Err() != nil {
			return false
		}
	}
}

// newSubscriberClient creates the subscriber's client, trying again every
// fanoutProbeEvery until it can or Close (then it returns nil). Once made,
// the client reconnects by itself.
func (f *Fanout) newSubscriberClient() rueidis.Client {
	for {
		c, err := rueidis.NewClient(f.subOpt)
		if err == nil {
			return c
		}
		f.subLost(err)
		if !f.sleep(fanoutProbeEvery) {
			return nil
		}
	}
}

// fanoutSubState is whether the subscription is up, and since when it is
// down, for the log lines and the Observer.
type fanoutSubState struct {
	mu    sync.Mutex
	up    bool
	since time.Time // when it was lost; zero before it was first up
}

// subLost records that the subscription is down (or cannot be set up):
// the Observer hears it, and a warning says so (rate-limited: a flapping
// link logs a line every few seconds, not one per flap).
func (f *Fanout) subLost(err error) {
	f.sub.mu.Lock()
	was := f.sub.up
	if was {
		f.sub.up, f.sub.since = false, time.Now()
	}
	f.sub.mu.Unlock()
	if was {
		f.obs.SubscriptionUp(false)
	}
	if err == nil {
		err = errors.New("subscription connection closed")
	}
	f.warn.warn("subscribe", "fan-out subscription lost; messages from other replicas are lost until it is back", "error", err)
}

// subBack records that the subscription is up: the Observer hears it, and
// after a loss an info line says how long it was down.
func (f *Fanout) subBack() {
	f.sub.mu.Lock()
	was, since := f.sub.up, f.sub.since
	f.sub.up = true
	f.sub.mu.Unlock()
	if was {
		return
	}
	f.obs.SubscriptionUp(true)
	if !since.IsZero() {
		f.warn.info("restored", "fan-out subscription restored", "down_for", time.Since(since).Round(time.Millisecond))
	}
}

// serveDedicated runs one subscription connection until it fails or Close:
// it subscribes every watched topic, then applies Watch/Unwatch as they come.
// Any failed command ends the connection: after a timeout nobody knows what
// Redis did with it, and a fresh connection resubscribing everything is
// the one state that is known.
func (f *Fanout) serveDedicated(client rueidis.Client) error {
	// Dedicate dials a connection of its own (bounded by the dial timeout)
	// apart from the client's pipeline; in pubsub mode it carries nothing
	// else. Close (not the release func) because a subscribed connection
	// must not go back to the pool: release would first UNSUBSCRIBE
	// without a deadline.
	dc, _ := client.Dedicate()
	defer func() {
		dc.Close()
		f.watching.Store(0)
	}()
	// lost yields the reason (or closes) when the connection ends; a
	// connection that could not even be made reports at once.
	lost := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) { f.onMessage(m.Channel, m.Message) },
	})
	subscribed := make(map[string]bool)
	if err := f.applyDedicated(dc, subscribed, true); err != nil {
		return err
	}
	// A connection that could not be dialed reports on lost at once; with
	// nothing to subscribe no command would have found out.
	select {
	case err := <-lost:
		if err == nil {
			err = errors.New("subscription connection closed")
		}
		return err
	default:
	}
	f.connects.Add(1)
	f.subBack()
	for {
		select {
		case <-f.stop:
			return nil
		case err, ok := <-lost:
			if !ok || err == nil {
				err = errors.New("subscription connection closed")
			}
			return err
		case <-f.kick:
			if err := f.applyDedicated(dc, subscribed, false); err != nil {
				return err
			}
		}
	}
}

// applyDedicated sends the UNSUBSCRIBE and SUBSCRIBE commands that bring
// subscribed to what Watch/Unwatch want (all: every wanted topic, after a
// reconnect), each within the lookup timeout. The reply to a (UN)SUBSCRIBE
// is Redis' confirmation, so subscribed and Watching are the truth once it
// returns.
func (f *Fanout) applyDedicated(dc rueidis.DedicatedClient, subscribed map[string]bool, all bool) error {
	f.procMu.Lock()
	defer f.procMu.Unlock()
	add, drop := f.takeDirty(subscribed, all)
	if all {
		// A fresh connection: the topics unwatched while the last one was
		// down are heard no more, so their baselines go (the watched
		// ones stay, so that what the outage lost is counted).
		f.seen.keepOnly(f.wanted)
	}
	do := func(topics []string, on bool) error {
		for len(topics) > 0 {
			n := min(len(topics), fanoutSubChunk)
			chans := make([]string, n)
			for i, t := range topics[:n] {
				chans[i] = f.chanPrefix + t
			}
			var cmd rueidis.Completed
			if on {
				cmd = dc.B().Subscribe().Channel(chans...).Build()
				f.subscribes.Add(int64(n))
			} else {
				cmd = dc.B().Unsubscribe().Channel(chans...).Build()
				f.unsubscribes.Add(int64(n))
			}
			ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
			err := dc.Do(ctx, cmd).Error()
			cancel()
			if err != nil {
				return err
			}
			for _, t := range topics[:n] {
				if on {
					subscribed[t] = true
				} else {
					// Redis answered on the connection that brought the
					// messages, so every message of t was read before:
					// none can come to set a baseline after this.
					delete(subscribed, t)
					f.seen.forget(t)
				}
			}
			f.watching.Store(int64(len(subscribed)))
			topics = topics[n:]
		}
		return nil
	}
	if err := do(drop, false); err != nil {
		return err
	}
	if err := do(add, true); err != nil {
		return err
	}
	return f.applyPatterns(dc, all) // fanout_patterns.go
}

// fanoutShard is the receiver goroutine of one watched topic in cluster
// mode.
type fanoutShard struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has ended
}

// fanoutGate holds the sharded receivers whose subscription was lost
// until Redis answers again, so that a thousand receivers wait on one
// probe rather than each retrying on its own.
type fanoutGate struct {
	mu   sync.Mutex
	wake chan struct{} // nil while up; closed when Redis answers again
}

// down marks Redis unreachable and returns what closes when it is back.
func (g *fanoutGate) down() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.wake == nil {
		g.wake = make(chan struct{})
	}
	return g.wake
}

// open releases the waiting receivers; it reports whether any outage was
// recorded.
func (g *fanoutGate) open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.wake == nil {
		return false
	}
	close(g.wake)
	g.wake = nil
	return true
}

// runShardedSubscriber (cluster) applies Watch/Unwatch by starting and
// stopping one receiver goroutine per watched topic. Sharded channels live
// on the node that owns their slot, and rueidis' cluster client routes each
// SSUBSCRIBE there (a dedicated cluster connection is bound to one slot,
// so it cannot carry them all); its receivers share the one subscription
// connection rueidis keeps per node. The cost is a goroutine per watched
// topic, all owned here and waited for before this goroutine ends.
func (f *Fanout) runShardedSubscriber() {
	defer f.wg.Done()
	client := f.newSubscriberClient()
	if client == nil {
		return
	}
	// Deferred in this order, run in reverse: the receivers end (their
	// contexts are cancelled by Close) before the client closes.
	defer client.Close()
	shards := make(map[string]*fanoutShard)
	defer func() {
		for _, s := range shards {
			s.cancel()
		}
		for _, s := range shards {
			<-s.done
		}
	}()
	running := make(map[string]bool) // the keys of shards, for takeDirty
	f.subBack()
	gate := &fanoutGate{}
	lost := make(chan struct{}, 1) // a receiver lost its subscription
	var probe *time.Timer
	var probeC <-chan time.Time
	defer func() {
		if probe != nil {
			probe.Stop()
		}
	}()
	for {
		select {
		case <-f.stop:
			return
		case <-lost:
			if probe == nil {
				probe = time.NewTimer(fanoutProbeEvery)
				probeC = probe.C
			}
			continue
		case <-probeC:
			ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
			err := client.Do(ctx, client.B().Ping().Build()).Error()
			cancel()
			if err != nil {
				probe.Reset(fanoutProbeEvery)
				continue
			}
			probe, probeC = nil, nil
			if gate.open() {
				f.subBack()
			}
			continue
		case <-f.kick:
		}
		f.procMu.Lock()
		add, drop := f.takeDirty(running, false)
		// Stop first, and wait: each stopping receiver sends SUNSUBSCRIBE
		// (within the lookup timeout), which must reach Redis before a new
		// SSUBSCRIBE of the same channel does, or it would undo it.
		for _, t := range drop {
			shards[t].cancel()
		}
		for _, t := range drop {
			<-shards[t].done
			delete(shards, t)
			delete(running, t)
		}
		for _, t := range add {
			ctx, cancel := context.WithCancel(f.ctx)
			s := &fanoutShard{cancel: cancel, done: make(chan struct{})}
			shards[t], running[t] = s, true
			f.wg.Add(1)
			go f.runShard(ctx, client, t, s.done, gate, lost)
		}
		f.procMu.Unlock()
	}
}

// runShard keeps topic's sharded channel subscribed until ctx ends,
// resubscribing when the node's connection is lost or the server
// unsubscribes us (slot migrated): it marks gate down, tells the
// subscriber (lost), which PINGs every fanoutProbeEvery, and resubscribes
// the moment the gate opens. Then, unless the whole
// fan-out is closing, it sends SUNSUBSCRIBE: cancelling rueidis' Receive
// only forgets the subscription on our side (in rueidis v1.0.79,
// pipe.Receive's deferred cancel removes the local handler and sends
// nothing), so without it Redis would go on sending the channel to us.
// SUNSUBSCRIBE, like SSUBSCRIBE, is routed by the channel's slot to the
// node's first connection (mux slotfn: no-reply commands use wire 0), the
// one Receive subscribed on.
func (f *Fanout) runShard(ctx context.Context, client rueidis.Client, topic string, done chan struct{}, gate *fanoutGate, lost chan<- struct{}) {
	defer f.wg.Done()
	defer close(done)
	// Once Receive has returned, rueidis has removed the handler: no
	// message of topic can come to set a baseline after this.
	defer f.seen.forget(topic)
	channel := f.chanPrefix + topic
	onMsg := func(m rueidis.PubSubMessage) { f.onMessage(m.Channel, m.Message) }
	for ctx.Err() == nil {
		var confirmed atomic.Bool
		// The hook runs when Redis confirms the SSUBSCRIBE, and never once
		// Receive has returned (it runs under the lock Receive's cleanup
		// takes), so Watching counts exactly the live subscriptions.
		hctx := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
			if s.Kind == "ssubscribe" && confirmed.CompareAndSwap(false, true) {
				f.watching.Add(1)
			}
		})
		f.subscribes.Add(1)
		err := client.Receive(hctx, client.B().Ssubscribe().Channel(channel).Build(), onMsg)
		if confirmed.Load() {
			f.watching.Add(-1)
		}
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("unsubscribed by the server (slot moved?)")
		}
		wake := gate.down()
		f.subLost(fmt.Errorf("topic %q: %w", topic, err))
		select {
		case lost <- struct{}{}:
		default: // already told
		}
		select { // ctx ends on Unwatch and on Close
		case <-ctx.Done():
		case <-wake:
		}
	}
	if f.closed.Load() {
		return // the client closes: its connections and subscriptions go
	}
	uctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	f.unsubscribes.Add(1)
	if err := client.Do(uctx, client.B().Sunsubscribe().Channel(channel).Build()).Error(); err != nil {
		f.warn.warn("unsubscribe", "fan-out shard unsubscribe failed; the node may keep sending the channel until the connection ends", "topic", topic, "error", err)
	}
}
