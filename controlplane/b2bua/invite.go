package b2bua

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"weak"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/internal/logging"
)

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
	if bad := unsupportedRequire(req); len(bad) > 0 {
		e.st.Respond(tx, req, 420, "", nil, sip.NewHeader("Unsupported", strings.Join(bad, ", ")))
		return
	}
	if e.tooBrief(req, tx) {
		return
	}
	// No 100 Trying here: sipgo's server transaction sends one when the
	// INVITE is not answered within 200 ms (RFC 3261 section 17.2.1); a
	// call answered at once (the echo extension, a refusal) costs one
	// datagram less.
	s, ok := e.sideOf(req)
	if !ok {
		e.st.Respond(tx, req, 403, "Forbidden: untrusted source", nil)
		return
	}
	who, ok := e.authorize(req, tx, s)
	if !ok {
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
	if err := e.admitState(); err != nil {
		code, reason := statusOf(err)
		e.st.Respond(tx, req, code, reason, nil, stateRefusalHeaders()...)
		return
	}
	release := func() {}
	if s != fromUpstream {
		// Calls from users pass the dial plan; calls from the upstream
		// are the PBX's to police.
		if release, err = e.admitCall(who, req.Recipient.User); err != nil {
			code, reason := statusOf(err)
			e.st.Respond(tx, req, code, reason, nil, refusalHeaders(err)...)
			return
		}
	}
	var tgt target
	if rl, rep, code := e.inviteReplaces(req); code != 0 {
		release()
		e.st.Respond(tx, req, code, "", nil)
		return
	} else if rl != nil {
		// Attended transfer or pickup: to the replaced call's other party.
		var ok bool
		if tgt, ok = e.replacingTarget(rl, rep); !ok {
			release()
			e.st.Respond(tx, req, 481, "", nil)
			return
		}
	} else if tgt, err = e.resolve(s, req.Recipient.User, true); err != nil {
		release()
		code, reason := statusOf(err)
		e.st.Respond(tx, req, code, reason, nil)
		return
	}
	forks := e.forkTargets(tgt) // several registrations to ring (ringall.go)
	kind := kindPlain
	if s == fromBrowser {
		kind = kindWebRTC
	}
	if offer != nil && offer.IsWebRTC() != (kind == kindWebRTC) {
		release()
		e.st.Respond(tx, req, 488, "Not Acceptable Here: unexpected SDP profile", nil)
		return
	}
	from := req.From()
	c := e.newCall(who, tgt.user)
	c.release, c.slot = release, s != fromUpstream
	ad := newUAS(e.st, req, tx)
	if t, ok := e.upstreamOf(req); ok {
		upstreamDialog(ad, t)
	}
	if len(forks) > 1 {
		e.completeForkedCall(c, ad, kind, forks)
	} else {
		e.completeCall(c, ad, kind, tgt, from.DisplayName)
	}
	if requires100rel(req) {
		c.legs[0].rel = newReliableUAS(tx, req)
	}
	if tgt.upstream {
		if ch, ok := e.challenges.take(req); ok {
			continueChallenged(c.legs[1].d, ch, &tgt)
		}
	}
	if err := e.register(c); err != nil {
		release()
		e.st.Respond(tx, req, 503, "", nil)
		return
	}
	e.addDialog(c.legs[0])
	// At debug: a call's line at info is its end's (hangup.go), one line
	// per call at the rates an SBC carries (issue 10: two lines per call
	// were 5% of the CPU at 1 000 calls/s).
	if c.log.Enabled(e.ctx, slog.LevelDebug) {
		c.log.Debug("call", "from", s, "transport", req.Transport(), logging.KeyLeg, 0, logging.KeySIPCallID, req.CallID().Value())
	}
	sc := &sipCaller{c: c, l: c.legs[0], tx: tx}
	// This handler's goroutine is the call's loop from here on.
	c.run(func() {
		// sipgo keeps the transaction, and so this callback, up to 64*T1
		// after the call ended: it must not keep the call alive with it.
		w := weak.Make(c)
		if !tx.OnCancel(func(*sip.Request) {
			if c := w.Value(); c != nil {
				c.stop(487, reasonCallerCancel, nil)
			}
		}) {
			c.end(487, reasonCallerCancel)
			return
		}
		if tgt.echo {
			c.runEcho(offer, sc)
			return
		}
		if tgt.app != nil {
			c.runApp(offer, sc)
			return
		}
		if len(forks) > 1 {
			c.runFork(req, offer, forks, from.DisplayName, sc)
			return
		}
		c.runInvite(req, offer, tgt, sc)
	})
}

