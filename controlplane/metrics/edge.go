package metrics

import "strings"

// Reasons Strait refuses something at its SIP edge: the reason label of
// strait_sip_dropped_total. The set is closed, so the label is bounded.
const (
	// DropDialRefused: a connection Strait would have opened on a peer's
	// say-so (a response toward a Via sent-by after the request's
	// connection closed, any WebSocket dial) and did not.
	DropDialRefused = "dial_refused"
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
