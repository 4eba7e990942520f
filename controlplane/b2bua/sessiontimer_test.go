package b2bua

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func withHeader(name, value string) *sip.Request {
	req := sip.NewRequest(sip.UPDATE, sip.Uri{Scheme: "sip", Host: "example.com"})
	if name != "" {
		req.AppendHeader(sip.NewHeader(name, value))
	}
	return req
}

// RFC 4028 section 4: Session-Expires = delta-seconds *(;se-params),
// compact form x; refresher=uac|uas.
func TestReadSessionExpires(t *testing.T) {
	for _, tc := range []struct {
		name, value  string
		want         sessionExpires
		present, bad bool
	}{
		{"", "", sessionExpires{}, false, false},
		{"Session-Expires", "1800", sessionExpires{secs: 1800}, true, false},
		{"Session-Expires", " 90 ; refresher=UAC", sessionExpires{secs: 90, refresher: "uac"}, true, false},
		{"x", "120;refresher=uas;foo=bar", sessionExpires{secs: 120, refresher: "uas"}, true, false},
		{"Session-Expires", "99999999", sessionExpires{secs: maxSessionExpires}, true, false},
		{"Session-Expires", "0", sessionExpires{}, true, true},
		{"Session-Expires", "-5", sessionExpires{}, true, true},
		{"Session-Expires", "ninety", sessionExpires{}, true, true},
		{"Session-Expires", "99999999999999999999", sessionExpires{}, true, true},
	} {
		got, present, bad := readSessionExpires(withHeader(tc.name, tc.value))
		if got != tc.want || present != tc.present || bad != tc.bad {
			t.Errorf("%s: %q = %+v %v %v, want %+v %v %v", tc.name, tc.value, got, present, bad, tc.want, tc.present, tc.bad)
		}
	}
	if got := readMinSE(withHeader("Min-SE", "120;x=y")); got != 120 {
		t.Errorf("Min-SE: %d", got)
	}
	if got := readMinSE(withHeader("Min-SE", "junk")); got != 0 {
		t.Errorf("Min-SE junk: %d", got)
	}
}

// Section 10: the refresher refreshes at half the interval; the other
// side gives up at the interval less min(32 s, a third).
func TestLegTimerDue(t *testing.T) {
	var lt legTimer
	if _, _, ok := lt.due(time.Second); ok {
		t.Fatal("a timer that was never set is due")
	}
	for _, tc := range []struct {
		secs    uint32
		strait  bool
		after   time.Duration
		refresh bool
	}{
		{90, false, 60 * time.Second, false},
		{1800, false, 1768 * time.Second, false},
		{90, true, 45 * time.Second, true},
	} {
		lt.set(tc.secs, tc.strait)
		at, refresh, ok := lt.due(time.Second)
		lt.mu.Lock()
		last := lt.last
		lt.mu.Unlock()
		if !ok || refresh != tc.refresh || at.Sub(last) != tc.after {
			t.Errorf("%d s, strait %v: due after %v (refresh %v), want %v (%v)", tc.secs, tc.strait, at.Sub(last), refresh, tc.after, tc.refresh)
		}
	}
	lt.set(0, false)
	if _, _, ok := lt.due(time.Second); ok {
		t.Error("a timer set off is due")
	}
}

// FuzzReadSessionExpires: any Session-Expires from the network reads
// without panicking, within bounds.
func FuzzReadSessionExpires(f *testing.F) {
	for _, s := range []string{"1800", "90;refresher=uac", "x;;;=", "4294967296", " 1 ; refresher"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		se, present, bad := readSessionExpires(withHeader("Session-Expires", v))
		if !present {
			t.Fatal("a Session-Expires not seen")
		}
		if !bad && (se.secs == 0 || se.secs > maxSessionExpires) {
			t.Fatalf("%q read as %+v", v, se)
		}
		_ = readMinSE(withHeader("Min-SE", v))
	})
}
