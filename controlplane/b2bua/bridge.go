package b2bua

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// bridge completes a call the callee answered: ACK the callee, answer
// the caller, wait for its ACK. Loop only.
func (c *Call) bridge(ctx context.Context, inv *sip.Request, res *sip.Response, cl caller, delayed bool, forks *forkGuard) {
	st := c.e.st
	b := c.legs[1]
	b.d.established(res)
	forks.won() // later 2xx: retransmissions, or other branches (fork.go)
	b.info.Store(allowsInfo(res))
	c.uacTimerAnswered(res, b)
	ack := b.d.ack(inv.CSeq().SeqNo, nil)
	st.Write(ack)
	fail := func(code int, reason string, err error) {
		c.log.Info("answer refused", "err", err)
		cl.failed(code, reason, nil)
		c.bye(b)
		c.end(code, "answer: "+err.Error())
	}
	var out []byte
	if len(res.Body()) > 0 {
		ans, err := sdpBody(res.Body(), contentType(res))
		if err != nil {
			fail(488, "", err)
			return
		}
		c.m.signalledFrom(1, res.Source())
		out, _, err = c.m.answer(ctx, 1, ans, res.Body())
		if err != nil {
			code, reason := statusOf(err)
			fail(code, reason, err)
			return
		}
	} else {
		ex := c.m.pend
		if ex == nil || ex.answerOut == nil {
			fail(502, "Bad Gateway: no answer", errors.New("2xx without SDP"))
			return
		}
		out = ex.answerOut
	}
	c.setState(StateAnswered)
	c.log.Info("answered")
	c.answerCaller(cl, out, delayed)
}

// answerCaller gives the caller the answer out and waits for its ACK; a
// delayed-offer caller's ACK carries its answer to Strait's offer, which
// goes to the media then. A caller that never ACKs ends the call (408),
// an unusable answer in the ACK too (488). Loop only.
func (c *Call) answerCaller(cl caller, out []byte, delayed bool) {
	ackReq, err := cl.answered(out)
	if errors.Is(err, errStopped) {
		return // the loop hangs up next
	}
	if err != nil {
		c.log.Info("caller never confirmed the answer", "err", err)
		c.end(408, "no ack")
		return
	}
	if delayed && ackReq != nil {
		d, err := sdpBody(ackReq.Body(), contentType(ackReq))
		if err != nil || d == nil {
			c.log.Info("delayed-offer ACK without a usable answer", "err", err)
			c.end(488, "no answer in ack")
			return
		}
		actx, cancel := context.WithTimeout(c.ctx, requestTimeout)
		defer cancel()
		if _, _, err := c.m.answer(actx, 0, d, ackReq.Body()); err != nil {
			c.log.Info("delayed-offer answer refused", "err", err)
			c.end(488, "bad answer in ack")
		}
	}
}

var errNoAck = sipError(408, "", errors.New("no ACK for 2xx"))

// waitAck waits for the ACK of a 2xx Strait sent on leg l for request
// seq, retransmitting the 2xx over UDP (RFC 3261 section 13.3.1.4) and
// serving the inbox meanwhile. Loop only.
func (c *Call) waitAck(l *leg, tx sip.ServerTransaction, res *sip.Response, seq uint32) (*sip.Request, error) {
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
		case m := <-c.inbox:
			c.serve(m)
		case <-c.stopping:
			return nil, errStopped
		}
	}
}
