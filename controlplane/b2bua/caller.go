// The two sides of a call being set up: the caller (a SIP dialog or an
// API request) and the callee's dialog toward its target.

package b2bua

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

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
	res := s.l.d.response(code, "", body, sip.NewHeader("Allow", allow))
	if s.l.rel != nil {
		s.l.rel.send(s.c, res)
		return
	}
	s.c.e.st.RespondWith(s.tx, res)
}

func (s *sipCaller) answered(body []byte) (*sip.Request, error) {
	if s.l.rel != nil && !s.l.rel.waitSDPAcked(s.c) {
		if s.c.stopped() {
			return nil, errStopped
		}
		return nil, sipError(504, "", errors.New("no PRACK for a provisional with SDP"))
	}
	hs := append([]sip.Header{sip.NewHeader("Allow", allow), sip.NewHeader("Supported", "timer")}, s.c.e.uasTimer(s.l.d.invite, s.l)...)
	res := s.l.d.response(200, "", body, hs...)
	if err := s.c.e.st.RespondWith(s.tx, res); err != nil {
		return nil, err
	}
	return s.c.waitAck(s.l, s.tx, res, s.l.d.invite.CSeq().SeqNo)
}

func (s *sipCaller) failed(code int, reason string, hdrs []sip.Header) {
	s.c.e.st.RespondWith(s.tx, s.l.d.response(code, reason, nil, hdrs...))
}

// outbound builds the callee's dialog toward a target, with nothing of the
// caller's dialog but the user name and display name. Toward the
// upstreams it is aimed at the first target to try.
func (e *Engine) outbound(tgt target, fromUser, fromName string) (*dialog, legKind) {
	if tgt.upstream {
		local := sip.Uri{Scheme: "sip", User: fromUser}
		remote := sip.Uri{Scheme: "sip", User: tgt.user}
		d := newUAC(e.st, sip.Uri{}, local, remote, fromName, "", "")
		aimAt(d, tgt.attempts[0], tgt.user)
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

// aimAt points a dialog Strait starts toward an upstream at one of its
// targets: the Request-URI, From and To name the upstream's host (no
// port when it is the default), requests go to the target's address.
// Failover aims the same dialog (Call-ID, tags) at the next target.
func aimAt(d *dialog, t upstream.Target, user string) {
	ruri := sip.Uri{Scheme: "sip", User: user, Host: t.Host(), Port: t.URIPort(), UriParams: sip.NewParams(), Headers: sip.NewParams()}
	if t.Transport != sipnet.UDP {
		ruri.UriParams.Add("transport", strings.ToLower(t.Transport))
	}
	d.mu.Lock()
	d.target = ruri
	d.local.Host, d.remote.Host = t.Host(), t.Host()
	d.transport = t.Transport
	d.mu.Unlock()
	upstreamDialog(d, t)
}
