package dialplan

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"echo", []string{"echo"}, []string{"echo1", "ech", "", "x"}},
		{"1000", []string{"1000"}, []string{"10000", "100"}},
		{"_1XXX", []string{"1000", "1999"}, []string{"100", "10000", "2000", "1a00"}},
		{"_NXXNXXXXXX", []string{"2125551234"}, []string{"1125551234", "212555123", "2121551234"}},
		{"_Z!", []string{"1", "9", "12345"}, []string{"0", "", "01"}},
		{"_+44.", []string{"+442071234567", "+441"}, []string{"+44", "+33123", "0044123"}},
		{"_+44-20-XXXX-XXXX", []string{"+442012345678"}, []string{"+44201234567", "+442112345678"}},
		{"_00.", []string{"0044123456789"}, []string{"00", "044123"}},
		{"_[1-5]X", []string{"10", "59"}, []string{"60", "0"}},
		{"_[+*#]X", []string{"+1", "*9", "#0"}, []string{"11"}},
		{"_[a-c]x", []string{"a1", "c9"}, []string{"d1", "ab"}},
		{"_!", []string{"", "anything", "+4412"}, nil},
		{"_*67!", []string{"*67", "*670044"}, []string{"*6"}},
		{"Echo", []string{"echo"}, []string{"echo2"}},
	}
	for _, tc := range tests {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		for _, d := range tc.match {
			if !p.Match(d) {
				t.Errorf("%q does not match %q", tc.pattern, d)
			}
		}
		for _, d := range tc.miss {
			if p.Match(d) {
				t.Errorf("%q matches %q", tc.pattern, d)
			}
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, s := range []string{"", "_", "_.X", "_X.X", "_!.", "_[12", "_[]", "_[9-1]", "a b", "ab\x00", "_-", "_]",
		strings.Repeat("1", maxLen+1)} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0044123456789", "0044123456789"},
		{"%2B44123", "+44123"},
		{"%2b44123", "+44123"},
		{"+44-20-7123.4567", "+442071234567"},
		{"(00)44 20 7123", "0044207123"},
		{"+4420;phone-context=example.com", "+4420"},
		{"0044%3B1", "0044"},
		{"Alice", "alice"},
		{"alice.smith", "alice.smith"},
		{"*67011", "*67011"},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "%", "%4", "%zz", "a%00b", "a\x01", ";x", "a b", "%20", strings.Repeat("1", 4*maxLen)} {
		if got, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
}

func TestPlanAllowed(t *testing.T) {
	def, err := New(Config{Allow: []string{"alice:_+44."}, Deny: []string{"_09."}})
	if err != nil {
		t.Fatal(err)
	}
	strict, err := New(Config{Allow: []string{"_1XXX", "echo", "bob:_00.", "bob:_+."}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		plan       *Plan
		user, dest string
		want       bool
	}{
		{def, "carol", "1000", true},
		{def, "carol", "echo", true},
		{def, "carol", "0044123456789", false},
		{def, "carol", "+8812345", false},
		{def, "carol", "01144123", false},
		{def, "carol", "0901234", false}, // --deny-dial
		{def, "alice", "+442071234567", true},
		{def, "alice", "+33123", false},
		{def, "alice", "0044123", false},
		{strict, "carol", "1000", true},
		{strict, "carol", "echo", true},
		{strict, "carol", "2000", false},
		{strict, "carol", "+44123", false},
		{strict, "bob", "+44123", true},
		{strict, "bob", "0033123", true},
		{strict, "bob", "2000", false},
	}
	for _, tc := range tests {
		if got, rule := tc.plan.Allowed(tc.user, tc.dest); got != tc.want {
			t.Errorf("%s -> %s: allowed %v (%s), want %v", tc.user, tc.dest, got, rule, tc.want)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	_, err := New(Config{Allow: []string{":_X", "a@b:_X", "_[", "ok:_X."}, Deny: []string{"_"}, MaxCalls: -1, MaxPerMinute: -2})
	if err == nil {
		t.Fatal("bad plan accepted")
	}
	for _, want := range []string{`":_X"`, `"a@b:_X"`, `"_["`, `--deny-dial "_"`, "--max-calls-per-user", "--max-call-rate-per-user"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

func refusal(t *testing.T, err error, want Reason) *Refusal {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != want {
		t.Fatalf("err %v, want a %s refusal", err, want)
	}
	return r
}

func TestGuardLimits(t *testing.T) {
	p, err := New(Config{MaxCalls: 2, MaxPerMinute: 3})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(p)
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }

	r1, err := g.Admit("alice", "1000")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.Admit("alice", "1001")
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Admit("alice", "1002")
	if r := refusal(t, err, ReasonConcurrent); r.Status != 486 {
		t.Fatalf("concurrent refusal status %d", r.Status)
	}
	if rel, err := g.Admit("bob", "1000"); err != nil {
		t.Fatalf("another user is limited too: %v", err)
	} else {
		rel()
	}
	r1()
	r1() // twice is once
	if g.Active("alice") != 1 {
		t.Fatalf("alice has %d calls", g.Active("alice"))
	}
	now = now.Add(10 * time.Second)
	r3, err := g.Admit("alice", "1003") // third attempt in the minute
	if err != nil {
		t.Fatal(err)
	}
	r2()
	r3()
	now = now.Add(10 * time.Second)
	_, err = g.Admit("alice", "1004")
	r := refusal(t, err, ReasonRate)
	if r.Status != 503 || r.RetryAfter != 40*time.Second {
		t.Fatalf("rate refusal %d, retry after %v; want 503 after 40s", r.Status, r.RetryAfter)
	}
	_, err = g.Admit("alice", "0044123")
	refusal(t, err, ReasonDestination)
	now = now.Add(40 * time.Second)
	if rel, err := g.Admit("alice", "1005"); err != nil {
		t.Fatalf("after the window: %v", err)
	} else {
		rel()
	}

	// A reload keeps the counts; idle users are forgotten.
	p2, _ := New(Config{MaxCalls: 1})
	g.SetPlan(p2)
	if g.Plan() != p2 {
		t.Fatal("plan not replaced")
	}
	now = now.Add(2 * time.Minute)
	rel, err := g.Admit("carol", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if n := g.tracked(); n != 1 {
		t.Fatalf("%d users tracked after a quiet minute, want 1 (carol)", n)
	}
	_, err = g.Admit("carol", "1001")
	refusal(t, err, ReasonConcurrent)
	rel()
}

func TestGuardBadDestination(t *testing.T) {
	p, _ := New(Config{})
	g := NewGuard(p)
	for _, d := range []string{"%2B44123", "00%34%34123", "(00)44123", "+44%00"} {
		_, err := g.Admit("alice", d)
		if r := refusal(t, err, ReasonDestination); r.Status != 403 {
			t.Fatalf("%q: status %d", d, r.Status)
		}
	}
	if g.tracked() != 0 {
		t.Fatal("refused destinations left counters")
	}
}

func TestMatchAllocs(t *testing.T) {
	p, _ := ParsePattern("_+44.")
	if n := testing.AllocsPerRun(100, func() { p.Match("+442071234567") }); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
}

// Hold counts a call that is already up (restored after a restart) even
// past the limit, is no attempt for the rate limit, and its release gives
// the slot back once.
func TestGuardHold(t *testing.T) {
	p, err := New(Config{MaxCalls: 1, MaxPerMinute: 1})
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(p)
	r1 := g.Hold("alice")
	r2 := g.Hold("alice")
	if n := g.Active("alice"); n != 2 {
		t.Fatalf("active %d after two holds, want 2 (never refused)", n)
	}
	if _, err := g.Admit("alice", "1000"); err == nil {
		t.Fatal("a new call was admitted past the limit held by restored calls")
	}
	r1()
	r1()
	r2()
	if n := g.Active("alice"); n != 0 {
		t.Fatalf("active %d after the releases, want 0", n)
	}
	release, err := g.Admit("alice", "1000")
	if err != nil {
		t.Fatalf("held calls counted as attempts for the rate limit: %v", err)
	}
	release()
}
