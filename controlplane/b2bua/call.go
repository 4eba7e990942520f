package b2bua

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
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
type leg struct {
	c    *Call
	idx  int // 0: the caller's side, 1: the callee's
	d    *dialog
	kind legKind
	// acks delivers ACKs for 2xx responses Strait sent on this dialog.
	acks chan *sip.Request
	// info: the peer listed INFO in Allow (so DTMF may go as SIP INFO).
	info bool
}

// Call is one call: the caller's leg, the callee's leg (none for the
// echo extension) and one dataplane session. Its methods are safe for
// concurrent use.
type Call struct {
	// ID is the call's id, as the API and CDRs name it (never a SIP
	// Call-ID).
	ID string

	e    *Engine
	log  *slog.Logger
	m    *media
	legs [2]*leg
	sub  bool // a SUBSCRIBE relay: dialogs, no media
	api  bool
	// release gives back the caller's dial-plan slot; set before the call
	// is registered, called once by finish (nil: none taken).
	release func()

	mu        sync.Mutex // guards the fields below
	state     State
	start     time.Time
	answer    time.Time
	caller    string
	callee    string
	direction string
	busy      bool               // an offer/answer exchange is running
	out       context.CancelFunc // cancels the callee's INVITE
	outCause  int
	outReason string
	subTimer  *time.Timer

	done    chan struct{}
	endOnce sync.Once
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
}

func (e *Engine) newCall(caller, callee string) *Call {
	id := sip.GenerateTagN(20)
	c := &Call{ID: id, e: e, caller: caller, callee: callee, start: time.Now(), done: make(chan struct{})}
	c.log = e.log.With("call", id)
	return c
}

// State returns the call's state.
func (c *Call) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the call has ended and its session is deleted.
func (c *Call) Done() <-chan struct{} { return c.done }

// Info describes the call.
func (c *Call) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := Info{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, State: c.state.String(), Start: c.start}
	if !c.answer.IsZero() {
		t := c.answer
		in.Answer = &t
	}
	if c.m != nil {
		in.Session = c.m.sessionID()
	}
	return in
}

func (c *Call) setState(s State) {
	c.mu.Lock()
	old := c.state
	if old == StateEnded || old == s {
		c.mu.Unlock()
		return
	}
	c.state = s
	if s == StateAnswered {
		c.answer = time.Now()
	}
	caller, callee := c.caller, c.callee
	c.mu.Unlock()
	if !c.sub {
		c.e.cfg.Metrics.CallState(old.String(), s.String())
		c.e.emit(Event{Call: c.ID, State: s.String(), Time: time.Now(), Caller: caller, Callee: callee})
	}
}

// begin marks an offer/answer exchange; false means one is running
// (glare: the request gets 491, RFC 3261 section 14.2).
func (c *Call) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy || c.state == StateEnded {
		return false
	}
	c.busy = true
	return true
}

func (c *Call) finishExchange() {
	c.mu.Lock()
	c.busy = false
	c.mu.Unlock()
}

func (c *Call) other(l *leg) *leg { return c.legs[1-l.idx] }

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
