package b2bua

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// passHeaders are the headers a passed-through request or response keeps
// (besides its body and Content-Type): what event packages, transfers and
// INFO packages need, nothing about the sender's network.
var passHeaders = []string{"Event", "Subscription-State", "Expires", "Allow-Events", "Accept",
	"Content-Disposition", "Info-Package", "Recv-Info", "Referred-By", "Refer-Sub", "Subject", "Priority"}

// onInDialog handles a request inside one of Strait's dialogs.
func (e *Engine) onInDialog(req *sip.Request, tx sip.ServerTransaction) {
	if !e.admit(req, tx) {
		return
	}
	l := e.legOf(req)
	if l == nil {
		e.st.Respond(tx, req, 481, "", nil)
		return
	}
	if !l.d.checkCSeq(req) {
		e.st.Respond(tx, req, 500, "Server Internal Error: CSeq out of order", nil, sip.NewHeader("Retry-After", "1"))
		return
	}
	c := l.c
	switch req.Method {
	case sip.BYE:
		e.st.Respond(tx, req, 200, "", nil)
		c.log.Info("bye", "leg", l.idx)
		c.byeFrom(l)
	case sip.INVITE:
		c.reoffer(l, req, tx)
	case sip.UPDATE:
		if len(req.Body()) == 0 {
			c.forward(l, req, tx) // a session refresh without an offer
			return
		}
		c.reoffer(l, req, tx)
	case sip.PRACK:
		e.st.Respond(tx, req, 200, "", nil)
	default:
		c.forward(l, req, tx)
	}
}

// reoffer passes a re-INVITE or UPDATE offer (hold, resume, codec change,
// new address, ICE restart) to the other leg and its answer back, and
// updates the session.
func (c *Call) reoffer(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	st := c.e.st
	if c.State() != StateAnswered && req.Method == sip.INVITE {
		st.Respond(tx, req, 491, "", nil, sip.NewHeader("Retry-After", "2"))
		return
	}
	if !c.begin() {
		st.Respond(tx, req, 491, "", nil, sip.NewHeader("Retry-After", "2"))
		return
	}
	released := false
	release := func() {
		if !released {
			released = true
			c.finishExchange()
		}
	}
	defer release()
	if req.Method == sip.INVITE {
		st.Respond(tx, req, 100, "", nil)
	}
	respond := func(code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
		res := st.Response(req, code, reason, body, hdrs...)
		if code >= 200 && code < 300 {
			res.AppendHeader(st.Contact(l.d.transport, l.d.contact))
			if len(body) > 0 {
				res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			}
		}
		st.RespondWith(tx, res)
		return res
	}
	offer, err := sdpBody(req.Body(), contentType(req))
	if err != nil {
		code, reason := statusOf(err)
		respond(code, reason, nil)
		return
	}
	if offer == nil {
		if req.Method != sip.INVITE {
			respond(488, "Not Acceptable Here: UPDATE without SDP is a refresh", nil)
			return
		}
		c.offerless(l, req, tx, release)
		return
	}
	o := c.other(l)
	if o == nil {
		respond(488, "Not Acceptable Here: no re-offer on the echo extension", nil)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), reinviteTimeout)
	defer cancel()
	out, err := c.m.offer(ctx, l.idx, offer)
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("re-offer refused", "err", err)
		respond(code, reason, nil)
		return
	}
	var answer []byte
	var timers []sip.Header
	if o.d == nil {
		answer, err = c.m.answerLocally(ctx, o.idx)
		if err != nil {
			code, reason := statusOf(err)
			respond(code, reason, nil)
			return
		}
	} else {
		// An UPDATE offer in a confirmed dialog goes on as a re-INVITE,
		// which every PBX takes (UPDATE is optional, RFC 3311).
		method := req.Method
		if method == sip.UPDATE && c.State() == StateAnswered {
			method = sip.INVITE
		}
		fwd := o.d.request(method, out, "application/sdp")
		copyHeaders(req, fwd, sessionTimerHeaders...)
		if supportsTimer(req) {
			fwd.AppendHeader(sip.NewHeader("Supported", "timer"))
		}
		res, err := c.sendOffer(ctx, o, fwd, true)
		if err != nil {
			c.m.abandon()
			respond(408, "", nil)
			return
		}
		if !res.IsSuccess() {
			c.m.abandon()
			code := mapFailure(res.StatusCode)
			if res.StatusCode == 491 {
				code = 491
			}
			respond(code, "", nil)
			return
		}
		for _, n := range sessionTimerHeaders {
			for _, h := range res.GetHeaders(n) {
				timers = append(timers, sip.NewHeader(n, h.Value()))
			}
		}
		ans, err := sdpBody(res.Body(), contentType(res))
		if err != nil || ans == nil {
			c.m.abandon()
			c.log.Info("re-offer answered without usable SDP", "err", err)
			respond(488, "", nil)
			return
		}
		answer, _, err = c.m.answer(ctx, o.idx, ans, res.Body())
		if err != nil {
			code, reason := statusOf(err)
			c.log.Info("re-offer answer refused", "err", err)
			respond(code, reason, nil)
			return
		}
	}
	c.log.Info("re-negotiated", "method", req.Method, "from", l.idx)
	if len(timers) > 0 {
		timers = append(timers, sip.NewHeader("Require", "timer"))
	}
	// The exchange is over once the answer is ready: a new re-INVITE may
	// follow the ACK at once (RFC 3261 section 14.2 only refuses one
	// that overlaps).
	release()
	res := respond(200, "", answer, timers...)
	if req.Method == sip.INVITE {
		if _, err := l.waitAck(tx, res, req.CSeq().SeqNo); err != nil {
			c.log.Info("re-INVITE answer never confirmed", "err", err)
		}
	}
}

