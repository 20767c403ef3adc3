package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/wsgate/wsgate/storage"
)

// Subscribe delivers every message published (PUBLISH, classic pub/sub,
// also in a Redis Cluster) on channel to fn until ctx ends, reconnecting
// with a capped backoff when Redis goes away (a message published while
// disconnected is lost: Redis pub/sub does not keep it). It serves sources
// every replica receives by itself, such as the push channel. fn runs on
// the client's reader goroutine, one message at a time, and should not
// block long; onErr, if set, hears about each lost connection. Only o's
// connection fields (Addrs, Mode, MasterName, Username, Password, DB,
// LookupTimeout) are used. It returns ctx's error, or a configuration
// error at once.
func Subscribe(ctx context.Context, o storage.RedisOptions, channel string, fn func(msg []byte), onErr func(error)) error {
	if channel == "" {
		return errors.New("redis subscribe: empty channel")
	}
	_, opt, err := redisClient(o)
	if err != nil {
		return fmt.Errorf("redis subscribe: %w", err)
	}
	receive(ctx, opt, false, []string{channel}, func(_ string, msg []byte) { fn(msg) }, onErr)
	return ctx.Err()
}

// receive is Subscribe, once the options are checked, of one or more
// channels; fn is told which one a message came on. sharded subscribes with
// SSUBSCRIBE (for SPUBLISH in a Redis Cluster) instead, and then the
// channels must share a slot. Each attempt uses a client of its own, closed
// when the subscription ends, so that nothing of a broken connection
// outlives it. It returns when ctx ends.
func receive(ctx context.Context, opt rueidis.ClientOption, sharded bool, channels []string, fn func(channel string, msg []byte), onErr func(error)) {
	backoff := minBackoff
	for {
		var delivered atomic.Bool // set by the reader goroutine, read here after Receive
		c, err := rueidis.NewClient(cloneClientOption(opt))
		if err == nil {
			cmd := c.B().Subscribe().Channel(channels...).Build()
			if sharded {
				cmd = c.B().Ssubscribe().Channel(channels...).Build()
			}
			err = c.Receive(ctx, cmd, func(m rueidis.PubSubMessage) {
				delivered.Store(true)
				fn(m.Channel, []byte(m.Message))
			})
			c.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if delivered.Load() {
			backoff = minBackoff // it worked: forget past failures
		}
		if err == nil {
			err = errors.New("unsubscribed by the server")
		}
		if onErr != nil {
			onErr(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
