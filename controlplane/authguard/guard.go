// Package authguard slows down and then blocks password guessing: it
// counts failed authentications per source address and per user name and
// tells the registrar and the B2BUA when a source must be refused before
// its credentials are even looked at (or, in trunk mode, before its
// REGISTER reaches the PBX, whose own fail2ban would otherwise ban
// Strait's address).
//
// The rules, for an operator:
//
//   - A source (an IPv4 address, an IPv6 /64) may fail SourceThreshold
//     times within Window. The next failure blocks it for BaseBlock; every
//     failure after a block ends blocks it again for twice as long, up to
//     MaxBlock. A success forgets the source's failures.
//   - A user name that fails UserThreshold times within Window, from
//     anywhere, is under attack for the same doubling durations: while it
//     is, one failure for it blocks the source at once. A source that has
//     not failed still gets its try, so that a guesser cannot lock the
//     real user out; the real user's own source is never blocked by the
//     failures of others.
//   - Unknown user names are counted exactly like known ones, so that the
//     answers never tell whether a user exists.
//   - A blocked source's requests that need authentication get 403 with
//     Retry-After, without a challenge and without checking credentials.
//   - Every block and refusal is counted (strait_auth_blocked,
//     strait_sip_dropped_total{reason="auth_blocked"}); the log gets one
//     aggregated line per LogInterval while anything failed, never one per
//     failure.
//
// Memory is bounded: each table holds at most Capacity entries; when full,
// an entry that is neither blocked nor recent makes room first.
package authguard

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// Defaults, chosen so that a person mistyping a password a few times
// waits seconds, while a guesser from one address gets about 15 tries in
// its first ten minutes and then one each MaxBlock (against thousands a
// second without the guard).
const (
	DefaultSourceThreshold = 5
	DefaultUserThreshold   = 20
	DefaultWindow          = 10 * time.Minute
	DefaultBaseBlock       = time.Second
	DefaultMaxBlock        = 15 * time.Minute
	DefaultCapacity        = 1 << 16
	DefaultLogInterval     = time.Minute
)

// Config configures a Guard. Zero fields take the defaults.
type Config struct {
	SourceThreshold int
	UserThreshold   int
	Window          time.Duration
	BaseBlock       time.Duration
	MaxBlock        time.Duration
	Capacity        int
	LogInterval     time.Duration
	// Trusted says which addresses are never blocked (the upstream).
	Trusted func(netip.Addr) bool
	Log     *slog.Logger
	Metrics *metrics.Metrics
}

// Guard tracks failures and blocks. It is safe for concurrent use; all of
// its state is guarded by mu.
type Guard struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	sources map[netip.Prefix]*record
	users   map[string]*record
	// since the last aggregated log line:
	failures, refused int
}

// record is one source's or user's history.
type record struct {
	failures int       // within Window of last
	last     time.Time // last failure
	blocks   int       // blocks so far (the next lasts BaseBlock << blocks)
	until    time.Time // blocked (a source) or under attack (a user) until then
	recent   int       // failures since the last log line
}

// idle is how long r has been quiet: since its last failure or the end
// of its block, whichever is later (negative while blocked).
func (r *record) idle(now time.Time) time.Duration {
	if r.until.After(r.last) {
		return now.Sub(r.until)
	}
	return now.Sub(r.last)
}

