package b2bua

import (
	"context"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/metrics"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/controlplane/upstream"
)

// passHeaders are the headers a passed-through request or response keeps
// (besides its body and Content-Type): what event packages, transfers and
// INFO packages need, nothing about the sender's network. (Referred-By
// names a URI: it goes rewritten, see referredBy.)
var passHeaders = []string{"Event", "Subscription-State", "Expires", "Allow-Events", "Accept",
	"Content-Disposition", "Info-Package", "Recv-Info", "Refer-Sub", "Subject", "Priority"}

// onInDialog handles a request inside one of Strait's dialogs: what
// changes the call (BYE, an offer) goes to the call's loop; what only
// passes through (INFO, MESSAGE, NOTIFY, REFER, OPTIONS, SUBSCRIBE, an
// UPDATE refresh) is relayed on this goroutine, through the dialogs.
func (e *Engine) onInDialog(req *sip.Request, tx sip.ServerTransaction) {
	if !e.admit(req, tx) {
		return
	}
	if s := e.subOf(req); s != nil {
		s.onRequest(req, tx) // a NOTIFY of Strait's own subscription (presence.go)
		return
	}
	l := e.legOf(req)
	if l == nil {
		e.st.Respond(tx, req, 481, "", nil)
		return
	}
	if e.cfg.Owning != nil && !e.cfg.Owning() {
		// Fenced (see Config.Owning): no answer, not even 481, and the
		// CSeq not taken, so that the retransmission goes on as if the
		// request had been lost.
		e.fencedDrops.Add(1)
		e.cfg.Metrics.SIPDropped(req.Transport(), metrics.DropFenced)
		e.log.Debug("in-dialog request dropped: this control plane does not own its calls now", "method", req.Method)
		return
	}
	if !l.d.checkCSeq(req) {
		e.st.Respond(tx, req, 500, "Server Internal Error: CSeq out of order", nil, sip.NewHeader("Retry-After", "1"))
		return
	}
	c := l.c
	switch req.Method {
	case sip.INVITE, sip.BYE:
		// sipgo's server transaction sends 100 Trying for an INVITE not
		// answered within 200 ms (RFC 3261 section 17.2.1), however busy
		// the call's loop is.
		c.deliver(l, req, tx)
	case sip.UPDATE:
		if len(req.Body()) == 0 {
			c.refreshLocally(l, req, tx) // a session refresh (sessiontimer.go)
			return
		}
		c.deliver(l, req, tx)
	case sip.PRACK:
		// RFC 3262 section 3: a PRACK that acknowledges no reliable
		// provisional Strait sent on this dialog gets 481.
		if l.rel != nil && l.rel.prack(c, req) {
			e.st.Respond(tx, req, 200, "", nil)
			return
		}
		e.st.Respond(tx, req, 481, "", nil)
	default:
		c.forward(l, req, tx)
	}
}

// forward passes an in-dialog request (INFO, MESSAGE, NOTIFY, REFER,
// OPTIONS, SUBSCRIBE, UPDATE without SDP) to the other leg and its final
// response back. It runs on the request's handler goroutine, not the
// call's loop: it reads only the call's frozen fields and the dialogs.
func (c *Call) forward(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	st := c.e.st
	o := c.other(l)
	if o == nil || o.d == nil {
		switch req.Method {
		case sip.INFO, sip.MESSAGE, sip.NOTIFY, sip.OPTIONS, sip.UPDATE:
			st.Respond(tx, req, 200, "", nil) // nobody to tell: the echo or an API client
		default:
			st.Respond(tx, req, 501, "", nil)
		}
		return
	}
	fwd := o.d.request(req.Method, req.Body(), contentType(req))
	copyHeaders(req, fwd, passHeaders...)
	if req.Method == sip.REFER {
		rt := sipnet.Header(req, "Refer-To")
		if rt == nil {
			st.Respond(tx, req, 400, "Bad Request: no Refer-To", nil)
			return
		}
		fwd.AppendHeader(sip.NewHeader("Refer-To", c.e.referTo(rt.Value(), l, o)))
		o.d.relayedRefer(fwd.CSeq().SeqNo, req.CSeq().SeqNo)
	}
	if req.Method == sip.NOTIFY {
		translateReferEvent(l.d, fwd)
	}
	c.e.referredBy(req, fwd, o)
	ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
	defer cancel()
	res, err := o.d.send(ctx, fwd)
	if err != nil {
		st.Respond(tx, req, 408, "", nil)
		return
	}
	out := st.Response(req, res.StatusCode, res.Reason, res.Body())
	if len(res.Body()) > 0 {
		out.AppendHeader(sip.NewHeader("Content-Type", contentType(res)))
	}
	copyHeaders(res, out, "Expires", "Allow-Events", "Accept", "Refer-Sub")
	st.RespondWith(tx, out)
	if c.sub && res.IsSuccess() {
		c.subscriptionUpdate(req, res)
	}
}

// referTo rewrites a transfer target for the leg it goes to: the user
// part is kept, the host becomes that side's (the upstream's domain), so
// nothing of the referrer's side leaks; an attended transfer's Replaces
// (from leg from's side, replaces.go) names the dialog on to's side. A
// value that does not parse goes as it is.
func (e *Engine) referTo(v string, from, to *leg) string {
	u, out, ok := e.sideURI(v, to)
	if !ok {
		return v
	}
	if from != nil {
		if rep := e.referReplaces(u, from); rep != "" {
			return "<" + out.String() + "?Replaces=" + rep + ">"
		}
	}
	return "<" + out.String() + ">"
}

// sideURI parses the URI in v (name-addr or addr-spec) and returns it and
// the URI with the same user at the host of leg to's side; false when v
// names no user.
func (e *Engine) sideURI(v string, to *leg) (in, out sip.Uri, ok bool) {
	s := strings.TrimSpace(v)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			s = s[i+1 : i+j]
		}
	}
	if err := sip.ParseUri(s, &in); err != nil || in.User == "" {
		return in, out, false
	}
	out = sip.Uri{Scheme: "sip", User: in.User}
	out.Host = e.st.Host()
	if e.trunk() && to.kind == kindPlain {
		// Toward an upstream, its own host: the dialog's target's, or
		// the first upstream's when the dialog came from a trusted peer.
		var up *upstream.Target
		if to.d != nil {
			to.d.mu.Lock()
			up = to.d.up
			to.d.mu.Unlock()
		}
		if up == nil {
			if ts := e.cfg.Upstreams.Order(); len(ts) > 0 {
				up = &ts[0]
			}
		}
		if up != nil {
			out.Host, out.Port = up.Host(), up.URIPort()
		}
	}
	return in, out, true
}

// referredBy copies req's Referred-By (RFC 3892: the referrer, in a
// REFER and in the INVITE the referee sends) into out, which goes to leg
// to, rewritten as referTo rewrites a target; one that does not parse is
// left out.
func (e *Engine) referredBy(req *sip.Request, out *sip.Request, to *leg) {
	h := sipnet.Header(req, "Referred-By")
	if h == nil {
		return
	}
	if _, u, ok := e.sideURI(h.Value(), to); ok {
		out.AppendHeader(sip.NewHeader("Referred-By", "<"+u.String()+">"))
	}
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
