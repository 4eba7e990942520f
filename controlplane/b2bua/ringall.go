package b2bua

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/sipnet"
	"github.com/strait-sbc/strait/internal/logging"
)

// Ringing every registration of a user (standalone mode): a call for a
// user with several live bindings (browser tabs, a browser and a SIP
// phone) rings all of them at once, as FreeSWITCH's and Kamailio's users
// expect (RFC 3261 section 16.6's parallel forking, done by a B2BUA).
//
// Each fork is a dialog of its own toward its binding (its own Call-ID
// and tag: the bindings are different UAs) with a dataplane session of
// its own, made from the caller's offer: a browser fork gets a WebRTC
// leg, a phone fork a plain one, and nothing one fork's peer does (ICE
// checks, DTLS, RTP after a late answer) can reach the session of
// another. A session per fork, rather than one session whose callee leg
// all forks share, is what lets a browser and a SIP phone ring together
// (a leg is WebRTC or plain) and keeps a losing browser that answered
// late from handshaking on the winner's transport. The cost is a session
// per fork while ringing, bounded by MaxForks and freed as each fork
// loses.
//
// The caller's side has one dialog and hears one answer (RFC 3261
// section 13.2.1: a UAC takes the first SDP answer and ignores later
// ones), so early media passes only from a fork that is the last one
// ringing: while several ring, the caller hears 180 and none of their
// early media (which could come from a fork that then loses, leaving the
// caller with another session's answer). The first 2xx wins and is
// bridged; every other fork gets CANCEL with Reason: SIP;cause=200;
// text="Call completed elsewhere" (RFC 3326; JsSIP and SIP.js show it as
// answered elsewhere), after its first provisional response (RFC 3261
// section 9.1), and a 2xx that crosses the CANCEL is ACKed and hung up
// with BYE (section 13.2.2.4). A 6xx from any fork ends them all (section
// 16.7 step 5) and reaches the caller; when every fork fails the caller
// gets the best failure by section 16.7 step 6 (bestFailure). A CANCEL
// from the caller, a hang-up, the ring timeout or a shutdown cancels
// every fork.

// DefaultMaxForks bounds the registrations one call rings when
// Config.MaxForks is 0.
const DefaultMaxForks = 10

// completedElsewhere is the Reason of the CANCEL a fork gets when another
// answered (RFC 3326 section 2).
const completedElsewhere = `SIP;cause=200;text="Call completed elsewhere"`

// completeForkedCall fills in what a call that rings several
// registrations needs before it is published: the caller's leg and the
// direction (from the most recent binding's kind). The callee's leg and
// the media are the winning fork's, set by runFork.
func (e *Engine) completeForkedCall(c *Call, callerDialog *dialog, callerKind legKind, tgts []target) {
	c.legs[0] = &leg{c: c, idx: 0, d: callerDialog, kind: callerKind, acks: make(chan *sip.Request, 4)}
	kind := kindPlain
	if tgts[0].binding.WebSocket() {
		kind = kindWebRTC
	}
	c.direction = direction(c.legs[0], &leg{kind: kind}, c.api)
}

// callerFailure is what the caller is told of a fork's failure: as
// mapFailure says, and a device's challenge (401, 407) is the device's
// business, not the caller's: 403.
func callerFailure(code int) int {
	code = mapFailure(code)
	if code == 401 || code == 407 {
		return 403
	}
	return code
}

