package cluster

import (
	"strings"
	"testing"
)

func TestCallIDOf(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/WS x.invalid\r\nCall-ID: abc@d\r\n\r\n", "abc@d"},
		{"SIP/2.0 200 OK\r\ni:  short \r\n\r\n", "short"},
		{"INVITE sip:a@b SIP/2.0\r\ncall-id:lower\r\n\r\n", "lower"},
		{"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\nCall-ID: in-body\r\n", ""},
		{"INVITE sip:a@b SIP/2.0\nCall-ID: bare-lf\n\n", "bare-lf"},
		{"", ""},
		{"garbage without lines", ""},
	} {
		if got := callIDOf([]byte(tc.msg)); got != tc.want {
			t.Errorf("callIDOf(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// FuzzCallIDOf: any bytes a browser sends are looked at without a crash,
// and what comes back is a single header line's value.
func FuzzCallIDOf(f *testing.F) {
	f.Add([]byte("BYE sip:a@b SIP/2.0\r\nCall-ID: abc@d\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\ni: x\r\n\r\nbody"))
	f.Add([]byte(":\r\n:\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := callIDOf(b); strings.ContainsAny(got, "\r\n") {
			t.Fatalf("callIDOf returned %q", got)
		}
	})
}
