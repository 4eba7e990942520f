package b2bua

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/internal/logging"
)

// State is a call's state.
type State int

// Call states.
const (
	// StateRinging: the callee was asked and has not answered.
	StateRinging State = iota
	// StateEarly: the callee sent early media (183 with SDP).
	StateEarly
	// StateAnswered: both dialogs are up.
	StateAnswered
	// StateEnded: the call is over; its session is deleted.
	StateEnded
)

// String returns the state's name as the API and metrics show it.
func (s State) String() string {
	switch s {
	case StateRinging:
		return "ringing"
	case StateEarly:
		return "early"
	case StateAnswered:
		return "answered"
	}
	return "ended"
}

// Timeouts of one SIP exchange inside a call.
const (
	// requestTimeout bounds a non-INVITE request Strait passes on (Timer F
	// is 64*T1 = 32 s; a peer that has not answered in 16 s will not).
	requestTimeout = 16 * time.Second
	// reinviteTimeout bounds a re-INVITE passed to the other leg.
	reinviteTimeout = 32 * time.Second
	// cancelWait is how long Strait waits for the 487 after a CANCEL.
	cancelWait = 8 * time.Second
	// byeTimeout bounds the BYE Strait sends when a call ends.
	byeTimeout = 8 * time.Second
)

// leg is one side of a call: a SIP dialog, or none for an API client.
// Its fields are set before the call is published and never written
// again, except info and timer (see there).
type leg struct {
	c    *Call
	idx  int     // 0: the caller's side, 1: the callee's
	d    *dialog // nil for an API client (or the echo extension's absent leg)
	kind legKind
	// acks delivers ACKs for 2xx responses Strait sent on this dialog
	// (sent by onAck without blocking, read by the call's loop).
	acks chan *sip.Request
	// rel sends the caller's provisionals reliably when its INVITE
	// required 100rel (nil otherwise; see prack.go).
	rel *reliableUAS
	// info: the peer listed INFO in Allow (so DTMF may go as SIP INFO).
	// Written by the call's loop when the callee answers, read by
	// SendDTMF on an API goroutine.
	info atomic.Bool
	// timer is the leg's session timer (sessiontimer.go), guarded by its
	// own lock.
	timer legTimer
	// back is set while the call waits for this leg's browser to come
	// back on a new flow (awaitBrowser: a takeover, or a holder that
	// handed over or died) and closed once it is back or the wait gave
	// up: a BYE for the leg waits for it (bye), so that a hang-up from
	// the other side meanwhile reaches the browser on its new flow.
	// Stored by whoever starts the wait, closed by awaitBrowser.
	back atomic.Pointer[browserWait]
}

// browserWait is a leg's wait for its browser to come back (leg.back):
// back is closed when the wait ends.
type browserWait struct{ back chan struct{} }

