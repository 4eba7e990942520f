// Package server wires the control plane together: configuration, the
// dataplane nodes (in process or remote over gRPC), the SIP stack with
// its WebSocket flows on the HTTP listener, the registrar, the B2BUA, the
// HTTP API, metrics and health. cmd/strait is a thin main around it;
// tests start whole servers with it on loopback.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strait-sbc/strait/controlplane/admission"
	"github.com/strait-sbc/strait/controlplane/api"
	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/authguard"
	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/hep"
	"github.com/strait-sbc/strait/controlplane/history"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/origins"
	"github.com/strait-sbc/strait/controlplane/presence"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/sipws"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/upstream"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/internal/logging"
	"github.com/strait-sbc/strait/internal/tlsconfig"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Options are what New needs besides the configuration.
type Options struct {
	// Config is the configuration.
	Config config.Config
	// Parsed is what Config.Parse made of Config; nil parses it here.
	Parsed *config.Parsed
	// Root, when set, serves GET / and everything the other routes do not
	// claim (the embedded web phone page).
	Root http.Handler
	// Nodes replaces the dataplane nodes the configuration names (tests
	// pass an in-process node with ports of their own).
	Nodes []*dpool.Node
	// Resolver looks up dns:// dataplane names; nil: the system's, or
	// --dns-server's.
	Resolver dpool.Resolver
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
	// Store, when set, replaces the store --state names (tests pass a
	// state.Memory they can make fail).
	Store state.Store
	// Level, when set, is the level Log logs at: Reload sets it from
	// --log-level.
	Level *slog.LevelVar
	// SessionTimerUnit, when set, is how long one second of an RFC 4028
	// session interval lasts (tests shorten it).
	SessionTimerUnit time.Duration
}

// housekeeping is how often expired bindings are dropped and gauges
// refreshed.
const housekeeping = 5 * time.Second

// headerTimeout bounds reading a request's headers (slowloris); it does
// not apply to a WebSocket once upgraded.
const headerTimeout = 5 * time.Second

// Server is a running control plane.
type Server struct {
	cfg config.Config // read only by New and Reload (under reloadMu)
	log *slog.Logger

	// The parts, for tests and for programs that embed the control plane.
	Metrics   *metrics.Metrics
	Registry  *registrar.Registry
	Registrar *registrar.Registrar
	AuthGuard *authguard.Guard
	Engine    *b2bua.Engine
	Pool      *dpool.Pool
	Stack     *sipnet.Stack
	CDR       *cdr.Store
	WS        *sipws.Listener
	Guard     *dialplan.Guard
	// State writes calls and registrations through to the store --state
	// names (nil never: memory at least).
	State *state.Writer
	// History keeps each user's call log in the state store, fed by CDR.
	History *history.Log
	// Presence keeps what API users publish, in the state store.
	Presence *presence.Book
	// Messages carries instant messages to API listeners.
	Messages *messaging.Hub

	store    state.Store                           // the backend of State
	local    *node.Node                            // the in-process dataplane, if any
	ups      *upstream.Set                         // the upstreams, in trunk mode
	digest   *registrar.Digest                     // standalone users; nil in trunk or open mode
	hep      *hep.Exporter                         // SIP capture toward Homer; nil without --hep
	journal  *cdr.FileJournal                      // calls in progress, for their CDRs after a crash; nil without
	users    []config.User                         // the users digest holds; guarded by reloadMu
	tlsCert  *tlsconfig.Certificate                // HTTPS/WSS and SIP TLS; nil without --tls-cert
	dpCert   *tlsconfig.Certificate                // mTLS client certificate toward nodes; nil without
	level    *slog.LevelVar                        // nil: the level is not Reload's to set
	auth     atomic.Pointer[apiauth.Authenticator] // the API's credentials in force
	reloadMu sync.Mutex                            // serialises Reload; guards cfg's live fields
	// handingOver is set by Handover: closing WebSockets end nothing.
	handingOver atomic.Bool
	httpLn      net.Listener
	edge        *edge // frozen after New
	httpSrv     *http.Server
	tls         *tls.Config
	stop        chan struct{}
	wg          sync.WaitGroup
	closeErr    error
	once        sync.Once
}

