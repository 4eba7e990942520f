package metrics

import (
	"fmt"
	"strings"
	"testing"
)

func TestLabelsBounded(t *testing.T) {
	for in, want := range map[string]string{"INVITE": "INVITE", "MESSAGE": "MESSAGE", "invite": "other",
		"XFOO": "other", "": "other", strings.Repeat("A", 1000): "other"} {
		if got := methodLabel(in); got != want {
			t.Errorf("methodLabel(%.20q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int]string{200: "200", 486: "486", 499: "4xx", 299: "2xx", 99: "other", 700: "other",
		-1: "other", 1 << 30: "other"} {
		if got := codeLabel(in); got != want {
			t.Errorf("codeLabel(%d) = %q, want %q", in, got, want)
		}
	}
}

// Whatever the network sends, the request and response series stay few:
// 1 000 made-up methods and every possible status code.
func TestSeriesBounded(t *testing.T) {
	m := New()
	for i := range 1000 {
		m.Request(fmt.Sprintf("X%04d", i), true)
		m.Response(fmt.Sprintf("X%04d", i), 405, false)
	}
	for code := -10; code < 1000; code++ {
		m.Response("INVITE", code, true)
		m.CallEnded(code)
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "strait_sip_requests_total", "strait_sip_responses_total", "strait_calls_ended_total":
			if n := len(mf.GetMetric()); n > len(codes)+10 {
				t.Errorf("%s has %d series", mf.GetName(), n)
			}
		}
	}
}
