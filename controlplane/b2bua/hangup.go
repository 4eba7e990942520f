package b2bua

import (
	"context"
	"log/slog"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/internal/logging"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Hangup ends the call and returns once it has ended: a ringing call is
// cancelled, an answered one gets BYE on both legs. It returns once the
// call is over here (its session deleted, its CDR written, unlisted),
// without waiting for the peers' answers to the BYEs: a browser that is
// reconnecting gets its BYE when it is back (bye), which must not hold
// up the API's hang-up (or a peer's, forwarded within a bound).
func (c *Call) Hangup(cause int, reason string) {
	c.stop(cause, reason, nil)
	select {
	case <-c.over:
	case <-c.done:
	}
}

// lost ends a call whose leg l can no longer be reached (its WebSocket
// closed): a ringing call is cancelled (or refused, when l is the
// callee), an answered one gets BYE on the other leg only.
func (c *Call) lost(l *leg) {
	reason := "connection lost"
	if c.State() == StateAnswered || c.sub {
		reason = "caller connection lost"
		if l.idx == 1 {
			reason = "callee connection lost"
		}
	}
	c.stop(480, reason, l)
}

// failureCode is the final response a caller gets when its call is
// stopped before the answer: the stop's cause when it is a failure,
// else 487 (Request Terminated).
func failureCode(cause int) int {
	if cause >= 400 && cause < 700 {
		return cause
	}
	return 487
}

// hangup ends an answered call on the stop request. Loop only.
func (c *Call) hangup() {
	r := c.stopReq.Load()
	if r.detach && c.state == StateAnswered && !c.sub {
		c.leave()
		return
	}
	if r.disown && c.state == StateAnswered && !c.sub {
		c.disown()
		return
	}
	if r.from != nil {
		c.gone[r.from.idx] = true
	}
	c.end(r.cause, r.reason)
}

// end ends the call once. BYEs go to every leg of an answered call that
// is still there, on goroutines of their own (they use only the dialogs,
// which have their own locks), while the loop deletes the session, writes
// the CDR and unlists the call; then the loop waits for the BYEs'
// answers, answering what arrives meanwhile (a BYE that crossed Strait's
// gets its 200), and forgets the dialogs last. Everything but the wait
// for peers is done first, so that a shutdown that stops waiting for
// silent peers has little left to do. Loop only.
func (c *Call) end(cause int, reason string) {
	if c.state == StateEnded {
		return
	}
	old := c.state
	c.state = StateEnded
	c.publish()
	if c.subTimer != nil {
		c.subTimer.Stop()
	}
	byes := 0
	byeDone := make(chan struct{}, len(c.legs))
	if old == StateAnswered && !c.sub {
		for _, l := range c.legs {
			if l == nil || l.d == nil || c.gone[l.idx] {
				continue
			}
			byes++
			go func() {
				c.bye(l)
				byeDone <- struct{}{}
			}()
		}
	}
	var final *pb.Session
	fresh, node := false, ""
	if c.m != nil {
		node = c.e.cfg.Pool.NodeOf(c.m.sessionID())
		ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
		final, fresh = c.m.close(ctx, reason)
		cancel()
	}
	if !c.sub {
		c.e.cfg.Metrics.CallState(old.String(), "")
		c.e.cfg.Metrics.CallEnded(cause)
		c.e.cfg.Metrics.CallFinal(c.direction, !c.answer.IsZero(), cause)
		rec := c.record(cause, reason)
		rec.Media, rec.Node = legMedia(final), node
		if s := c.sample.Load(); s != nil {
			if !fresh && c.m != nil {
				// The node did not give its final counters (it is gone):
				// the last sample is the best account there is.
				rec.Media = s.media
			}
			if rec.Node == "" {
				rec.Node = s.node
			}
		}
		if c.e.cfg.CDR != nil {
			if err := c.e.cfg.CDR.Add(*rec); err != nil {
				c.log.Warn("CDR not written", "err", err)
			} else if j := c.e.cfg.Journal; j != nil {
				if err := j.End(c.ID); err != nil {
					c.log.Warn("CDR journal: end not recorded", "err", err)
				}
			}
		}
		c.e.emit(Event{Call: c.ID, State: StateEnded.String(), Time: rec.End, Cause: cause, Reason: reason,
			Caller: rec.Caller, Callee: rec.Callee, App: c.appName()})
		// The call's one line at info (its start is at debug): what an
		// operator greps for, with the caller's SIP Call-ID to find the
		// call in a capture.
		if c.log.Enabled(c.ctx, slog.LevelInfo) {
			sipID := ""
			if l := c.legs[0]; l != nil && l.d != nil {
				sipID = l.d.callID
			}
			c.log.Info("call ended", "cause", cause, "reason", reason, "duration", rec.Duration,
				"direction", c.direction, logging.KeySIPCallID, sipID)
		}
	}
	// Unlisted after its record is written: whoever sees the call gone
	// finds its CDR.
	c.forget()
	c.e.unregister(c)
	if c.release != nil {
		c.release()
	}
	close(c.over)
	for byes > 0 {
		select {
		case <-byeDone:
			byes--
		case m := <-c.inbox:
			c.answerEnded(m)
		}
	}
	for _, l := range c.legs {
		c.e.removeDialog(l)
	}
	c.drain()
	c.cancel()
	close(c.done)
}

// leave lets go of an answered call without ending it (Engine.Detach):
// its record in the state store is brought up to date and kept, its
// session stays on its node, its CDR journal entry stays open, and nobody
// is told anything; the control plane that restores it carries it on.
// Loop only.
func (c *Call) leave() {
	c.persist()
	c.quitHere()
	c.log.Info("call handed over", "session", c.m.sessionID())
	close(c.done)
}

// quitHere ends an answered call's life in this process without ending
// the call (leave, disown): the loop returns, the call is unlisted, its
// per-user slot released and its dialogs forgotten; nothing is sent and
// no CDR written. Loop only.
func (c *Call) quitHere() {
	c.state = StateEnded // the loop returns
	c.e.unregister(c)
	c.e.cfg.Metrics.CallState(StateAnswered.String(), "")
	if c.release != nil {
		c.release()
	}
	for _, l := range c.legs {
		c.e.removeDialog(l)
	}
	c.drain()
	c.cancel()
}

// disown drops an answered call a peer owns now (Engine.Disown): like
// leave, but its record is not written (it names the peer now) and its
// journal entry is closed without a CDR (the owner writes it). Loop only.
func (c *Call) disown() {
	c.savedMu.Lock()
	c.saved = nil
	c.savedMu.Unlock()
	if j := c.e.cfg.Journal; j != nil {
		if err := j.End(c.ID); err != nil {
			c.log.Warn("cdr journal: call owned elsewhere not closed", "err", err)
		}
	}
	c.quitHere()
	c.log.Warn("call dropped here: another control plane took it over while this one was cut off from the state store", "session", c.m.sessionID())
	close(c.done)
}

// bye sends BYE on leg l and waits for its answer (at most byeTimeout,
// less when shutdown's deadline comes first). It runs on a goroutine of
// end's, alongside the session's deletion; it touches only the dialog,
// which has its own lock.
func (c *Call) bye(l *leg) {
	if w := l.back.Load(); w != nil {
		// The browser is reconnecting (its control plane died, or the
		// one holding its WebSocket): the BYE goes on its new flow once
		// it is back, within the takeover grace. Sent on the dead flow
		// now, it would be lost and the browser left in the call.
		c.log.Info("BYE waits for the browser's new connection", "leg", l.idx)
		select {
		case <-w.back:
		case <-c.ctx.Done():
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, byeTimeout)
	defer cancel()
	if _, err := l.d.send(ctx, l.d.request(sip.BYE, nil, "")); err != nil {
		c.log.Info("BYE not answered", "leg", l.idx, "err", err)
	}
}

// renew keeps a subscription relay for d more (its Expires plus slack).
// Loop only.
func (c *Call) renew(d time.Duration) {
	if c.state == StateEnded {
		return
	}
	if c.subTimer != nil {
		c.subTimer.Stop()
	}
	c.subTimer = time.NewTimer(d)
}