// forkTargets returns the targets a call to tgt rings in standalone
// mode: every reachable live binding resolve found, the most recent
// first, at most MaxForks. Fewer than two means no forking.
func (e *Engine) forkTargets(tgt target) []target {
	if e.trunk() || tgt.echo || tgt.app != nil || tgt.replaces != "" {
		return nil
	}
	bs, user := tgt.bindings, tgt.user
	if len(bs) < 2 {
		return nil
	}
	limit := e.cfg.MaxForks
	if limit <= 0 {
		limit = DefaultMaxForks
	}
	var out []target
	for _, b := range bs {
		if len(out) == limit {
			break
		}
		if t, err := e.reachable(b, user); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// fork is one registration a call rings. The loop owns it (and its
// session) until it gives the fork its verdict: won (the call takes its
// leg and session) or not (its pump frees it; see pump). Every fork with
// a pump gets exactly one verdict.
type fork struct {
	n     int
	l     *leg
	m     *media // its session: the caller's leg and this fork's
	inv   *sip.Request
	tx    sip.ClientTransaction
	guard *forkGuard

	verdict chan verdict // buffered; one send, by the loop

	// Owned by the loop.
	rel     reliableTracker
	live    bool          // ringing: no final response, no verdict
	decided bool          // the verdict was sent
	early   *sip.Response // its latest provisional with SDP
}

// verdict is the loop's last word to a fork's pump.
type verdict struct {
	won    bool
	reason string // the CANCEL's Reason, if one is sent ("" for none)
}

// forkEvent is what a fork's pump passes the loop: a response, or (res
// nil) the end of the transaction without a final response.
type forkEvent struct {
	f   *fork
	res *sip.Response
}

// newFork makes a fork toward tgt: its leg, its dialog (added to the
// engine) and its session with the callee's offer in body. Loop only.
func (c *Call) newFork(ctx context.Context, n int, tgt target, offer *sdp.Description, fromName string) (*fork, []byte, error) {
	d, kind := c.e.outbound(tgt, c.caller, fromName)
	l := &leg{c: c, idx: 1, d: d, kind: kind, acks: make(chan *sip.Request, 4)}
	m := newMedia(c.e.cfg.Pool, c.ID, c.e.cfg.MediaTimeout, c.mediaLeg(c.legs[0]), c.mediaLeg(l))
	var body []byte
	var err error
	if offer == nil {
		body, err = m.offerFresh(ctx, 1)
	} else {
		body, err = m.offer(ctx, 0, offer)
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(c.e.ctx, requestTimeout)
		m.close(cctx, "fork offer refused")
		cancel()
		return nil, nil, err
	}
	return &fork{n: n, l: l, m: m, guard: &forkGuard{e: c.e, d: d}, verdict: make(chan verdict, 1), live: true}, body, nil
}

// runFork rings every target at once and bridges the first to answer;
// it returns once the call is answered or has ended. Loop only.
func (c *Call) runFork(req *sip.Request, offer *sdp.Description, tgts []target, fromName string, cl caller) {
	e := c.e
	ctx, cancel := context.WithTimeout(c.ctx, e.cfg.RingTimeout)
	defer cancel()
	if c.stopped() {
		c.refuse(cl)
		return
	}
	delayed := offer == nil
	c.forking.Store(true) // FlowClosed tells the loop of a ringing tab's closed WebSocket
	defer c.forking.Store(false)
	events := make(chan forkEvent, 4*len(tgts))
	var forks []*fork
	var failures []int
	for i, tgt := range tgts {
		f, body, err := c.newFork(ctx, i, tgt, offer, fromName)
		if err != nil {
			code, _ := statusOf(err)
			c.log.Info("fork offer refused", "fork", i, "err", err)
			failures = append(failures, code)
			continue
		}
		f.inv = c.forkInvite(req, f.l, body)
		e.addDialog(f.l)
		tx, err := e.st.Transaction(ctx, f.inv)
		if err != nil {
			c.log.Info("fork unreachable", "fork", i, "err", err)
			failures = append(failures, 480)
			c.dropFork(f)
			continue
		}
		tx.OnRetransmission(f.guard.onRetransmission)
		f.tx = tx
		forks = append(forks, f)
		go f.pump(c, events)
	}
	c.publish()
	if len(forks) == 0 {
		code := callerFailure(bestFailure(failures))
		cl.failed(code, "", nil)
		c.end(code, "no registration could be rung")
		return
	}
	c.log.Info("ringing every registration", "forks", len(forks), logging.KeySIPCallID, forks[0].l.d.callID)
	// give sends f its verdict; cancelAll gives every fork but keep that
	// has none a losing one.
	give := func(f *fork, v verdict) {
		if !f.decided {
			f.live, f.decided = false, true
			f.verdict <- v
		}
	}
	cancelAll := func(keep *fork, reason string) {
		for _, f := range forks {
			if f != keep {
				give(f, verdict{reason: reason})
			}
		}
	}
	defer cancelAll(nil, "") // whatever way the loop leaves, no pump waits
	ringing, earlyFrom := false, (*fork)(nil)
	for {
		select {
		case ev := <-events:
			f, res := ev.f, ev.res
			if !f.live {
				continue // a response that came as the fork was cancelled
			}
			if res == nil {
				c.log.Info("fork did not answer the INVITE", "fork", f.n, "err", f.tx.Err())
				failures = append(failures, 408)
				give(f, verdict{})
			} else {
				e.cfg.Metrics.Response(string(sip.INVITE), res.StatusCode, true)
				switch {
				case res.StatusCode == 100:
					continue
				case res.IsProvisional():
					if rseq, ok := reliableRSeq(res); ok {
						if !f.rel.fresh(res, rseq) {
							continue // a retransmission (RFC 3262 section 4)
						}
					}
					if !ringing {
						e.cfg.Metrics.CallProgressed(c.direction, time.Since(c.start))
					}
					if tag, ok := res.To().Params.Get("tag"); ok && tag != "" {
						f.l.d.established(res)
					}
					if rseq, ok := reliableRSeq(res); ok {
						c.prack(f.l.d, res, rseq)
					}
					if len(res.Body()) > 0 && !delayed {
						f.early = res
					}
					if !ringing && earlyFrom == nil {
						cl.progress(180, nil)
					}
					ringing = true
				case res.IsSuccess():
					give(f, verdict{won: true})
					cancelAll(f, completedElsewhere)
					c.log.Info("fork answered", "fork", f.n)
					c.setCallee(f.l)
					c.direction = direction(c.legs[0], f.l, c.api)
					c.m = f.m
					c.publish()
					c.bridge(ctx, f.inv, res, cl, delayed, f.guard)
					f.tx.Terminate() // as runInvite does: sipgo would keep it 64*T1
					return
				default:
					c.log.Info("fork refused", "fork", f.n, "status", res.StatusCode)
					give(f, verdict{})
					if res.StatusCode >= 600 {
						// RFC 3261 section 16.7 step 5: a 6xx ends the search.
						cancelAll(nil, "SIP;cause="+strconv.Itoa(res.StatusCode)+";text=\""+sanitize(sipnet.ReasonPhrase(res.StatusCode))+"\"")
						code := callerFailure(res.StatusCode)
						cl.failed(code, "", nil)
						c.end(code, "callee "+strings.ToLower(sipnet.ReasonPhrase(code)))
						return
					}
					failures = append(failures, res.StatusCode)
				}
			}
			if c.settleForks(ctx, forks, failures, cl, &earlyFrom) {
				return
			}
		case m := <-c.inbox:
			if m.lostFlow == "" {
				c.serve(m)
				continue
			}
			// A browser that rings closed its WebSocket (a tab was
			// closed): that fork fails now, not at Timer B.
			lost := false
			for _, f := range forks {
				if f.live && f.l.d.flow == m.lostFlow {
					c.log.Info("fork's connection lost", "fork", f.n)
					failures = append(failures, 480)
					give(f, verdict{})
					lost = true
				}
			}
			if lost && c.settleForks(ctx, forks, failures, cl, &earlyFrom) {
				return
			}
		case <-c.stopping:
			cancelAll(nil, "")
			c.refuse(cl)
			return
		case <-ctx.Done():
			cancelAll(nil, "")
			code, reason := 408, "ring timeout"
			if e.ctx.Err() != nil {
				code, reason = 503, "shutdown"
			}
			cl.failed(code, "", nil)
			c.end(code, reason)
			return
		}
	}
}

// settleForks acts on the forks still ringing after one failed: none
// left ends the call with the best failure (true); the last one left
// passes its early media to the caller. Loop only.
func (c *Call) settleForks(ctx context.Context, forks []*fork, failures []int, cl caller, earlyFrom **fork) bool {
	last, n := lastRinging(forks)
	if n == 0 {
		code := callerFailure(bestFailure(failures))
		c.log.Info("every registration refused", "status", code)
		cl.failed(code, "", nil)
		c.end(code, "callee "+strings.ToLower(sipnet.ReasonPhrase(code)))
		return true
	}
	if n == 1 && last.early != nil && (*earlyFrom == nil || *earlyFrom == last) {
		// The last fork ringing is the only one that can answer: its
		// early media is the caller's.
		res := last.early
		last.early = nil
		if ans, err := sdpBody(res.Body(), contentType(res)); err == nil && ans != nil {
			last.m.signalledFrom(1, res.Source())
			if out, _, err := last.m.answer(ctx, 1, ans, res.Body()); err == nil {
				cl.progress(183, out)
				*earlyFrom = last
				c.setState(StateEarly)
			} else {
				c.log.Info("early answer refused", "fork", last.n, "err", err)
			}
		}
	}
	return false
}

// lastRinging returns how many forks still ring and, when one does,
// which.
func lastRinging(forks []*fork) (*fork, int) {
	var last *fork
	n := 0
	for _, f := range forks {
		if f.live {
			last = f
			n++
		}
	}
	return last, n
}

// forkInvite builds a fork's INVITE as runInvite builds the callee's.
func (c *Call) forkInvite(req *sip.Request, l *leg, body []byte) *sip.Request {
	inv := l.d.request(sip.INVITE, body, "application/sdp")
	if req != nil {
		inv.ReplaceHeader(maxForwards(req))
	}
	inv.AppendHeader(sip.NewHeader("Allow", allow))
	supported := []string{"timer"}
	if l.kind == kindPlain {
		supported = append(supported, "100rel")
	}
	inv.AppendHeader(sip.NewHeader("Supported", strings.Join(supported, ", ")))
	if req != nil {
		if se, ok, bad := readSessionExpires(req); ok && !bad {
			inv.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(max(se.secs, minSessionExpires)))))
			inv.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(max(readMinSE(req), minSessionExpires)))))
		}
		c.e.referredBy(req, inv, l)
	}
	return inv
}

