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

// localQueues are Store.Push/Receive within the process: what the memory
// and embedded stores offer (the queues die with the process; a queue's
// ttl is not kept: its max bounds it).
type localQueues struct {
	mu sync.Mutex // guards qs and every queue's fields
	qs map[string]*localQueue
}

type localQueue struct {
	first uint64   // the number of msgs[0] (messages pushed before it were trimmed)
	msgs  [][]byte // in order
	wake  chan struct{}
}

// queue returns name's queue. q.mu held.
func (q *localQueues) queue(name string) *localQueue {
	if q.qs == nil {
		q.qs = map[string]*localQueue{}
	}
	lq := q.qs[name]
	if lq == nil {
		lq = &localQueue{wake: make(chan struct{})}
		q.qs[name] = lq
	}
	return lq
}

func (q *localQueues) push(name string, msg []byte, max int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	lq := q.queue(name)
	lq.msgs = append(lq.msgs, append([]byte(nil), msg...))
	if over := len(lq.msgs) - max; max > 0 && over > 0 {
		clear(lq.msgs[:over])
		lq.msgs = lq.msgs[over:]
		lq.first += uint64(over)
	}
	close(lq.wake)
	lq.wake = make(chan struct{})
}

func (q *localQueues) receive(ctx context.Context, name string) <-chan []byte {
	q.mu.Lock()
	lq := q.queue(name)
	next := lq.first + uint64(len(lq.msgs))
	q.mu.Unlock()
	out := make(chan []byte)
	go func() {
		defer close(out)
		for {
			q.mu.Lock()
			next = max(next, lq.first)
			batch := lq.msgs[next-lq.first:]
			wake := lq.wake
			q.mu.Unlock()
			for _, m := range batch {
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			}
			next += uint64(len(batch))
			if len(batch) > 0 {
				continue
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
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
