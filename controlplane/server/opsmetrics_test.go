package server

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/dataplane/portalloc"
)

// histogramCount returns the sample count of a histogram with the given
// labels (0 when absent).
func histogramCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// startAllInOne starts a standalone server with its in-process dataplane
// node (as cmd/strait runs), on ports of its own.
func startAllInOne(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	var lastErr error
	for range 20 {
		cfg := testConfig()
		cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
		cfg.OptionsInterval = 0
		base := uint16(20000 + 2*rand.IntN(20000))
		cfg.WebRTCPorts = portalloc.Range{First: base, Last: base + 1}
		cfg.RTPPorts = portalloc.Range{First: base + 2, Last: base + 41}
		cfg.Workers = 1
		if mutate != nil {
			mutate(&cfg)
		}
		srv, err := New(Options{Config: cfg, Log: testLog(t)})
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(func() { srv.Close() })
		return &env{t: t, srv: srv, node: srv.Local()}
	}
	t.Fatalf("no server: %v", lastErr)
	return nil
}

// Issue 13: the metrics operators graph, from a real run of the
// all-in-one: setup time and post-dial delay of an answered call, calls
// by final class (one answered, one declined), registrations by result,
// browsers connected, the build, the in-process dataplane's counters and
// pprof behind the API credential; no strait_upstream_up in standalone
// mode.
func TestOperatorMetrics(t *testing.T) {
	e := startAllInOne(t, func(c *config.Config) {
		c.Users = []string{"alice:a-secret", "bob:b-secret"}
		c.APIToken = "ops-token"
	})
	reg := e.srv.Metrics.Registry
	alice := registered(t, e, "alice", "a-secret")
	bob := registered(t, e, "bob", "b-secret")
	if v := metricValue(t, reg, "strait_register_results_total", map[string]string{"result": "ok"}); v != 2 {
		t.Errorf("register ok: %v, want 2", v)
	}
	// Each phone's first REGISTER has no credentials, and so does the
	// first try of its second (siptest answers the challenge it gets).
	if v := metricValue(t, reg, "strait_register_results_total", map[string]string{"result": "challenged"}); v < 2 {
		t.Errorf("register challenged: %v, want at least 2", v)
	}
	if v := metricValue(t, reg, "strait_websocket_connections", nil); v != 2 {
		t.Errorf("websocket connections: %v, want 2", v)
	}

	// An answered call, rung for a moment first.
	ma := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "bob", []byte(ma.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := bob.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := inc.Ring(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a setup time distinct from the post-dial delay
	mbob := newAnswerer(t)
	go inc.Answer(mbob.answer(t, inc.Invite.Body()))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := ma.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	ma.Send(0, 1, 0, false, payload("m", 0))
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// A declined call.
	mb2 := newBrowserMedia(t)
	call2, err := alice.Invite(ctx(t), "bob", []byte(mb2.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc2, err := bob.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	inc2.Reject(486, "Busy Here")
	if res, err := call2.WaitAnswer(ctx(t), ""); err == nil && res.StatusCode == 200 {
		t.Fatal("declined call answered")
	}
	e.waitCalls(0)
	ma.Close()
	mbob.Close()
	mb2.Close()

	dir := map[string]string{"direction": "browser-to-browser"}
	if n := histogramCount(t, reg, "strait_call_setup_seconds", dir); n != 1 {
		t.Errorf("setup time samples: %d, want 1 (the answered call)", n)
	}
	if n := histogramCount(t, reg, "strait_call_post_dial_delay_seconds", dir); n != 1 {
		t.Errorf("post-dial delay samples: %d, want 1 (only the first call rang)", n)
	}
	if v := metricValue(t, reg, "strait_calls_final_total", map[string]string{"class": "2xx", "direction": "browser-to-browser"}); v != 1 {
		t.Errorf("calls answered: %v, want 1", v)
	}
	if v := metricValue(t, reg, "strait_calls_final_total", map[string]string{"class": "4xx", "direction": "browser-to-browser"}); v != 1 {
		t.Errorf("calls declined: %v, want 1", v)
	}

	api := apiClient{t: t, base: "http://" + e.srv.HTTPAddr(), token: "ops-token"}
	code, body := api.do("GET", "/metrics", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	scrape := string(body)
	for _, want := range []string{`strait_build_info{binary="strait"`, "strait_dataplane_packets_total{direction=\"in\"}",
		"strait_dataplane_drops_total", "strait_call_setup_seconds_bucket", "strait_websocket_connections 2"} {
		if !strings.Contains(scrape, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(scrape, "strait_upstream_up") {
		t.Error("strait_upstream_up in standalone mode: a 0 there would page someone for nothing")
	}
	if code, body := api.do("GET", "/debug/pprof/", nil); code != 200 || !strings.Contains(string(body), "goroutine") {
		t.Errorf("pprof with the token: %d", code)
	}
	if code, _ := (apiClient{t: t, base: api.base}).do("GET", "/debug/pprof/goroutine", nil); code != 401 {
		t.Errorf("pprof without the token: %d, want 401", code)
	}
}
