package state

import (
	"context"
	"sync"
	"time"
)

// subscriberQueue bounds the messages waiting for one subscriber; beyond
// it messages to that subscriber are dropped (Subscribe's contract).
const subscriberQueue = 64

// localBus is publish/subscribe within the process: what the memory and
// embedded stores offer (one process is the whole service).
type localBus struct {
	mu   sync.Mutex // guards subs
	subs map[string]map[chan []byte]struct{}
}

func (b *localBus) publish(channel string, msg []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[channel] {
		select {
		case ch <- append([]byte(nil), msg...):
		default:
		}
	}
}

func (b *localBus) subscribe(ctx context.Context, channel string) <-chan []byte {
	ch := make(chan []byte, subscriberQueue)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[string]map[chan []byte]struct{}{}
	}
	if b.subs[channel] == nil {
		b.subs[channel] = map[chan []byte]struct{}{}
	}
	b.subs[channel][ch] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs[channel], ch)
		b.mu.Unlock()
		close(ch)
	}()
	return ch
}

// localLeases are leases within the process.
type localLeases struct {
	mu     sync.Mutex // guards leases and swept
	leases map[string]lease
	swept  time.Time // last removal of expired leases
}

// leaseSweep paces the removal of expired leases, so that short-lived
// ones (a message's delivery claim, package messaging) do not pile up.
const leaseSweep = time.Minute

type lease struct {
	owner   string
	expires time.Time
}

func (l *localLeases) take(name, owner string, ttl time.Duration, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leases == nil {
		l.leases = map[string]lease{}
	}
	if now.Sub(l.swept) > leaseSweep {
		for n, cur := range l.leases {
			if !now.Before(cur.expires) {
				delete(l.leases, n)
			}
		}
		l.swept = now
	}
	if cur, ok := l.leases[name]; ok && cur.owner != owner && now.Before(cur.expires) {
		return false
	}
	l.leases[name] = lease{owner: owner, expires: now.Add(ttl)}
	return true
}

func (l *localLeases) release(name, owner string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[name]; ok && cur.owner == owner {
		delete(l.leases, name)
	}
}

// get returns the owner of a live lease (Store.Get of kind Leases).
func (l *localLeases) get(name string, now time.Time) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.leases[name]
	if !ok || !now.Before(cur.expires) {
		return nil, false
	}
	return []byte(cur.owner), true
}

// load returns the owners of the live leases by name (Store.Load of kind
// Leases).
func (l *localLeases) load(now time.Time) map[string][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]byte{}
	for name, cur := range l.leases {
		if now.Before(cur.expires) {
			out[name] = []byte(cur.owner)
		}
	}
	return out
}
