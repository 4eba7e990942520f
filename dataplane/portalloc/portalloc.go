// Package portalloc hands out UDP port pairs (RTP on an even port, RTCP on
// the next odd one, RFC 3550 section 11) from a configured range, the way
// PBXs expect a media relay to: one pair per stream, reused only after it is
// released.
package portalloc

import (
	"errors"
	"fmt"
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
type Allocator struct {
	first uint16 // first even port

	mu   sync.Mutex
	used []bool // per pair
	next int    // where the next search starts (next-fit, so a released
	// pair is not handed out again at once: late packets of the old call
	// find no listener rather than a new call)
	inUse int
}

// New returns an allocator over r's whole pairs.
func New(r Range) *Allocator {
	first := r.First + r.First%2
	return &Allocator{first: first, used: make([]bool, r.Pairs())}
}

// Acquire reserves a pair and returns its RTP (even) port; RTCP is port+1.
// try is called with candidate ports until it succeeds (it binds the
// sockets; a port some other process holds makes it fail) or every free
// pair was tried.
func (a *Allocator) Acquire(try func(rtpPort uint16) error) (uint16, error) {
	var lastErr error
	for i := range a.used {
		a.mu.Lock()
		j := (a.next + i) % len(a.used)
		if a.used[j] {
			a.mu.Unlock()
			continue
		}
		a.used[j] = true
		a.inUse++
		a.mu.Unlock()
		port := a.first + uint16(2*j)
		if lastErr = try(port); lastErr == nil {
			a.mu.Lock()
			a.next = (j + 1) % len(a.used)
			a.mu.Unlock()
			return port, nil
		}
		a.mu.Lock()
		a.used[j] = false
		a.inUse--
		a.mu.Unlock()
	}
	if lastErr != nil {
		return 0, fmt.Errorf("%w (last error: %v)", ErrExhausted, lastErr)
	}
	return 0, ErrExhausted
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
	if j < len(a.used) && a.used[j] {
		a.used[j] = false
		a.inUse--
	}
}

// InUse is the number of pairs held.
func (a *Allocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inUse
}

// Capacity is the number of pairs in the range.
func (a *Allocator) Capacity() int { return len(a.used) }

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
