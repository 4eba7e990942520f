package server

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// metricValue returns the value of a counter or gauge with the given
// labels (0 when absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func (e *env) refused(t *testing.T, reason string) float64 {
	t.Helper()
	return metricValue(t, e.srv.Metrics.Registry, "strait_calls_refused_total", map[string]string{"reason": reason})
}

// refusedWith places a call that Strait must refuse itself with code and
// a reason phrase containing phrase.
func refusedWith(t *testing.T, p *siptest.Phone, to string, code int, phrase string) *sip.Response {
	t.Helper()
	call, err := p.Invite(ctx(t), to, []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	res, err := call.WaitAnswer(ctx(t), "")
	if err == nil || res == nil || res.StatusCode != code || !strings.Contains(res.Reason, phrase) {
		t.Fatalf("call to %s: %v (%v), want %d %q", to, res, err, code, phrase)
	}
	return res
}

// TestTrunkTollFraud: in trunk mode only a WebSocket with a live
// registration may call, as its registered user, and the dial plan keeps
// international numbers out by default. The PBX sees none of the
// attempts; a legitimate call still goes through.
func TestTrunkTollFraud(t *testing.T) {
	tr := startTrunk(t)

	// A WebSocket that never registered dials an international number.
	mallory, err := siptest.NewBrowser(tr.srv.HTTPAddr(), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mallory.Close)
	refusedWith(t, mallory, "0044123456789", 403, "register")
	// Nor as a user who registered elsewhere.
	mallory.SetUser("alice")
	tr.register(t)
	refusedWith(t, mallory, "1000", 403, "register")
	if n := tr.refused(t, "unregistered"); n != 2 {
		t.Errorf("unregistered refusals counted %v, want 2", n)
	}
	// Out-of-dialog MESSAGE from the unregistered flow: refused too.
	if res, err := mallory.Send(ctx(t), sip.MESSAGE, "1000", []byte("hi"), "text/plain"); err != nil || res.StatusCode != 403 {
		t.Fatalf("MESSAGE from an unregistered flow: %v %v", res, err)
	}

	// Alice registered, but forges her From as bob.
	tr.browser.SetUser("bob")
	refusedWith(t, tr.browser, "1000", 403, "registered user")
	tr.browser.SetUser("alice")
	if n := tr.refused(t, "identity"); n != 1 {
		t.Errorf("identity refusals counted %v, want 1", n)
	}

	// International destinations, however written, are refused by
	// default, with their count.
	for _, to := range []string{"0044123456789", "%2B8812345", "011-44-20-7123", "+44%20123"} {
		refusedWith(t, tr.browser, to, 403, "destination not allowed")
	}
	if n := tr.refused(t, "destination"); n != 4 {
		t.Errorf("destination refusals counted %v, want 4", n)
	}

	// The API is held to the same plan.
	api := apiClient{t: t, base: "http://" + tr.srv.HTTPAddr()}
	code, body := api.do("POST", "/v1/calls", map[string]any{"to": "+8812345", "offer": newBrowserMedia(t).Offer})
	if code != 403 || !strings.Contains(string(body), "destination") {
		t.Fatalf("API call to +8812345: %d %s", code, body)
	}

	// A legitimate call from alice goes out, From alice; it is the first
	// INVITE the PBX sees.
	call, err := tr.browser.Invite(ctx(t), "1000", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inc.Invite.Recipient.User != "1000" || inc.Invite.From().Address.User != "alice" {
		t.Fatalf("the PBX saw an INVITE to %s from %s", inc.Invite.Recipient.User, inc.Invite.From().Address.User)
	}
	inc.Reject(486, "Busy Here")
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("legitimate call: %v", res)
	}
	if _, err := tr.pbx.WaitCall(200 * time.Millisecond); err == nil {
		t.Fatal("the PBX saw a second INVITE")
	}
	tr.waitCalls(0)
	if n := tr.srv.Guard.Active("alice"); n != 0 {
		t.Fatalf("alice still counts %d calls", n)
	}
}

// TestTrunkPBXAuthenticatesCalls: with the opt-in, an unregistered
// browser's INVITE goes to the PBX (which challenges it itself), with
// the browser's own From; the dial plan still applies.
func TestTrunkPBXAuthenticatesCalls(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.PBXAuthenticatesCalls = true })
	refusedWith(t, tr.browser, "0044123456789", 403, "destination not allowed")
	call, err := tr.browser.Invite(ctx(t), "1000", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inc.Invite.From().Address.User != "alice" {
		t.Fatalf("From %s", inc.Invite.From().Address.String())
	}
	inc.Reject(407, "Proxy Authentication Required")
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 407 {
		t.Fatalf("the PBX's challenge did not reach the browser: %v", res)
	}
	tr.waitCalls(0)
}

