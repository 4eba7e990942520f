package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
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

// allowsInfo reports whether a message's Allow header lists INFO.
func allowsInfo(m headers) bool {
	for _, h := range m.GetHeaders("Allow") {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), "INFO") {
				return true
			}
		}
	}
	return false
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

// webrtcVideo are the video codecs browsers share (RFC 7742 makes VP8 and
// H.264 mandatory), with their retransmission format: a browser leg takes
// video whenever the other leg does too (another browser, or a trunk
// whose --codecs lists one of them).
var webrtcVideo = []string{"VP8", "H264", "VP9", "AV1", "rtx"}

// policy is what a leg of kind k may be offered.
func (c *Call) policy(k legKind) sdp.Policy {
	if k == kindWebRTC {
		p := sdp.WebRTCPolicy()
		p.Codecs = append(p.Codecs, webrtcVideo...)
		return p
	}
	return c.e.cfg.TrunkPolicy
}

func (c *Call) mediaLeg(k legKind) *mediaLeg {
	return &mediaLeg{kind: k, policy: c.policy(k), sdes: k == kindPlain && c.e.cfg.SDES}
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

// caller is the caller's side of a call being set up: a SIP UAS dialog,
// or an API request waiting for the answer.
type caller interface {
	// progress passes a provisional response (with early media SDP).
	progress(code int, body []byte)
	// answered sends the final answer and returns the ACK that confirms
	// it (nil for an API client).
	answered(body []byte) (*sip.Request, error)
	// failed ends the caller's request with a failure.
	failed(code int, reason string, hdrs []sip.Header)
}

// sipCaller is a caller over SIP.
type sipCaller struct {
	c  *Call
	l  *leg
	tx sip.ServerTransaction
}

func (s *sipCaller) progress(code int, body []byte) {
	s.c.e.st.RespondWith(s.tx, s.l.d.response(code, "", body, sip.NewHeader("Allow", allow)))
}

func (s *sipCaller) answered(body []byte) (*sip.Request, error) {
	res := s.l.d.response(200, "", body, sip.NewHeader("Allow", allow), sip.NewHeader("Supported", "timer"))
	if err := s.c.e.st.RespondWith(s.tx, res); err != nil {
		return nil, err
	}
	return s.l.waitAck(s.tx, res, s.l.d.invite.CSeq().SeqNo)
}

func (s *sipCaller) failed(code int, reason string, hdrs []sip.Header) {
	s.c.e.st.RespondWith(s.tx, s.l.d.response(code, reason, nil, hdrs...))
}

var errNoAck = sipError(408, "", errors.New("no ACK for 2xx"))

// waitAck waits for the ACK of a 2xx Strait sent for request seq on this
// dialog, retransmitting the 2xx over UDP (RFC 3261 section 13.3.1.4).
func (l *leg) waitAck(tx sip.ServerTransaction, res *sip.Response, seq uint32) (*sip.Request, error) {
	giveUp := time.NewTimer(64 * sipnet.T1)
	defer giveUp.Stop()
	interval := sipnet.T1
	resend := time.NewTimer(interval)
	defer resend.Stop()
	if !strings.EqualFold(l.d.transport, sipnet.UDP) {
		resend.Stop()
	}
	for {
		select {
		case ack := <-l.acks:
			if ack.CSeq().SeqNo == seq {
				return ack, nil
			}
		case <-resend.C:
			tx.Respond(res)
			interval = min(2*interval, 4*time.Second)
			resend.Reset(interval)
		case <-giveUp.C:
			return nil, errNoAck
		case <-l.c.done:
			return nil, errClosed
		}
	}
}

// sdpBody parses a message's SDP body, nil when there is none.
func sdpBody(body []byte, contentType string) (*sdp.Description, error) {
	if len(body) == 0 {
		return nil, nil
	}
	if ct := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0])); ct != "" && ct != "application/sdp" {
		return nil, sipError(415, "", errors.New("body is "+ct+", not application/sdp"))
	}
	return sdp.Parse(body)
}

// headers is what requests and responses share for header access.
type headers interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
	AppendHeader(h sip.Header)
}

func contentType(m headers) string {
	if h := m.GetHeader("Content-Type"); h != nil {
		return h.Value()
	}
	return ""
}

// sessionTimerHeaders pass end to end so that the endpoints keep their
// session timers (RFC 4028): Strait relays every refresh.
var sessionTimerHeaders = []string{"Session-Expires", "Min-SE"}