// reasonCallerCancel is the reason of a call the caller cancelled (sipgo
// has answered its INVITE with 487 already).
const reasonCallerCancel = "caller cancel"

// completeCall fills in what a new call needs before it is published: the
// caller's leg (callerDialog nil for an API client), the callee's toward
// tgt (none for the echo extension), the direction and the media.
func (e *Engine) completeCall(c *Call, callerDialog *dialog, callerKind legKind, tgt target, fromName string) {
	c.legs[0] = &leg{c: c, idx: 0, d: callerDialog, kind: callerKind, acks: make(chan *sip.Request, 4)}
	if tgt.echo {
		c.direction = "echo"
		c.m = newMedia(e.cfg.Pool, c.ID, e.cfg.MediaTimeout, c.mediaLeg(c.legs[0]))
		return
	}
	if tgt.app != nil {
		// A web app: no dialog, a WebRTC leg whose offer and answer go
		// by webhook and the API (app.go).
		c.legs[1] = &leg{c: c, idx: 1, kind: kindWebRTC, acks: make(chan *sip.Request, 4)}
		c.app = tgt.app
		c.direction = directionApp
		c.m = newMedia(e.cfg.Pool, c.ID, e.cfg.MediaTimeout, c.mediaLeg(c.legs[0]), c.mediaLeg(c.legs[1]))
		return
	}
	d, kind := e.outbound(tgt, c.caller, fromName)
	c.legs[1] = &leg{c: c, idx: 1, d: d, kind: kind, acks: make(chan *sip.Request, 4)}
	c.direction = direction(c.legs[0], c.legs[1], c.api)
	c.m = newMedia(e.cfg.Pool, c.ID, e.cfg.MediaTimeout, c.mediaLeg(c.legs[0]), c.mediaLeg(c.legs[1]))
}

// runEcho answers the caller with a one-leg session that reflects its
// media. Loop only.
func (c *Call) runEcho(offer *sdp.Description, cl caller) {
	if offer == nil {
		cl.failed(488, "Not Acceptable Here: the echo extension needs an offer", nil)
		c.end(488, "no offer")
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
	defer cancel()
	ans, err := c.m.echo(ctx, offer)
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("echo refused", "err", err)
		cl.failed(code, reason, nil)
		c.end(code, "echo: "+err.Error())
		return
	}
	if c.stopped() {
		c.refuse(cl)
		return
	}
	c.setState(StateAnswered)
	if _, err := cl.answered(ans); err != nil && !errors.Is(err, errStopped) {
		c.log.Info("echo: caller never confirmed", "err", err)
		c.end(408, "no ack")
	}
}

// refuse ends a call stopped before it was answered: the caller's
// request fails with the stop's cause (a CANCELled INVITE was answered
// 487 by sipgo already). Loop only.
func (c *Call) refuse(cl caller) {
	r := c.stopReq.Load()
	if r.reason != reasonCallerCancel {
		cl.failed(failureCode(r.cause), "", nil)
	}
	c.end(r.cause, r.reason)
}

