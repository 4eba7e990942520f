package b2bua

import (
	"context"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/cdr"
)

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
			final.Media = legMedia(s)
		}
		for _, l := range c.legs {
			c.e.removeDialog(l)
		}
		if c.release != nil {
			c.release()
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
