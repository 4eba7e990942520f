package b2bua

import "testing"

// RFC 3515 section 2.4.6: a NOTIFY's Event id is its REFER's CSeq, which
// Strait's relay changes.
func TestRewriteReferID(t *testing.T) {
	known := func(n uint32) (uint32, bool) {
		if n == 9343 {
			return 9852, true
		}
		return 0, false
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"refer;id=9343", "refer;id=9852", true},
		{"refer; id=9343;x=y", "refer;id=9852;x=y", true},
		{"REFER;ID=9343", "REFER;id=9852", true},
		{"refer;id=1", "", false},
		{"refer", "", false},
		{"refer;id=notanumber", "", false},
		{"refer;id=99999999999", "", false},
		{"presence;id=9343", "", false},
		{"", "", false},
	} {
		got, ok := rewriteReferID(tc.in, known)
		if ok != tc.ok || got != tc.want {
			t.Errorf("rewriteReferID(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	var d dialog
	for i := uint32(1); i <= maxReferIDs+2; i++ {
		d.relayedRefer(100+i, i)
	}
	if _, ok := d.origReferID(101); ok {
		t.Error("the oldest REFER is remembered beyond the bound")
	}
	if orig, ok := d.origReferID(100 + maxReferIDs + 2); !ok || orig != maxReferIDs+2 {
		t.Errorf("the newest REFER maps to %d %v", orig, ok)
	}
}