// New returns a Guard.
func New(cfg Config) *Guard {
	if cfg.SourceThreshold <= 0 {
		cfg.SourceThreshold = DefaultSourceThreshold
	}
	if cfg.UserThreshold <= 0 {
		cfg.UserThreshold = DefaultUserThreshold
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.BaseBlock <= 0 {
		cfg.BaseBlock = DefaultBaseBlock
	}
	if cfg.MaxBlock <= 0 {
		cfg.MaxBlock = DefaultMaxBlock
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	g := &Guard{cfg: cfg, now: time.Now, sources: map[netip.Prefix]*record{}, users: map[string]*record{}}
	cfg.Metrics.AuthBlockedFrom(g.Blocked)
	return g
}

// Blocked returns how many sources are blocked and how many user names
// are under attack now.
func (g *Guard) Blocked() (sources, users int) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.sources {
		if now.Before(r.until) {
			sources++
		}
	}
	for _, r := range g.users {
		if now.Before(r.until) {
			users++
		}
	}
	return sources, users
}

// Source returns the key a request's source ("ip:port", as sipgo records
// it) is counted under: the address, or its /64 for IPv6 (one subscriber
// holds a whole /64). ok is false when source does not parse.
func Source(source string) (key netip.Prefix, ok bool) {
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		a, err2 := netip.ParseAddr(source)
		if err2 != nil {
			return netip.Prefix{}, false
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p, true
}

// Allow reports whether a request from source may have its credentials
// checked (or, in trunk mode, be relayed). When not, retryAfter is how long
// the block still lasts; the refusal is counted on transport.
func (g *Guard) Allow(source, transport string) (ok bool, retryAfter time.Duration) {
	if g == nil {
		return true, 0
	}
	key, parsed := Source(source)
	if !parsed || g.trusted(key) {
		return true, 0
	}
	now := g.now()
	g.mu.Lock()
	r := g.sources[key]
	blocked := r != nil && now.Before(r.until)
	if blocked {
		g.refused++
		retryAfter = r.until.Sub(now)
	}
	g.mu.Unlock()
	if blocked {
		g.cfg.Metrics.SIPDropped(transport, metrics.DropAuthBlocked)
		return false, retryAfter
	}
	return true, 0
}

func (g *Guard) trusted(key netip.Prefix) bool {
	return g.cfg.Trusted != nil && g.cfg.Trusted(key.Addr())
}

// Failure records a failed authentication from source for user (known
// or not).
func (g *Guard) Failure(source, user string) {
	if g == nil {
		return
	}
	key, parsed := Source(source)
	if !parsed || g.trusted(key) {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures++
	u := entry(g, g.users, userKey(user), now)
	g.fail(u, now)
	if u.failures >= g.cfg.UserThreshold && !now.Before(u.until) {
		u.until = now.Add(g.backoff(u.blocks))
		u.blocks++
	}
	s := entry(g, g.sources, key, now)
	g.fail(s, now)
	if (s.failures >= g.cfg.SourceThreshold || now.Before(u.until)) && !now.Before(s.until) {
		s.until = now.Add(g.backoff(s.blocks))
		s.blocks++
	}
}

// Success records a successful authentication: the source's failures are
// forgotten (its past blocks too).
func (g *Guard) Success(source string) {
	if g == nil {
		return
	}
	key, parsed := Source(source)
	if !parsed {
		return
	}
	g.mu.Lock()
	if r := g.sources[key]; r != nil && !g.now().Before(r.until) {
		delete(g.sources, key)
	}
	g.mu.Unlock()
}

// fail counts one failure on r, forgetting failures (and past blocks)
// older than Window.
func (g *Guard) fail(r *record, now time.Time) {
	if !r.last.IsZero() && r.idle(now) > g.cfg.Window {
		r.failures, r.blocks = 0, 0
	}
	r.failures++
	r.recent++
	r.last = now
}

// userKey bounds the length of a user name kept as a key (an attacker
// chooses it).
func userKey(user string) string {
	if len(user) > 64 {
		return user[:64]
	}
	return user
}

// backoff is how long the next block lasts after blocks earlier ones.
func (g *Guard) backoff(blocks int) time.Duration {
	d := g.cfg.BaseBlock
	for range blocks {
		if d *= 2; d >= g.cfg.MaxBlock {
			return g.cfg.MaxBlock
		}
	}
	return min(d, g.cfg.MaxBlock)
}

// entry returns the table's entry for key, making room when the table is
// full. Callers hold mu.
func entry[K comparable](g *Guard, table map[K]*record, key K, now time.Time) *record {
	if r, ok := table[key]; ok {
		return r
	}
	if len(table) >= g.cfg.Capacity {
		evict(table, now, g.cfg.Window)
	}
	r := &record{}
	table[key] = r
	return r
}

// evict removes one entry of a full table: an idle one (not blocked, no
// failure within window) if one turns up among the first few visited,
// else the first one that is not blocked, else any.
func evict[K comparable](table map[K]*record, now time.Time, window time.Duration) {
	var fallback, any K
	haveFallback, haveAny := false, false
	probes := 0
	for k, r := range table {
		if !haveAny {
			any, haveAny = k, true
		}
		if now.Before(r.until) {
			continue
		}
		if r.idle(now) > window {
			delete(table, k)
			return
		}
		if !haveFallback {
			fallback, haveFallback = k, true
		}
		if probes++; probes >= 16 {
			break
		}
	}
	switch {
	case haveFallback:
		delete(table, fallback)
	case haveAny:
		delete(table, any)
	}
}

// Sweep drops entries that are neither blocked nor recent and logs the aggregated line when anything failed or was
// refused since the last one. Run it every LogInterval (see Run).
func (g *Guard) Sweep() {
	if g == nil {
		return
	}
	now := g.now()
	g.mu.Lock()
	var blockedSources, attackedUsers int
	type top struct {
		key string
		n   int
	}
	var srcs, usrs []top
	for k, r := range g.sources {
		if r.recent > 0 {
			srcs = append(srcs, top{k.String(), r.recent})
			r.recent = 0
		}
		switch {
		case now.Before(r.until):
			blockedSources++
		case r.idle(now) > g.cfg.Window:
			delete(g.sources, k)
		}
	}
	for k, r := range g.users {
		if r.recent > 0 {
			usrs = append(usrs, top{k, r.recent})
			r.recent = 0
		}
		switch {
		case now.Before(r.until):
			attackedUsers++
		case r.idle(now) > g.cfg.Window:
			delete(g.users, k)
		}
	}
	failures, refused := g.failures, g.refused
	g.failures, g.refused = 0, 0
	g.mu.Unlock()

	if failures == 0 && refused == 0 {
		return
	}
	worst := func(ts []top) string {
		sort.Slice(ts, func(i, j int) bool { return ts[i].n > ts[j].n || ts[i].n == ts[j].n && ts[i].key < ts[j].key })
		var parts []string
		for _, t := range ts[:min(len(ts), 3)] {
			parts = append(parts, fmt.Sprintf("%s (%d)", t.key, t.n))
		}
		return strings.Join(parts, ", ")
	}
	g.cfg.Log.Warn("authentication failures", "interval", g.cfg.LogInterval, "failures", failures,
		"refused_while_blocked", refused, "sources", len(srcs), "users", len(usrs),
		"blocked_sources", blockedSources, "users_under_attack", attackedUsers,
		"top_sources", worst(srcs), "top_users", worst(usrs))
}

// Run calls Sweep every LogInterval until stop is closed.
func (g *Guard) Run(stop <-chan struct{}) {
	if g == nil {
		return
	}
	t := time.NewTicker(g.cfg.LogInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			g.Sweep()
		}
	}
}

// Len returns the number of sources and users tracked.
func (g *Guard) Len() (sources, users int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sources), len(g.users)
}
