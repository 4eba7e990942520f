package dialplan

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a call was refused. The values are a closed set: they
// label the strait_calls_refused_total metric.
type Reason string

// Reasons a Guard refuses a call for.
const (
	// ReasonDestination: the plan does not let this user call there, or
	// the destination is malformed.
	ReasonDestination Reason = "destination"
	// ReasonConcurrent: the user has MaxCalls calls in progress.
	ReasonConcurrent Reason = "concurrent"
	// ReasonRate: the user started MaxPerMinute calls in the last minute.
	ReasonRate Reason = "rate"
)

// Refusal is a call the plan refuses, with the SIP status it is answered
// with:
//   - 403 Forbidden for a destination (RFC 3261 section 21.4.4: the
//     request is understood and refused; retrying will not help);
//   - 486 Busy Here for too many calls in progress (what FreeSWITCH's
//     limit and Asterisk's GROUP_COUNT dial plans answer: this end cannot
//     take another call now);
//   - 503 Service Unavailable with Retry-After for too many attempts
//     (section 21.5.4: a temporary condition, and when to retry).
type Refusal struct {
	// Reason is the metric label.
	Reason Reason
	// Status and Phrase are the SIP answer.
	Status int
	Phrase string
	// RetryAfter is when a rate-limited user may try again (0 otherwise).
	RetryAfter time.Duration
	// User, Dest and Rule say who called what, and which rule refused.
	User, Dest, Rule string
}

// Error describes the refusal.
func (r *Refusal) Error() string {
	return fmt.Sprintf("dialplan: call from %q to %q refused (%s: %s)", r.User, r.Dest, r.Reason, r.Rule)
}

// window is the span MaxPerMinute counts over.
const window = time.Minute

// Guard enforces a Plan: destinations, and per-user counts of calls in
// progress and of attempts in the last minute. It is safe for concurrent
// use; its memory is bounded by the users active in the last minute.
type Guard struct {
	plan atomic.Pointer[Plan]
	now  func() time.Time // frozen after NewGuard (tests replace it before use)

	mu    sync.Mutex // guards the fields below
	users map[string]*usage
	swept time.Time
}

// usage is one user's counters. Guard.mu guards it.
type usage struct {
	active int
	starts []time.Time // attempts admitted in the last window, oldest first
}

// NewGuard returns a guard enforcing p.
func NewGuard(p *Plan) *Guard {
	g := &Guard{now: time.Now, users: map[string]*usage{}}
	g.plan.Store(p)
	return g
}

// SetPlan replaces the plan (a configuration reload). Calls in progress
// and recent attempts still count against the new limits.
func (g *Guard) SetPlan(p *Plan) { g.plan.Store(p) }

// Plan returns the plan in force.
func (g *Guard) Plan() *Plan { return g.plan.Load() }

// Admit decides whether user may call dest now. When it may, the call
// counts as in progress until release is called (exactly once, when the
// call ends, whatever its outcome). When it may not, err is a *Refusal.
func (g *Guard) Admit(user, dest string) (release func(), err error) {
	p := g.plan.Load()
	norm, nerr := Normalize(dest)
	if nerr != nil {
		return nil, &Refusal{Reason: ReasonDestination, Status: 403, Phrase: "Forbidden: bad destination",
			User: user, Dest: dest, Rule: nerr.Error()}
	}
	if ok, rule := p.Allowed(user, norm); !ok {
		return nil, &Refusal{Reason: ReasonDestination, Status: 403, Phrase: "Forbidden: destination not allowed",
			User: user, Dest: norm, Rule: rule}
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sweep(now)
	u := g.users[user]
	if u == nil {
		u = &usage{}
		g.users[user] = u
	}
	u.prune(now)
	if limit := p.limits.maxCalls; limit > 0 && u.active >= limit {
		return nil, &Refusal{Reason: ReasonConcurrent, Status: 486, Phrase: "Busy Here: call limit reached",
			User: user, Dest: norm, Rule: fmt.Sprintf("%d calls in progress", u.active)}
	}
	if limit := p.limits.perMinute; limit > 0 && len(u.starts) >= limit {
		retry := u.starts[len(u.starts)-limit].Add(window).Sub(now)
		return nil, &Refusal{Reason: ReasonRate, Status: 503, Phrase: "Service Unavailable: call rate limit",
			RetryAfter: max(retry, time.Second), User: user, Dest: norm,
			Rule: fmt.Sprintf("%d calls in the last minute", len(u.starts))}
	}
	u.active++
	if p.limits.perMinute > 0 {
		u.starts = append(u.starts, now)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			u.active--
			g.mu.Unlock()
		})
	}, nil
}

// Hold counts a call of user's as in progress without checking the limits:
// a call that is already up, carried on from the state store after a
// restart (refusing it would end a call in progress; it only keeps the
// user from starting more). It is not an attempt, so the rate limit does
// not see it. release is as Admit's.
func (g *Guard) Hold(user string) (release func()) {
	g.mu.Lock()
	u := g.users[user]
	if u == nil {
		u = &usage{}
		g.users[user] = u
	}
	u.active++
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			u.active--
			g.mu.Unlock()
		})
	}
}

// prune forgets attempts older than the window.
func (u *usage) prune(now time.Time) {
	i := 0
	for i < len(u.starts) && now.Sub(u.starts[i]) >= window {
		i++
	}
	if i > 0 {
		u.starts = append(u.starts[:0], u.starts[i:]...)
	}
}

// sweep drops idle users, at most once a window. g.mu held.
func (g *Guard) sweep(now time.Time) {
	if now.Sub(g.swept) < window {
		return
	}
	g.swept = now
	for name, u := range g.users {
		u.prune(now)
		if u.active == 0 && len(u.starts) == 0 {
			delete(g.users, name)
		}
	}
}

// Active returns how many calls user has in progress (for tests and the
// API).
func (g *Guard) Active(user string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u := g.users[user]; u != nil {
		return u.active
	}
	return 0
}

// tracked is how many users the guard holds counters for.
func (g *Guard) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.users)
}
