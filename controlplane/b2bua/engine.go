package b2bua

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/authguard"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/hep"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// EchoUser is the standalone echo extension's user part (sip:echo@...).
const EchoUser = "echo"

// Config configures an Engine.
type Config struct {
	// Stack is the SIP stack; the engine registers its handlers on it.
	Stack *sipnet.Stack
	// Registry holds the bindings calls are routed to; Registrar handles
	// REGISTER.
	Registry  *registrar.Registry
	Registrar *registrar.Registrar
	// Flows tells whether a browser's WebSocket is still connected.
	Flows interface{ Open(flow string) bool }
	// OnMessage, when set, is offered every out-of-dialog MESSAGE Strait
	// accepts (sender authorised), with the sender's and recipient's
	// users, for the recipient's HTTP API listeners; it reports whether
	// any took it. It must not block. id names the message (MessageID):
	// Offline gets the same one for the same MESSAGE.
	OnMessage func(id, from, to, contentType string, body []byte) bool
	// Offline, when set, is offered a MESSAGE for one of Strait's own
	// users (standalone mode, or from the upstream in trunk mode) that
	// nobody took: no reachable registration and no API listener. It keeps
	// the message for later delivery and returns 202 (RFC 3428 section 7:
	// accepted, not yet delivered), or the status to refuse it with (480
	// when the user's mailbox is full), or 0 to leave the routing's
	// answer (200 when it learnt that an API listener took it meanwhile).
	// It may write to the state store but must not wait on the network.
	Offline func(id, from, to, contentType string, body []byte) int
	// OnRegistered, when set, is told the user of every REGISTER answered
	// with bindings left (a browser came online: its kept messages can go
	// out). It must not block.
	OnRegistered func(user string)
	// Apps routes callee numbers to web apps (app.go); nil routes none.
	Apps *apps.Router
	// Upstreams are the PBXs or trunks; nil is standalone mode.
	Upstreams *upstream.Set
	// UpstreamRoots are the CAs an upstream's TLS certificate must chain
	// to (nil: the system's).
	UpstreamRoots *x509.CertPool
	// Trust lists the address ranges whose SIP requests are taken besides
	// the upstreams' (in standalone mode, when not empty, the only ones).
	Trust []netip.Prefix
	// Digest authenticates callers in standalone mode that have not
	// registered from where they call; nil accepts everyone. AuthGuard
	// blocks sources that keep failing it; nil blocks nothing.
	Digest    *registrar.Digest
	AuthGuard *authguard.Guard
	// Pool holds the dataplane nodes.
	Pool *dpool.Pool
	// TrunkPolicy is what plain legs may carry; SDES offers RTP/SAVP.
	TrunkPolicy sdp.Policy
	SDES        bool
	// SharedPlainPorts puts plain legs on the node's shared ports
	// (PORT_MODE_SHARED: matched by the peer's SDP address, no NAT
	// learning) instead of a port pair each.
	SharedPlainPorts bool
	// CDR receives a record per ended call; Metrics counts; both may be
	// nil. Log is the logger.
	CDR     *cdr.Store
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// HEP, if set, gets each call leg's media quality as RTCP JSON reports
	// (HEP type 5) at every interim sample, correlated by the leg's SIP
	// Call-ID. It must not block.
	HEP interface{ Capture(hep.Message) }
	// RingTimeout bounds an unanswered INVITE; OptionsInterval paces the
	// upstream keepalive (0: none).
	RingTimeout     time.Duration
	OptionsInterval time.Duration
	// MediaTimeout is the silence after which the dataplane reports
	// MEDIA_TIMEOUT and Strait hangs up (0: the node's default).
	MediaTimeout time.Duration
	// Journal, when set, keeps each call's accounting durable while it
	// is up (start, answer, interim media counters, end), so that a crash
	// costs at most InterimInterval of it.
	Journal cdr.Journal
	// InterimInterval paces media sampling and journal interims (0:
	// DefaultInterimInterval).
	InterimInterval time.Duration
	// Guard applies the dial plan (destinations, per-user limits) to calls
	// from browsers, SIP devices and the API; nil allows everything.
	Guard *dialplan.Guard
	// PBXAuthenticatesCalls, in trunk mode, passes INVITEs from browsers
	// that did not register through Strait to the upstream, with their own
	// From: the upstream challenges every INVITE itself. Off, only a
	// WebSocket with a live registration may call, as its registered user.
	PBXAuthenticatesCalls bool
	// State, when set, writes answered calls through to the state store
	// so that a restarted control plane carries them on; while the store
	// is down new calls are refused with 503.
	State *state.Writer
	// Instance is this control plane's instance id, recorded as the owner
	// of each call it writes to the state store (package cluster: several
	// control planes on one store restore only their own calls and those
	// of a dead peer they claimed).
	Instance string
	// Owning, when set, reports whether this control plane may act for
	// its calls (cluster.Member.Owning: its lease has not expired). While
	// it does not, in-dialog requests are dropped unanswered (a peer may
	// own the call now; a retransmission is answered by whichever does,
	// this process included once it owns again), counted in FencedDrops.
	Owning func() bool
	// TakeoverGrace is how long a call taken over from a dead peer waits
	// for its browser to register again on this control plane before it
	// ends (0: DefaultTakeoverGrace).
	TakeoverGrace time.Duration
	// SessionTimerUnit is how long one second of an RFC 4028 session
	// interval lasts (0: a second; tests shorten it).
	SessionTimerUnit time.Duration
	// ShutdownTimeout bounds Close: every call is hung up in parallel
	// within it (0: config.DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// MaxForks bounds the registrations of one user a call rings at once
	// in standalone mode, the most recent first (0: DefaultMaxForks; 1:
	// only the most recent, no forking).
	MaxForks int
}

