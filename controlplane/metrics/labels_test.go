package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"
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

func TestCallMetricLabelsBounded(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 486: "4xx", 487: "4xx", 503: "5xx", 603: "6xx", 302: "3xx", 0: "other", 999: "other"} {
		if got := classLabel(code); got != want {
			t.Errorf("classLabel(%d) = %s, want %s", code, got, want)
		}
	}
	for code, want := range map[int]string{200: "ok", 401: "challenged", 407: "challenged", 403: "forbidden", 404: "not_found",
		400: "bad_request", 423: "interval_too_brief", 503: "unavailable", 408: "unavailable", 480: "other"} {
		if got := registerResult(code); got != want {
			t.Errorf("registerResult(%d) = %s, want %s", code, got, want)
		}
	}
	m := New()
	base := map[string]int{}
	mfs, _ := m.Registry.Gather()
	for _, mf := range mfs {
		base[mf.GetName()] = len(mf.GetMetric()) // the preset series
	}
	for i := range 100 {
		m.TransactionFailed("X-METHOD-"+string(rune('A'+i%26)), "weird")
		m.CallFinal("made-up-direction", false, 1000+i)
		m.CallAnswered("made-up", time.Second)
	}
	mfs, _ = m.Registry.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case "strait_sip_transaction_failures_total", "strait_calls_final_total", "strait_call_setup_seconds":
			if n := len(mf.GetMetric()) - base[mf.GetName()]; n != 1 {
				t.Errorf("%s: %d series from made-up values, want 1", mf.GetName(), n)
			}
		case "strait_upstream_up":
			t.Error("strait_upstream_up registered before any upstream was pinged")
		}
	}
	m.SetUpstreamUp(true)
	m.SetUpstreamUp(false)
	mfs, _ = m.Registry.Gather()
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "strait_upstream_up"
	}
	if !found {
		t.Error("strait_upstream_up missing once an upstream was pinged")
	}
}
