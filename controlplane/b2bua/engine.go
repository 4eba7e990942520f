package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
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
	// Upstream is the PBX or trunk; nil is standalone mode.
	Upstream *config.Upstream
	// Digest authenticates callers in standalone mode that have not
	// registered from where they call; nil accepts everyone.
	Digest *registrar.Digest
	// Pool holds the dataplane nodes.
	Pool *dpool.Pool
	// TrunkPolicy is what plain legs may carry; SDES offers RTP/SAVP.
	TrunkPolicy sdp.Policy
	SDES        bool
	// CDR receives a record per ended call; Metrics counts; both may be
	// nil. Log is the logger.
	CDR     *cdr.Store
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// RingTimeout bounds an unanswered INVITE; OptionsInterval paces the
	// upstream keepalive (0: none).
	RingTimeout     time.Duration
	OptionsInterval time.Duration
	// MediaTimeout is the silence after which the dataplane reports
	// MEDIA_TIMEOUT and Strait hangs up (0: the node's default).
	MediaTimeout time.Duration
}

// Engine routes SIP requests to calls and holds them. It is safe for
// concurrent use.
type Engine struct {
	cfg Config
	st  *sipnet.Stack
	log *slog.Logger

	mu        sync.Mutex // guards the fields below
	calls     map[string]*Call
	dialogs   map[string]*leg // by key(Call-ID, our tag)
	ownIDs    map[string]bool // Call-IDs Strait generated (loop detection)
	watchers  map[chan Event]struct{}
	closing   bool
	upstream  bool // last OPTIONS ping answered
	upAddrs   []netip.Addr
	upAt      time.Time // when upAddrs were resolved
	pinged    bool      // a ping has completed
	handlerWG sync.WaitGroup

	stop chan struct{}
	wg   sync.WaitGroup
}

// New creates an engine and registers its handlers on the stack's server.
func New(cfg Config) *Engine {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = config.DefaultRingTimeout
	}
	e := &Engine{cfg: cfg, st: cfg.Stack, log: cfg.Log, calls: map[string]*Call{}, dialogs: map[string]*leg{},
		ownIDs: map[string]bool{}, watchers: map[chan Event]struct{}{}, stop: make(chan struct{})}
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
		if !e.admit(req, tx) {
			return
		}
		cfg.Registrar.Handle(req, tx)
	}))
	srv.OnNoRoute(e.wrap(func(req *sip.Request, tx sip.ServerTransaction) {
		e.st.Respond(tx, req, 405, "", nil, sip.NewHeader("Allow", allow))
	}))
	if cfg.Pool != nil {
		cfg.Pool.OnEvent(e.onDataplaneEvent)
	}
	if cfg.Upstream != nil && cfg.OptionsInterval > 0 {
		e.wg.Add(1)
		go e.pingUpstream()
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
		e.handlerWG.Add(1)
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

// maxForwards is what Strait sends on: one less than received.
func maxForwards(req *sip.Request) *sip.MaxForwardsHeader {
	n := sip.MaxForwardsHeader(70)
	if req == nil {
		return &n
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() > 0 {
		n = sip.MaxForwardsHeader(mf.Val() - 1)
	}
	return &n
}

// Close hangs up every call and stops background work.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return
	}
	e.closing = true
	calls := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		calls = append(calls, c)
	}
	e.mu.Unlock()
	close(e.stop)
	for _, c := range calls {
		c.Hangup(503, "shutdown")
	}
	for _, c := range calls {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	}
	e.wg.Wait()
	waitTimeout(&e.handlerWG, 5*time.Second)
	e.mu.Lock()
	for ch := range e.watchers {
		close(ch)
		delete(e.watchers, ch)
	}
	e.mu.Unlock()
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// side classifies where a request came from.
type side int

const (
	fromBrowser  side = iota + 1 // a WebSocket flow
	fromUpstream                 // the configured PBX
	fromDevice                   // a SIP device (standalone mode)
)

func (e *Engine) sideOf(req *sip.Request) (side, bool) {
	if sipnet.IsWebSocket(req.Transport()) {
		return fromBrowser, true
	}
	if u := e.cfg.Upstream; u != nil {
		host, _, err := sip.ParseAddr(req.Source())
		if err == nil && e.isUpstream(host) {
			return fromUpstream, true
		}
		return 0, false
	}
	return fromDevice, true
}

// upstreamTTL is how long the upstream's resolved addresses are trusted
// (a PBX named by DNS may move).
const upstreamTTL = time.Minute

// isUpstream reports whether a source IP is the upstream's: its literal
// address, or one its name resolves to.
func (e *Engine) isUpstream(ip string) bool {
	host := e.cfg.Upstream.Host
	src, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	src = src.Unmap()
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.Unmap() == src
	}
	e.mu.Lock()
	if time.Since(e.upAt) > upstreamTTL {
		e.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		e.mu.Lock()
		if err == nil {
			e.upAddrs, e.upAt = addrs, time.Now()
		} else {
			e.log.Warn("cannot resolve the upstream", "host", host, "err", err)
		}
	}
	defer e.mu.Unlock()
	for _, a := range e.upAddrs {
		if a.Unmap() == src {
			return true
		}
	}
	return false
}