// Engine routes SIP requests to calls and holds them. It is safe for
// concurrent use.
//
// Locks: none of the control plane's locks nest, and none is held
// across I/O. Engine.mu guards the fields marked below and is held only
// while they are read or changed; each dialog's mu guards that dialog's
// changing fields the same way; dpool.Pool.mu is the pool's own. A Call
// has no lock: its loop owns it (see Call).
type Engine struct {
	// Frozen after New.
	cfg    Config
	st     *sipnet.Stack
	log    *slog.Logger
	ctx    context.Context // parent of every call's context; Close cancels it at the deadline
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close: background work ends
	// ready is closed by Ready (the SIP stack runs) or Close: restored
	// calls whose media is gone wait for it to send their BYEs.
	ready     chan struct{}
	readyOnce sync.Once

	// challenges remembers dialogs toward the upstream that got 401/407,
	// for the caller's credentialed retry (safe for concurrent use).
	challenges challenges
	// relay reaches browsers whose WebSocket another control plane holds
	// (SetRelay); nil: none.
	relay atomic.Pointer[Relay]

	mu       sync.Mutex // guards the fields below; held for map operations only
	calls    map[string]*Call
	dialogs  map[string]*leg          // by key(Call-ID, our tag)
	ownIDs   map[string]bool          // Call-IDs Strait generated (loop detection)
	subs     map[string]*Subscription // presence subscriptions Strait holds (presence.go), by dialog key
	watchers map[chan Event]struct{}
	closing  bool // Close started: no new calls
	closed   bool // the calls have ended: no new handlers (handlerWG.Add only while false)

	fencedDrops atomic.Uint64 // in-dialog requests dropped while not Owning

	handlerWG sync.WaitGroup // SIP handlers running; Add under mu while !closed
	wg        sync.WaitGroup // background goroutines started by New
}

// New creates an engine and registers its handlers on the stack's server.
func New(cfg Config) *Engine {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = config.DefaultRingTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = config.DefaultShutdownTimeout
	}
	if cfg.InterimInterval <= 0 {
		cfg.InterimInterval = DefaultInterimInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, st: cfg.Stack, log: cfg.Log, ctx: ctx, cancel: cancel, calls: map[string]*Call{},
		dialogs: map[string]*leg{}, ownIDs: map[string]bool{}, subs: map[string]*Subscription{}, watchers: map[chan Event]struct{}{}, stop: make(chan struct{}),
		ready: make(chan struct{})}
	srv := cfg.Stack.Server
	srv.OnInvite(e.wrap(e.onInvite))
	srv.OnAck(e.wrap(e.onAck))
	srv.OnBye(e.wrap(e.onInDialog))
	srv.OnCancel(e.wrap(e.onCancel))
	srv.OnUpdate(e.wrap(e.onInDialog))
	srv.OnInfo(e.wrap(e.onInDialog))
	srv.OnRefer(e.wrap(e.onInDialog))
	srv.OnPrack(e.wrap(e.onInDialog))
	srv.OnOptions(e.wrap(e.onOptions))
	srv.OnMessage(e.wrap(e.onOutOfDialog))
	srv.OnNotify(e.wrap(e.onOutOfDialog))
	srv.OnSubscribe(e.wrap(e.onOutOfDialog))
	srv.OnPublish(e.wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		e.st.Respond(tx, req, 501, "", nil)
	}))
	srv.OnRegister(e.wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		if !e.admit(req, tx) || !e.trustedSource(req, tx) {
			return
		}
		cfg.Registrar.Handle(req, tx)
		if to := req.To(); cfg.OnRegistered != nil && to != nil && len(cfg.Registry.Lookup(to.Address.User)) > 0 {
			cfg.OnRegistered(to.Address.User)
		}
	}))
	srv.OnNoRoute(e.wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		e.st.Respond(tx, req, 405, "", nil, sip.NewHeader("Allow", allow))
	}))
	cfg.Stack.OnStrayResponse(e.onStrayResponse) // late 2xx of forked INVITEs (fork.go)
	if cfg.Pool != nil {
		cfg.Pool.OnEvent(e.onDataplaneEvent)
		cfg.Pool.OnLost(e.onSessionLost)
		e.wg.Add(1)
		go e.interimLoop()
	}
	if cfg.Upstreams != nil && cfg.OptionsInterval > 0 {
		e.wg.Add(1)
		go e.pingUpstreams()
	}
	return e
}

