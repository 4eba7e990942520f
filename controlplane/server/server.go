// Package server wires the control plane together: configuration, the
// dataplane nodes (in process or remote over gRPC), the SIP stack with
// its WebSocket flows on the HTTP listener, the registrar, the B2BUA, the
// HTTP API, metrics and health. cmd/strait is a thin main around it;
// tests start whole servers with it on loopback.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-sbc/strait/controlplane/admission"
	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/authguard"
	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/cluster"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/hep"
	"github.com/strait-sbc/strait/controlplane/history"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/presence"
	"github.com/strait-sbc/strait/controlplane/presence/sipbridge"
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
	// TakeoverGrace, when set, is b2bua.Config's (tests shorten it).
	TakeoverGrace time.Duration
	// ClusterHeartbeat and ClusterTTL, when set, replace the lease timing
	// of package cluster (tests shorten it).
	ClusterHeartbeat, ClusterTTL time.Duration
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
	// PresenceSIP carries presence to and from the PBX in trunk mode
	// (nil in standalone mode).
	PresenceSIP *sipbridge.Bridge
	// Mailbox keeps instant messages for offline users until they come
	// online (nil if the store could not be read at start).
	Mailbox *messaging.Mailbox
	// Instance is this control plane's instance id (--instance-id or
	// cluster.DefaultID): the owner of the calls it stores.
	Instance string

	store    state.Store                           // the backend of State
	opt      Options                               // frozen after New
	member   atomic.Pointer[cluster.Member]        // membership with a shared store; nil before joining or without
	peers    atomic.Pointer[cluster.Peers]         // the other members, once joined
	flows    atomic.Pointer[cluster.Flows]         // browsers' flows relayed to and from the other members, once joined
	bindings *cluster.Bindings                     // registrations shared with the other members; nil alone (frozen after New)
	crashed  atomic.Bool                           // crash (tests): the lease is left to expire
	local    *node.Node                            // the in-process dataplane, if any
	keeper   *sessionKeeper                        // saves local's sessions; nil with remote nodes
	ups      *upstream.Set                         // the upstreams, in trunk mode
	digest   *registrar.Digest                     // standalone users; nil in trunk or open mode
	hep      *hep.Exporter                         // SIP capture toward Homer; nil without --hep
	journal  *cdr.FileJournal                      // calls in progress, for their CDRs after a crash; nil without
	users    []config.User                         // the users digest holds; guarded by reloadMu
	contacts []presence.Entry                      // the --contacts-file address book; frozen after New
	mail     *offlineMail                          // the mailbox's SIP side; frozen after New
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
		level: opt.Level, opt: opt}
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
	if s.Instance = cfg.InstanceID; s.Instance == "" {
		s.Instance = cluster.DefaultID()
	}
	s.Pool.SetInstance(s.Instance)
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
	s.History = history.New(history.Config{Store: s.State, Log: log.With("component", "history"),
		Users: func(name string) bool { return s.digest != nil && s.digest.Known(name) }})
	s.CDR.Notify(s.History.Add)
	s.Presence = presence.New(presence.Config{Store: s.store, Log: log.With("component", "presence")})
	s.Messages = messaging.New(messaging.Config{Store: s.store, Log: log.With("component", "messaging")})
	if cfg.OfflineMessages > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
		s.Mailbox, err = messaging.NewMailbox(ctx, messaging.MailboxConfig{Store: s.store, Known: s.knownForMail,
			MaxPerUser: cfg.OfflineMessages, MaxPerSender: cfg.OfflineMessagesPerSender, MaxAge: cfg.OfflineMessageAge,
			Live: s.Messages, Log: log.With("component", "mailbox")})
		cancel()
		if err != nil {
			log.Warn("state store: offline messages not loaded; none are kept", "err", err)
			s.Mailbox, err = nil, nil
		} else {
			s.Metrics.Registry.MustRegister(s.Mailbox.Collectors()...)
		}
	}
	s.mail = newOfflineMail(s)
	if path := cfg.JournalPath(); path != "" {
		if s.journal, err = cdr.OpenFileJournal(path); err != nil {
			return nil, err
		}
	}
	s.Registry.OnChange(s.Metrics.SetRegistrations)
	{
		ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
		s.shareBindings(ctx)
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
	s.contacts = p.Contacts
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
	var hepQuality interface{ Capture(hep.Message) } // nil interface when HEP is off
	if s.hep != nil {
		hepQuality = s.hep
	}
	s.Engine = b2bua.New(b2bua.Config{Stack: s.Stack, Registry: s.Registry, Registrar: s.Registrar, Flows: s.WS, OnMessage: s.Messages.FromSIP,
		Offline: s.mail.keep, OnRegistered: s.mail.registered,
		Upstreams: ups, UpstreamRoots: clientTLS.RootCAs, Trust: p.SIPTrust, Digest: digest, AuthGuard: s.AuthGuard, Pool: s.Pool, TrunkPolicy: sdp.Policy{Codecs: cfg.Codecs}, SDES: cfg.SDES,
		CDR: s.CDR, Journal: s.journalOrNil(), InterimInterval: cfg.CDRInterim, Metrics: s.Metrics, Log: log.With("component", "b2bua"),
		RingTimeout: cfg.RingTimeout, OptionsInterval: cfg.OptionsInterval, MediaTimeout: cfg.MediaTimeout,
		Guard: s.Guard, PBXAuthenticatesCalls: cfg.PBXAuthenticatesCalls, SharedPlainPorts: cfg.PlainPorts == "shared",
		ShutdownTimeout: cfg.ShutdownTimeout, State: s.State, SessionTimerUnit: opt.SessionTimerUnit, MaxForks: cfg.MaxForks,
		Instance: s.Instance, Owning: s.owning, TakeoverGrace: opt.TakeoverGrace, Apps: p.Apps, HEP: hepQuality})
	// A store that lost its records (a Redis restarted without
	// persistence) gets every live call's and registration's again.
	s.State.OnLost(s.Engine.RewriteState)
	s.State.OnLost(s.Registry.RewriteState)
	s.watchStoreLoss()
	if p.Apps != nil {
		s.Metrics.Registry.MustRegister(p.Apps.Hooks().Collectors()...)
	}
	if ups != nil {
		// Trunk mode: presence goes to and comes from the PBX.
		s.PresenceSIP = sipbridge.New(sipbridge.Config{Upstream: s.Engine, Book: s.Presence,
			Entity: func(user string) string {
				host := sipHost
				if o := ups.Order(); len(o) > 0 {
					host = o[0].Host()
				}
				return "sip:" + user + "@" + host
			}, Log: log.With("component", "presence-sip")})
		s.Metrics.Registry.MustRegister(s.PresenceSIP.Collectors()...)
	}
	s.WS.OnClose(func(flow string) {
		if s.handingOver.Load() {
			// The browser reconnects to the next control plane, which
			// has its bindings and calls: nothing ends, nothing is
			// unregistered upstream.
			return
		}
		f := s.flows.Load()
		if f != nil && f.TakeMoved(flow) {
			// A peer's browser flow whose holder handed it over or died:
			// the browser comes back on a new flow, the calls wait for it.
			s.Engine.FlowMoved(flow)
			return
		}
		s.Engine.FlowClosed(flow)
		s.Registrar.FlowClosed(flow)
		if f != nil {
			f.LocalClosed(flow) // the peers' dialogs on it end too
		}
	})
	// All in one, the sessions a previous process saved are re-created
	// first, so that the calls below find them on the in-process node.
	ctx, cancel := context.WithTimeout(context.Background(), startLoadTimeout)
	if _, inMemory := s.store.(*state.Memory); s.local != nil && !inMemory { // nothing outlives the process in memory
		var mine func(string) bool // a store of its own: every saved session
		if state.IsShared(s.store) {
			// This instance's (a restart with the same --instance-id) and
			// those of instances holding no lease (a previous run under
			// another id); never a live peer's: they are on its host and
			// ports.
			dead := map[string]bool{}
			mine = func(inst string) bool {
				if inst == s.Instance || inst == "" {
					return true
				}
				d, seen := dead[inst]
				if !seen {
					held, err := cluster.LeaseHeld(ctx, s.store, inst)
					d = err == nil && !held // unsure: not ours
					dead[inst] = d
				}
				return d
			}
		}
		s.keeper = newSessionKeeper(s.local.Engine(), s.State, log.With("component", "sessions"), mine)
		s.State.OnLost(s.keeper.rewrite)
		if n, err := s.keeper.restore(ctx); err != nil {
			log.Warn("state store: dataplane sessions not read; calls that had media here end", "err", err)
		} else if n > 0 {
			log.Info("dataplane sessions re-created from the state store", "sessions", n)
		}
	}
	// Calls a previous control plane left in the state store go on: their
	// dialogs come back and their sessions are adopted from the nodes.
	// With a shared store only this process's and dead peers' (package
	// cluster).
	s.joinCluster()
	restored, rerr := s.restoreCalls(ctx)
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
	var elsewhere map[string]bool
	if rerr == nil {
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		keep, kerr := s.keepSession(ctx, restored)
		if kerr != nil {
			rerr = kerr
			log.Warn("state store: calls not read again; dataplane sessions and the CDR journal are left alone", "err", kerr)
		} else if reaped, err = s.Pool.ReapSessions(ctx, keep); err != nil {
			log.Warn("could not list dataplane sessions", "err", err)
		} else if len(reaped) > 0 {
			log.Info("deleted orphaned dataplane sessions", "count", len(reaped))
		}
		elsewhere = s.callsElsewhere(ctx)
		cancel()
	}
	if s.journal != nil && rerr == nil {
		// Calls the previous process left open and that do not go on get
		// their record: the final counters of their session when a node
		// still had it, else the last interim. Those a peer carries on
		// are closed without one (the peer writes it).
		byCall := map[string]*pb.Session{}
		for _, rs := range reaped {
			byCall[rs.GetLabels()[dpool.LabelCall]] = rs
		}
		n, err := cdr.RecoverExcept(s.journal, s.CDR, reasonRestart, func(id string) bool { return restored.Calls[id] || elsewhere[id] },
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
		for id := range elsewhere {
			if !restored.Calls[id] {
				s.journal.End(id)
			}
		}
	}
	if err := s.Stack.Start(s.WS); err != nil {
		return nil, err
	}
	s.Engine.Ready()
	if m := s.member.Load(); m != nil {
		m.Start()
	}

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
	if s.keeper != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.keeper.run(s.stop) }()
	}
	mode := "standalone"
	if ups != nil {
		mode = "trunk " + strings.Join(cfg.Upstream, ", ")
	}
	log.Info("strait started", "mode", mode, "http", s.HTTPAddr(), "ws", s.WSURL(), "sip", s.SIPAddr(),
		"sip_host", sipHost, "open_registration", ups == nil && digest == nil, "state", s.store.Name(), "instance", s.Instance)
	return s, nil
}

// startLoadTimeout bounds each read of the state store at start.
const startLoadTimeout = 10 * time.Second

// digestKeyName is the secret nonces are signed with.
const digestKeyName = "digest-key"

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

// userNames lists the configured users (standalone --user), for the
// address book.
func (s *Server) userNames() []string {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	out := make([]string, 0, len(s.users)+len(s.contacts))
	for _, u := range s.users {
		out = append(out, u.Name)
	}
	for _, c := range s.contacts {
		out = append(out, c.User)
	}
	return out
}

// contactNames maps the --contacts-file users to their names.
func (s *Server) contactNames() map[string]string {
	out := make(map[string]string, len(s.contacts))
	for _, c := range s.contacts {
		if c.Name != "" {
			out[c.User] = c.Name
		}
	}
	return out
}