func copyHeaders(from, to headers, names ...string) {
	for _, n := range names {
		for _, h := range from.GetHeaders(n) {
			to.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
}

// supportsTimer reports whether a message lists "timer" in Supported or
// Require.
func supportsTimer(m headers) bool {
	for _, n := range []string{"Supported", "Require", "k"} {
		for _, h := range m.GetHeaders(n) {
			for _, t := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(t), "timer") {
					return true
				}
			}
		}
	}
	return false
}

// outbound builds the callee's dialog toward a target, with nothing of the
// caller's dialog but the user name and display name.
func (e *Engine) outbound(tgt target, fromUser, fromName string) (*dialog, legKind) {
	if tgt.upstream {
		up := e.cfg.Upstream
		ruri := sip.Uri{Scheme: "sip", User: tgt.user, Host: up.Host, Port: up.URIPort(), UriParams: sip.NewParams(), Headers: sip.NewParams()}
		if up.Transport != sipnet.UDP {
			ruri.UriParams.Add("transport", strings.ToLower(up.Transport))
		}
		local := sip.Uri{Scheme: "sip", User: fromUser, Host: up.Host}
		remote := sip.Uri{Scheme: "sip", User: tgt.user, Host: up.Host}
		d := newUAC(e.st, ruri, local, remote, fromName, up.Transport, "")
		return d, kindPlain
	}
	b := tgt.binding
	host := e.st.Host()
	local := sip.Uri{Scheme: "sip", User: fromUser, Host: host}
	remote := sip.Uri{Scheme: "sip", User: b.AOR, Host: host}
	if b.WebSocket() {
		return newUAC(e.st, b.Contact, local, remote, fromName, b.Transport, b.Source), kindWebRTC
	}
	d := newUAC(e.st, b.Contact, local, remote, fromName, b.Transport, "")
	d.dest = b.Source // symmetric: where the device registered from
	return d, kindPlain
}

// onInvite handles an INVITE: a re-INVITE goes to its call, a new one
// makes a call.
func (e *Engine) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.To() != nil {
		if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
			e.onInDialog(req, tx)
			return
		}
	}
	if !e.admit(req, tx) {
		return
	}
	e.st.Respond(tx, req, 100, "", nil)
	s, ok := e.sideOf(req)
	if !ok {
		e.st.Respond(tx, req, 403, "Forbidden: not the upstream", nil)
		return
	}
	if !e.authorize(req, tx, s) {
		return
	}
	if req.Contact() == nil {
		e.st.Respond(tx, req, 400, "Bad Request: no Contact", nil)
		return
	}
	offer, err := sdpBody(req.Body(), contentType(req))
	if err != nil {
		code, reason := statusOf(err)
		e.st.Respond(tx, req, code, reason, nil, sip.NewHeader("Warning", `399 strait "`+sanitize(err.Error())+`"`))
		return
	}
	tgt, err := e.resolve(s, req.Recipient.User, true)
	if err != nil {
		code, reason := statusOf(err)
		e.st.Respond(tx, req, code, reason, nil)
		return
	}
	kind := kindPlain
	if s == fromBrowser {
		kind = kindWebRTC
	}
	if offer != nil && offer.IsWebRTC() != (kind == kindWebRTC) {
		e.st.Respond(tx, req, 488, "Not Acceptable Here: unexpected SDP profile", nil)
		return
	}
	from := req.From()
	c := e.newCall(from.Address.User, tgt.user)
	a := &leg{c: c, idx: 0, d: newUAS(e.st, req, tx), kind: kind, acks: make(chan *sip.Request, 4)}
	c.legs[0] = a
	if err := e.register(c); err != nil {
		e.st.Respond(tx, req, 503, "", nil)
		return
	}
	e.addDialog(a)
	c.log = c.log.With("caller", c.caller, "callee", c.callee)
	c.log.Info("call", "from", s, "transport", req.Transport())
	sc := &sipCaller{c: c, l: a, tx: tx}
	if !tx.OnCancel(func(*sip.Request) { c.cancel(487, "caller cancel") }) {
		c.finish(487, "caller cancel", nil)
		return
	}
	if tgt.echo {
		c.runEcho(offer, sc)
		return
	}
	c.runInvite(req, offer, tgt, sc, from.DisplayName)
}

// sanitize makes text safe inside a quoted header value.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// cancel stops a call that is still ringing (the caller's CANCEL, a ring
// timeout, an API hang-up).
func (c *Call) cancel(code int, reason string) {
	c.mu.Lock()
	out := c.out
	if c.outCause == 0 {
		c.outCause, c.outReason = code, reason
	}
	c.mu.Unlock()
	if out != nil {
		out()
	}
}

