package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons Strait refuses something at its SIP edge: the reason label of
// strait_sip_dropped_total. The set is closed, so the label is bounded.
const (
	// DropDialRefused: a connection Strait would have opened on a peer's
	// say-so (a response toward a Via sent-by after the request's
	// connection closed, any WebSocket dial) and did not.
	DropDialRefused = "dial_refused"
	// DropAuthBlocked: a request that needed authentication from a source
	// blocked for failing it too often (package authguard).
	DropAuthBlocked = "auth_blocked"
	// DropUntrusted: a request from the SIP side from neither an upstream
	// (its address, port and transport, or its TLS identity) nor a
	// --sip-trust range; it got 403.
	DropUntrusted = "untrusted"
)

// SIPDropped counts one refusal on transport (udp, tcp, tls, ws, wss; any
// other value counts as "other").
func (m *Metrics) SIPDropped(transport, reason string) {
	if m != nil {
		m.sipDropped.WithLabelValues(transportLabel(transport), reason).Inc()
	}
}

// transportLabel bounds the transport label to the names Strait serves.
func transportLabel(t string) string {
	switch t = strings.ToLower(t); t {
	case "udp", "tcp", "tls", "ws", "wss":
		return t
	}
	return "other"
}

// AuthFailure counts credentials Strait refused, by reason (the Reason
// constants of package registrar, a closed set); "" (a request without
// credentials, answered with a challenge) is not a failure.
func (m *Metrics) AuthFailure(reason string) {
	if m != nil && reason != "" {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

// AuthBlockedFrom makes strait_auth_blocked{kind="source"|"user"} read f
// at each scrape: how many sources are blocked for failing authentication
// and how many user names are under a guessing attack (package authguard).
func (m *Metrics) AuthBlockedFrom(f func() (sources, users int)) {
	if m != nil {
		m.authBlocked.Store(&f)
	}
}

func (m *Metrics) authBlockedGauge(kind string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_auth_blocked",
		Help:        "Sources blocked for failing authentication (kind=source), user names under a guessing attack (kind=user).",
		ConstLabels: prometheus.Labels{"kind": kind}}, func() float64 {
		f := m.authBlocked.Load()
		if f == nil {
			return 0
		}
		s, u := (*f)()
		if kind == "source" {
			return float64(s)
		}
		return float64(u)
	})
}