// target is where a request for a user goes.
type target struct {
	echo     bool
	upstream bool
	binding  registrar.Binding
	user     string // the callee's user part
}

// resolve finds where an out-of-dialog request from s for user goes.
func (e *Engine) resolve(s side, user string, invite bool) (target, error) {
	if e.cfg.Upstream != nil {
		switch s {
		case fromBrowser:
			return target{upstream: true, user: user}, nil
		case fromUpstream:
			if b, ok := e.cfg.Registry.ByKey(user); ok {
				return e.reachable(b, user)
			}
			if e.cfg.Registry.FlowFailed(user) {
				return target{}, errFlowFailed
			}
			if bs := e.cfg.Registry.Lookup(user); len(bs) > 0 {
				return e.reachable(bs[0], user)
			}
			if e.cfg.Registry.FlowFailedAOR(user) {
				return target{}, errFlowFailed
			}
			return target{}, errOffline
		}
		return target{}, sipError(403, "", nil)
	}
	if invite && user == EchoUser {
		return target{echo: true, user: user}, nil
	}
	if bs := e.cfg.Registry.Lookup(user); len(bs) > 0 {
		return e.reachable(bs[0], user)
	}
	if e.cfg.Registry.FlowFailedAOR(user) {
		return target{}, errFlowFailed
	}
	if e.cfg.Digest != nil && !e.cfg.Digest.Known(user) {
		return target{}, errNoRoute
	}
	return target{}, errOffline
}

// reachable checks that a browser binding's flow is still there.
func (e *Engine) reachable(b registrar.Binding, user string) (target, error) {
	if b.WebSocket() && e.cfg.Flows != nil && !e.cfg.Flows.Open(b.Source) {
		return target{}, errFlowFailed
	}
	return target{binding: b, user: b.AOR}, nil
}

// authorize decides whether a standalone-mode caller may place a request:
// it registered from where it calls, or answers a digest challenge (407).
// It reports false after answering the request itself.
func (e *Engine) authorize(req *sip.Request, tx sip.ServerTransaction, s side) bool {
	if e.cfg.Upstream != nil {
		return s != 0
	}
	d := e.cfg.Digest
	if d == nil {
		return true
	}
	user := req.From().Address.User
	for _, aor := range e.cfg.Registry.FromSource(req.Source()) {
		if aor == user {
			return true
		}
	}
	auth := ""
	if h := req.GetHeader("Proxy-Authorization"); h != nil {
		auth = h.Value()
	}
	verdict, who := d.Check(auth, string(req.Method))
	if verdict == registrar.Granted && who == user {
		return true
	}
	e.st.Respond(tx, req, 407, "", nil, sip.NewHeader("Proxy-Authenticate", d.Challenge(verdict == registrar.Stale)))
	return false
}

func (e *Engine) addDialog(l *leg) {
	k := l.d.key()
	e.mu.Lock()
	e.dialogs[k] = l
	if !l.d.uas {
		e.ownIDs[l.d.callID] = true
	}
	e.mu.Unlock()
}

func (e *Engine) removeDialog(l *leg) {
	if l == nil || l.d == nil {
		return
	}
	k := l.d.key()
	e.mu.Lock()
	if e.dialogs[k] == l {
		delete(e.dialogs, k)
	}
	if !l.d.uas {
		delete(e.ownIDs, l.d.callID)
	}
	e.mu.Unlock()
}

// legOf finds the leg an in-dialog request (or ACK) belongs to.
func (e *Engine) legOf(req *sip.Request) *leg {
	tag, _ := req.To().Params.Get("tag")
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dialogs[key(req.CallID().Value(), tag)]
}

func (e *Engine) onAck(req *sip.Request, _ sip.ServerTransaction) {
	if req.CallID() == nil || req.To() == nil {
		return
	}
	if l := e.legOf(req); l != nil {
		select {
		case l.acks <- req:
		default:
		}
	}
}

// onCancel sees CANCELs sipgo did not match to an INVITE transaction.
func (e *Engine) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	e.st.Respond(tx, req, 481, "", nil)
}

// onOptions answers OPTIONS outside a dialog; inside one it is passed on.
func (e *Engine) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		e.onInDialog(req, tx)
		return
	}
	if !e.admit(req, tx) {
		return
	}
	e.st.Respond(tx, req, 200, "", nil, sip.NewHeader("Allow", allow),
		sip.NewHeader("Accept", "application/sdp"), sip.NewHeader("Supported", "timer, outbound"))
}

