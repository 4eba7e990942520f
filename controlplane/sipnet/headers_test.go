package sipnet

import (
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/internal/racecheck"
)

func headerRequest() *sip.Request {
	req := sip.NewRequest(sip.INVITE, sip.Uri{User: "bob", Host: "example.com"})
	req.AppendHeader(sip.NewHeader("User-Agent", "phone"))
	req.AppendHeader(sip.NewHeader("Supported", "timer, 100rel"))
	req.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK"))
	req.AppendHeader(sip.NewHeader("allow", "INFO"))
	req.AppendHeader(sip.NewHeader("k", "replaces"))
	return req
}

// Header and HeadersNamed find what sipgo's GetHeader and GetHeaders
// find, whatever the case of the name asked for or written.
func TestHeaderLikeSipgo(t *testing.T) {
	req := headerRequest()
	for _, name := range []string{"Allow", "ALLOW", "allow", "Supported", "k", "K", "User-Agent", "Session-Expires", "Via", "x"} {
		if got, want := Header(req, name), req.GetHeader(name); got != want {
			t.Errorf("Header(%q) = %v, sipgo %v", name, got, want)
		}
		if got, want := slices.Collect(HeadersNamed(req, name)), req.GetHeaders(name); !slices.Equal(got, want) {
			t.Errorf("HeadersNamed(%q) = %v, sipgo %v", name, got, want)
		}
	}
	if n := len(slices.Collect(HeadersNamed(req, "allow"))); n != 2 {
		t.Errorf("%d Allow headers, want 2", n)
	}
}

func TestHeaderAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates (test.sh runs this without it)")
	}
	req := headerRequest()
	n := testing.AllocsPerRun(100, func() {
		Header(req, "Session-Expires")
		for range HeadersNamed(req, "Allow") {
		}
	})
	if n != 0 {
		t.Errorf("%.0f allocations per lookup, want 0", n)
	}
}
