package messaging

import (
	"sync"
	"time"
)

// Limiter bounds how many messages each user may send: a token bucket per
// user, PerMinute tokens a minute up to Burst at once. Users who have not
// sent for the time a bucket takes to refill are forgotten, so the table
// holds only users sending now. Safe for concurrent use; a nil Limiter
// allows everything.
type Limiter struct {
	perMinute float64
	burst     float64

	mu      sync.Mutex
	buckets map[string]*bucket // by user; guarded by mu
	swept   time.Time          // last sweep; guarded by mu
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter returns a Limiter, or nil when perMinute is 0 (no limit).
// burst below 1 is perMinute.
func NewLimiter(perMinute, burst int) *Limiter {
	if perMinute <= 0 {
		return nil
	}
	if burst < 1 {
		burst = perMinute
	}
	return &Limiter{perMinute: float64(perMinute), burst: float64(burst), buckets: map[string]*bucket{}}
}

// Allow takes a token of user's bucket at now. When none is left it
// reports false and how long until one is.
func (l *Limiter) Allow(user string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	refill := time.Duration(l.burst / l.perMinute * float64(time.Minute))
	if now.Sub(l.swept) > refill {
		for u, b := range l.buckets {
			if now.Sub(b.last) > refill {
				delete(l.buckets, u) // full again: the same as absent
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[user]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[user] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Minutes()*l.perMinute)
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.perMinute * float64(time.Minute))
	}
	b.tokens--
	return true, 0
}

// tracked returns how many users the table holds (tests).
func (l *Limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