// pingUpstream sends OPTIONS to the upstream every OptionsInterval and
// records whether it answers (any response means alive).
func (e *Engine) pingUpstream() {
	defer e.wg.Done()
	// The first ping waits an interval too: a PBX that just started is
	// given time, and a scripted test PBX sees calls before pings.
	t := time.NewTicker(e.cfg.OptionsInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		up := e.cfg.Upstream
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: up.Host, Port: up.Port})
		local := sip.Uri{Scheme: "sip", User: "strait", Host: e.st.Host()}
		from := &sip.FromHeader{Address: local, Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(16))
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: up.Host}, Params: sip.NewParams()})
		cid := sip.CallIDHeader(sip.GenerateTagN(24))
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
		e.st.Prepare(req, sipnet.Route{Transport: up.Transport, Dest: up.Addr()})
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		res, err := e.st.Do(ctx, req)
		cancel()
		alive := err == nil && res != nil
		e.mu.Lock()
		changed := !e.pinged || alive != e.upstream
		e.upstream, e.pinged = alive, true
		e.mu.Unlock()
		e.cfg.Metrics.SetUpstreamUp(alive)
		if changed {
			if alive {
				e.log.Info("upstream answers OPTIONS", "upstream", up.Addr())
			} else {
				e.log.Warn("upstream does not answer OPTIONS", "upstream", up.Addr(), "err", err)
			}
		}
	}
}

// UpstreamUp reports whether the upstream answered the last OPTIONS ping
// (true when there is no upstream, no pinging, or no ping yet).
func (e *Engine) UpstreamUp() bool {
	if e.cfg.Upstream == nil || e.cfg.OptionsInterval == 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.pinged || e.upstream
}

// onDataplaneEvent ends calls whose media stopped or whose DTLS failed.
func (e *Engine) onDataplaneEvent(ev *pb.Event) {
	id := ev.GetLabels()[dpool.LabelCall]
	if id == "" {
		return
	}
	e.mu.Lock()
	c := e.calls[id]
	e.mu.Unlock()
	if c == nil {
		return
	}
	switch ev.GetType() {
	case pb.EventType_EVENT_TYPE_MEDIA_TIMEOUT:
		if c.State() == StateAnswered {
			c.log.Info("media timeout", "leg", ev.GetLeg())
			go c.Hangup(408, "media timeout")
		}
	case pb.EventType_EVENT_TYPE_DTLS_FAILED:
		c.log.Warn("DTLS failed", "leg", ev.GetLeg(), "detail", ev.GetDetail())
		go c.Hangup(488, "dtls failed")
	}
}

// FlowClosed ends the calls (and subscriptions) that had a leg on a
// browser's WebSocket that closed: the browser is gone, so the other leg
// gets BYE (or CANCEL while ringing) and the session is deleted.
func (e *Engine) FlowClosed(flow string) {
	for _, c := range e.snapshot() {
		for _, l := range c.legs {
			if l != nil && l.d != nil && l.d.flow == flow {
				c.log.Info("browser connection lost", "leg", l.idx)
				c.lost(l)
				break
			}
		}
	}
}

// Calls returns every call in progress.
func (e *Engine) Calls() []Info {
	e.mu.Lock()
	calls := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		calls = append(calls, c)
	}
	e.mu.Unlock()
	out := make([]Info, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.Info())
	}
	return out
}

// Call returns a call in progress by id.
func (e *Engine) Call(id string) (*Call, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.calls[id]
	return c, ok
}

// ActiveSessions lists the dataplane sessions of calls in progress (for
// reaping orphans after a restart).
func (e *Engine) ActiveSessions() map[string]bool {
	out := map[string]bool{}
	for _, c := range e.snapshot() {
		if c.m != nil {
			if id := c.m.sessionID(); id != "" {
				out[id] = true
			}
		}
	}
	return out
}

func (e *Engine) snapshot() []*Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		out = append(out, c)
	}
	return out
}

// Event is a change of a call's state, for the API's event stream.
type Event struct {
	// Call is the call id.
	Call string `json:"call"`
	// State is ringing, early, answered or ended.
	State string `json:"state"`
	// Time of the change.
	Time time.Time `json:"time"`
	// Cause is the SIP status that ended a call.
	Cause int `json:"cause,omitempty"`
	// Reason says who or what ended it.
	Reason string `json:"reason,omitempty"`
	// Caller is the caller's user part.
	Caller string `json:"caller,omitempty"`
	// Callee is the callee's user part.
	Callee string `json:"callee,omitempty"`
}

// watchBuffer is how many events a slow watcher may lag before it loses
// some.
const watchBuffer = 64

// Watch returns a channel of call events and a function that stops it.
func (e *Engine) Watch() (<-chan Event, func()) {
	ch := make(chan Event, watchBuffer)
	e.mu.Lock()
	if e.closing {
		close(ch)
		e.mu.Unlock()
		return ch, func() {}
	}
	e.watchers[ch] = struct{}{}
	e.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			if _, ok := e.watchers[ch]; ok {
				delete(e.watchers, ch)
				close(ch)
			}
			e.mu.Unlock()
		})
	}
}

func (e *Engine) emit(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.watchers {
		select {
		case ch <- ev:
		default: // a slow reader loses events rather than stalling calls
		}
	}
}

func (e *Engine) register(c *Call) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return sipError(503, "", errors.New("shutting down"))
	}
	e.calls[c.ID] = c
	if !c.sub {
		e.cfg.Metrics.CallState("", StateRinging.String())
	}
	return nil
}

func (e *Engine) unregister(c *Call) {
	e.mu.Lock()
	delete(e.calls, c.ID)
	e.mu.Unlock()
}
