package server

import (
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/strait-sbc/strait/controlplane/admission"
	"github.com/strait-sbc/strait/controlplane/api"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// HTTP server timeouts. headerTimeout (server.go) bounds the headers.
const (
	// readTimeout bounds reading a whole request, body included (API
	// bodies are an SDP offer, a few KB). A WebSocket lifts it once
	// upgraded (sipws).
	readTimeout = 30 * time.Second
	// idleTimeout closes a keep-alive connection with no request.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds a request's headers (the default is 1 MB).
	maxHeaderBytes = 64 << 10
)

// healthReserve is how many connections beyond --max-connections the
// HTTP listener still accepts, to serve health checks and metrics only.
const healthReserve = 32

// fdHeadroom is what an automatic --max-connections leaves free besides
// the media ports: log and CDR files, the dataplane's and the upstream's
// sockets, gRPC, DNS.
const fdHeadroom = 256

// sipSources bounds the per-source tables (buckets).
const sipSources = 1 << 16

// edge is what the server admits: connection caps shared by the HTTP and
// SIP TCP/TLS listeners, and per-source buckets. Frozen after newEdge.
type edge struct {
	conns *admission.Connections
	http  *admission.Buckets
	sip   *admission.Buckets
}

// newEdge builds the admission state from cfg: the connection total from
// the file descriptor limit when cfg leaves it to Strait.
func newEdge(cfg config.Config, m *metrics.Metrics) *edge {
	total := cfg.MaxConnections
	if total == 0 {
		total = autoMaxConnections(cfg)
	}
	e := &edge{
		conns: admission.NewConnections(admission.Limits{PerSource: cfg.MaxConnectionsPerSource, Total: total}),
		http:  admission.NewBuckets(float64(cfg.HTTPRate), cfg.HTTPBurst, sipSources),
		sip:   admission.NewBuckets(float64(cfg.SIPRate), cfg.SIPBurst, sipSources),
	}
	e.conns.OnRefuse = m.ConnectionRefused
	e.conns.OnChange = m.Connections
	return e
}

// autoMaxConnections is what the descriptor limit allows once the media
// ports (one socket each) and fdHeadroom are set aside, at least 64.
func autoMaxConnections(cfg config.Config) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<24 {
		return 1 << 16
	}
	media := 0
	if len(cfg.Dataplane) == 0 {
		media = int(cfg.RTPPorts.Last) - int(cfg.RTPPorts.First) + 1 + int(cfg.WebRTCPorts.Last) - int(cfg.WebRTCPorts.First) + 1
	}
	return max(64, int(lim.Cur)-media-fdHeadroom)
}

// sipAdmission configures the SIP stack's read filter: the upstreams (by
// transport, address and, over UDP, port: upstream.Set.Match) and the
// --sip-trust ranges pass unlimited.
func (s *Server) sipAdmission(cfg config.Config, ranges []netip.Prefix) sipnet.Admission {
	trusted := func(transport string, src netip.AddrPort) bool {
		if s.ups != nil {
			if _, ok := s.ups.Match(transport, src); ok {
				return true
			}
		}
		for _, p := range ranges {
			if p.Contains(src.Addr().Unmap()) {
				return true
			}
		}
		return false
	}
	return sipnet.Admission{Buckets: s.edge.sip, MaxServerTransactions: cfg.MaxSIPTransactions,
		RetryAfter: overloadRetryAfter, Trusted: trusted}
}

// overloadRetryAfter is what a 503 for too many pending transactions asks
// a client to wait: long enough for UDP transactions' 32 s timers to drain
// a good part of the backlog.
const overloadRetryAfter = 10 * time.Second

// isHealth reports whether a request is a health check or a scrape, which
// the reserve serves and no rate limit applies to.
func isHealth(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// guardHTTP applies the reserve and the per-source rate to next: on a
// reserve connection only health checks are served (503 and close
// otherwise); API and WHIP requests and WebSocket upgrades beyond their
// source's bucket get 429 with Retry-After (problem details, as every
// error of the API). Health checks, metrics and the page's
// static files pass.
func (s *Server) guardHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isHealth(r) {
			next.ServeHTTP(w, r)
			return
		}
		if admission.Reserved(r.Context()) {
			s.Metrics.HTTPRefused("reserve")
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "5")
			api.WriteProblem(w, r, http.StatusServiceUnavailable, "", "too many connections: this one serves health checks only")
			return
		}
		if r.URL.Path == "/ws" || strings.HasPrefix(r.URL.Path, "/v1/") || strings.HasPrefix(r.URL.Path, "/whip/") {
			key, ok := admission.KeyOf(r.RemoteAddr)
			if ok && !s.edge.http.Allow(key, 1) {
				s.Metrics.HTTPRefused("rate")
				api.WriteTooManyRequests(w, r, time.Second, "too many requests from this address")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// sweepEdge runs the periodic part of admission: close WebSockets that
// hold neither a registration nor a call past their deadline, forget idle
// buckets, and hand a flood's memory back.
func (s *Server) sweepEdge() {
	if d := s.cfg.WSRegisterTimeout; d > 0 {
		bound := s.Registry.Sources()
		calls := s.Engine.CallFlows()
		n := s.WS.CloseIdle(d, func(flow string) bool { return bound[flow] || calls[flow] })
		for range n {
			s.Metrics.SIPDropped(sipnet.WS, metrics.DropUnregistered)
		}
	}
	s.edge.http.Sweep()
	s.edge.sip.Sweep()
	s.Stack.Relieve()
}