// Call is one call: the caller's leg, the callee's leg (none for the
// echo extension) and one dataplane session. Its exported methods are
// safe for concurrent use.
//
// Ownership. A call is owned by one goroutine, its loop (loop.go), from
// the moment it is published (Engine.register) to its end: the INVITE's
// (or SUBSCRIBE's) handler goroutine for a SIP caller, a goroutine of its
// own for an API call. The fields in the first block are written before
// the call is published and never again, so any goroutine reads them.
// The second block is the loop's hand-off to other goroutines, each field
// safe for concurrent use. The last block belongs to the loop alone: no
// other goroutine reads or writes it, and no lock guards it. Others ask
// the loop for changes through inbox (in-dialog requests) or stop (ending
// the call), and read what it publishes in view.
type Call struct {
	// ID is the call's id, as the API and CDRs name it (never a SIP
	// Call-ID).
	ID string

	// Frozen before publication.
	e   *Engine
	log *slog.Logger
	// legs are the caller's side and the callee's. Both are frozen before
	// publication, except the callee's of a call that rings several
	// registrations (ringall.go): nil until a fork answers, then written
	// once by the loop under legsMu. The loop reads legs directly; other
	// goroutines read them through legsNow.
	legs   [2]*leg
	legsMu sync.Mutex
	sub    bool      // a SUBSCRIBE relay: dialogs, no media
	api    bool      // placed through the HTTP API
	app    *apps.App // the web app the callee's leg is (app.go); nil for SIP
	// release gives back the caller's dial-plan slot (nil: none taken);
	// end calls it once.
	release func()
	// slot: the call holds a dial-plan slot of its caller's (so a call
	// restored after a restart takes one again, see Restore).
	slot   bool
	caller string
	callee string
	// direction is frozen too, except a call that rings several
	// registrations: its loop sets it when one answers (only the loop
	// reads it after publication).
	direction string
	start     time.Time
	// ctx is the parent of every context of the call's I/O: a child of
	// the engine's, cancelled at the shutdown deadline, and by end once
	// the call is over. (Per call, so that calls do not contend on one
	// context's lock.)
	ctx    context.Context
	cancel context.CancelFunc

	// Hand-off between the loop and everyone else.
	inbox    chan message                // requests for the loop; see deliver
	answers  chan appAnswer              // an app's answer through the API (app.go); read while the app rings
	appOver  chan struct{}               // closed when the app stopped ringing (runApp returned): answers is read no more
	stopReq  atomic.Pointer[stopRequest] // the first request to end the call
	stopping chan struct{}               // closed by the first stop
	view     atomic.Pointer[Info]        // the loop's last published description
	forking  atomic.Bool                 // the loop rings several registrations (ringall.go)
	sample   atomic.Pointer[mediaSample] // media counters of the last interim (interimLoop writes)
	done     chan struct{}               // closed by the loop once the call has ended
	over     chan struct{}               // closed by end once the call is over here (CDR written, unlisted), before the peers' answers to its BYEs

	// Owned by the loop.
	state    State
	answer   time.Time
	m        *media      // nil for a subscription relay
	busy     bool        // an offer/answer exchange is running
	gone     [2]bool     // the leg sent BYE or its connection closed: no BYE to it
	deferred []message   // requests kept for when the loop is free
	subTimer *time.Timer // a subscription relay's expiry

	// savedMu guards saved, the record last written to the state store
	// (persist, forget, Engine.RewriteState). It is held across the
	// Writer's Put and Delete (no I/O), so that a rewrite never puts back
	// a record the loop has replaced or deleted meanwhile.
	savedMu sync.Mutex
	saved   []byte
}

// Info describes a call for the API.
type Info struct {
	// ID is the call's id.
	ID string `json:"id"`
	// Caller and Callee are the user parts of the two sides ("api" for a
	// web app without a name).
	Caller string `json:"caller"`
	Callee string `json:"callee"`
	// Direction is browser-to-sip, sip-to-browser, browser-to-browser,
	// api, echo or sip-to-sip.
	Direction string `json:"direction"`
	// State is ringing, early, answered or ended.
	State string `json:"state"`
	// Start is when the call arrived; Answer when it was answered.
	Start  time.Time  `json:"start"`
	Answer *time.Time `json:"answer,omitempty"`
	// Session is the dataplane session id.
	Session string `json:"session,omitempty"`
	// App is the web app the call was routed to (--app), if any.
	App string `json:"app,omitempty"`
	// Media are each leg's media counters and quality as the last interim
	// sample (every InterimInterval) saw them, without the per-interval
	// series (the CDR has it); absent before the first sample.
	Media []cdr.LegMedia `json:"media,omitempty"`

	// sipCallIDs are the legs' SIP Call-IDs ("" for a leg without a
	// dialog), for HEP quality reports.
	sipCallIDs []string
}

