package attack

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guessStats counts what a password guesser saw.
type guessStats struct {
	// Checked: guesses whose credentials were looked at (answered with a
	// new challenge, 401/407, or 200 had one been right). Blocked:
	// answered 403 without a look. Other: anything else.
	Checked, Blocked, Other atomic.Int64
	// Codes is the sequence of answers, for the enumeration check.
	mu    sync.Mutex
	Codes []int
}

func (g *guessStats) record(code int) {
	switch code {
	case 401, 407:
		g.Checked.Add(1)
	case 403:
		g.Blocked.Add(1)
	default:
		g.Other.Add(1)
	}
	g.mu.Lock()
	g.Codes = append(g.Codes, code)
	g.mu.Unlock()
}

// guess sends REGISTERs for user@domain with wrong passwords over s until
// ctx ends or count guesses were made, each answering the last challenge
// seen (the first from a REGISTER without credentials), as a guesser does.
func guess(ctx context.Context, s session, domain, user string, count int, st *guessStats, a *attack) error {
	transport, host, port := s.Via()
	res, err := s.Do(register(transport, host, port, domain, user, 1))
	if err != nil {
		return fmt.Errorf("first REGISTER: %w", err)
	}
	st.mu.Lock()
	st.Codes = append(st.Codes, statusOf(res)) // the first challenge: not a guess
	st.mu.Unlock()
	last := res
	for i := 0; i < count && ctx.Err() == nil; i++ {
		m := register(transport, host, port, domain, user, 2+i)
		if statusOf(last) == 401 {
			m.Headers = append(m.Headers, "Authorization: "+answerFor(last, user, fmt.Sprintf("guess-%d", i), "REGISTER", "sip:"+domain))
		}
		res, err := s.Do(m)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("guess %d: %w", i, err)
		}
		if a != nil {
			a.Sent.Add(1)
		}
		st.record(statusOf(res))
		if statusOf(res) == 401 {
			last = res
		}
	}
	return nil
}

// challengeShape is a challenge with its nonce blanked: what must not
// differ between a known and an unknown user.
var nonceValue = regexp.MustCompile(`nonce="[^"]*"`)

func challengeShape(res string) string {
	return nonceValue.ReplaceAllString(header(res, "WWW-Authenticate"), `nonce="..."`)
}

