// Package portalloc hands out UDP port pairs (RTP on an even port, RTCP on
// the next odd one, RFC 3550 section 11) from a configured range, the way
// PBXs expect a media relay to: one pair per stream, reused only after it is
// released, drawn at random so that the next call's ports cannot be guessed.
package portalloc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ErrExhausted means every pair of the range is in use.
var ErrExhausted = errors.New("portalloc: port range exhausted")

// Range is an inclusive port range.
type Range struct{ First, Last uint16 }

// String formats the range as "first-last".
func (r Range) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Pairs is the number of whole even/odd pairs in r.
func (r Range) Pairs() int {
	first := r.First + r.First%2
	if r.Last < first+1 {
		return 0
	}
	return int(r.Last-first+1) / 2
}

// Allocator hands out port pairs of a Range. It is safe for concurrent use.
// The zero value is unusable; use New.
//
// Pairs are drawn at random among the free ones: a relay that hands out
// 40000, 40002, ... in order tells an attacker where the next call's media
// will be, so that spraying a few ports just ahead of the last one seen
// reaches it before its peer does (RTP bleed). A released pair first
// cools down (it is handed out again only after cooling more recent
// releases, or when nothing else is free), so that late packets of the old
// call find no listener rather than a new call.
type Allocator struct {
	// Frozen after New. coolMax bounds cool: a quarter of the range, up to
	// 256 pairs (a few seconds of call turnover on a busy node).
	first   uint16 // first even port
	pairs   int
	coolMax int

	mu   sync.Mutex // guards the fields below
	free []int      // free pairs (indexes), in no order
	at   []int      // at[j]: j's position in free, -1 when not there
	cool []int      // released pairs, oldest first, not yet back in free
	// inUse counts pairs handed out (or being tried by Acquire).
	inUse int
}

// New returns an allocator over r's whole pairs.
func New(r Range) *Allocator {
	first := r.First + r.First%2
	a := &Allocator{first: first, pairs: r.Pairs()}
	a.free = make([]int, a.pairs)
	a.at = make([]int, a.pairs)
	for j := range a.free {
		a.free[j], a.at[j] = j, j
	}
	a.coolMax = min(a.pairs/4, 256)
	a.cool = make([]int, 0, a.coolMax)
	return a
}

// take removes pair j from free. a.mu held.
func (a *Allocator) take(j int) {
	k := a.at[j]
	last := a.free[len(a.free)-1]
	a.free[k], a.at[last] = last, k
	a.free = a.free[:len(a.free)-1]
	a.at[j] = -1
}

// put adds pair j to free. a.mu held.
func (a *Allocator) put(j int) {
	a.at[j] = len(a.free)
	a.free = append(a.free, j)
}

// Acquire reserves a pair, drawn at random among the free ones, and returns
// its RTP (even) port; RTCP is port+1. try is called with candidate ports
// until it succeeds (it binds the sockets; a port some other process holds
// makes it fail) or every pair that was free was tried.
func (a *Allocator) Acquire(try func(rtpPort uint16) error) (uint16, error) {
	var lastErr error
	var failed []int
	defer func() { // pairs another process holds may be free next time
		a.mu.Lock()
		for _, j := range failed {
			a.put(j)
			a.inUse--
		}
		a.mu.Unlock()
	}()
	for {
		a.mu.Lock()
		if len(a.free) == 0 && len(a.cool) > 0 {
			a.warm()
		}
		if len(a.free) == 0 {
			a.mu.Unlock()
			break
		}
		j := a.free[rand.IntN(len(a.free))]
		a.take(j)
		a.inUse++
		a.mu.Unlock()
		port := a.first + uint16(2*j)
		if lastErr = try(port); lastErr == nil {
			return port, nil
		}
		failed = append(failed, j)
	}
	if lastErr != nil {
		return 0, fmt.Errorf("%w (last error: %v)", ErrExhausted, lastErr)
	}
	return 0, ErrExhausted
}

// ErrUnavailable is returned by AcquirePort for a pair that is not free.
var ErrUnavailable = errors.New("portalloc: port pair not free")

// AcquirePort reserves the pair whose RTP port is port, if it is in the
// range and free (cooling counts as free: it is the same pair's owner
// coming back), and binds it with try: a session re-created after a
// restart of its process must listen where its peers send.
func (a *Allocator) AcquirePort(port uint16, try func(rtpPort uint16) error) error {
	if port < a.first || (port-a.first)%2 != 0 || int(port-a.first)/2 >= a.pairs {
		return fmt.Errorf("%w: %d is not a pair of the range", ErrUnavailable, port)
	}
	j := int(port-a.first) / 2
	a.mu.Lock()
	if i := slices.Index(a.cool, j); i >= 0 {
		a.cool = slices.Delete(a.cool, i, i+1)
		a.put(j)
	}
	if a.at[j] < 0 {
		a.mu.Unlock()
		return fmt.Errorf("%w: %d is in use", ErrUnavailable, port)
	}
	a.take(j)
	a.inUse++
	a.mu.Unlock()
	if err := try(port); err != nil {
		a.mu.Lock()
		a.put(j)
		a.inUse--
		a.mu.Unlock()
		return err
	}
	return nil
}

// Release returns the pair whose RTP port is port. Releasing a port that is
// not held is a no-op.
func (a *Allocator) Release(port uint16) {
	if port < a.first {
		return
	}
	j := int(port-a.first) / 2
	a.mu.Lock()
	defer a.mu.Unlock()
	if j >= a.pairs || a.at[j] >= 0 || slices.Contains(a.cool, j) {
		return
	}
	a.inUse--
	a.cool = append(a.cool, j)
	if len(a.cool) > a.coolMax {
		a.warm()
	}
}

// warm moves the pair that cooled longest back to free. a.mu held.
func (a *Allocator) warm() {
	a.put(a.cool[0])
	a.cool = append(a.cool[:0], a.cool[1:]...)
}

// InUse is the number of pairs held.
func (a *Allocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inUse
}

// Capacity is the number of pairs in the range.
func (a *Allocator) Capacity() int { return a.pairs }

// ParseRange parses "first-last" or a single "port".
func ParseRange(s string) (Range, error) {
	var r Range
	err := r.UnmarshalText([]byte(s))
	return r, err
}

// UnmarshalText parses "first-last" or a single "port" (for flags and
// configuration files).
func (r *Range) UnmarshalText(b []byte) error {
	s := string(b)
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	last, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return fmt.Errorf("port range %q: want FIRST-LAST with 0 < FIRST <= LAST <= 65535", s)
	}
	*r = Range{First: uint16(first), Last: uint16(last)}
	return nil
}

// MarshalText formats the range as UnmarshalText reads it; the zero range
// is empty.
func (r Range) MarshalText() ([]byte, error) {
	if r == (Range{}) {
		return nil, nil
	}
	return []byte(r.String()), nil
}
