package b2bua

import (
	"strings"
	"testing"
)

// RFC 3891 section 6.1: callid;to-tag=..;from-tag=..[;early-only], in
// any order, and nothing else makes a Replaces Strait acts on.
func TestParseReplaces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want replaces
		ok   bool
	}{
		{"abc@h;to-tag=1;from-tag=2", replaces{callID: "abc@h", toTag: "1", fromTag: "2"}, true},
		{" abc ; from-tag=2 ;TO-TAG=1;early-only", replaces{callID: "abc", toTag: "1", fromTag: "2", earlyOnly: true}, true},
		{"abc;to-tag=1", replaces{callID: "abc", toTag: "1"}, false},
		{";to-tag=1;from-tag=2", replaces{toTag: "1", fromTag: "2"}, false},
		{"a<b;to-tag=1;from-tag=2", replaces{callID: "a<b", toTag: "1", fromTag: "2"}, false},
		{"a;to-tag=1?x;from-tag=2", replaces{callID: "a", toTag: "1?x", fromTag: "2"}, false},
		{"", replaces{}, false},
	} {
		got, ok := parseReplaces(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseReplaces(%q) = %+v %v, want %+v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseReplaces: a Replaces from the network never panics, and one
// accepted writes back to a value that parses to the same.
func FuzzParseReplaces(f *testing.F) {
	for _, s := range []string{"abc@h;to-tag=1;from-tag=2", "x;from-tag=a;to-tag=b;early-only", ";;;", "a;to-tag=;from-tag="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, ok := parseReplaces(v)
		if !ok {
			return
		}
		if strings.ContainsAny(r.callID+r.toTag+r.fromTag, ";\r\n") {
			t.Fatalf("accepted %q as %+v", v, r)
		}
		back, ok := parseReplaces(r.String())
		if !ok || back != r {
			t.Fatalf("%q: %+v writes back as %q, read %+v %v", v, r, r.String(), back, ok)
		}
	})
}