// runInvite places the callee's INVITE and bridges its answer to the
// caller; it returns once the call is answered or has ended. Loop only.
func (c *Call) runInvite(req *sip.Request, offer *sdp.Description, tgt target, cl caller) {
	e := c.e
	b := c.legs[1]
	d := b.d
	ctx, cancel := context.WithTimeout(c.ctx, e.cfg.RingTimeout)
	defer cancel()
	if c.stopped() {
		c.refuse(cl)
		return
	}

	delayed := offer == nil
	body, ok := c.offerToCallee(ctx, offer, cl)
	if !ok {
		return
	}
	build := func() *sip.Request {
		inv := d.request(sip.INVITE, body, "application/sdp")
		inv.ReplaceHeader(maxForwards(req))
		inv.AppendHeader(sip.NewHeader("Allow", allow))
		supported := []string{"timer"} // see sessiontimer.go
		if b.kind == kindPlain {
			supported = append(supported, "100rel") // see prack.go
		}
		inv.AppendHeader(sip.NewHeader("Supported", strings.Join(supported, ", ")))
		if tgt.replaces != "" {
			inv.AppendHeader(sip.NewHeader("Replaces", tgt.replaces))
		}
		if req != nil {
			// The interval the caller asked for, not its refresher: the
			// callee's 2xx says who refreshes this leg.
			if se, ok, bad := readSessionExpires(req); ok && !bad {
				inv.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(max(se.secs, minSessionExpires)))))
				inv.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(max(readMinSE(req), minSessionExpires)))))
			}
			e.referredBy(req, inv, b)
			if tgt.upstream {
				// The PBX challenges its users itself; its challenge went to
				// the browser and the browser's answer goes back to it.
				copyHeaders(req, inv, "Authorization", "Proxy-Authorization")
			}
		}
		return inv
	}
	e.addDialog(b)
	// Toward the upstreams a new call fails over to the next target on a
	// transport error, 503, 408 or silence, as long as no target has
	// answered more than 100 (RFC 3263 section 4.3: the same request
	// with a new branch; Strait sends it as the dialog's next CSeq).
	next := 1
	retry := func(why string) bool {
		if !tgt.upstream || next >= len(tgt.attempts) {
			return false
		}
		c.log.Info("upstream target failed; trying the next", "target", d.upstreamKey(), "why", why, "next", tgt.attempts[next].Key())
		aimAt(d, tgt.attempts[next], tgt.user)
		next++
		return true
	}
	var tx sip.ClientTransaction
	var inv *sip.Request
	var err error
	// A 2xx after the first of a transaction (a retransmission, or a
	// forking proxy's other branch) goes to forks, on sipgo's goroutine.
	forks := &forkGuard{e: e, d: d}
	for {
		inv = build()
		tx, err = e.st.Transaction(ctx, inv)
		if err == nil {
			tx.OnRetransmission(forks.onRetransmission)
			break
		}
		if retry(err.Error()) {
			continue
		}
		c.log.Warn("callee unreachable", "err", err)
		cl.failed(503, "", nil)
		c.end(503, "callee unreachable")
		return
	}
	defer func() { tx.Terminate() }()
	// silence bounds the wait for a first response from an upstream
	// target when another is left to try (Timer B's 32 s is too long to
	// ring nowhere).
	silence := time.NewTimer(noResponseFailover)
	defer silence.Stop()
	if !tgt.upstream || len(tgt.attempts) < 2 {
		silence.Stop()
	}
	heard, progressed := false, false
	visited := map[string]bool{}
	if tgt.upstream {
		visited[redirectKey(tgt.user, tgt.attempts[0].Host())] = true
	}
	resend := func(why string) bool {
		if progressed || !retry(why) {
			return false
		}
		tx.Terminate()
		for {
			inv = build()
			var err error
			if tx, err = e.st.Transaction(ctx, inv); err == nil {
				tx.OnRetransmission(forks.onRetransmission)
				heard = false
				silence.Reset(noResponseFailover)
				return true
			}
			if !retry(err.Error()) {
				return false
			}
		}
	}
	early := false
	reliable := reliableTracker{}
	for {
		select {
		case res := <-tx.Responses():
			e.cfg.Metrics.Response(string(sip.INVITE), res.StatusCode, true)
			heard = true
			silence.Stop()
			switch {
			case res.StatusCode == 100:
				continue
			case res.IsProvisional():
				if rseq, ok := reliableRSeq(res); ok && !reliable.fresh(res, rseq) {
					continue // a retransmission (RFC 3262 section 4): nothing reaches the caller
				}
				if !progressed && !c.sub {
					e.cfg.Metrics.CallProgressed(c.direction, time.Since(c.start))
				}
				progressed = true
				if tag, ok := res.To().Params.Get("tag"); ok && tag != "" {
					d.established(res)
				}
				if rseq, ok := reliableRSeq(res); ok {
					c.prack(d, res, rseq)
				}
				if len(res.Body()) > 0 && !delayed {
					ans, perr := sdpBody(res.Body(), contentType(res))
					if perr == nil && ans != nil {
						c.m.signalledFrom(1, res.Source())
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
				c.bridge(ctx, inv, res, cl, delayed, forks)
				return
			default:
				if failover(res.StatusCode) && resend(sipnet.ReasonPhrase(res.StatusCode)) {
					continue
				}
				if res.StatusCode >= 300 && res.StatusCode < 400 {
					// See redirect.go for who follows a redirect.
					if tgt.upstream && c.legs[0].kind == kindWebRTC {
						if t, user, ok := c.followRedirect(res, visited); ok {
							c.log.Info("following a redirect", "status", res.StatusCode, "to", user, "target", t.Key())
							tx.Terminate()
							aimAt(d, t, user)
							inv = build()
							if tx, err = e.st.Transaction(ctx, inv); err != nil {
								c.log.Warn("redirect target unreachable", "err", err)
								cl.failed(503, "", nil)
								c.end(503, "redirect target unreachable")
								return
							}
							tx.OnRetransmission(forks.onRetransmission)
							continue
						}
					} else if c.legs[0].kind == kindPlain && c.legs[0].d != nil {
						if hdrs := c.passedContacts(res); len(hdrs) > 0 {
							c.log.Info("passing a redirect back", "status", res.StatusCode)
							cl.failed(res.StatusCode, res.Reason, hdrs)
							c.end(res.StatusCode, "callee redirected")
							return
						}
					}
				}
				code := mapFailure(res.StatusCode)
				var hdrs []sip.Header
				if (code == 401 || code == 407) && tgt.upstream {
					if req != nil {
						e.challenges.remember(req, d) // the retry continues this dialog
					}
					for _, n := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
						for h := range sipnet.HeadersNamed(res, n) {
							hdrs = append(hdrs, sip.NewHeader(n, h.Value()))
						}
					}
				} else if code == 401 || code == 407 {
					code = 403
				}
				if code == 422 {
					for h := range sipnet.HeadersNamed(res, "Min-SE") {
						hdrs = append(hdrs, sip.NewHeader("Min-SE", h.Value()))
					}
				}
				reason := ""
				if code == res.StatusCode {
					reason = res.Reason
				}
				c.log.Info("callee refused", "status", res.StatusCode)
				cl.failed(code, reason, hdrs)
				c.end(code, "callee "+strings.ToLower(sipnet.ReasonPhrase(code)))
				return
			}
		case m := <-c.inbox:
			c.serve(m)
		case <-c.stopping:
			c.cancelCallee(tx, inv)
			c.refuse(cl)
			return
		case <-ctx.Done():
			code, reason := 408, "ring timeout"
			if e.ctx.Err() != nil {
				code, reason = 503, "shutdown"
			}
			c.cancelCallee(tx, inv)
			cl.failed(code, "", nil)
			c.end(code, reason)
			return
		case <-silence.C:
			if !heard && resend("no response") {
				continue
			}
		case <-tx.Done():
			if resend("transaction failed") {
				continue
			}
			c.log.Info("callee did not answer the INVITE", "err", tx.Err())
			e.cfg.Metrics.TransactionFailed(string(sip.INVITE), sipnet.TxFailure(tx.Err()))
			cl.failed(408, "", nil)
			c.end(408, "callee timeout")
			return
		}
	}
}

