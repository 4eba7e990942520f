package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// What operators graph about calls and registrations beyond the counts
// in metrics.go: how long calls take to set up, how they end (the
// answer-seizure ratio is strait_calls_final_total{class="2xx"} over all
// classes), how registrations fare, how many browsers are connected, and
// how many SIP transactions fail for want of an answer. Every label is
// from a closed set.

// directions are the call directions (package b2bua); anything else
// counts as "other".
var directions = map[string]bool{"browser-to-sip": true, "sip-to-browser": true, "browser-to-browser": true,
	"api": true, "echo": true, "sip-to-sip": true}

func directionLabel(d string) string {
	if directions[d] {
		return d
	}
	return "other"
}

// setupBuckets span a call's setup and post-dial delay: from tens of
// milliseconds (an auto-answer) to the two minutes a phone may ring.
var setupBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120}

// callMetrics are the collectors of this file, created by New.
type callMetrics struct {
	setup        *prometheus.HistogramVec
	pdd          *prometheus.HistogramVec
	final        *prometheus.CounterVec
	registers    *prometheus.CounterVec
	txFailures   *prometheus.CounterVec
	retransmits  *prometheus.CounterVec
	wsFlows      func() int
	wsFlowsMu    sync.Mutex
	upstreamOnce sync.Once
}

func newCallMetrics() *callMetrics {
	return &callMetrics{
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strait_call_setup_seconds",
			Help:    "Time from a call's INVITE (or API request) to its answer, for answered calls, by direction.",
			Buckets: setupBuckets}, []string{"direction"}),
		pdd: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "strait_call_post_dial_delay_seconds",
			Help:    "Post-dial delay: time from a call's INVITE to the callee's first ringing or early-media response (180-183), by direction.",
			Buckets: setupBuckets}, []string{"direction"}),
		final: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_calls_final_total",
			Help: "Calls by the class of their final answer to the caller: 2xx answered, 3xx-6xx not (answer-seizure ratio: 2xx over all), by direction."},
			[]string{"class", "direction"}),
		registers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_register_results_total",
			Help: "Final answers Strait gave to REGISTER requests, by result (ok, challenged, forbidden, not_found, bad_request, interval_too_brief, unavailable, other)."},
			[]string{"result"}),
		txFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_sip_transaction_failures_total",
			Help: "Client transactions Strait started that ended without a final response, by method and reason (timeout: no answer within 64*T1; transport: the message could not be sent)."},
			[]string{"method", "reason"}),
		retransmits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_sip_retransmissions_total",
			Help: "SIP messages over UDP that repeated, byte for byte, one seen within the last 64*T1 (RFC 3261 section 17 retransmissions), by direction (in: a peer re-sent; out: Strait re-sent), method (of the request, or of the CSeq for a response) and message (request, response)."},
			[]string{"direction", "method", "message"}),
	}
}

func (c *callMetrics) collectors(m *Metrics) []prometheus.Collector {
	ws := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_websocket_connections",
		Help: "SIP over WebSocket connections open (browsers)."}, func() float64 {
		c.wsFlowsMu.Lock()
		f := c.wsFlows
		c.wsFlowsMu.Unlock()
		if f == nil {
			return 0
		}
		return float64(f())
	})
	return []prometheus.Collector{c.setup, c.pdd, c.final, c.registers, c.txFailures, c.retransmits, ws}
}

// CallAnswered observes a call's setup time (start to answer).
func (m *Metrics) CallAnswered(direction string, setup time.Duration) {
	if m != nil {
		m.calls2.setup.WithLabelValues(directionLabel(direction)).Observe(setup.Seconds())
	}
}

// CallProgressed observes a call's post-dial delay (start to the callee's
// first 180-183); the caller calls it once per call.
func (m *Metrics) CallProgressed(direction string, pdd time.Duration) {
	if m != nil {
		m.calls2.pdd.WithLabelValues(directionLabel(direction)).Observe(pdd.Seconds())
	}
}

// CallFinal counts a call by its final answer to the caller: answered
// (2xx), else the class of code.
func (m *Metrics) CallFinal(direction string, answered bool, code int) {
	if m == nil {
		return
	}
	class := "2xx"
	if !answered {
		class = classLabel(code)
	}
	m.calls2.final.WithLabelValues(class, directionLabel(direction)).Inc()
}

func classLabel(code int) string {
	switch {
	case code >= 300 && code <= 699:
		return string(rune('0'+code/100)) + "xx"
	case code >= 200 && code < 300:
		return "2xx"
	}
	return "other"
}

// registerResult maps a final answer to a REGISTER onto a result.
func registerResult(code int) string {
	switch {
	case code >= 200 && code < 300:
		return "ok"
	case code == 401 || code == 407:
		return "challenged"
	case code == 403:
		return "forbidden"
	case code == 404:
		return "not_found"
	case code == 400:
		return "bad_request"
	case code == 423:
		return "interval_too_brief"
	case code == 408 || code >= 500:
		return "unavailable"
	}
	return "other"
}

