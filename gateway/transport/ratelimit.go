package transport

import (
	"net"
	"sync"
	"time"
)

// ipRateLimiter is a token bucket per client IP: rate tokens per second, a
// burst of rate. The map is swept of full buckets as it grows, so it holds
// only addresses seen in about the last second and stays bounded by the
// accept rate itself.
type ipRateLimiter struct {
	rate float64

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newIPRateLimiter returns nil (no limit) for a rate of 0.
func newIPRateLimiter(perSecond int) *ipRateLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &ipRateLimiter{rate: float64(perSecond), buckets: make(map[string]*bucket)}
}

// allow takes a token for ip at now.
func (l *ipRateLimiter) allow(ip net.IP, now time.Time) bool {
	key := string(ip.To16())
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Second {
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.rate {
				delete(l.buckets, k) // full again: same as absent
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