// cancelCallee sends CANCEL for the callee's INVITE and waits for its
// final response; a 2xx that crossed the CANCEL is ACKed and hung up.
// Loop only: the call is ending, so the inbox waits (end answers it).
func (c *Call) cancelCallee(tx sip.ClientTransaction, inv *sip.Request) {
	st := c.e.st
	cctx, cancel := context.WithTimeout(c.ctx, cancelWait)
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
				c.bye(b)
			}
			return
		case <-tx.Done():
			return
		case <-cctx.Done():
			return
		}
	}
}

// offerToCallee makes the callee's offer: from the caller's offer, or a
// fresh one when the caller offered none (delayed offer, RFC 3261
// 13.2.1). A refused offer fails the caller and ends the call (ok false);
// otherwise the session exists and the call is published. Loop only.
func (c *Call) offerToCallee(ctx context.Context, offer *sdp.Description, cl caller) (body []byte, ok bool) {
	var err error
	if offer == nil {
		body, err = c.m.offerFresh(ctx, 1)
	} else {
		body, err = c.m.offer(ctx, 0, offer)
	}
	if err != nil {
		code, reason := statusOf(err)
		c.log.Info("offer refused", "err", err)
		cl.failed(code, reason, nil)
		c.end(code, "offer: "+err.Error())
		return nil, false
	}
	c.publish() // the session exists
	return body, true
}