// sendOffer sends a re-INVITE or UPDATE on leg o and returns its final
// response, ACKing a 2xx to INVITE when ack is set (otherwise the caller
// sends the ACK, with the answer to an offer the 2xx carried).
func (c *Call) sendOffer(ctx context.Context, o *leg, req *sip.Request, ack bool) (*sip.Response, error) {
	st := c.e.st
	if req.Method != sip.INVITE {
		return o.d.send(ctx, req)
	}
	tx, err := st.Transaction(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			c.e.cfg.Metrics.Response(string(req.Method), res.StatusCode, true)
			if res.IsProvisional() {
				continue
			}
			if res.IsSuccess() {
				o.d.established(res)
				if ack {
					st.Write(o.d.ack(req.CSeq().SeqNo, nil))
				}
			}
			return res, nil
		case <-tx.Done():
			return nil, tx.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// offerless passes a re-INVITE without SDP (its sender wants an offer)
// to the other leg as one too: that leg's offer in its 2xx becomes
// Strait's offer in the 2xx on leg l, and l's answer in its ACK becomes
// Strait's answer in the ACK to the other leg (RFC 3261 section 14.1).
func (c *Call) offerless(l *leg, req *sip.Request, tx sip.ServerTransaction, release func()) {
	st := c.e.st
	o := c.other(l)
	if o == nil || o.d == nil {
		st.Respond(tx, req, 488, "Not Acceptable Here: nobody to ask for an offer", nil)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), reinviteTimeout)
	defer cancel()
	fwd := o.d.request(sip.INVITE, nil, "")
	copyHeaders(req, fwd, sessionTimerHeaders...)
	res, err := c.sendOffer(ctx, o, fwd, false)
	if err != nil {
		st.Respond(tx, req, 408, "", nil)
		return
	}
	if !res.IsSuccess() {
		st.Respond(tx, req, mapFailure(res.StatusCode), "", nil)
		return
	}
	ackOther := func(body []byte) { st.Write(o.d.ack(fwd.CSeq().SeqNo, body)) }
	theirs, err := sdpBody(res.Body(), contentType(res))
	if err != nil || theirs == nil {
		ackOther(nil)
		c.log.Info("offerless re-INVITE answered without an offer", "err", err)
		st.Respond(tx, req, 488, "", nil)
		return
	}
	out, err := c.m.offer(ctx, o.idx, theirs)
	if err != nil {
		ackOther(nil)
		code, reason := statusOf(err)
		st.Respond(tx, req, code, reason, nil)
		return
	}
	ok := st.Response(req, 200, "", out, st.Contact(l.d.transport, l.d.contact), sip.NewHeader("Content-Type", "application/sdp"))
	st.RespondWith(tx, ok)
	release()
	ack, err := l.waitAck(tx, ok, req.CSeq().SeqNo)
	if err != nil {
		c.m.abandon()
		ackOther(nil)
		c.log.Info("offerless re-INVITE never confirmed", "err", err)
		return
	}
	ans, err := sdpBody(ack.Body(), contentType(ack))
	if err != nil || ans == nil {
		c.m.abandon()
		ackOther(nil)
		c.log.Info("ACK without an answer to Strait's offer", "err", err)
		return
	}
	back, _, err := c.m.answer(ctx, l.idx, ans, ack.Body())
	if err != nil {
		c.log.Info("answer in ACK refused", "err", err)
		ackOther(nil)
		return
	}
	ackOther(back)
	c.log.Info("re-negotiated without an offer", "from", l.idx)
}

// forward passes an in-dialog request (INFO, MESSAGE, NOTIFY, REFER,
// OPTIONS, SUBSCRIBE, UPDATE without SDP) to the other leg and its final
// response back.
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
	if req.Method == sip.UPDATE {
		copyHeaders(req, fwd, sessionTimerHeaders...)
	}
	if req.Method == sip.REFER {
		rt := req.GetHeader("Refer-To")
		if rt == nil {
			st.Respond(tx, req, 400, "Bad Request: no Refer-To", nil)
			return
		}
		fwd.AppendHeader(sip.NewHeader("Refer-To", c.e.referTo(rt.Value(), o)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
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
// nothing of the referrer's side leaks.
func (e *Engine) referTo(v string, to *leg) string {
	var u sip.Uri
	s := strings.TrimSpace(v)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			s = s[i+1 : i+j]
		}
	}
	if err := sip.ParseUri(s, &u); err != nil || u.User == "" {
		return v
	}
	out := sip.Uri{Scheme: "sip", User: u.User}
	if up := e.cfg.Upstream; up != nil && to.kind == kindPlain {
		out.Host, out.Port = up.Host, up.URIPort()
	} else {
		out.Host = e.st.Host()
	}
	return "<" + out.String() + ">"
}

// onOutOfDialog relays MESSAGE, NOTIFY (e.g. message waiting) and
// SUBSCRIBE outside a dialog to where the R-URI's user is: the upstream
// for a browser in trunk mode, a registered browser or device otherwise.
func (e *Engine) onOutOfDialog(req *sip.Request, tx sip.ServerTransaction) {
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		e.onInDialog(req, tx)
		return
	}
	if !e.admit(req, tx) {
		return
	}
	s, ok := e.sideOf(req)
	if !ok {
		e.st.Respond(tx, req, 403, "Forbidden: not the upstream", nil)
		return
	}
	if !e.authorize(req, tx, s) {
		return
	}
	tgt, err := e.resolve(s, req.Recipient.User, false)
	if err != nil {
		code, reason := statusOf(err)
		e.st.Respond(tx, req, code, reason, nil)
		return
	}
	from := req.From()
	d, kind := e.outbound(tgt, from.Address.User, from.DisplayName)
	if req.Method == sip.SUBSCRIBE {
		e.relaySubscribe(req, tx, d, kind)
		return
	}
	fwd := d.request(req.Method, req.Body(), contentType(req))
	fwd.ReplaceHeader(maxForwards(req))
	copyHeaders(req, fwd, passHeaders...)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	e.mu.Lock()
	e.ownIDs[d.callID] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.ownIDs, d.callID)
		e.mu.Unlock()
	}()
	res, err := d.send(ctx, fwd)
	if err != nil {
		e.st.Respond(tx, req, 408, "", nil)
		return
	}
	out := e.st.Response(req, mapFailure(res.StatusCode), "", res.Body())
	if len(res.Body()) > 0 {
		out.AppendHeader(sip.NewHeader("Content-Type", contentType(res)))
	}
	e.st.RespondWith(tx, out)
}

