package dialplan

import (
	"strings"
	"testing"
)

// FuzzRules feeds operator rules and caller-controlled destinations
// through the parser, the normaliser and the matcher: nothing panics, and
// what is accepted behaves consistently.
func FuzzRules(f *testing.F) {
	for _, s := range []struct{ rule, dest string }{
		{"_+44.", "+442071234567"}, {"alice:_00.", "%2B44"}, {"echo", "Echo"}, {"_[1-5]X!", "(12) 34"},
		{"_NXXNXXXXXX", "2125551234;phone-context=x"}, {"_*67!", "*670044"}, {"_[", "%zz"}, {"_-", ""},
	} {
		f.Add(s.rule, s.dest)
	}
	f.Fuzz(func(t *testing.T, rule, dest string) {
		p, err := ParsePattern(rule)
		norm, nerr := Normalize(dest)
		if nerr == nil {
			if norm == "" || len(norm) > maxLen || strings.ContainsAny(norm, " ;%") && !strings.Contains(dest, "%25") {
				t.Fatalf("Normalize(%q) = %q", dest, norm)
			}
			if again, err := Normalize(norm); err == nil && again != norm && !strings.Contains(norm, "%") {
				t.Fatalf("Normalize not idempotent: %q -> %q -> %q", dest, norm, again)
			}
		}
		if err == nil && nerr == nil {
			p.Match(norm)
			if !strings.HasPrefix(rule, "_") && p.Match(norm) != (strings.ToLower(rule) == norm) {
				t.Fatalf("exact %q vs %q", rule, norm)
			}
		}
		plan, err := New(Config{Allow: []string{rule}, Deny: []string{rule}})
		if err == nil && nerr == nil {
			plan.Allowed("alice", norm)
			NewGuard(plan).Admit("alice", dest)
		}
	})
}