// runEcho answers the caller with a one-leg session that reflects its
// media.
func (c *Call) runEcho(offer *sdp.Description, cl caller) {
	a := c.legs[0]
	c.direction = "echo"
	if offer == nil {
		cl.failed(488, "Not Acceptable Here: the echo extension needs an offer", nil)
		c.finish(488, "no offer", nil)
		return
	}
	c.m = newMedia(c.e.cfg.Pool, c.ID, c.e.cfg.MediaTimeout, c.mediaLeg(a.kind))
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	ans, err := c.m.echo(ctx, offer)
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("echo refused", "err", err)
		cl.failed(code, reason, nil)
		c.finish(code, "echo: "+err.Error(), nil)
		return
	}
	c.setState(StateAnswered)
	if _, err := cl.answered(ans); err != nil {
		c.log.Info("echo: caller never confirmed", "err", err)
		c.Hangup(408, "no ack")
	}
}

// runInvite places the callee's leg and bridges it to the caller.
func (c *Call) runInvite(req *sip.Request, offer *sdp.Description, tgt target, cl caller, fromName string) {
	e := c.e
	a := c.legs[0]
	d, kind := e.outbound(tgt, c.caller, fromName)
	b := &leg{c: c, idx: 1, d: d, kind: kind, acks: make(chan *sip.Request, 4)}
	c.legs[1] = b
	c.direction = direction(a, b, c.api)
	c.m = newMedia(e.cfg.Pool, c.ID, e.cfg.MediaTimeout, c.mediaLeg(a.kind), c.mediaLeg(b.kind))

	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RingTimeout)
	defer cancel()
	c.mu.Lock()
	c.out = cancel
	pre := c.outCause
	c.mu.Unlock()
	if pre != 0 {
		cl.failed(pre, "", nil)
		c.finish(pre, c.outReason, nil)
		return
	}

	var body []byte
	var err error
	delayed := offer == nil
	if delayed {
		body, err = c.m.offerFresh(ctx, 1)
	} else {
		body, err = c.m.offer(ctx, 0, offer)
	}
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("offer refused", "err", err)
		cl.failed(code, reason, nil)
		c.finish(code, "offer: "+err.Error(), nil)
		return
	}
	inv := d.request(sip.INVITE, body, "application/sdp")
	inv.ReplaceHeader(maxForwards(req))
	inv.AppendHeader(sip.NewHeader("Allow", allow))
	if req != nil {
		copyHeaders(req, inv, sessionTimerHeaders...)
		if supportsTimer(req) {
			inv.AppendHeader(sip.NewHeader("Supported", "timer"))
		}
		if tgt.upstream {
			// The PBX challenges its users itself; its challenge went to
			// the browser and the browser's answer goes back to it.
			copyHeaders(req, inv, "Authorization", "Proxy-Authorization")
		}
	}
	e.addDialog(b)
	tx, err := e.st.Transaction(ctx, inv)
	if err != nil {
		c.log.Warn("callee unreachable", "err", err)
		cl.failed(503, "", nil)
		c.finish(503, "callee unreachable", nil)
		return
	}
	defer tx.Terminate()
	early := false
	for {
		select {
		case res := <-tx.Responses():
			e.cfg.Metrics.Response(string(sip.INVITE), res.StatusCode, true)
			switch {
			case res.StatusCode == 100:
				continue
			case res.IsProvisional():
				if tag, ok := res.To().Params.Get("tag"); ok && tag != "" {
					d.established(res)
				}
				if len(res.Body()) > 0 && !delayed {
					ans, perr := sdpBody(res.Body(), contentType(res))
					if perr == nil && ans != nil {
						out, _, aerr := c.m.answer(ctx, 1, ans, res.Body())
						if aerr == nil {
							cl.progress(183, out)
							early = true
							c.setState(StateEarly)
							continue
						}
						c.log.Info("early answer refused", "err", aerr)
					}
				}
				if !early {
					code := res.StatusCode
					if code != 180 && code != 181 && code != 182 {
						code = 180
					}
					cl.progress(code, nil)
				}
			case res.IsSuccess():
				c.bridge(ctx, tx, inv, res, cl, delayed)
				return
			default:
				code := mapFailure(res.StatusCode)
				var hdrs []sip.Header
				if (code == 401 || code == 407) && tgt.upstream {
					for _, n := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
						for _, h := range res.GetHeaders(n) {
							hdrs = append(hdrs, sip.NewHeader(n, h.Value()))
						}
					}
				} else if code == 401 || code == 407 {
					code = 403
				}
				if code == 422 {
					for _, h := range res.GetHeaders("Min-SE") {
						hdrs = append(hdrs, sip.NewHeader("Min-SE", h.Value()))
					}
				}
				reason := ""
				if code == res.StatusCode {
					reason = res.Reason
				}
				c.log.Info("callee refused", "status", res.StatusCode)
				cl.failed(code, reason, hdrs)
				c.finish(code, "callee "+strings.ToLower(sipnet.ReasonPhrase(code)), nil)
				return
			}
		case <-ctx.Done():
			c.mu.Lock()
			code, reason := c.outCause, c.outReason
			c.mu.Unlock()
			if code == 0 {
				code, reason = 408, "ring timeout"
			}
			c.cancelCallee(tx, inv)
			if code != 487 || reason != "caller cancel" {
				cl.failed(code, "", nil)
			}
			c.finish(code, reason, nil)
			return
		case <-tx.Done():
			c.log.Info("callee did not answer the INVITE", "err", tx.Err())
			cl.failed(408, "", nil)
			c.finish(408, "callee timeout", nil)
			return
		}
	}
}

