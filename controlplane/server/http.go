// The HTTP listener's routes, readiness, and the housekeeping loop.

package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strait-sbc/strait/controlplane/api"
	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/origins"
)

// handler routes the HTTP listener: /ws to SIP, /v1 to the API, health
// and metrics, and the rest to root.
func (s *Server) handler(root http.Handler) http.Handler {
	mux := http.NewServeMux()
	allowed, _ := origins.New(s.cfg.CORSOrigins) // checked by Validate
	mux.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed.AllowWebSocket(r) {
			s.log.Info("websocket refused: origin not allowed", "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
			api.WriteProblem(w, r, http.StatusForbidden, "", "origin not allowed: see --cors-origin")
			return
		}
		s.WS.ServeHTTP(w, r)
	}))
	apiHandler := allowed.Handler(api.New(api.Config{Engine: s.Engine, Peers: s.apiPeers(), CDR: s.CDR, Registry: s.Registry, History: s.History, Presence: s.Presence, Messages: s.Messages, Mailbox: s.Mailbox, PresenceSIP: s.presenceSIP(), Directory: s.userNames, Names: s.contactNames(), Auth: s.auth.Load,
		MessageLimit: messaging.NewLimiter(s.cfg.MaxMessagesPerMinute, s.cfg.MaxMessagesPerMinute), Refused: s.Metrics.HTTPRefused,
		Log: s.log.With("component", "api")}))
	mux.Handle("/v1/", apiHandler)
	mux.Handle("/whip/", apiHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.ready)
	metricsHandler := promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", api.RequireScope(s.auth.Load, apiauth.ScopeAdmin, metricsHandler))
	// The Go profiler, as strait-dataplane serves it on its metrics
	// listener: here behind the same admin credential as /metrics, since
	// the HTTP listener may be public (a profile reveals code and memory).
	pprofMux := http.NewServeMux()
	pprofMux.HandleFunc("/debug/pprof/", pprof.Index)
	pprofMux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	pprofMux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	pprofMux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	pprofMux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/", api.RequireScope(s.auth.Load, apiauth.ScopeAdmin, pprofMux))
	if root == nil {
		root = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "Strait is running.\nSIP over WebSocket: %s\nAPI: /v1/calls, /v1/cdrs, /v1/events\n", s.WSURL())
		})
	}
	mux.Handle("/", root)
	return mux
}

// ready reports 200 when a dataplane node can take new sessions (up,
// answering heartbeats, not draining) and the upstream (if any, and
// pinged) answers OPTIONS. Nodes that cannot are listed either way: one
// bad node out of several does not take the control plane out of
// service.
func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	var problems, notes []string
	usable := 0
	for _, m := range s.Pool.Members() {
		switch {
		case !m.Up:
			notes = append(notes, "dataplane node "+m.Name+": down")
		case m.Draining || m.Retired:
			notes = append(notes, "dataplane node "+m.Name+": draining")
		default:
			usable++
		}
	}
	if usable == 0 {
		problems = append(problems, "no dataplane node can take sessions")
	}
	if !s.Engine.UpstreamUp() {
		problems = append(problems, "upstream does not answer OPTIONS")
	}
	w.Header().Set("Content-Type", "text/plain")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(strings.Join(append(problems, notes...), "\n") + "\n"))
		return
	}
	w.Write([]byte(strings.Join(append([]string{"ready"}, notes...), "\n") + "\n"))
}

func (s *Server) housekeep() {
	defer s.wg.Done()
	t := time.NewTicker(housekeeping)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Registrar.Sweep()
			s.sweepEdge()
			for name, n := range s.Pool.Sessions() {
				s.Metrics.SetSessions(name, n)
			}
		}
	}
}

// presenceSIP is the API's presence bridge: nil (no interface value) in
// standalone mode.
func (s *Server) presenceSIP() api.PresenceSIP {
	if s.PresenceSIP == nil {
		return nil
	}
	return s.PresenceSIP
}