// Transaction failure reasons.
const (
	TxTimeout   = "timeout"
	TxTransport = "transport"
)

// TransactionFailed counts a client transaction that ended without a
// final response: reason is TxTimeout or TxTransport.
func (m *Metrics) TransactionFailed(method, reason string) {
	if m == nil {
		return
	}
	if reason != TxTimeout && reason != TxTransport {
		reason = "other"
	}
	m.calls2.txFailures.WithLabelValues(methodLabel(method), reason).Inc()
}

// Retransmission counts one SIP message that repeated one already sent
// or received (package sipnet recognises them); in is true for a message
// a peer sent, request tells a request from a response, and method is the
// request's (or the response's CSeq) method, bounded like Request's.
func (m *Metrics) Retransmission(method string, in, request bool) {
	if m == nil {
		return
	}
	m.calls2.retransmits.WithLabelValues(dir(in), methodLabel(method), messageLabel(request)).Inc()
}

func messageLabel(request bool) string {
	if request {
		return "request"
	}
	return "response"
}

// WebSocketFlowsFrom makes strait_websocket_connections read f at each
// scrape.
func (m *Metrics) WebSocketFlowsFrom(f func() int) {
	if m != nil {
		m.calls2.wsFlowsMu.Lock()
		m.calls2.wsFlows = f
		m.calls2.wsFlowsMu.Unlock()
	}
}

// CertificateExpiry exports when a certificate in use expires, as
// strait_certificate_expiry_timestamp_seconds{use}; notAfter is read at
// each scrape, so a certificate reloaded on SIGHUP shows its own date.
// use is a fixed name (https_sip, dataplane_client).
func (m *Metrics) CertificateExpiry(use string, notAfter func() time.Time) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(CertificateExpiryGauge(use, notAfter))
}

// CertificateExpiryGauge is the collector CertificateExpiry registers, for
// binaries with a registry of their own (strait-dataplane's gRPC certificate).
func CertificateExpiryGauge(use string, notAfter func() time.Time) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_certificate_expiry_timestamp_seconds",
		Help:        "When a certificate in use expires (Unix time), by use (https_sip: HTTPS/WSS and SIP TLS; dataplane_client; grpc).",
		ConstLabels: prometheus.Labels{"use": use}}, func() float64 { return float64(notAfter().Unix()) })
}

// preset creates the series of the closed label sets that dashboards and
// alerts select on, at 0, so that they exist (and rate() works) before
// the first event.
func (m *Metrics) preset() {
	for d := range directions {
		for _, class := range []string{"2xx", "3xx", "4xx", "5xx", "6xx"} {
			m.calls2.final.WithLabelValues(class, d)
		}
		m.calls2.setup.WithLabelValues(d)
		m.calls2.pdd.WithLabelValues(d)
	}
	for _, r := range []string{"ok", "challenged", "forbidden", "not_found", "bad_request", "interval_too_brief", "unavailable"} {
		m.calls2.registers.WithLabelValues(r)
	}
	for _, method := range []string{"INVITE", "BYE", "REGISTER", "OPTIONS"} {
		m.calls2.txFailures.WithLabelValues(method, TxTimeout)
		m.calls2.txFailures.WithLabelValues(method, TxTransport)
		for _, d := range []string{"in", "out"} {
			m.calls2.retransmits.WithLabelValues(d, method, "request")
			m.calls2.retransmits.WithLabelValues(d, method, "response")
		}
		m.sipRequests.WithLabelValues(method, "in")
		m.sipRequests.WithLabelValues(method, "out")
	}
	// Authentication failures by the reasons of package registrar an
	// operator watches most; others appear when they happen.
	for _, r := range []string{"wrong_password", "unknown_user", "replay", "upstream"} {
		m.authFailures.WithLabelValues(r)
	}
	m.stateWrites.WithLabelValues("ok")
	m.stateWrites.WithLabelValues("error")
	for _, st := range []string{"ringing", "early", "answered"} {
		m.calls.WithLabelValues(st)
	}
	for _, t := range []string{"udp", "tcp", "tls", "ws", "wss"} {
		for _, r := range []string{DropDialRefused, DropAuthBlocked, DropUntrusted} {
			m.sipDropped.WithLabelValues(t, r)
		}
	}
}

// HEPFrom exports the SIP capture's counters (package hep) read from f at
// each scrape: strait_hep_messages_total{result="sent|dropped|failed"}
// (dropped: the bounded queue was full; failed: the send failed).
func (m *Metrics) HEPFrom(f func() (sent, dropped, failed uint64)) {
	if m == nil {
		return
	}
	for i, result := range []string{"sent", "dropped", "failed"} {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "strait_hep_messages_total",
			Help:        "SIP messages copied to the Homer capture server (--hep), by result: sent, dropped (queue full), failed (send error).",
			ConstLabels: prometheus.Labels{"result": result}}, func() float64 {
			s, d, e := f()
			return float64([]uint64{s, d, e}[i])
		}))
	}
}
