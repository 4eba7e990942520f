package b2bua

import (
	"context"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/strait-sbc/strait/internal/logging"
)

// Forking upstream (RFC 3261 sections 13.2.2.4 and 12.1.2): a proxy in
// front of the PBX may fork Strait's INVITE, and each branch that answers
// makes an early dialog (its own To tag) and maybe a 2xx. Strait keeps
// following the latest early dialog (its PRACKs go to each one's tag;
// the caller hears the latest early media), and the first 2xx wins: the
// dialog becomes that branch's. Every later 2xx from another branch is
// ACKed, then hung up with BYE on a dialog of its own; a 2xx that repeats
// the winner's is ACKed again (the ACK was lost).

// strayAnswer handles a 2xx to the INVITE of dialog d (a UAC dialog of
// Strait's, already answered) that is not the first: a retransmission of
// the winner's, or another branch's answer. inviteCSeq is the INVITE's
// CSeq number. Safe on any goroutine: it uses d under its lock and sends.
func (e *Engine) strayAnswer(d *dialog, res *sip.Response, inviteCSeq uint32) {
	tag, _ := res.To().Params.Get("tag")
	d.mu.Lock()
	winner := d.remoteTag
	d.mu.Unlock()
	if tag == winner || tag == "" {
		e.st.Write(d.ack(inviteCSeq, nil))
		return
	}
	fork := d.branch()
	fork.established(res)
	e.log.Info("another branch answered the INVITE; hanging it up", logging.KeySIPCallID, d.callID, "tag", tag)
	e.st.Write(fork.ack(inviteCSeq, nil))
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, byeTimeout)
		defer cancel()
		fork.send(ctx, fork.request(sip.BYE, nil, ""))
	}()
}

// branch returns a dialog for another branch of d's INVITE: the same
// Call-ID, local tag, URIs and transport, no remote tag or route set yet
// (established fills them from the branch's response), the INVITE's
// CSeq.
func (d *dialog) branch() *dialog {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := &dialog{st: d.st, callID: d.callID, localTag: d.localTag, localName: d.localName, flow: d.flow,
		contact: d.contact, local: d.local, remote: d.remote, transport: d.transport, dest: d.dest, up: d.up,
		target: d.target, cseq: d.cseq}
	return b
}

// onStrayResponse takes responses that match no transaction: a 2xx to an
// INVITE of one of Strait's dialogs after its transaction ended (another
// branch's late answer, or the winner's retransmission). Anything else is
// dropped: a response Strait cannot place proves nothing, and answering it
// would let anyone make Strait send requests.
func (e *Engine) onStrayResponse(res *sip.Response) {
	cs := res.CSeq()
	if !res.IsSuccess() || cs == nil || cs.MethodName != sip.INVITE || res.CallID() == nil || res.From() == nil || res.To() == nil {
		return
	}
	tag, _ := res.From().Params.Get("tag")
	e.mu.Lock()
	l := e.dialogs[key(res.CallID().Value(), tag)]
	e.mu.Unlock()
	if l == nil || l.d == nil || l.d.uas {
		return
	}
	e.strayAnswer(l.d, res, cs.SeqNo)
}

// forkGuard sees the 2xx responses sipgo passes up after the first one
// (on its own goroutine, through OnRetransmission, possibly before the
// call's loop has read the first): it holds them until the loop says
// which dialog won, then has strayAnswer deal with each.
type forkGuard struct {
	e *Engine
	d *dialog

	mu      sync.Mutex // guards the fields below
	decided bool
	held    []*sip.Response
}

// onRetransmission is the transaction's OnRetransmission callback.
func (g *forkGuard) onRetransmission(r *sip.Response) {
	if !r.IsSuccess() {
		return
	}
	g.mu.Lock()
	if !g.decided {
		if len(g.held) < 16 {
			g.held = append(g.held, r)
		}
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.e.strayAnswer(g.d, r, r.CSeq().SeqNo)
}

// won is called by the loop once d is established from the winning 2xx.
func (g *forkGuard) won() {
	g.mu.Lock()
	g.decided = true
	held := g.held
	g.held = nil
	g.mu.Unlock()
	for _, r := range held {
		g.e.strayAnswer(g.d, r, r.CSeq().SeqNo)
	}
}
