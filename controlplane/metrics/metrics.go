// Package metrics holds the control plane's Prometheus collectors:
// registrations, calls by state and end cause, SIP messages by method and
// response code, and dataplane sessions. Collectors live on a registry of
// their own (not the global one) so that tests can run several servers in
// one process.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strait-sbc/strait/internal/buildinfo"
)

// Metrics are the collectors. All methods are safe for concurrent use, and
// a nil *Metrics records nothing.
type Metrics struct {
	// Registry holds every collector; serve it with promhttp.HandlerFor.
	Registry *prometheus.Registry

	registrations prometheus.Gauge
	calls         *prometheus.GaugeVec
	callsEnded    *prometheus.CounterVec
	sipRequests   *prometheus.CounterVec
	sipResponses  *prometheus.CounterVec
	sessions      *prometheus.GaugeVec
	upstreamUp    prometheus.Gauge
	upstreamTgt   *prometheus.GaugeVec
	sipDropped    *prometheus.CounterVec
	callsRefused  *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	authBlocked   atomic.Pointer[func() (sources, users int)]
	stateUp       prometheus.Gauge
	stateWrites   *prometheus.CounterVec
	calls2        *callMetrics
	edge          edgeMetrics
	cluster       clusterMetrics
}

// New creates the collectors on a fresh registry, with Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		calls2:   newCallMetrics(),
		registrations: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_registrations",
			Help: "Current registration bindings (browsers and SIP devices)."}),
		calls: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_calls",
			Help: "Calls in progress by state (ringing, answered)."}, []string{"state"}),
		callsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_calls_ended_total",
			Help: "Ended calls by SIP cause code."}, []string{"cause"}),
		sipRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_sip_requests_total",
			Help: "SIP requests by method and direction (in, out)."}, []string{"method", "direction"}),
		sipResponses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_sip_responses_total",
			Help: "SIP responses by method, status code and direction (in, out)."}, []string{"method", "code", "direction"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_dataplane_sessions",
			Help: "Dataplane sessions held for calls, by node."}, []string{"node"}),
		upstreamUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_upstream_up",
			Help: "1 when an upstream target answered its last OPTIONS ping."}),
		upstreamTgt: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_upstream_target_up",
			Help: "1 when the upstream target (transport/address:port, from the configured URIs and DNS, at most 16 per upstream) answered its last OPTIONS ping."},
			[]string{"target"}),
		sipDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_sip_dropped_total",
			Help: "SIP messages, connections and dials Strait refused at its edge, by transport and reason."},
			[]string{"transport", "reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_auth_failures_total",
			Help: "Digest credentials refused, by reason (wrong_password, unknown_user, replay, uri_mismatch, stale, ...)."},
			[]string{"reason"}),
		callsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_calls_refused_total",
			Help: "Calls and requests refused before they went anywhere, by reason (unregistered, identity, destination, concurrent, rate, state)."},
			[]string{"reason"}),
		stateUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_state_store_up",
			Help: "1 when the state store (--state) answered its last write or ping; 0 while it is down (new calls are refused with 503)."}),
		stateWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_state_records_written_total",
			Help: "Records written to the state store (calls, bindings, sessions), by result (ok, error)."}, []string{"result"}),
	}
	m.Registry.MustRegister(m.stateUp, m.stateWrites, buildinfo.Collector("strait"))
	m.Registry.MustRegister(m.calls2.collectors(m)...)
	m.Registry.MustRegister(m.cluster.init()...)
	// strait_upstream_up is registered by the first SetUpstreamUp: a
	// standalone Strait has no upstream, and a 0 would page someone.
	m.Registry.MustRegister(m.registrations, m.calls, m.callsEnded, m.sipRequests, m.sipResponses, m.sessions,
		m.upstreamTgt, m.sipDropped, m.callsRefused, m.authFailures, m.authBlockedGauge("source"), m.authBlockedGauge("user"), m.edge.init(m), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for r := range refusalReasons {
		m.callsRefused.WithLabelValues(r) // present at 0, for alerts on rate()
	}
	m.preset()
	return m
}

// SetRegistrations sets the binding count.
func (m *Metrics) SetRegistrations(n int) {
	if m != nil {
		m.registrations.Set(float64(n))
	}
}

// CallState moves one call from state from to state to ("" for none).
func (m *Metrics) CallState(from, to string) {
	if m == nil {
		return
	}
	if from != "" {
		m.calls.WithLabelValues(from).Dec()
	}
	if to != "" {
		m.calls.WithLabelValues(to).Inc()
	}
}

// CallEnded counts an ended call under its SIP cause (bounded like a
// response code).
func (m *Metrics) CallEnded(cause int) {
	if m != nil {
		m.callsEnded.WithLabelValues(codeLabel(cause)).Inc()
	}
}

// Request counts a SIP request; in is true for received ones. Methods
// outside the known set count as "other".
func (m *Metrics) Request(method string, in bool) {
	if m != nil {
		m.sipRequests.WithLabelValues(methodLabel(method), dir(in)).Inc()
	}
}

// Response counts a SIP response to a request of method. Codes outside
// the IANA registry count as their class ("4xx").
func (m *Metrics) Response(method string, code int, in bool) {
	if m != nil {
		m.sipResponses.WithLabelValues(methodLabel(method), codeLabel(code), dir(in)).Inc()
		if !in && method == "REGISTER" && code >= 200 {
			m.calls2.registers.WithLabelValues(registerResult(code)).Inc()
		}
	}
}

// refusalReasons are the values CallRefused counts under; anything else
// is "other", so that the label stays bounded.
var refusalReasons = map[string]bool{"unregistered": true, "identity": true, "destination": true,
	"concurrent": true, "rate": true, "state": true}

// CallRefused counts a call (or out-of-dialog request) refused by policy.
func (m *Metrics) CallRefused(reason string) {
	if m == nil {
		return
	}
	if !refusalReasons[reason] {
		reason = "other"
	}
	m.callsRefused.WithLabelValues(reason).Inc()
}

// SetStateUp records the state store's health.
func (m *Metrics) SetStateUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.stateUp.Set(v)
}

// StateWritten counts a batch of records written to the state store.
func (m *Metrics) StateWritten(records int, err error) {
	if m == nil {
		return
	}
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.stateWrites.WithLabelValues(r).Add(float64(records))
}

// SetSessions sets a node's session count.
func (m *Metrics) SetSessions(node string, n int) {
	if m != nil {
		m.sessions.WithLabelValues(node).Set(float64(n))
	}
}

// SetUpstreamUp records the last OPTIONS ping's outcome.
func (m *Metrics) SetUpstreamUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.calls2.upstreamOnce.Do(func() { m.Registry.MustRegister(m.upstreamUp) })
	m.upstreamUp.Set(v)
}

// SetUpstreamTarget records one target's last OPTIONS ping.
func (m *Metrics) SetUpstreamTarget(target string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.upstreamTgt.WithLabelValues(target).Set(v)
}

// ForgetUpstreamTarget drops a target DNS no longer gives.
func (m *Metrics) ForgetUpstreamTarget(target string) {
	if m != nil {
		m.upstreamTgt.DeleteLabelValues(target)
	}
}

func dir(in bool) string {
	if in {
		return "in"
	}
	return "out"
}
