package registrar

import (
	"sync"
	"time"
)

// NonceUse is what a NonceStore says of a nonce count.
type NonceUse int

// Outcomes of NonceStore.Use.
const (
	// NonceFresh: the count is higher than any the nonce was used with.
	NonceFresh NonceUse = iota
	// NonceReplayed: the nonce was already used with this count or a
	// higher one (RFC 7616 section 3.4: "if the same nc-value is seen
	// twice, then the request is a replay").
	NonceReplayed
	// NonceForgotten: the store no longer knows this nonce's history (it
	// evicted nonces issued as late as this one to bound its memory), so
	// it cannot tell a replay; the client must get a new nonce.
	NonceForgotten
)

// NonceStore remembers, for every nonce that authenticated a request, the
// highest nonce count (nc) used with it, so that captured credentials
// cannot be presented twice. A nonce is recorded only once its digest
// verified: guessing and floods without the password cost the store
// nothing.
//
// Implementations are safe for concurrent use. The in-memory one serves
// one control plane; a store shared by several (the state store) lets a
// nonce that one control plane issued be used at another, provided they
// also share the key nonces are signed with.
type NonceStore interface {
	// Use records that nonce, issued at issued, authenticated a request
	// with count nc, and says whether that count is fresh.
	Use(nonce string, issued time.Time, nc uint64) NonceUse
}

// NonceFloor is a NonceStore that forgets every nonce issued before a
// time that moves forward (a store that lost its counts, see
// StoreNonces): Digest stamps the nonces it issues no earlier than
// NotBefore, so that the fresh nonce of a stale=true challenge is not
// forgotten too. NotBefore is barely ahead of the clock, if at all.
type NonceFloor interface {
	NotBefore() time.Time
}

// DefaultNonceCapacity bounds the in-memory store: 65 536 nonces used in
// the last nonce lifetime (5 minutes), ~220 a second, far above what
// browsers' registrations and calls need (one nonce each), at about
// 150 bytes each (10 MB).
const DefaultNonceCapacity = 1 << 16

// MemoryNonces is a NonceStore in memory with a bound on the number of
// nonces it remembers. When full it forgets the nonces issued earliest
// and, from then on, answers NonceForgotten for any nonce issued no later
// than those, so that forgetting never lets a replay through. Nonces
// older than the lifetime are dropped as time passes.
type MemoryNonces struct {
	capacity int
	lifetime time.Duration

	mu     sync.Mutex
	counts map[string]uint64 // nonce -> highest nc seen
	order  []usedNonce       // first uses in order; a ring of len counts
	head   int               // index of the oldest entry in order
	floor  time.Time         // nonces issued at or before this are forgotten
}

type usedNonce struct {
	nonce  string
	issued time.Time
}

// NewMemoryNonces returns a store that remembers up to capacity nonces,
// each for lifetime after it was issued (the nonces' own lifetime: older
// ones are refused before the store is asked).
func NewMemoryNonces(capacity int, lifetime time.Duration) *MemoryNonces {
	if capacity <= 0 {
		capacity = DefaultNonceCapacity
	}
	return &MemoryNonces{capacity: capacity, lifetime: lifetime, counts: map[string]uint64{}}
}

// Use implements NonceStore.
func (s *MemoryNonces) Use(nonce string, issued time.Time, nc uint64) NonceUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.counts[nonce]; ok {
		if nc <= last {
			return NonceReplayed
		}
		s.counts[nonce] = nc
		return NonceFresh
	}
	if !issued.After(s.floor) {
		return NonceForgotten
	}
	s.expire(time.Now())
	if len(s.counts) >= s.capacity {
		s.evict()
	}
	s.counts[nonce] = nc
	s.order = append(s.order, usedNonce{nonce: nonce, issued: issued})
	return NonceFresh
}

// expire drops the oldest entries whose nonce has outlived its lifetime.
// Entries are in order of first use, which is close to the order of
// issue; an entry out of order only stays a little longer.
func (s *MemoryNonces) expire(now time.Time) {
	for s.head < len(s.order) && now.Sub(s.order[s.head].issued) > s.lifetime {
		s.drop()
	}
	s.compact()
}

// evict forgets the oldest entry and raises the floor to its issue time.
func (s *MemoryNonces) evict() {
	if s.head < len(s.order) {
		if e := s.order[s.head]; e.issued.After(s.floor) {
			s.floor = e.issued
		}
		s.drop()
	}
	s.compact()
}

func (s *MemoryNonces) drop() {
	delete(s.counts, s.order[s.head].nonce)
	s.order[s.head] = usedNonce{}
	s.head++
}

// compact reclaims the consumed front of order once it is half of it.
func (s *MemoryNonces) compact() {
	if s.head > 0 && s.head >= len(s.order)/2 {
		n := copy(s.order, s.order[s.head:])
		clear(s.order[n:])
		s.order = s.order[:n]
		s.head = 0
	}
}

// ForgetBefore makes the store answer NonceForgotten for every nonce issued
// at or before t that it does not remember: a control plane that starts
// with an empty store (its memory died with the previous process) cannot
// tell a replay of a nonce issued before it started, so the client gets
// a fresh one (stale=true, answered without asking the user).
func (s *MemoryNonces) ForgetBefore(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.floor) {
		s.floor = t
	}
}

// Len is the number of nonces remembered.
func (s *MemoryNonces) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}
