package admission

import (
	"net/netip"
	"sync"
	"time"
)

// Buckets is a token bucket per source: each source may spend Burst
// tokens at once and earns Rate tokens a second. It is safe for
// concurrent use (one mutex: a bucket update is a few nanoseconds, far
// below what parsing the message it guards costs).
//
// The table is bounded by Capacity. A source whose bucket is full again
// holds nothing worth remembering, so such entries are dropped first when
// room is needed; when every entry is busy (a flood from more sources than
// Capacity, which takes spoofed UDP), an arbitrary one is dropped, and
// the global bounds (connections, pending transactions) take over.
type Buckets struct {
	rate     float64 // tokens per second
	burst    float64
	capacity int
	now      func() time.Time

	mu    sync.Mutex
	table map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewBuckets returns buckets of rate tokens a second and burst at most,
// for at most capacity sources. A rate of 0 disables the limit (Allow is
// always true).
func NewBuckets(rate float64, burst, capacity int) *Buckets {
	if burst < 1 {
		burst = 1
	}
	if capacity < 1 {
		capacity = 1
	}
	return &Buckets{rate: rate, burst: float64(burst), capacity: capacity, now: time.Now, table: map[netip.Prefix]*bucket{}}
}

// Allow takes n tokens from key's bucket and reports whether it had them
// (when it had not, nothing is taken).
func (b *Buckets) Allow(key netip.Prefix, n int) bool {
	if b == nil || b.rate <= 0 {
		return true
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.table[key]
	if k == nil {
		if len(b.table) >= b.capacity {
			b.makeRoom(now)
		}
		k = &bucket{tokens: b.burst, last: now}
		b.table[key] = k
	} else {
		k.tokens = min(b.burst, k.tokens+b.rate*now.Sub(k.last).Seconds())
		k.last = now
	}
	if k.tokens < float64(n) {
		return false
	}
	k.tokens -= float64(n)
	return true
}

// makeRoom drops full (idle) buckets among the first entries visited, or
// one arbitrary entry when none is. Callers hold mu.
func (b *Buckets) makeRoom(now time.Time) {
	dropped := false
	probes := 0
	for key, k := range b.table {
		if k.tokens+b.rate*now.Sub(k.last).Seconds() >= b.burst {
			delete(b.table, key)
			dropped = true
		}
		if probes++; probes >= 32 {
			break
		}
	}
	if !dropped {
		for key := range b.table {
			delete(b.table, key)
			break
		}
	}
}

// Sweep drops every bucket that is full again; call it now and then
// (housekeeping) so that the table holds only sources active lately.
func (b *Buckets) Sweep() {
	if b == nil {
		return
	}
	now := b.now()
	b.mu.Lock()
	for key, k := range b.table {
		if k.tokens+b.rate*now.Sub(k.last).Seconds() >= b.burst {
			delete(b.table, key)
		}
	}
	b.mu.Unlock()
}

// Len is the number of sources with a bucket.
func (b *Buckets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.table)
}