// Issue 8 item 4, standalone. One address guesses alice's password as
// fast as it can over UDP, one over TCP, one over WebSocket, and 20 more
// addresses three times each; beforehand two fresh addresses guess at a
// user that exists and one that does not, in step. Guessing must slow and
// then stop (403 without a look at the credentials), identically for
// both users, with a metric and no log line per failure, while the real
// alice, from her own address, registers and calls.
func TestPasswordGuessing(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{Users: []string{"bob:bob-secret-9"}})
	ctx := tg.ctx(time.Minute)
	const domain = "127.0.0.1"

	// No enumeration: the same answers, in the same order, for a user
	// that exists and one that does not.
	var known, unknown guessStats
	var shapes [2]string
	for i, probe := range []struct {
		src, user string
		st        *guessStats
	}{{attackerIP(100), "bob", &known}, {attackerIP(101), "zed", &unknown}} {
		s, err := openSession(ctx, tg, "UDP", probe.src)
		if err != nil {
			t.Fatal(err)
		}
		transport, host, port := s.Via()
		res, err := s.Do(register(transport, host, port, domain, probe.user, 1))
		if err != nil {
			t.Fatal(err)
		}
		shapes[i] = challengeShape(res)
		if err := guess(ctx, s, domain, probe.user, 8, probe.st, nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if fmt.Sprint(known.Codes) != fmt.Sprint(unknown.Codes) || shapes[0] != shapes[1] {
		t.Errorf("a user that exists and one that does not are told apart:\nbob: %v %s\nzed: %v %s",
			known.Codes, shapes[0], unknown.Codes, shapes[1])
	}
	t.Logf("enumeration probe: bob (exists) and zed (does not) both got %v", known.Codes)

	logBefore := strings.Count(tg.Log(), "\n")
	var fast [3]guessStats // UDP, TCP, WS from one address each
	var spread guessStats
	const d = 4 * time.Second
	a := startAttack(t, d, func(ctx context.Context, a *attack) error {
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i, transport := range transports {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// As fast as it can: over TCP strait closes the connection
				// when it outruns its message rate; the guesser reconnects.
				for ctx.Err() == nil {
					s, err := openSession(ctx, tg, transport, attackerIP(i))
					if err != nil { // refused or timed out: try again
						select {
						case <-ctx.Done():
						case <-time.After(50 * time.Millisecond):
						}
						continue
					}
					err = guess(ctx, s, domain, legitUser, 50000, &fast[i], a)
					s.Close()
					if err != nil && transport == "UDP" && ctx.Err() == nil {
						errs <- fmt.Errorf("%s: %w", transport, err)
						return
					}
				}
			}()
		}
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := openSession(ctx, tg, "UDP", attackerIP(10+i))
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				if err := guess(ctx, s, domain, legitUser, 3, &spread, a); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	tg.callDuring(a)
	// While it lasts, the guessers' addresses are blocked (each block
	// lasts seconds, so this is asked during the attack).
	waitFor(t, 3*time.Second, "a source blocked", func() (bool, string) {
		n := tg.counter("strait_auth_blocked", "kind=source")
		return n >= 1, fmt.Sprintf("strait_auth_blocked{kind=source} = %g", n)
	})
	a.wait(t)

	for i, transport := range transports {
		checked := fast[i].Checked.Load()
		rate := float64(checked) / d.Seconds()
		t.Logf("one address over %s for %s: %d guesses checked (%.1f/s), %d refused unchecked (403)",
			transport, d, checked, rate, fast[i].Blocked.Load())
		// 5 free, then blocks of 1 s, 2 s: a handful in 4 s.
		if checked > 10 || fast[i].Blocked.Load() == 0 {
			t.Errorf("%s: %d guesses checked in %s, %d refused: guessing is not slowed", transport, checked, d, fast[i].Blocked.Load())
		}
	}
	t.Logf("20 more addresses, 3 guesses each: %d checked, %d refused", spread.Checked.Load(), spread.Blocked.Load())
	if spread.Checked.Load() > 45 {
		t.Errorf("20 addresses had %d guesses checked", spread.Checked.Load())
	}
	tg.waitCounted(1, "strait_sip_dropped_total", "reason=auth_blocked")
	failures := tg.counter("strait_auth_failures_total")
	lines := strings.Count(tg.Log(), "\n") - logBefore
	if lines > 20 {
		t.Errorf("%d log lines for %g failures: not aggregated", lines, failures)
	}
	t.Logf("counted: %s; %s; %d log lines during the attack",
		strings.ReplaceAll(series(tg.scrape(), "strait_auth_failures_total"), "\n", ", "),
		strings.ReplaceAll(series(tg.scrape(), "strait_sip_dropped_total"), "\n", ", "), lines)
}

// Issue 8 item 4, trunk mode. An address guesses alice's password through
// Strait at a PBX that challenges (sipp, pbx_auth.xml): after a few
// refusals by the PBX, Strait refuses the address itself, so the PBX (and
// its fail2ban) sees a handful of guesses instead of all of them.
func TestPasswordGuessingTrunk(t *testing.T) {
	t.Parallel()
	tg := startTarget(t, targetConfig{Trunk: true, PBXScenario: "pbx_auth.xml"})
	const domain = "127.0.0.1"
	var stats [2]guessStats
	const d = 4 * time.Second
	a := startAttack(t, d, func(ctx context.Context, a *attack) error {
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, transport := range []string{"WS", "UDP"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := openSession(ctx, tg, transport, attackerIP(i))
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				if err := guess(ctx, s, domain, legitUser, 50000, &stats[i], a); err != nil {
					errs <- fmt.Errorf("%s: %w", transport, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	tg.callDuring(a)
	a.wait(t)
	guessesAtPBX := 0
	for _, m := range tg.pbx.Received() {
		if strings.HasPrefix(m, "REGISTER ") && strings.Contains(m, "Authorization:") {
			guessesAtPBX++
		}
	}
	sent := a.Sent.Load()
	t.Logf("%d guesses sent in %s over WS and UDP from two addresses: %d REGISTERs with credentials reached the PBX (the legitimate one included); refused by Strait: %d",
		sent, d, guessesAtPBX, stats[0].Blocked.Load()+stats[1].Blocked.Load())
	if guessesAtPBX > 25 {
		t.Errorf("the PBX saw %d guesses", guessesAtPBX)
	}
	tg.waitCounted(1, "strait_sip_dropped_total", "reason=auth_blocked")
	tg.waitCounted(1, "strait_auth_failures_total", "reason=upstream")
}