// New builds and starts a server: it binds the HTTP and SIP listeners and
// starts serving. Close stops it.
func New(opt Options) (_ *Server, err error) {
	cfg := opt.Config
	p := opt.Parsed
	if p == nil {
		if p, err = cfg.Parse(); err != nil {
			return nil, err
		}
	}
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	// Each key once per line, whatever handler the caller gave (sipgo's
	// logger adds keys the parent's may already carry).
	log = slog.New(logging.Dedup(log.Handler()))
	s := &Server{cfg: cfg, log: log, Metrics: metrics.New(), Registry: registrar.NewRegistry(), stop: make(chan struct{}),
		level: opt.Level}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.store = opt.Store; s.store == nil {
		if s.store, err = state.Open(cfg.State, cfg.DataDir); err != nil {
			return nil, err
		}
	}
	s.State = state.NewWriter(state.WriterConfig{Store: s.store, OnHealth: s.Metrics.SetStateUp, OnWrite: s.Metrics.StateWritten,
		Log: log.With("component", "state")})
	if cfg.TLSCert != "" {
		if s.tlsCert, err = tlsconfig.LoadCertificate(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, err
		}
		if s.tls, err = tlsconfig.NewServer(s.tlsCert, ""); err != nil {
			return nil, err
		}
		s.Metrics.CertificateExpiry("https_sip", func() time.Time { return s.tlsCert.Leaf().NotAfter })
	}
	nodes := opt.Nodes
	var discover []dpool.Discovery
	if len(nodes) == 0 {
		if nodes, discover, err = s.dataplane(p, opt.Resolver); err != nil {
			return nil, err
		}
	}
	s.Pool = dpool.New(log.With("component", "dpool"), nodes...)
	for _, n := range nodes {
		s.Metrics.SetSessions(n.Name, 0)
	}
	s.Pool.OnChange(s.Metrics.SetSessions)
	for _, d := range discover {
		s.Pool.Discover(d)
	}
	if s.CDR, err = cdr.NewStore(cfg.CDRFile); err != nil {
		return nil, err
	}
	// Each user's call log, in the state store: standalone users get
	// every call they were on, others their browser or API side's.
	s.History = history.New(history.Config{Store: s.store, Log: log.With("component", "history"),
		Users: func(name string) bool { return s.digest != nil && s.digest.Known(name) }})
	s.CDR.Notify(s.History.Add)
	s.Presence = presence.New(presence.Config{Store: s.store, Log: log.With("component", "presence")})
	s.Messages = messaging.New(messaging.Config{Store: s.store, Log: log.With("component", "messaging")})
	if path := cfg.JournalPath(); path != "" {
		if s.journal, err = cdr.OpenFileJournal(path); err != nil {
			return nil, err
		}
	}
	s.Registry.OnChange(s.Metrics.SetRegistrations)
	{
		ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
		n, err := s.Registry.Persist(ctx, s.State)
		cancel()
		if err != nil {
			log.Warn("state store: registrations not loaded", "err", err)
		} else if n > 0 {
			log.Info("registrations loaded from the state store", "bindings", n)
		}
	}

	s.edge = newEdge(cfg, s.Metrics)
	s.httpLn, err = net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	s.httpLn = s.edge.conns.Listen(s.httpLn, "http", healthReserve)
	s.WS = sipws.New(s.httpLn.Addr(), log.With("component", "sipws"))
	s.Metrics.WebSocketFlowsFrom(s.WS.Flows)

	ups, err := s.upstreams(p.Upstreams)
	if err != nil {
		return nil, err
	}
	clientTLS, err := tlsconfig.Client(cfg.UpstreamCert, cfg.UpstreamKey, cfg.UpstreamCA, "")
	if err != nil {
		return nil, fmt.Errorf("upstream TLS: %w", err)
	}
	var sipTLS *tls.Config
	if s.tls != nil {
		// Upstreams that open TLS connections to Strait are asked for a
		// certificate, which identifies them (b2bua checks it against
		// the upstream CAs and hosts; others may show none).
		sipTLS = s.tls.Clone()
		sipTLS.ClientAuth = tls.RequestClientCert
	}
	sipHost := sipHostOf(cfg)
	s.Stack, err = sipnet.New(sipnet.Config{Host: sipHost, Addr: cfg.SIP, TLSAddr: cfg.SIPTLS, TLS: sipTLS, ClientTLS: clientTLS,
		TLSName: tlsNames(ups), WSHost: wsHostOf(cfg), UserAgent: "Strait", Log: log.With("component", "sip"), Metrics: s.Metrics,
		Admission: s.sipAdmission(cfg, p.SIPTrust), WrapListener: func(l net.Listener, name string) net.Listener {
			return s.edge.conns.Listen(l, name, 0)
		}})
	if err != nil {
		return nil, err
	}
	if cfg.HEP != "" {
		if s.hep, err = hep.New(hep.Config{URL: cfg.HEP, CaptureID: uint32(cfg.HEPCaptureID), Password: cfg.HEPPassword}); err != nil {
			return nil, err
		}
		s.Metrics.HEPFrom(func() (sent, dropped, failed uint64) {
			st := s.hep.Stats()
			return st.Sent, st.Dropped, st.Failed
		})
		sipnet.EnableCapture(s.hep)
	}
	users := p.Users
	var digest *registrar.Digest
	if ups == nil && len(users) > 0 {
		m := map[string]string{}
		for _, u := range users {
			m[u.Name] = u.Password
		}
		algs, err := registrar.ParseAlgorithms(cfg.DigestAlgorithms)
		if err != nil {
			return nil, err
		}
		digest = registrar.NewDigestWith(registrar.DigestConfig{Realm: cfg.Realm, Users: m, Algorithms: algs,
			Key: s.secret(digestKeyName), Nonces: s.nonceStore()})
		s.digest, s.users = digest, users
	}
	s.Guard = dialplan.NewGuard(p.DialPlan)
	if err := s.setAuth(cfg); err != nil {
		return nil, err
	}
	s.AuthGuard = authguard.New(authguard.Config{SourceThreshold: cfg.AuthFailuresPerSource,
		UserThreshold: cfg.AuthFailuresPerUser, MaxBlock: cfg.AuthBlockMax, Metrics: s.Metrics,
		Log: log.With("component", "authguard")})
	s.Registrar = registrar.New(registrar.Config{Guard: s.AuthGuard, Stack: s.Stack, Registry: s.Registry, Upstreams: ups,
		Digest: digest, Metrics: s.Metrics, MaxExpiry: cfg.RegisterExpiry, Log: log.With("component", "registrar")})
	s.Engine = b2bua.New(b2bua.Config{Stack: s.Stack, Registry: s.Registry, Registrar: s.Registrar, Flows: s.WS, OnMessage: s.Messages.FromSIP,
		Upstreams: ups, UpstreamRoots: clientTLS.RootCAs, Trust: p.SIPTrust, Digest: digest, AuthGuard: s.AuthGuard, Pool: s.Pool, TrunkPolicy: sdp.Policy{Codecs: cfg.Codecs}, SDES: cfg.SDES,
		CDR: s.CDR, Journal: s.journalOrNil(), InterimInterval: cfg.CDRInterim, Metrics: s.Metrics, Log: log.With("component", "b2bua"),
		RingTimeout: cfg.RingTimeout, OptionsInterval: cfg.OptionsInterval, MediaTimeout: cfg.MediaTimeout,
		Guard: s.Guard, PBXAuthenticatesCalls: cfg.PBXAuthenticatesCalls, SharedPlainPorts: cfg.PlainPorts == "shared",
		ShutdownTimeout: cfg.ShutdownTimeout, State: s.State, SessionTimerUnit: opt.SessionTimerUnit})
	s.WS.OnClose(func(flow string) {
		if s.handingOver.Load() {
			// The browser reconnects to the next control plane, which
			// has its bindings and calls: nothing ends, nothing is
			// unregistered upstream.
			return
		}
		s.Engine.FlowClosed(flow)
		s.Registrar.FlowClosed(flow)
	})
	// Calls a previous control plane left in the state store go on: their
	// dialogs come back and their sessions are adopted from the nodes.
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	restored, rerr := s.Engine.Restore(ctx)
	cancel()
	if rerr != nil {
		log.Warn("state store: calls not restored; dataplane sessions and the CDR journal are left alone", "err", rerr)
	} else if len(restored.Calls) > 0 {
		log.Info("calls carried on from the state store", "calls", len(restored.Calls))
	}
	// Sessions left on the nodes that no stored call owns belong to calls
	// whose dialogs are gone (unless the store could not be read: then
	// nothing is known to be an orphan).
	var reaped []*pb.Session
	if rerr == nil {
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		reaped, err = s.Pool.Reap(ctx, func(id string) bool { return restored.Sessions[id] })
		if err != nil {
			log.Warn("could not list dataplane sessions", "err", err)
		} else if len(reaped) > 0 {
			log.Info("deleted orphaned dataplane sessions", "count", len(reaped))
		}
		cancel()
	}
	if s.journal != nil && rerr == nil {
		// Calls the previous process left open and that do not go on get
		// their record: the final counters of their session when a node
		// still had it, else the last interim.
		byCall := map[string]*pb.Session{}
		for _, rs := range reaped {
			byCall[rs.GetLabels()[dpool.LabelCall]] = rs
		}
		n, err := cdr.RecoverExcept(s.journal, s.CDR, reasonRestart, func(id string) bool { return restored.Calls[id] },
			func(r cdr.Record) []cdr.LegMedia {
				if rs, ok := byCall[r.ID]; ok {
					return cdr.MediaOf(rs)
				}
				return nil
			})
		if err != nil {
			log.Warn("CDR journal: calls of the previous run not all closed", "err", err)
		}
		if n > 0 {
			log.Warn("closed the records of calls a previous run left open (it did not stop cleanly)", "calls", n)
		}
	}
	if err := s.Stack.Start(s.WS); err != nil {
		return nil, err
	}
	s.Engine.Ready()

	s.Metrics.SIPTransactionsFrom(s.Stack.ServerTransactions)
	s.httpSrv = &http.Server{Handler: s.guardHTTP(s.handler(opt.Root)), ReadHeaderTimeout: headerTimeout,
		ReadTimeout: readTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ConnContext: admission.ConnContext,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.AuthGuard.Run(s.stop) }()
	go func() {
		defer s.wg.Done()
		var err error
		if s.tls != nil {
			s.httpSrv.TLSConfig = s.tls
			err = s.httpSrv.ServeTLS(s.httpLn, "", "")
		} else {
			err = s.httpSrv.Serve(s.httpLn)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	go s.housekeep()
	mode := "standalone"
	if ups != nil {
		mode = "trunk " + strings.Join(cfg.Upstream, ", ")
	}
	log.Info("strait started", "mode", mode, "http", s.HTTPAddr(), "ws", s.WSURL(), "sip", s.SIPAddr(),
		"sip_host", sipHost, "open_registration", ups == nil && digest == nil, "state", s.store.Name())
	return s, nil
}

// startLoadTimeout bounds each read of the state store at start.
const startLoadTimeout = 10 * time.Second

// digestKeyName is the secret nonces are signed with.
const digestKeyName = "digest-key"

// secret returns the shared secret name from the state store, made (32
// random bytes) by the first control plane that asks; a random one of
// its own when the store does not answer (nonces then do not survive
// this process).
func (s *Server) secret(name string) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	defer cancel()
	v, err := s.State.Store().PutIfAbsent(ctx, state.Secrets, name, k)
	if err != nil || len(v) < 16 {
		s.log.Warn("state store: shared secret not read; using one of this process's", "secret", name, "err", err)
		return k
	}
	return v
}

// nonceStore is where digest nonce counts are tracked: in the state store
// when it is shared (Redis: a nonce is used once across control planes),
// else in memory, forgetting every nonce issued before this process
// started (they get stale=true, never a replay through).
func (s *Server) nonceStore() registrar.NonceStore {
	if strings.HasPrefix(s.cfg.State, "redis") {
		return registrar.StoreNonces{W: s.State}
	}
	m := registrar.NewMemoryNonces(0, registrar.NonceLifetime+time.Minute)
	// Nonce times are whole seconds: one issued in the second this process
	// started is taken as this process's.
	m.ForgetBefore(time.Now().Truncate(time.Second).Add(-time.Second))
	return m
}

// upstreamResolveWait bounds the first resolution of the upstreams' names
// at start; what is not resolved by then is retried in the background.
const upstreamResolveWait = 5 * time.Second

// upstreams builds the set of upstreams (nil in standalone mode) and
// resolves their names once before Strait takes calls.
func (s *Server) upstreams(specs []upstream.Spec) (*upstream.Set, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	set := upstream.NewSet(upstream.Config{Specs: specs, Resolver: upstream.NewResolver(s.cfg.DNSServer),
		Log: s.log.With("component", "upstream")})
	ctx, cancel := context.WithTimeout(context.Background(), upstreamResolveWait)
	if err := set.Resolve(ctx); err != nil {
		s.log.Warn("upstream names not all resolved at start; retrying in the background", "err", err)
	}
	cancel()
	set.Start()
	s.ups = set
	return set, nil
}

// tlsNames tells the SIP stack which TLS destinations are upstreams and
// the names they must prove.
func tlsNames(set *upstream.Set) func(netip.AddrPort) (string, bool) {
	if set == nil {
		return nil
	}
	return func(ap netip.AddrPort) (string, bool) {
		t, ok := set.Lookup(upstream.TLS, ap)
		return t.Host(), ok
	}
}

// reasonRestart is the CDR reason of a call a previous run left open.
const reasonRestart = "control plane restart"

// journalOrNil hands the engine the journal as an interface (nil when
// there is none, not a nil pointer in an interface).
func (s *Server) journalOrNil() cdr.Journal {
	if s.journal == nil {
		return nil
	}
	return s.journal
}

// dataplane creates the in-process node, or connects to the remote ones
// and returns the names to discover nodes by.
func (s *Server) dataplane(p *config.Parsed, resolver dpool.Resolver) ([]*dpool.Node, []dpool.Discovery, error) {
	cfg := s.cfg
	if len(p.Dataplane) == 0 {
		nc := p.Node
		nc.ID, nc.Logger = "local", s.log.With("component", "dataplane")
		n, err := node.New(nc)
		if err != nil {
			return nil, nil, fmt.Errorf("in-process dataplane: %w", err)
		}
		s.local = n
		// The node's traffic and drop counters on strait's own /metrics (the
		// control plane exports the session gauge itself).
		s.Metrics.Registry.MustRegister(n.TrafficCollector())
		return []*dpool.Node{{Name: "local", API: n}}, nil, nil
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if cfg.DataplaneCert != "" || cfg.DataplaneCA != "" {
		if cfg.DataplaneCert != "" {
			var err error
			if s.dpCert, err = tlsconfig.LoadCertificate(cfg.DataplaneCert, cfg.DataplaneKey); err != nil {
				return nil, nil, err
			}
			s.Metrics.CertificateExpiry("dataplane_client", func() time.Time { return s.dpCert.Leaf().NotAfter })
		}
		tc, err := tlsconfig.NewClient(s.dpCert, cfg.DataplaneCA, cfg.DataplaneServerName)
		if err != nil {
			return nil, nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	dial := func(addr string) (*dpool.Node, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, err
		}
		return &dpool.Node{Name: addr, API: pb.NewClient(conn), Close: func() { conn.Close() }}, nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
		if cfg.DNSServer != "" {
			d := net.Dialer{Timeout: 2 * time.Second}
			resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, cfg.DNSServer)
			}}
		}
	}
	var nodes []*dpool.Node
	var discover []dpool.Discovery
	for _, t := range p.Dataplane {
		if t.Discover {
			host, port, _ := net.SplitHostPort(t.Addr)
			pn, _ := strconv.ParseUint(port, 10, 16)
			discover = append(discover, dpool.Discovery{Name: host, Port: uint16(pn), Resolver: resolver,
				Dial: func(ap netip.AddrPort) (*dpool.Node, error) { return dial(ap.String()) }})
			continue
		}
		n, err := dial(t.Addr)
		if err != nil {
			for _, n := range nodes {
				n.Close()
			}
			return nil, nil, fmt.Errorf("dataplane %s: %w", t.Addr, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, discover, nil
}

// sipHostOf is the host Strait names itself with toward SIP peers.
func sipHostOf(cfg config.Config) string {
	if cfg.SIPHost != "" {
		return cfg.SIPHost
	}
	if len(cfg.PublicIP) > 0 {
		return cfg.PublicIP[0]
	}
	host, _, _ := net.SplitHostPort(cfg.SIP)
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsUnspecified() || host == "") && len(cfg.MediaIP) > 0 {
		return cfg.MediaIP[0]
	}
	return host
}

// wsHostOf names Strait in Via and Contact toward browsers.
func wsHostOf(cfg config.Config) string {
	host, _, _ := net.SplitHostPort(cfg.HTTP)
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() || host == "" {
		return "strait.invalid"
	}
	return host
}

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
	apiHandler := allowed.Handler(api.New(api.Config{Engine: s.Engine, CDR: s.CDR, Registry: s.Registry, History: s.History, Presence: s.Presence, Messages: s.Messages, Directory: s.userNames, Auth: s.auth.Load,
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

// HTTPAddr is the bound HTTP address.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// WSURL is the SIP over WebSocket URL browsers connect to.
func (s *Server) WSURL() string {
	scheme := "ws"
	if s.tls != nil {
		scheme = "wss"
	}
	return scheme + "://" + s.HTTPAddr() + "/ws"
}

// SIPAddr is the bound SIP UDP address.
func (s *Server) SIPAddr() string { return s.Stack.UDPAddr() }

// Local is the in-process dataplane node, nil with remote nodes.
func (s *Server) Local() *node.Node { return s.local }

// Close hangs up every call, stops the listeners and the dataplane.
func (s *Server) Close() error { return s.close(false) }

// Handover stops the server without ending the answered calls, for a
// control plane that takes them over from the state store (an upgrade):
// their records are written and kept, their sessions stay on remote
// nodes, their CDR journal entries stay open; nobody gets a BYE. Browsers
// see their WebSocket close and reconnect to the next process. Calls
// still ringing end as with Close. All in one (the in-process dataplane,
// whose sessions end with the process) it is Close: the calls could not
// be carried on, so they are hung up properly now.
func (s *Server) Handover() error {
	if s.local != nil {
		s.log.Warn("handover with the in-process dataplane: its media ends with this process, so calls are hung up (give --dataplane nodes to keep calls across an upgrade)")
		return s.close(false)
	}
	return s.close(true)
}

func (s *Server) close(handover bool) error {
	s.once.Do(func() {
		s.handingOver.Store(handover)
		close(s.stop)
		if s.Engine != nil {
			if handover {
				s.Engine.Detach()
			} else {
				s.Engine.Close()
			}
		}
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.httpSrv.Shutdown(ctx)
			cancel()
			s.httpSrv.Close()
		} else if s.httpLn != nil {
			s.httpLn.Close()
		}
		if s.WS != nil {
			s.WS.Close()
		}
		if s.Stack != nil {
			s.Stack.Close()
		}
		if s.hep != nil {
			sipnet.EnableCapture(nil)
			s.hep.Close()
		}
		if s.ups != nil {
			s.ups.Close()
		}
		if s.Pool != nil {
			s.Pool.Close()
		}
		if s.local != nil {
			s.local.Close()
		}
		if s.journal != nil {
			s.closeErr = s.journal.Close()
		}
		if s.History != nil {
			s.History.Close() // the calls' last records, before the store closes
		}
		if s.Presence != nil {
			s.Presence.Close()
		}
		if s.Messages != nil {
			s.Messages.Close()
		}
		if s.State != nil {
			if err := s.State.Close(); err != nil {
				s.log.Warn("state store: changes not written", "err", err)
			}
		}
		if s.store != nil {
			s.store.Close()
		}
		if s.CDR != nil {
			s.closeErr = errors.Join(s.closeErr, s.CDR.Close())
		}
		if s.httpSrv == nil {
			return
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// userNames lists the configured users (standalone --user), for the
// address book.
func (s *Server) userNames() []string {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	out := make([]string, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u.Name)
	}
	return out
}
