package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// SubscribeRedis delivers every message published on channel to fn until
// ctx ends, reconnecting with a capped backoff when Redis goes away (a
// message published while disconnected is lost: Redis pub/sub does not
// keep it). fn runs on the calling goroutine, one message at a time; onErr,
// if set, hears about each lost connection. Only o's connection fields
// (Addrs, Mode, MasterName, Username, Password, DB) are used. It returns
// ctx's error, or a configuration error at once.
func SubscribeRedis(ctx context.Context, o RedisOptions, channel string, fn func(msg []byte), onErr func(error)) error {
	if channel == "" {
		return errors.New("redis subscribe: empty channel")
	}
	o, err := o.withDefaults()
	if err != nil {
		return fmt.Errorf("redis subscribe: %w", err)
	}
	backoff := 100 * time.Millisecond
	for {
		c, err := rueidis.NewClient(o.clientOption(false))
		if err == nil {
			err = c.Receive(ctx, c.B().Subscribe().Channel(channel).Build(), func(m rueidis.PubSubMessage) {
				backoff = 100 * time.Millisecond // delivering again: forget past failures
				fn([]byte(m.Message))
			})
			c.Close()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if onErr != nil && err != nil {
			onErr(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
