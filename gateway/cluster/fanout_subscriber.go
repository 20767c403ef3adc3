package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// runSubscriber (standalone, sentinel) owns the subscription client and
// its dedicated connection: it subscribes what Watch asked for, unsubscribes
// what Unwatch asked for, and when the connection is lost it reconnects
// after a capped backoff and subscribes every watched topic again. Messages
// published between the loss and the resubscription are lost for this
// replica: Redis pub/sub keeps nothing for absent subscribers.
func (f *Fanout) runSubscriber() {
	defer f.wg.Done()
	client := f.newSubscriberClient()
	if client == nil {
		return
	}
	defer client.Close()
	backoff := minBackoff
	for f.ctx.Err() == nil {
		established, err := f.serveDedicated(client)
		if f.ctx.Err() != nil {
			return
		}
		if established {
			backoff = minBackoff
		}
		f.warn.warn("subscribe", "fan-out subscription lost; messages from other replicas are lost until it is back", "error", err, "retry_in", backoff)
		if !f.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// newSubscriberClient creates the subscriber's client, trying again after a
// capped backoff until it can or Close (then it returns nil). Once made, the
// client reconnects by itself.
func (f *Fanout) newSubscriberClient() rueidis.Client {
	backoff := minBackoff
	for {
		c, err := rueidis.NewClient(f.subOpt)
		if err == nil {
			return c
		}
		f.warn.warn("subscribe", "fan-out subscription: cannot connect to Redis; messages from other replicas are lost until it can", "error", err, "retry_in", backoff)
		if !f.sleep(backoff) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// serveDedicated runs one subscription connection until it fails or Close:
// it subscribes every watched topic, then applies Watch/Unwatch as they come.
// established tells whether the connection got as far as being subscribed.
// Any failed command ends the connection: after a timeout nobody knows what
// Redis did with it, and a fresh connection resubscribing everything is
// the one state that is known.
func (f *Fanout) serveDedicated(client rueidis.Client) (established bool, err error) {
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
		return false, err
	}
	// A connection that could not be dialed reports on lost at once; with
	// nothing to subscribe no command would have found out. It must not
	// count as established, or the backoff would never grow.
	select {
	case err := <-lost:
		if err == nil {
			err = errors.New("subscription connection closed")
		}
		return false, err
	default:
	}
	f.connects.Add(1)
	for {
		select {
		case <-f.stop:
			return true, nil
		case err, ok := <-lost:
			if !ok || err == nil {
				err = errors.New("subscription connection closed")
			}
			return true, err
		case <-f.kick:
			if err := f.applyDedicated(dc, subscribed, false); err != nil {
				return true, err
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
					delete(subscribed, t)
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
	return do(add, true)
}

// fanoutShard is the receiver goroutine of one watched topic in cluster
// mode.
type fanoutShard struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has ended
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
	for {
		select {
		case <-f.stop:
			return
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
			go f.runShard(ctx, client, t, s.done)
		}
		f.procMu.Unlock()
	}
}

// runShard keeps topic's sharded channel subscribed until ctx ends,
// resubscribing after a capped backoff when the node's connection is lost
// or the server unsubscribes us (slot migrated). Then, unless the whole
// fan-out is closing, it sends SUNSUBSCRIBE: cancelling rueidis' Receive
// only forgets the subscription on our side (in rueidis v1.0.79,
// pipe.Receive's deferred cancel removes the local handler and sends
// nothing), so without it Redis would go on sending the channel to us.
// SUNSUBSCRIBE, like SSUBSCRIBE, is routed by the channel's slot to the
// node's first connection (mux slotfn: no-reply commands use wire 0), the
// one Receive subscribed on.
func (f *Fanout) runShard(ctx context.Context, client rueidis.Client, topic string, done chan struct{}) {
	defer f.wg.Done()
	defer close(done)
	channel := f.chanPrefix + topic
	backoff := minBackoff
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
			backoff = minBackoff
		}
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("unsubscribed by the server (slot moved?)")
		}
		f.warn.warn("subscribe", "fan-out shard subscription lost; messages from other replicas on it are lost until it is back", "topic", topic, "error", err, "retry_in", backoff)
		t := time.NewTimer(backoff) // ctx ends on Unwatch and on Close
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
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
