package b2bua

import (
	"context"
	"errors"

	"github.com/emiago/sipgo/sip"
)

// reoffer passes a re-INVITE or UPDATE offer (hold, resume, codec change,
// new address, ICE restart) to the other leg and its answer back, and
// updates the session. Loop only.
func (c *Call) reoffer(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	st := c.e.st
	if c.state != StateAnswered && req.Method == sip.INVITE {
		st.Respond(tx, req, 491, "", nil, sip.NewHeader("Retry-After", "2"))
		return
	}
	if !c.begin() {
		st.Respond(tx, req, 491, "", nil, sip.NewHeader("Retry-After", "2"))
		return
	}
	if c.e.tooBrief(req, tx) {
		c.finishExchange()
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
	ctx, cancel := context.WithTimeout(c.ctx, reinviteTimeout)
	defer cancel()
	out, err := c.m.offer(ctx, l.idx, offer)
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("re-offer refused", "err", err)
		respond(code, reason, nil)
		return
	}
	var answer []byte
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
		if method == sip.UPDATE && c.state == StateAnswered {
			method = sip.INVITE
		}
		fwd := o.d.request(method, out, "application/sdp")
		for _, h := range uacTimerHeaders(o) {
			fwd.AppendHeader(h)
		}
		res, err := c.sendOffer(ctx, o, fwd, true)
		if err != nil {
			c.m.abandon()
			respond(timeoutCode(err), "", nil)
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
		c.uacTimerAnswered(res, o) // a refresh of o's timer
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
	timers := append([]sip.Header{sip.NewHeader("Supported", "timer")}, c.e.uasTimer(req, l)...)
	// The exchange is over once the answer is ready: a new re-INVITE may
	// follow the ACK at once (RFC 3261 section 14.2 only refuses one
	// that overlaps).
	release()
	res := respond(200, "", answer, timers...)
	if req.Method == sip.INVITE {
		if _, err := c.waitAck(l, tx, res, req.CSeq().SeqNo); err != nil && !errors.Is(err, errStopped) {
			c.log.Info("re-INVITE answer never confirmed", "err", err)
		}
	}
}

// sendOffer sends a re-INVITE or UPDATE on leg o and returns its final
// response, ACKing a 2xx to INVITE when ack is set (otherwise the caller
// sends the ACK, with the answer to an offer the 2xx carried). Loop only.
func (c *Call) sendOffer(ctx context.Context, o *leg, req *sip.Request, ack bool) (*sip.Response, error) {
	res, err := c.transact(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	if req.Method == sip.INVITE && res.IsSuccess() {
		o.d.established(res)
		if ack {
			c.e.st.Write(o.d.ack(req.CSeq().SeqNo, nil))
		}
	}
	return res, nil
}

// timeoutCode is what the offerer is told when the other leg did not
// answer: 408, or 487 when the call is ending.
func timeoutCode(err error) int {
	if errors.Is(err, errStopped) {
		return 487
	}
	return 408
}

// offerless passes a re-INVITE without SDP (its sender wants an offer)
// to the other leg as one too: that leg's offer in its 2xx becomes
// Strait's offer in the 2xx on leg l, and l's answer in its ACK becomes
// Strait's answer in the ACK to the other leg (RFC 3261 section 14.1).
// Loop only.
func (c *Call) offerless(l *leg, req *sip.Request, tx sip.ServerTransaction, release func()) {
	st := c.e.st
	o := c.other(l)
	if o == nil || o.d == nil {
		st.Respond(tx, req, 488, "Not Acceptable Here: nobody to ask for an offer", nil)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, reinviteTimeout)
	defer cancel()
	fwd := o.d.request(sip.INVITE, nil, "")
	for _, h := range uacTimerHeaders(o) {
		fwd.AppendHeader(h)
	}
	res, err := c.sendOffer(ctx, o, fwd, false)
	if err != nil {
		st.Respond(tx, req, timeoutCode(err), "", nil)
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
	c.uacTimerAnswered(res, o)
	hs := append([]sip.Header{st.Contact(l.d.transport, l.d.contact), sip.NewHeader("Content-Type", "application/sdp"),
		sip.NewHeader("Supported", "timer")}, c.e.uasTimer(req, l)...)
	ok := st.Response(req, 200, "", out, hs...)
	st.RespondWith(tx, ok)
	release()
	ack, err := c.waitAck(l, tx, ok, req.CSeq().SeqNo)
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
