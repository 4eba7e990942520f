package authguard

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for the guard.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newGuard(cfg Config) (*Guard, *clock) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	g := New(cfg)
	g.now = c.now
	return g, c
}

func allowed(g *Guard, src string) bool { ok, _ := g.Allow(src, "udp"); return ok }

// guesses counts how many guesses from src for user the guard lets through
// in d, when the guesser tries every step.
func guesses(g *Guard, c *clock, src, user string, d, step time.Duration) int {
	n := 0
	for end := c.now().Add(d); c.now().Before(end); c.add(step) {
		if allowed(g, src) {
			n++
			g.Failure(src, user)
		}
	}
	return n
}

func TestSourceSlowsThenBlocks(t *testing.T) {
	g, c := newGuard(Config{})
	src := "198.51.100.7:5060"
	for i := range DefaultSourceThreshold {
		if !allowed(g, src) {
			t.Fatalf("failure %d refused; the first %d are free", i, DefaultSourceThreshold)
		}
		g.Failure(src, "alice")
	}
	ok, retry := g.Allow(src, "udp")
	if ok || retry != DefaultBaseBlock {
		t.Fatalf("after %d failures: allowed %v, retry after %s; want blocked for %s", DefaultSourceThreshold, ok, retry, DefaultBaseBlock)
	}
	// Blocks double: 1 s, 2 s, 4 s...
	for _, want := range []time.Duration{DefaultBaseBlock, 2 * DefaultBaseBlock, 4 * DefaultBaseBlock} {
		_, retry := g.Allow(src, "udp")
		if retry != want {
			t.Fatalf("block of %s, want %s", retry, want)
		}
		c.add(want)
		if !allowed(g, src) {
			t.Fatal("still blocked after the block")
		}
		g.Failure(src, "alice")
	}
	// Ten minutes of guessing as fast as possible: a handful, then one per 15 min.
	g2, c2 := newGuard(Config{})
	n := guesses(g2, c2, "198.51.100.8:1", "alice", 10*time.Minute, 10*time.Millisecond)
	if n > 20 {
		t.Fatalf("%d guesses in 10 minutes from one address", n)
	}
	m := guesses(g2, c2, "198.51.100.8:1", "alice", time.Hour, 10*time.Millisecond)
	if m > 5 {
		t.Fatalf("%d guesses in the next hour", m)
	}
	t.Logf("guesses let through from one address: %d in the first 10 minutes, %d in the hour after", n, m)
}

func TestSuccessForgets(t *testing.T) {
	g, _ := newGuard(Config{})
	src := "198.51.100.9:1"
	for range DefaultSourceThreshold - 1 {
		g.Failure(src, "alice")
	}
	g.Success(src)
	for range DefaultSourceThreshold - 1 {
		g.Failure(src, "alice")
	}
	if !allowed(g, src) {
		t.Fatal("a success did not reset the count")
	}
}

// A user under attack from many addresses: each new address gets one
// try; the user's own address, which did not fail, is never blocked.
func TestUserUnderAttack(t *testing.T) {
	g, _ := newGuard(Config{})
	let := 0
	for i := range 200 {
		src := fmt.Sprintf("203.0.113.%d:5060", i)
		for range 3 {
			if allowed(g, src) {
				let++
				g.Failure(src, "alice")
			}
		}
	}
	if _, users := g.Blocked(); users != 1 {
		t.Fatalf("users under attack: %d, want 1", users)
	}
	if let > DefaultUserThreshold*3+200 {
		t.Fatalf("%d guesses let through from 200 addresses", let)
	}
	if !allowed(g, "192.0.2.1:5060") {
		t.Fatal("the real user's address is blocked by others' failures")
	}
	t.Logf("200 addresses, 3 tries each at one user: %d let through", let)
}

// The same handling whatever the user name: no enumeration.
func TestUnknownUsersCountAlike(t *testing.T) {
	g, c := newGuard(Config{})
	known := guesses(g, c, "198.51.100.1:1", "alice", time.Minute, 10*time.Millisecond)
	unknown := guesses(g, c, "198.51.100.2:1", "nobody-here", time.Minute, 10*time.Millisecond)
	if known != unknown {
		t.Fatalf("known user: %d guesses, unknown: %d; must be alike", known, unknown)
	}
}

func TestSourceKeys(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7:5060":            "198.51.100.7/32",
		"[2001:db8:1:2:3:4:5:6]:5060":  "2001:db8:1:2::/64",
		"[::ffff:198.51.100.7]:5060":   "198.51.100.7/32",
		"198.51.100.7":                 "198.51.100.7/32",
		"[2001:db8:1:2:ffff::1]:40000": "2001:db8:1:2::/64",
	} {
		if k, ok := Source(in); !ok || k.String() != want {
			t.Errorf("Source(%q) = %s %v, want %s", in, k, ok, want)
		}
	}
	if _, ok := Source("not an address"); ok {
		t.Error("garbage parsed")
	}
}

func TestTrustedNeverBlocked(t *testing.T) {
	pbx := netip.MustParseAddr("10.0.0.5")
	g, _ := newGuard(Config{Trusted: func(a netip.Addr) bool { return a == pbx }})
	for range 100 {
		g.Failure("10.0.0.5:5060", "x")
	}
	if !allowed(g, "10.0.0.5:5060") {
		t.Fatal("the trusted upstream got blocked")
	}
}

func TestBounded(t *testing.T) {
	g, _ := newGuard(Config{Capacity: 100})
	for i := range 10_000 {
		g.Failure(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), fmt.Sprintf("user%d", i))
	}
	if s, u := g.Len(); s > 100 || u > 100 {
		t.Fatalf("%d sources, %d users tracked; capacity 100", s, u)
	}
}

// One log line per interval, however many failures.
func TestAggregatedLog(t *testing.T) {
	var buf bytes.Buffer
	g, _ := newGuard(Config{Log: slog.New(slog.NewTextHandler(&buf, nil))})
	for i := range 1000 {
		g.Failure(fmt.Sprintf("198.51.100.%d:1", i%7), "alice")
	}
	g.Sweep()
	g.Sweep() // nothing new: nothing logged
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "failures=1000") || !strings.Contains(lines[0], "top_users=\"alice (1000)\"") {
		t.Fatalf("log:\n%s", buf.String())
	}
}