// dropFork frees a fork that has no pump (its INVITE could not be
// sent): its session and its dialog. Loop only.
func (c *Call) dropFork(f *fork) {
	ctx, cancel := context.WithTimeout(c.e.ctx, requestTimeout)
	f.m.close(ctx, "fork failed")
	cancel()
	c.e.removeDialog(f.l)
}

// pump passes the fork's responses to the loop until the final one (or
// the transaction's end), then waits for the loop's verdict. A fork that
// did not win is freed here, on the pump's goroutine, so that a winner is
// bridged without waiting for the losers: its session is deleted, and
// if it still rings it gets CANCEL (once a provisional response came,
// RFC 3261 section 9.1) and the pump waits for its final response; a
// 2xx, whether it crossed the CANCEL or came before the verdict, is
// ACKed and hung up with BYE (section 13.2.2.4). Bounded by the
// transaction's timers, cancelWait and byeTimeout; after the verdict it
// touches only the fork.
func (f *fork) pump(c *Call, out chan<- forkEvent) {
	heard := false
	for {
		select {
		case res := <-f.tx.Responses():
			heard = true
			select {
			case out <- forkEvent{f: f, res: res}:
				if res.IsProvisional() {
					continue
				}
				if v := <-f.verdict; !v.won {
					f.abandon(c, v.reason, heard, res, false)
				}
			case v := <-f.verdict:
				f.abandon(c, v.reason, heard, res, false)
			}
			return
		case <-f.tx.Done():
			select {
			case out <- forkEvent{f: f}:
				v := <-f.verdict
				f.abandon(c, v.reason, heard, nil, true)
			case v := <-f.verdict:
				f.abandon(c, v.reason, heard, nil, true)
			}
			return
		case v := <-f.verdict:
			f.abandon(c, v.reason, heard, nil, false)
			return
		}
	}
}

