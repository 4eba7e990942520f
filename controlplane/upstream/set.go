package upstream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one place an upstream's requests go: an address, a port and a
// transport, from its URI or from DNS.
type Target struct {
	// Spec is the upstream it belongs to (frozen).
	Spec *Spec
	// Addr is its address and port; Transport is UDP, TCP or TLS.
	Addr      netip.AddrPort
	Transport string

	rank   [2]int // NAPTR (or transport) order, SRV priority: lower first
	srv    bool   // found by SRV: weight is the record's
	weight int    // SRV weight
}

// Host is the upstream's configured host: the domain of the URIs Strait
// sends it, and the name its TLS certificate must carry.
func (t Target) Host() string { return t.Spec.Host }

// Dest is the address requests go to, host:port.
func (t Target) Dest() string { return t.Addr.String() }

// Key names the target in logs and metric labels: transport/address:port.
func (t Target) Key() string { return strings.ToLower(t.Transport) + "/" + t.Addr.String() }

// URIPort is the port to write in a URI toward the target's upstream: the
// configured one, none when the URI gave none (so that the URIs read as
// the domain users and PBXs configure; digest checks compare them).
func (t Target) URIPort() int {
	if t.Spec.Port == 0 || t.Spec.Port == DefaultPort(t.Transport) {
		return 0
	}
	return t.Spec.Port
}

// DefaultRefresh is how often names are resolved again: often enough to
// follow a PBX that moves, rarely enough to cost nothing (Go's resolver
// does not tell TTLs).
const DefaultRefresh = time.Minute

// retryAfterFailure is how soon a failed resolution is tried again.
const retryAfterFailure = 5 * time.Second

// Config configures a Set.
type Config struct {
	// Specs are the configured upstreams; at least one.
	Specs []Spec
	// Resolver looks names up; nil uses the system's.
	Resolver *Resolver
	// Refresh is how often names are resolved again (DefaultRefresh).
	Refresh time.Duration
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// Set is the configured upstreams and what they resolve to. Its methods
// are safe for concurrent use and never wait for DNS: resolution runs in
// Start's goroutine and publishes an immutable snapshot.
type Set struct {
	specs []*Spec       // frozen after NewSet
	res   *Resolver     // frozen
	every time.Duration // frozen
	log   *slog.Logger  // frozen

	cur atomic.Pointer[snapshot] // replaced whole by resolution

	mu   sync.Mutex      // guards down
	down map[string]bool // by Target.Key: the last OPTIONS ping failed

	stop chan struct{}
	wg   sync.WaitGroup
}

// snapshot is one resolution of every upstream. It is never changed once
// published.
type snapshot struct {
	targets []Target            // every target, in spec order then rank
	byKey   map[string]Target   // by Key
	byIP    map[string][]Target // by transport/IP
	failed  map[*Spec]bool      // specs whose last resolution failed (their old targets kept)
}

// NewSet returns a set whose IP-literal upstreams are ready at once;
// names are resolved by Resolve or Start.
func NewSet(cfg Config) *Set {
	if cfg.Resolver == nil {
		cfg.Resolver = NewResolver("")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Set{res: cfg.Resolver, every: cfg.Refresh, log: cfg.Log, down: map[string]bool{}, stop: make(chan struct{})}
	for i := range cfg.Specs {
		sp := cfg.Specs[i]
		s.specs = append(s.specs, &sp)
	}
	var literal []Target
	for _, sp := range s.specs {
		if _, ok := sp.IP(); ok {
			ts, _ := s.res.Resolve(context.Background(), sp)
			literal = append(literal, ts...)
		}
	}
	s.cur.Store(build(literal, nil))
	return s
}

func build(ts []Target, failed map[*Spec]bool) *snapshot {
	sn := &snapshot{targets: ts, byKey: map[string]Target{}, byIP: map[string][]Target{}, failed: failed}
	for _, t := range ts {
		sn.byKey[t.Key()] = t
		k := t.Transport + "/" + t.Addr.Addr().String()
		sn.byIP[k] = append(sn.byIP[k], t)
	}
	return sn
}

// Resolve resolves every upstream now and publishes the result; an
// upstream whose lookup fails keeps the targets it had. It returns the
// first error.
func (s *Set) Resolve(ctx context.Context) error {
	old := s.cur.Load()
	var all []Target
	var firstErr error
	failed := map[*Spec]bool{}
	for _, sp := range s.specs {
		ts, err := s.res.Resolve(ctx, sp)
		if err != nil {
			failed[sp] = true
			if firstErr == nil {
				firstErr = err
			}
			if !old.failed[sp] {
				s.log.Warn("cannot resolve an upstream; keeping its last addresses", "upstream", sp.URI, "err", err)
			}
			for _, t := range old.targets {
				if t.Spec == sp {
					all = append(all, t)
				}
			}
			continue
		}
		if old.failed[sp] || !sameTargets(old.targets, ts, sp) {
			s.log.Info("upstream resolved", "upstream", sp.URI, "targets", keys(ts))
		}
		all = append(all, ts...)
	}
	sn := build(all, failed)
	s.cur.Store(sn)
	s.mu.Lock()
	for k := range s.down {
		if _, ok := sn.byKey[k]; !ok {
			delete(s.down, k) // a target DNS no longer gives
		}
	}
	s.mu.Unlock()
	return firstErr
}

func sameTargets(old, ts []Target, sp *Spec) bool {
	var before []string
	for _, t := range old {
		if t.Spec == sp {
			before = append(before, t.Key())
		}
	}
	after := keys(ts)
	if len(before) != len(after) {
		return false
	}
	for i := range before {
		if before[i] != after[i] {
			return false
		}
	}
	return true
}

func keys(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Key()
	}
	return out
}

// Start resolves the names again every Refresh (sooner while a name
// fails) until Close. The first round comes one interval after the last
// Resolve (NewSet's caller resolves once before taking calls).
func (s *Set) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			wait := s.every
			if len(s.cur.Load().failed) > 0 {
				wait = min(wait, retryAfterFailure)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*lookupTimeout)
			s.Resolve(ctx)
			cancel()
		}
	}()
}