// allow lists the methods Strait handles.
const allow = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, MESSAGE, SUBSCRIBE, NOTIFY, REFER, PRACK, REGISTER"

// wrap counts requests, keeps handlers from panicking the process, and
// tracks running handlers for Close.
func (e *Engine) wrap(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		e.cfg.Metrics.Request(string(req.Method), true)
		if !e.enter() {
			if req.Method != sip.ACK {
				e.st.Respond(tx, req, 503, "Service Unavailable: shutting down", nil)
			}
			return
		}
		e.st.Track(tx) // bounds pending server transactions (sipnet/admit.go)
		defer e.handlerWG.Done()
		defer func() {
			if r := recover(); r != nil {
				e.log.Error("[unexpected] panic handling a request", "method", req.Method, "panic", r)
				if tx != nil && req.Method != sip.ACK {
					e.st.Respond(tx, req, 500, "", nil)
				}
			}
		}()
		h(req, tx)
	}
}

// enter counts a handler in, unless Close has ended the calls already
// (then Close may be waiting on handlerWG, which must not grow from zero
// meanwhile: the Add happens under mu, before closed is set).
func (e *Engine) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.handlerWG.Add(1)
	return true
}

// admit applies the checks every request passes: Max-Forwards (RFC 3261
// section 16.3 step 2, applied by a B2BUA as by a proxy) and loops.
func (e *Engine) admit(req *sip.Request, tx sip.ServerTransaction) bool {
	if req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil {
		if req.Method != sip.ACK {
			e.st.Respond(tx, req, 400, "Bad Request: missing mandatory header", nil)
		}
		return false
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method != sip.ACK {
			e.st.Respond(tx, req, 483, "", nil)
		}
		return false
	}
	// A new request carrying a Call-ID Strait made came back to it: a
	// routing loop (in-dialog requests of Strait's UAC dialogs carry
	// them legitimately, with a To tag).
	tag, _ := req.To().Params.Get("tag")
	e.mu.Lock()
	loop := tag == "" && e.ownIDs[req.CallID().Value()]
	e.mu.Unlock()
	if loop {
		if req.Method != sip.ACK {
			e.st.Respond(tx, req, 482, "", nil)
		}
		return false
	}
	return true
}

// shutdownReserve is the part of the shutdown deadline kept for the
// calls' local work (the loops' last steps, on a loaded machine) after
// the wait for peers is cut short.
func shutdownReserve(d time.Duration) time.Duration { return min(d/5, time.Second) }

// Close ends every call and stops background work within
// Config.ShutdownTimeout. Every call is asked to end at once and ends on
// its own loop, in parallel: its session deleted, its CDR written, BYE
// (or CANCEL) to its peers. Calls whose peers have not answered by the
// deadline less shutdownReserve are cut short: the engine's context is
// cancelled, which ends every wait on the network. Close returns when the
// calls have ended, or at the deadline.
func (e *Engine) Close() { e.shutdown(false) }

// Detach stops the engine without ending the answered calls, for a
// control plane that takes them over from the state store (an upgrade, a
// handover): each is left as it is (no BYE, no CDR; its session stays on
// its node and its record in the store), its loop returns. Calls not yet
// answered, and subscription relays, end as Close ends them (they cannot
// be carried on). Detach returns within Config.ShutdownTimeout.
func (e *Engine) Detach() { e.shutdown(true) }

func (e *Engine) shutdown(detach bool) {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return
	}
	e.closing = true
	e.Ready()
	calls := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		calls = append(calls, c)
	}
	e.mu.Unlock()
	close(e.stop)
	deadline := time.Now().Add(e.cfg.ShutdownTimeout)
	for _, c := range calls {
		if detach {
			c.detachStop()
		} else {
			c.stop(503, "shutdown", nil)
		}
	}
	if n := waitCalls(calls, deadline.Add(-shutdownReserve(e.cfg.ShutdownTimeout))); n > 0 {
		e.log.Warn("shutdown: peers did not answer in time; ending calls without them", "calls", n)
	}
	e.cancel()
	if n := waitCalls(calls, deadline); n > 0 {
		e.log.Error("shutdown: calls still ending at the deadline", "calls", n)
	}
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	waitUntil(&e.handlerWG, deadline)
	e.wg.Wait()
	e.mu.Lock()
	for ch := range e.watchers {
		close(ch)
		delete(e.watchers, ch)
	}
	e.mu.Unlock()
}

// waitCalls waits until every call has ended or the deadline passes, and
// returns how many have not.
func waitCalls(calls []*Call, deadline time.Time) int {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for i, c := range calls {
		select {
		case <-c.done:
		case <-t.C:
			n := 0
			for _, c := range calls[i:] {
				select {
				case <-c.done:
				default:
					n++
				}
			}
			return n
		}
	}
	return 0
}

// waitUntil waits for wg until the deadline.
func waitUntil(wg *sync.WaitGroup, deadline time.Time) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

const (
	fromBrowser  side = iota + 1 // a WebSocket flow
	fromUpstream                 // the configured PBX
	fromDevice                   // a SIP device (standalone mode)
)