// abandon frees a fork that did not win: see pump. last is a response the
// pump took from the transaction and the loop did not act on; ended: the
// transaction is over.
func (f *fork) abandon(c *Call, reason string, heard bool, last *sip.Response, ended bool) {
	e := c.e
	defer e.removeDialog(f.l)
	mctx, mcancel := context.WithTimeout(e.ctx, requestTimeout)
	f.m.close(mctx, "fork lost")
	mcancel()
	if ended {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, cancelWait)
	defer cancel()
	sent := false
	sendCancel := func() {
		if sent {
			return
		}
		sent = true
		creq := cancelFor(e.st, f.inv)
		if reason != "" {
			creq.AppendHeader(sip.NewHeader("Reason", reason))
		}
		e.cfg.Metrics.Request(string(sip.CANCEL), false)
		go e.st.Do(ctx, creq)
	}
	res := last
	for {
		switch {
		case res == nil:
			if heard {
				sendCancel()
			}
		case res.IsProvisional():
			sendCancel()
		case res.IsSuccess():
			f.l.d.established(res)
			f.guard.won() // its retransmissions are ACKed again
			e.st.Write(f.l.d.ack(f.inv.CSeq().SeqNo, nil))
			c.log.Info("a fork answered after another; hanging it up", "fork", f.n)
			bctx, bcancel := context.WithTimeout(e.ctx, byeTimeout)
			f.l.d.send(bctx, f.l.d.request(sip.BYE, nil, ""))
			bcancel()
			return
		default:
			return // its final failure: nothing left to do
		}
		select {
		case res = <-f.tx.Responses():
			heard = true
		case <-f.tx.Done():
			return
		case <-ctx.Done():
			// No final response in cancelWait (or nothing at all from a
			// fork that never answered, which gets no CANCEL): stop
			// retransmitting the INVITE rather than for the rest of
			// Timer B.
			f.tx.Terminate()
			return
		}
	}
}

// bestFailure picks the final response a caller gets when every fork
// failed (RFC 3261 section 16.7 step 6, without 6xx, which end the
// search at once): the lowest class; within 4xx the responses that tell
// the caller how to retry (415, 420, 484) first, then busy (486), then
// 488, else the first to arrive. 401 and 407 are never preferred: a
// device's challenge is not the caller's to answer. None: 480.
func bestFailure(codes []int) int {
	best := 0
	rank := func(code int) int {
		switch code {
		case 415, 420, 484:
			return 0
		case 486:
			return 1
		case 488:
			return 2
		case 401, 407:
			return 4
		}
		return 3
	}
	for _, code := range codes {
		switch {
		case best == 0:
			best = code
		case code/100 < best/100:
			best = code
		case code/100 == best/100 && rank(code) < rank(best):
			best = code
		}
	}
	if best == 0 {
		return 480
	}
	return best
}