// Close stops Start's goroutine.
func (s *Set) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// Specs returns the configured upstreams.
func (s *Set) Specs() []Spec {
	out := make([]Spec, len(s.specs))
	for i, sp := range s.specs {
		out[i] = *sp
	}
	return out
}

// All returns every target.
func (s *Set) All() []Target {
	return append([]Target(nil), s.cur.Load().targets...)
}

// Order returns the targets in the order a new call tries them: by the
// upstream's priority, then DNS order (NAPTR, SRV priority), each group
// shuffled by weight (RFC 2782's selection); targets whose last OPTIONS
// ping failed go last, so that they are still tried when nothing else is
// left.
func (s *Set) Order() []Target {
	ts := s.All()
	sort.SliceStable(ts, func(i, j int) bool { return less(ts[i], ts[j]) })
	out := make([]Target, 0, len(ts))
	for i := 0; i < len(ts); {
		j := i + 1
		for j < len(ts) && !less(ts[i], ts[j]) {
			j++
		}
		out = append(out, weighted(ts[i:j])...)
		i = j
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return !s.down[out[i].Key()] && s.down[out[j].Key()] })
	return out
}

// Prefer reports whether a is tried before b whatever the weights draw:
// a better upstream priority, then a better DNS rank (NAPTR order, SRV
// priority). Presence subscriptions use it to go back to a preferred
// target that answers again.
func Prefer(a, b Target) bool { return less(a, b) }

func less(a, b Target) bool {
	if a.Spec.Priority != b.Spec.Priority {
		return a.Spec.Priority < b.Spec.Priority
	}
	if a.rank[0] != b.rank[0] {
		return a.rank[0] < b.rank[0]
	}
	return a.rank[1] < b.rank[1]
}

// weighted orders one priority group at random, each pick with a
// probability in proportion to its weight (the upstream's times the SRV
// record's); weight 0 goes after the others (RFC 2782).
func weighted(group []Target) []Target {
	left := append([]Target(nil), group...)
	out := make([]Target, 0, len(left))
	for len(left) > 0 {
		total := 0
		for _, t := range left {
			total += weightOf(t)
		}
		pick := 0
		if total > 0 {
			n := rand.IntN(total)
			for i, t := range left {
				if n -= weightOf(t); n < 0 {
					pick = i
					break
				}
			}
		}
		out = append(out, left[pick])
		left = append(left[:pick], left[pick+1:]...)
	}
	return out
}

func weightOf(t Target) int {
	if t.srv {
		return t.Spec.Weight * t.weight
	}
	return t.Spec.Weight
}

// Match finds the upstream target a request came from: over UDP its
// address and port are the target's; over TCP and TLS the upstream may
// have opened the connection itself, from a port of its choosing, so the
// address and transport must match (TLS also proves a name: see
// VerifyPeer).
func (s *Set) Match(transport string, src netip.AddrPort) (Target, bool) {
	transport = strings.ToUpper(transport)
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	sn := s.cur.Load()
	if t, ok := sn.byKey[strings.ToLower(transport)+"/"+src.String()]; ok {
		return t, true
	}
	if transport == UDP {
		return Target{}, false
	}
	if ts := sn.byIP[transport+"/"+src.Addr().String()]; len(ts) > 0 {
		return ts[0], true
	}
	return Target{}, false
}

// Lookup finds the target at exactly this transport, address and port.
func (s *Set) Lookup(transport string, addr netip.AddrPort) (Target, bool) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	t, ok := s.cur.Load().byKey[strings.ToLower(transport)+"/"+addr.String()]
	return t, ok
}

// SetUp records the outcome of a target's OPTIONS ping and reports
// whether it changed.
func (s *Set) SetUp(t Target, up bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := !s.down[t.Key()]
	if up {
		delete(s.down, t.Key())
	} else {
		s.down[t.Key()] = true
	}
	return was != up
}

// IsUp reports whether a target answered its last ping (true before any).
func (s *Set) IsUp(t Target) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.down[t.Key()]
}

// Up reports whether any target answered its last ping (true before
// any ping, false when nothing resolved).
func (s *Set) Up() bool {
	ts := s.All()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		if !s.down[t.Key()] {
			return true
		}
	}
	return false
}