// cancelCallee sends CANCEL for the callee's INVITE and waits for its
// final response; a 2xx that crossed the CANCEL is ACKed and hung up.
func (c *Call) cancelCallee(tx sip.ClientTransaction, inv *sip.Request) {
	st := c.e.st
	cctx, cancel := context.WithTimeout(context.Background(), cancelWait)
	defer cancel()
	creq := cancelFor(st, inv)
	c.e.cfg.Metrics.Request(string(sip.CANCEL), false)
	go st.Do(cctx, creq)
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if res.IsSuccess() {
				b := c.legs[1]
				b.d.established(res)
				st.Write(b.d.ack(inv.CSeq().SeqNo, nil))
				bctx, bc := context.WithTimeout(context.Background(), byeTimeout)
				b.d.send(bctx, b.d.request(sip.BYE, nil, ""))
				bc()
			}
			return
		case <-tx.Done():
			return
		case <-cctx.Done():
			return
		}
	}
}

// bridge completes a call the callee answered: ACK the callee, answer
// the caller, wait for its ACK.
func (c *Call) bridge(ctx context.Context, tx sip.ClientTransaction, inv *sip.Request, res *sip.Response, cl caller, delayed bool) {
	st := c.e.st
	b := c.legs[1]
	b.d.established(res)
	b.info = allowsInfo(res)
	ack := b.d.ack(inv.CSeq().SeqNo, nil)
	st.Write(ack)
	tx.OnRetransmission(func(r *sip.Response) {
		if r.IsSuccess() {
			st.Write(b.d.ack(inv.CSeq().SeqNo, nil))
		}
	})
	fail := func(code int, reason string, err error) {
		c.log.Info("answer refused", "err", err)
		cl.failed(code, reason, nil)
		bctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
		b.d.send(bctx, b.d.request(sip.BYE, nil, ""))
		cancel()
		c.finish(code, "answer: "+err.Error(), nil)
	}
	var out []byte
	if len(res.Body()) > 0 {
		ans, err := sdpBody(res.Body(), contentType(res))
		if err != nil {
			fail(488, "", err)
			return
		}
		out, _, err = c.m.answer(ctx, 1, ans, res.Body())
		if err != nil {
			code, reason := statusOf(err)
			fail(code, reason, err)
			return
		}
	} else {
		c.m.mu.Lock()
		ex := c.m.pend
		c.m.mu.Unlock()
		if ex == nil || ex.answerOut == nil {
			fail(502, "Bad Gateway: no answer", errors.New("2xx without SDP"))
			return
		}
		out = ex.answerOut
	}
	c.setState(StateAnswered)
	c.log.Info("answered")
	ackReq, err := cl.answered(out)
	if err != nil {
		c.log.Info("caller never confirmed the answer", "err", err)
		c.Hangup(408, "no ack")
		return
	}
	if delayed && ackReq != nil {
		d, err := sdpBody(ackReq.Body(), contentType(ackReq))
		if err != nil || d == nil {
			c.log.Info("delayed-offer ACK without a usable answer", "err", err)
			c.Hangup(488, "no answer in ack")
			return
		}
		if _, _, err := c.m.answer(context.Background(), 0, d, ackReq.Body()); err != nil {
			c.log.Info("delayed-offer answer refused", "err", err)
			c.Hangup(488, "bad answer in ack")
		}
	}
}