// TestDialPlanLimits: per-user allowances, concurrent calls and call
// rate, over SIP and the API.
func TestDialPlanLimits(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) {
		c.AllowDial = []string{"alice:_+44."}
		c.MaxCallsPerUser = 1
		c.MaxCallRatePerUser = 3
	})
	tr.register(t)

	// Alice may call the UK; one call at a time.
	first, err := tr.browser.Invite(ctx(t), "+442071234567", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	inc.Ring()
	refusedWith(t, tr.browser, "1000", 486, "call limit")
	refusedWith(t, tr.browser, "+33123456789", 403, "destination not allowed")
	inc.Reject(486, "Busy Here")
	first.WaitAnswer(ctx(t), "")
	tr.waitCalls(0)

	// Two more attempts fit the minute (three in all); the fourth does
	// not, and is told when to retry.
	for i := range 2 {
		call, err := tr.browser.Invite(ctx(t), "1000", []byte(newBrowserMedia(t).Offer))
		if err != nil {
			t.Fatal(err)
		}
		inc, err := tr.pbx.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+2, err)
		}
		inc.Reject(486, "Busy Here")
		call.WaitAnswer(ctx(t), "")
		tr.waitCalls(0)
	}
	res := refusedWith(t, tr.browser, "1000", 503, "rate")
	if h := res.GetHeader("Retry-After"); h == nil || h.Value() == "0" {
		t.Fatalf("503 without Retry-After: %v", res)
	}
	for reason, want := range map[string]float64{"concurrent": 1, "destination": 1, "rate": 1} {
		if n := tr.refused(t, reason); n != want {
			t.Errorf("%s refusals %v, want %v", reason, n, want)
		}
	}

	// The API's caller has limits of its own: 429 with Retry-After once
	// its minute is used up.
	api := apiClient{t: t, base: "http://" + tr.srv.HTTPAddr()}
	for i := range 3 {
		done := make(chan int, 1)
		go func() {
			code, _ := api.do("POST", "/v1/calls", map[string]any{"to": "1000", "from": "app", "offer": newBrowserMedia(t).Offer})
			done <- code
		}()
		inc, err := tr.pbx.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatalf("API attempt %d: %v", i+1, err)
		}
		inc.Reject(486, "Busy Here")
		if code := <-done; code != 409 {
			t.Fatalf("API attempt %d: %d, want the PBX's busy as 409", i+1, code)
		}
		tr.waitCalls(0)
	}
	code, body := api.do("POST", "/v1/calls", map[string]any{"to": "1000", "from": "app", "offer": newBrowserMedia(t).Offer})
	if code != 429 || !strings.Contains(string(body), "rate") {
		t.Fatalf("fourth API call in a minute: %d %s", code, body)
	}
}

// TestAPIOffLoopbackNeedsToken: the API does not start on a public
// address without a token.
func TestAPIOffLoopbackNeedsToken(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP = "0.0.0.0:0"
	cfg.Users = []string{"alice:secret"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--api-token") {
		t.Fatalf("validation: %v", err)
	}
	if _, err := New(Options{Config: cfg}); err == nil {
		t.Fatal("server started")
	}
	cfg.APIToken = "t0ken"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}
