package dialplan

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultDeny are the international prefixes refused unless allowed: E.164
// "+", "00" (the ITU-recommended international prefix, used by most of the
// world) and "011" (North America). Trunks bill international calls
// dearest, which is why toll fraud aims at them.
var DefaultDeny = []string{"_+.", "_00.", "_011."}

// Config is a plan as the operator writes it.
type Config struct {
	// Allow are --allow-dial entries: "PATTERN" for everyone, or
	// "USER:PATTERN" for one user.
	Allow []string
	// Deny are --deny-dial patterns, refused (in default mode) in
	// addition to DefaultDeny.
	Deny []string
	// MaxCalls is how many calls one user may have in progress at once
	// (0: no limit).
	MaxCalls int
	// MaxPerMinute is how many calls one user may start in any 60 s
	// (0: no limit).
	MaxPerMinute int
}

// Plan is a parsed Config. It is immutable and safe for concurrent use.
type Plan struct {
	global  []Pattern
	perUser map[string][]Pattern
	deny    []Pattern
	limits  limits
}

type limits struct {
	maxCalls, perMinute int
}

// New parses a plan and reports every bad entry at once.
func New(c Config) (*Plan, error) {
	p := &Plan{perUser: map[string][]Pattern{}, limits: limits{maxCalls: c.MaxCalls, perMinute: c.MaxPerMinute}}
	var errs []error
	for _, e := range c.Allow {
		user, pat, scoped := strings.Cut(e, ":")
		if !scoped {
			pat, user = user, ""
		} else if user == "" || !validUser(user) {
			errs = append(errs, fmt.Errorf("--allow-dial %q: want PATTERN or USER:PATTERN", e))
			continue
		}
		cp, err := ParsePattern(pat)
		if err != nil {
			errs = append(errs, fmt.Errorf("--allow-dial %q: %w", e, err))
			continue
		}
		if scoped {
			p.perUser[user] = append(p.perUser[user], cp)
		} else {
			p.global = append(p.global, cp)
		}
	}
	for _, d := range append(append([]string(nil), DefaultDeny...), c.Deny...) {
		cp, err := ParsePattern(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("--deny-dial %q: %w", d, err))
			continue
		}
		p.deny = append(p.deny, cp)
	}
	if c.MaxCalls < 0 {
		errs = append(errs, fmt.Errorf("--max-calls-per-user %d is negative", c.MaxCalls))
	}
	if c.MaxPerMinute < 0 {
		errs = append(errs, fmt.Errorf("--max-call-rate-per-user %d is negative", c.MaxPerMinute))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// validUser accepts what a SIP user part or API identity looks like.
func validUser(u string) bool {
	if len(u) > maxLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		if !literalOK(u[i]) || strings.IndexByte("@:;<>\"", u[i]) >= 0 {
			return false
		}
	}
	return true
}

// Allowed reports whether user may call dest (already normalised), and
// which rule decided, for logs.
func (p *Plan) Allowed(user, dest string) (bool, string) {
	for _, pat := range p.perUser[user] {
		if pat.Match(dest) {
			return true, "allow " + user + ":" + pat.String()
		}
	}
	for _, pat := range p.global {
		if pat.Match(dest) {
			return true, "allow " + pat.String()
		}
	}
	if len(p.global) > 0 {
		return false, "not in the allowlist"
	}
	for _, pat := range p.deny {
		if pat.Match(dest) {
			return false, "deny " + pat.String()
		}
	}
	return true, "default"
}