// Hangup ends the call: a ringing call is cancelled, an answered one gets
// BYE on both legs.
func (c *Call) Hangup(cause int, reason string) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case StateEnded:
		return
	case StateRinging, StateEarly:
		c.cancel(cause, reason)
		if c.legs[1] == nil || c.m == nil {
			c.finish(cause, reason, nil)
		}
		return
	}
	c.finish(cause, reason, func() {
		var wg sync.WaitGroup
		for _, l := range c.legs {
			if l == nil || l.d == nil {
				continue
			}
			wg.Add(1)
			go func(l *leg) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
				defer cancel()
				l.d.send(ctx, l.d.request(sip.BYE, nil, ""))
			}(l)
		}
		wg.Wait()
	})
}

// lost ends a call whose leg l can no longer be reached (its WebSocket
// closed): a ringing call is cancelled (or refused, when l is the
// callee), an answered one gets BYE on the other leg only.
func (c *Call) lost(l *leg) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == StateEnded {
		return
	}
	if st != StateAnswered && !c.sub {
		c.cancel(480, "connection lost")
		return
	}
	reason := "caller connection lost"
	if l.idx == 1 {
		reason = "callee connection lost"
	}
	c.finish(480, reason, func() {
		o := c.other(l)
		if o == nil || o.d == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
		defer cancel()
		o.d.send(ctx, o.d.request(sip.BYE, nil, ""))
	})
}

// byeFrom ends an answered call on the BYE of one leg: the other leg gets
// BYE.
func (c *Call) byeFrom(l *leg) {
	who := "caller bye"
	if l.idx == 1 {
		who = "callee bye"
	}
	c.finish(200, who, func() {
		o := c.other(l)
		if o == nil || o.d == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
		defer cancel()
		if _, err := o.d.send(ctx, o.d.request(sip.BYE, nil, "")); err != nil {
			c.log.Info("BYE to the other leg failed", "err", err)
		}
	})
}

// finish ends the call once: runs bye (the BYEs to send), deletes the
// session, forgets the dialogs, writes the CDR.
func (c *Call) finish(cause int, reason string, bye func()) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		old := c.state
		c.state = StateEnded
		if c.subTimer != nil {
			c.subTimer.Stop()
		}
		c.mu.Unlock()
		if bye != nil {
			bye()
		}
		var final *cdr.Record
		if c.m != nil {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			s := c.m.close(ctx, reason)
			cancel()
			final = c.record(cause, reason)
			if s != nil {
				for _, l := range s.GetLegs() {
					lc := l.GetCounters()
					final.Media = append(final.Media, cdr.LegMedia{PacketsIn: lc.GetPacketsIn(), PacketsOut: lc.GetPacketsOut(),
						BytesIn: lc.GetBytesIn(), BytesOut: lc.GetBytesOut(),
						Dropped: lc.GetDropUnknownSource() + lc.GetDropSrtpAuth() + lc.GetDropReplay() + lc.GetDropUnknownPt() +
							lc.GetDropMalformed() + lc.GetDropDirection() + lc.GetDropNoConsent() + lc.GetDropSend() + lc.GetDropNotReady()})
				}
			}
		}
		for _, l := range c.legs {
			c.e.removeDialog(l)
		}
		if !c.sub {
			c.e.cfg.Metrics.CallState(old.String(), "")
			c.e.cfg.Metrics.CallEnded(cause)
			if final == nil {
				final = c.record(cause, reason)
			}
			if c.e.cfg.CDR != nil {
				if err := c.e.cfg.CDR.Add(*final); err != nil {
					c.log.Warn("CDR not written", "err", err)
				}
			}
			c.e.emit(Event{Call: c.ID, State: StateEnded.String(), Time: final.End, Cause: cause, Reason: reason,
				Caller: final.Caller, Callee: final.Callee})
			c.log.Info("call ended", "cause", cause, "reason", reason, "duration", final.Duration)
		}
		// Unlisted last: whoever sees the call gone finds its record.
		c.e.unregister(c)
		close(c.done)
	})
}

func (c *Call) record(cause int, reason string) *cdr.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &cdr.Record{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, Start: c.start,
		End: time.Now(), Cause: cause, Reason: reason}
	if !c.answer.IsZero() {
		t := c.answer
		r.Answer = &t
		r.Duration = r.End.Sub(t).Seconds()
	}
	return r
}