// newCall makes a call's frozen part; the caller fills in its legs,
// direction and media before publishing it with Engine.register.
func (e *Engine) newCall(caller, callee string) *Call {
	id := sip.GenerateTagN(20)
	ctx, cancel := context.WithCancel(e.ctx)
	return &Call{ID: id, e: e, caller: caller, callee: callee, start: time.Now(), ctx: ctx, cancel: cancel,
		log:   e.log.With(logging.KeyCall, id, "caller", caller, "callee", callee),
		inbox: make(chan message, inboxSize), answers: make(chan appAnswer), appOver: make(chan struct{}), stopping: make(chan struct{}), done: make(chan struct{}), over: make(chan struct{})}
}

// State returns the call's state as its loop last published it.
func (c *Call) State() State {
	if v := c.view.Load(); v != nil {
		return stateOf(v.State)
	}
	return StateRinging
}

func stateOf(s string) State {
	for st := StateRinging; st < StateEnded; st++ {
		if st.String() == s {
			return st
		}
	}
	return StateEnded
}

// Done is closed when the call has ended and its session is deleted.
func (c *Call) Done() <-chan struct{} { return c.done }

// Info describes the call: a snapshot its loop published, never waiting
// for the loop.
func (c *Call) Info() Info {
	in := Info{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, State: StateRinging.String(), Start: c.start, App: c.appName()}
	if v := c.view.Load(); v != nil {
		in = *v
	}
	if s := c.sample.Load(); s != nil {
		in.Media = liveMedia(s.media)
	}
	return in
}

// publish stores a fresh snapshot of the call for Info. Loop only.
func (c *Call) publish() {
	in := &Info{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, State: c.state.String(), Start: c.start, App: c.appName()}
	if !c.answer.IsZero() {
		t := c.answer
		in.Answer = &t
	}
	if c.m != nil {
		in.Session = c.m.sessionID()
	}
	in.sipCallIDs = make([]string, len(c.legs))
	for i, l := range c.legs {
		if l != nil && l.d != nil {
			in.sipCallIDs[i] = l.d.callID
		}
	}
	c.view.Store(in)
}

// setState moves the call to state s, publishes it and tells the API's
// watchers. Loop only.
func (c *Call) setState(s State) {
	old := c.state
	if old == StateEnded || old == s {
		return
	}
	c.state = s
	if s == StateAnswered {
		c.answer = time.Now()
		c.journalAnswered(c.answer, c.direction)
	}
	c.publish()
	if !c.sub {
		if s == StateAnswered {
			c.e.cfg.Metrics.CallAnswered(c.direction, c.answer.Sub(c.start))
		}
		c.e.cfg.Metrics.CallState(old.String(), s.String())
		c.e.emit(Event{Call: c.ID, State: s.String(), Time: time.Now(), Caller: c.caller, Callee: c.callee, App: c.appName()})
	}
}

// begin marks an offer/answer exchange; false means one is running
// (glare: the request gets 491, RFC 3261 section 14.2). Loop only.
func (c *Call) begin() bool {
	if c.busy || c.state == StateEnded {
		return false
	}
	c.busy = true
	return true
}

// finishExchange ends the exchange begin started. Loop only.
func (c *Call) finishExchange() { c.busy = false }

func (c *Call) other(l *leg) *leg { return c.legsNow()[1-l.idx] }

// legsNow returns the call's legs; safe on any goroutine (see legs).
func (c *Call) legsNow() [2]*leg {
	c.legsMu.Lock()
	defer c.legsMu.Unlock()
	return c.legs
}

// setCallee makes l the callee's leg of a call that rang several
// registrations, once one answered. Loop only.
func (c *Call) setCallee(l *leg) {
	c.legsMu.Lock()
	c.legs[1] = l
	c.legsMu.Unlock()
}

// direction names a call for CDRs.
func direction(a, b *leg, api bool) string {
	switch {
	case b == nil:
		return "echo"
	case api:
		return "api"
	case a.kind == kindWebRTC && b.kind == kindWebRTC:
		return "browser-to-browser"
	case a.kind == kindWebRTC:
		return "browser-to-sip"
	case b.kind == kindWebRTC:
		return "sip-to-browser"
	}
	return "sip-to-sip"
}
