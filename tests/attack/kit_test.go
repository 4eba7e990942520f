package attack

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// The legitimate user: registered from 127.0.0.1 over WebSocket, it places
// the call that must still work during every attack.
const (
	legitUser     = "alice"
	legitPassword = "alice-correct-horse"
)

// targetConfig describes the strait an attack test runs against.
type targetConfig struct {
	// Trunk runs trunk mode toward a sipp PBX (tests/attack/sipp/pbx.xml)
	// that accepts every REGISTER, answers every INVITE and echoes RTP.
	// Standalone mode otherwise, with the legitimate user and Users.
	Trunk bool
	// PBXScenario replaces the trunk-mode PBX's scenario (a file of
	// tests/attack/sipp): pbx_auth.xml challenges REGISTERs and accepts
	// only the legitimate user's password.
	PBXScenario string
	// Users are more standalone NAME:PASSWORD pairs.
	Users []string
	// Args are extra strait flags (they come last, so they override).
	Args []string
	// Debug logs at debug level (the SIP trace); floods leave it off.
	Debug bool
	// NoFile, if set, runs strait with this file descriptor limit
	// (prlimit), as a production unit file might.
	NoFile int
}

// target is a running strait under attack.
type target struct {
	*harness.Strait
	e   *harness.Env
	t   *testing.T
	cfg targetConfig
	// pbx is the sipp PBX in trunk mode.
	pbx *harness.Sipp
}

// startTarget starts strait (and, in trunk mode, its sipp PBX first) and
// waits until it is ready. The test is skipped, naming what is missing,
// when the strait binary or sipp is not there (a failure when CI=true).
func startTarget(t *testing.T, cfg targetConfig) *target {
	t.Helper()
	needs := []harness.Requirement{harness.NeedStrait}
	if cfg.Trunk {
		needs = append(needs, harness.NeedSipp)
	}
	e := harness.New(t, needs...)
	tg := &target{e: e, t: t, cfg: cfg}
	sc := harness.StraitConfig{Users: append([]string{legitUser + ":" + legitPassword}, cfg.Users...)}
	if cfg.Trunk {
		pbxScenario := cfg.PBXScenario
		if pbxScenario == "" {
			pbxScenario = "pbx.xml"
		}
		tg.pbx = e.StartSipp(harness.SippConfig{Name: "pbx", Scenario: scenario(pbxScenario), RTPEcho: true,
			Calls: 100000, Timeout: harness.TestTimeout})
		sc = harness.StraitConfig{Upstream: "sip:" + tg.pbx.Addr() + ";transport=udp"}
	}
	level := "info"
	if cfg.Debug {
		level = "debug"
	}
	sc.Args = append([]string{"--log-level", level}, cfg.Args...)
	if cfg.NoFile > 0 {
		sc.Wrapper = []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", cfg.NoFile, cfg.NoFile), "--"}
	}
	tg.Strait = e.StartStrait(sc)
	return tg
}

// scenario returns the path of a sipp scenario of this suite.
func scenario(name string) string {
	return filepath.Join(harness.RepoRoot(), "tests", "attack", "sipp", name)
}

// ctx returns a context bounded by d and by the test's own deadline.
func (tg *target) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(tg.e.Context(), d)
	tg.t.Cleanup(cancel)
	return ctx
}

// --- metrics ---------------------------------------------------------------

// scrape reads /metrics, failing the test if it cannot.
func (tg *target) scrape() harness.Metrics {
	tg.t.Helper()
	m, err := tg.Metrics(tg.ctx(10 * time.Second))
	if err != nil {
		tg.t.Fatalf("scraping /metrics: %v", err)
	}
	return m
}

