package metrics

import (
	"strings"
	"sync/atomic"

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
	// DropRate: a message beyond its source's token bucket (package
	// admission; on TCP the connection is closed).
	DropRate = "rate"
	// DropOverload: a new request while the pending server transactions
	// are at their bound: answered 503 with Retry-After, statelessly.
	DropOverload = "overload"
	// DropUnregistered: a WebSocket closed because it neither registered
	// nor held a call within its deadline.
	DropUnregistered = "unregistered"
	// DropFenced: an in-dialog request left unanswered while this control
	// plane's cluster lease had expired (package cluster: another one may
	// own the call now).
	DropFenced = "fenced"
)

// SIPDropped counts one refusal on transport (udp, tcp, tls, ws, wss; any
// other value counts as "other").
func (m *Metrics) SIPDropped(transport, reason string) {
	if m != nil {
		m.sipDropped.WithLabelValues(transportLabel(transport), reason).Inc()
	}
}

// SIPDroppedN counts n refusals at once.
func (m *Metrics) SIPDroppedN(transport, reason string, n int) {
	if m != nil {
		m.sipDropped.WithLabelValues(transportLabel(transport), reason).Add(float64(n))
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

// edgeMetrics are the connection and flood collectors (package admission,
// sipnet's read filter).
type edgeMetrics struct {
	connections        *prometheus.GaugeVec
	connectionsRefused *prometheus.CounterVec
	httpRefused        *prometheus.CounterVec
	sipTransactions    atomic.Pointer[func() int]
}

// init creates the collectors and returns them as one, for registration.
func (e *edgeMetrics) init(m *Metrics) prometheus.Collector {
	e.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_connections",
		Help: "Open connections by listener (http, sip_tcp, sip_tls)."}, []string{"listener"})
	e.connectionsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_connections_refused_total",
		Help: "Connections closed as soon as accepted, by listener and reason (per_source, total)."}, []string{"listener", "reason"})
	e.httpRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_http_refused_total",
		Help: "HTTP requests refused before their handler, by reason (rate: 429; reserve: 503 on a connection kept for health checks)."}, []string{"reason"})
	tx := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_sip_server_transactions",
		Help: "SIP server transactions alive (bounded by --max-sip-transactions)."}, func() float64 {
		if f := e.sipTransactions.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	// Every series present from the start, at 0: alerts on rate() see
	// the first refusal, and scrapes do not grow as attacks come.
	for _, l := range []string{"http", "sip_tcp", "sip_tls"} {
		e.connections.WithLabelValues(l)
		for _, r := range []string{"per_source", "total"} {
			e.connectionsRefused.WithLabelValues(l, r)
		}
	}
	for _, r := range []string{"rate", "reserve"} {
		e.httpRefused.WithLabelValues(r)
	}
	for _, t := range []string{"udp", "tcp", "ws"} {
		for _, r := range []string{DropDialRefused, DropAuthBlocked, DropRate, DropOverload, DropUnregistered} {
			if r == DropOverload && t != "udp" || r == DropUnregistered && t != "ws" {
				continue
			}
			m.sipDropped.WithLabelValues(t, r)
		}
	}
	for _, r := range AuthFailureReasons {
		m.authFailures.WithLabelValues(r)
	}
	return collectorSet{e.connections, e.connectionsRefused, e.httpRefused, tx}
}

// AuthFailureReasons are the reason labels of strait_auth_failures_total:
// package registrar's Reason constants (a test there keeps the two
// alike), present from the start.
var AuthFailureReasons = []string{"malformed", "realm", "algorithm", "nonce", "uri_mismatch", "unknown_user",
	"wrong_password", "stale", "replay", "identity", "upstream"}

// collectorSet registers several collectors as one.
type collectorSet []prometheus.Collector

func (cs collectorSet) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectorSet) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// Connections sets a listener's open connections.
func (m *Metrics) Connections(listener string, open int) {
	if m != nil {
		m.edge.connections.WithLabelValues(listener).Set(float64(open))
	}
}

// ConnectionRefused counts a connection closed as soon as accepted.
func (m *Metrics) ConnectionRefused(listener, reason string) {
	if m != nil {
		m.edge.connectionsRefused.WithLabelValues(listener, reason).Inc()
	}
}

// HTTPRefused counts an HTTP request refused before its handler.
func (m *Metrics) HTTPRefused(reason string) {
	if m != nil {
		m.edge.httpRefused.WithLabelValues(reason).Inc()
	}
}

// SIPTransactionsFrom makes strait_sip_server_transactions read f at each
// scrape.
func (m *Metrics) SIPTransactionsFrom(f func() int) {
	if m != nil {
		m.edge.sipTransactions.Store(&f)
	}
}