// subscriptionSlack is how long a relayed subscription outlives its
// Expires without a refresh before Strait forgets it.
const subscriptionSlack = 32 * time.Second

// relaySubscribe makes a subscription relay: two dialogs and no media.
// NOTIFYs and refreshes then pass as in-dialog requests.
func (e *Engine) relaySubscribe(req *sip.Request, tx sip.ServerTransaction, d *dialog, kind legKind) {
	c := e.newCall(req.From().Address.User, req.Recipient.User)
	c.sub = true
	a := &leg{c: c, idx: 0, d: newUAS(e.st, req, tx), kind: kindPlain, acks: make(chan *sip.Request, 1)}
	if sipnet.IsWebSocket(req.Transport()) {
		a.kind = kindWebRTC
	}
	b := &leg{c: c, idx: 1, d: d, kind: kind, acks: make(chan *sip.Request, 1)}
	c.legs = [2]*leg{a, b}
	if err := e.register(c); err != nil {
		e.st.Respond(tx, req, 503, "", nil)
		return
	}
	e.addDialog(a)
	e.addDialog(b) // a NOTIFY may come before the 2xx (RFC 6665 section 4.1.2.4)
	fwd := d.request(sip.SUBSCRIBE, req.Body(), contentType(req))
	fwd.ReplaceHeader(maxForwards(req))
	copyHeaders(req, fwd, passHeaders...)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	res, err := d.send(ctx, fwd)
	if err != nil {
		e.st.Respond(tx, req, 408, "", nil)
		c.finish(408, "subscribe timeout", nil)
		return
	}
	if !res.IsSuccess() {
		e.st.Respond(tx, req, mapFailure(res.StatusCode), "", nil)
		c.finish(res.StatusCode, "subscribe refused", nil)
		return
	}
	d.established(res)
	out := a.d.response(res.StatusCode, res.Reason, nil)
	copyHeaders(res, out, "Expires")
	e.st.RespondWith(tx, out)
	c.subscriptionUpdate(req, res)
}

// subscriptionUpdate keeps a subscription relay alive for its Expires, or
// ends it on a terminating NOTIFY or an unsubscribe.
func (c *Call) subscriptionUpdate(req *sip.Request, res *sip.Response) {
	if req.Method == sip.NOTIFY {
		if h := req.GetHeader("Subscription-State"); h != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(h.Value())), "terminated") {
			c.finish(200, "subscription terminated", nil)
		}
		return
	}
	if req.Method != sip.SUBSCRIBE {
		return
	}
	exp := 3600
	for _, m := range []headers{res, req} {
		if h := m.GetHeader("Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
				exp = n
				break
			}
		}
	}
	c.mu.Lock()
	if c.subTimer != nil {
		c.subTimer.Stop()
	}
	c.subTimer = time.AfterFunc(time.Duration(exp)*time.Second+subscriptionSlack, func() {
		c.finish(408, "subscription expired", nil)
	})
	c.mu.Unlock()
}