var labelPair = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// value sums the series of metric name whose labels include every
// "key=value" pair in labels (all of its series with none).
func value(m harness.Metrics, name string, labels ...string) float64 {
	var sum float64
	for series, v := range m.Values {
		n, ls, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		have := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(ls, -1) {
			have[p[1]] = p[2]
		}
		ok := true
		for _, want := range labels {
			k, v, _ := strings.Cut(want, "=")
			if have[k] != v {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// series lists the series of metric name, for failure messages.
func series(m harness.Metrics, name string) string {
	var out []string
	for s, v := range m.Values {
		if n, _, _ := strings.Cut(s, "{"); n == name {
			out = append(out, fmt.Sprintf("%s %g", s, v))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return name + ": no series"
	}
	return strings.Join(out, "\n")
}

// counter returns the value of a metric's matching series now.
func (tg *target) counter(name string, labels ...string) float64 {
	tg.t.Helper()
	return value(tg.scrape(), name, labels...)
}

// waitCounted waits until the metric's matching series add up to at least
// min: the attack was counted. It returns the value reached.
func (tg *target) waitCounted(min float64, name string, labels ...string) float64 {
	tg.t.Helper()
	var got float64
	var m harness.Metrics
	waitFor(tg.t, 15*time.Second, fmt.Sprintf("%s%v >= %g", name, labels, min), func() (bool, string) {
		var err error
		if m, err = tg.Metrics(tg.ctx(5 * time.Second)); err != nil {
			return false, err.Error()
		}
		got = value(m, name, labels...)
		return got >= min, series(m, name)
	})
	return got
}

// resources is what a flood must give back: goroutines, heap in use and
// open descriptors of the strait process, from its /metrics.
type resources struct {
	Goroutines, HeapMB, FDs float64
}

func (r resources) String() string {
	return fmt.Sprintf("%g goroutines, %.1f MB heap in use, %g open fds", r.Goroutines, r.HeapMB, r.FDs)
}

func resourcesOf(m harness.Metrics) resources {
	return resources{Goroutines: value(m, "go_goroutines"), HeapMB: value(m, "go_memstats_heap_inuse_bytes") / (1 << 20),
		FDs: value(m, "process_open_fds")}
}

// resources scrapes the process's resources now.
func (tg *target) resources() resources {
	tg.t.Helper()
	return resourcesOf(tg.scrape())
}

// slack is how far above the baseline resources may stay once an attack
// is over: timers and idle HTTP connections come and go, and the Go heap
// shrinks only when the collector runs.
var slack = resources{Goroutines: 15, HeapMB: 16, FDs: 8}

// waitResourcesBack waits until strait's resources are back within slack
// of base and returns what they were then.
func (tg *target) waitResourcesBack(base resources, within resources, timeout time.Duration) resources {
	tg.t.Helper()
	var now resources
	waitFor(tg.t, timeout, "resources back to "+base.String(), func() (bool, string) {
		m, err := tg.Metrics(tg.ctx(5 * time.Second))
		if err != nil {
			return false, err.Error()
		}
		now = resourcesOf(m)
		ok := now.Goroutines <= base.Goroutines+within.Goroutines && now.HeapMB <= base.HeapMB+within.HeapMB &&
			now.FDs <= base.FDs+within.FDs
		return ok, "now " + now.String()
	})
	return now
}

// peak samples strait's resources every interval until stop is closed and
// returns the highest of each. Run it in a goroutine during a flood.
func (tg *target) peak(stop <-chan struct{}, interval time.Duration) <-chan resources {
	out := make(chan resources, 1)
	go func() {
		var top resources
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if m, err := tg.Metrics(ctx); err == nil {
				r := resourcesOf(m)
				top.Goroutines = max(top.Goroutines, r.Goroutines)
				top.HeapMB = max(top.HeapMB, r.HeapMB)
				top.FDs = max(top.FDs, r.FDs)
			}
			cancel()
			select {
			case <-stop:
				out <- top
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// --- waiting ---------------------------------------------------------------

// waitFor polls cond until it holds, failing the test after timeout with
// the last detail cond gave. Polling is every 50 ms: conditions are cheap.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- the attack ------------------------------------------------------------

// attack is one attacker's run in the background, bounded in time.
type attack struct {
	// Sent counts what the attacker sent (messages, connections: the
	// attack says); Refused what it saw refused, as the attack decides.
	Sent, Refused atomic.Int64

	done chan struct{}
	mu   sync.Mutex
	err  error
}

// startAttack runs run in a goroutine with a context that ends after d
// (or with the test). run returns when its context is done or its budget
// of messages is spent.
func startAttack(t *testing.T, d time.Duration, run func(ctx context.Context, a *attack) error) *attack {
	t.Helper()
	a := &attack{done: make(chan struct{})}
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	go func() {
		defer close(a.done)
		defer cancel()
		// An error once the attack's window has closed (a dial cut short
		// by its deadline on a slow machine) ends the attack; only one
		// within the window means it could not be carried out. The
		// socket's deadline can fire a moment before the context's own
		// timer marks it done, so the clock decides, not ctx.Err alone.
		if err := run(ctx, a); err != nil && ctx.Err() == nil && time.Until(end) > 50*time.Millisecond {
			a.mu.Lock()
			a.err = err
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-a.done })
	return a
}

// waitUnderway waits until the attacker has sent something, so that what
// the test does next happens during the attack.
func (a *attack) waitUnderway(t *testing.T) {
	t.Helper()
	waitFor(t, 10*time.Second, "the attack to start", func() (bool, string) {
		select {
		case <-a.done:
			return true, ""
		default:
		}
		return a.Sent.Load() > 0, "nothing sent yet"
	})
}

// wait waits for the attack to end and fails the test if it could not be
// carried out (which is not the same as being refused).
func (a *attack) wait(t *testing.T) {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(time.Minute):
		t.Fatal("the attack did not end within a minute of its deadline")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		t.Fatalf("attack: %v", a.err)
	}
}
