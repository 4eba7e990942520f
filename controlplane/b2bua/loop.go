package b2bua

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A call's loop is the one goroutine that owns the call (see Call). It
// runs the call's setup (the INVITE until it is answered or refused),
// then waits for what happens next: an in-dialog request delivered
// through the inbox, a stop request, a subscription's expiry. The loop
// does the call's I/O itself (SIP transactions, dataplane requests), but
// every wait on the network also serves the inbox and watches for a
// stop, so a BYE or a hang-up is never stuck behind a slow peer for
// longer than one dataplane request. No lock is held while it waits.
//
// Other goroutines never touch the loop's state. They:
//   - deliver an in-dialog request that changes the call (BYE, a
//     re-INVITE or UPDATE offer) and wait until the loop answered it;
//   - stop the call (API hang-up, CANCEL, lost connection, media timeout,
//     DTLS failure, shutdown), which never blocks;
//   - read the snapshot the loop published (Info, State).

// inboxSize bounds the requests waiting for a call's loop; a sender
// beyond it waits (a SIP handler goroutine, never the packet path).
const inboxSize = 16

// message is what another goroutine hands a call's loop: an in-dialog
// request, or (req nil) a subscription relay's refresh.
type message struct {
	l   *leg
	req *sip.Request
	tx  sip.ServerTransaction
	// handled is closed by the loop once it answered tx.
	handled chan struct{}
	// refresh renews a subscription relay for this long.
	refresh time.Duration
	// lostFlow: a browser's WebSocket closed while a call that rings
	// several registrations may ring it (ringall.go); ignored elsewhere.
	lostFlow string
}

// stopRequest asks a call's loop to end the call.
type stopRequest struct {
	cause  int
	reason string
	// from is the leg that is gone (its connection closed): it gets no BYE.
	from *leg
	// detach: an answered call is left as it is (no BYE, no CDR, its
	// session and its record in the state store kept) for the control
	// plane that takes over (Engine.Detach); any other ends with cause.
	detach bool
	// disown: the call is dropped here without a trace (no BYE, no CDR,
	// its session and its record left alone): a peer owns it now
	// (Engine.Disown).
	disown bool
}

// errStopped is what a wait inside the loop returns when the call was
// asked to end meanwhile.
var errStopped = sipError(487, "", errors.New("call ending"))

// deliver hands an in-dialog request to the call's loop and waits until
// the loop has answered it. A call that ends first answers 481 (RFC 3261
// section 12.2.2: the dialog no longer exists).
func (c *Call) deliver(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	m := message{l: l, req: req, tx: tx, handled: make(chan struct{})}
	select {
	case c.inbox <- m:
	case <-c.done:
		c.e.st.Respond(tx, req, 481, "", nil)
		return
	}
	select {
	case <-m.handled:
	case <-c.done:
		// The loop closes handled before done for every message it took.
		select {
		case <-m.handled:
		default:
			c.e.st.Respond(tx, req, 481, "", nil)
		}
	}
}

// post hands the loop a message that needs no answer; it gives up when
// the call ends.
func (c *Call) post(m message) {
	select {
	case c.inbox <- m:
	case <-c.done:
	}
}

// stop asks the call's loop to end the call with cause and reason; the
// first request wins and later ones are dropped. It never blocks.
func (c *Call) stop(cause int, reason string, from *leg) {
	if c.stopReq.CompareAndSwap(nil, &stopRequest{cause: cause, reason: reason, from: from}) {
		close(c.stopping)
	}
}

// detachStop asks the call's loop to let go of the call (see
// Engine.Detach); a call not answered yet ends with 503 "shutdown".
func (c *Call) detachStop() {
	if c.stopReq.CompareAndSwap(nil, &stopRequest{cause: 503, reason: "shutdown", detach: true}) {
		close(c.stopping)
	}
}

// disownStop asks the call's loop to drop the call (Engine.Disown).
func (c *Call) disownStop() {
	if c.stopReq.CompareAndSwap(nil, &stopRequest{cause: 503, reason: "owned elsewhere", disown: true}) {
		close(c.stopping)
	}
}

// stopped reports whether the call was asked to end.
func (c *Call) stopped() bool { return c.stopReq.Load() != nil }

// run is the call's loop: setup, then requests until the call ends. It
// returns once the call has ended and c.done is closed.
func (c *Call) run(setup func()) {
	defer c.recoverLoop()
	setup()
	for c.state != StateEnded {
		c.persist()
		c.idle()
	}
}

// recoverLoop keeps a bug in one call from taking the process down or
// leaving the call listed forever: the call is ended as well as it can be.
func (c *Call) recoverLoop() {
	r := recover()
	if r == nil {
		return
	}
	c.log.Error("[unexpected] panic in a call's loop", "panic", r, "stack", string(debug.Stack()))
	if c.state != StateEnded {
		func() {
			defer func() { recover() }()
			c.end(500, "internal error")
		}()
	}
	select {
	case <-c.done:
	default:
		for _, l := range c.legs {
			c.e.removeDialog(l)
		}
		c.e.unregister(c)
		if c.release != nil {
			c.release()
		}
		c.cancel()
		close(c.done)
	}
}

// idle waits for the next thing to do while no operation runs.
func (c *Call) idle() {
	if len(c.deferred) > 0 {
		m := c.deferred[0]
		c.deferred = c.deferred[1:]
		c.handle(m)
		return
	}
	var expiry, sessionTimer <-chan time.Time
	if c.subTimer != nil {
		expiry = c.subTimer.C
	}
	if at, ok := c.nextTimer(); ok {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		sessionTimer = t.C
	}
	select {
	case m := <-c.inbox:
		c.handle(m)
	case <-c.stopping:
		c.hangup()
	case <-expiry:
		c.end(408, "subscription expired")
	case <-sessionTimer:
		c.sessionTimers()
	}
}

// handle carries out a message while the loop is free.
func (c *Call) handle(m message) {
	if m.lostFlow != "" {
		return
	}
	if m.req == nil {
		c.renew(m.refresh)
		return
	}
	defer close(m.handled)
	if c.state == StateEnded {
		c.e.st.Respond(m.tx, m.req, 481, "", nil)
		return
	}
	switch m.req.Method {
	case sip.BYE:
		c.e.st.Respond(m.tx, m.req, 200, "", nil)
		c.log.Debug("bye", "leg", m.l.idx)
		c.gone[m.l.idx] = true
		c.end(200, byeReason(m.l))
	default: // a re-INVITE or an UPDATE with an offer
		c.reoffer(m.l, m.req, m.tx)
	}
}

// serve handles a message that arrives while the loop waits inside an
// operation (ringing, an exchange, an ACK): a BYE is answered at once and
// ends the call as soon as the operation gives way; an offer gets 491
// while an exchange runs or the call is not answered yet (glare, RFC 3261
// section 14.2), and otherwise waits until the loop is free.
func (c *Call) serve(m message) {
	if m.lostFlow != "" {
		return
	}
	if m.req == nil {
		c.renew(m.refresh)
		return
	}
	switch {
	case m.req.Method == sip.BYE:
		c.e.st.Respond(m.tx, m.req, 200, "", nil)
		c.log.Debug("bye", "leg", m.l.idx)
		c.gone[m.l.idx] = true
		c.stop(200, byeReason(m.l), m.l)
		close(m.handled)
	case c.busy || c.state != StateAnswered:
		c.e.st.Respond(m.tx, m.req, 491, "", nil, sip.NewHeader("Retry-After", "2"))
		close(m.handled)
	default:
		c.deferred = append(c.deferred, m)
	}
}

// drain answers what is left in the inbox once the call has ended.
func (c *Call) drain() {
	for _, m := range c.deferred {
		c.answerEnded(m)
	}
	c.deferred = nil
	for {
		select {
		case m := <-c.inbox:
			c.answerEnded(m)
		default:
			return
		}
	}
}

// answerEnded answers a request that reached an ended call: a BYE that
// crossed Strait's gets 200, anything else 481 (RFC 3261 section 15.1.2).
func (c *Call) answerEnded(m message) {
	if m.req == nil {
		return
	}
	code := 481
	if m.req.Method == sip.BYE {
		code = 200
	}
	c.e.st.Respond(m.tx, m.req, code, "", nil)
	close(m.handled)
}

// transact sends a request of the call's and waits for its final
// response, serving the inbox meanwhile. Provisional responses go to
// onProvisional (may be nil). It returns errStopped when the call is
// asked to end first, and ctx's error when ctx ends.
func (c *Call) transact(ctx context.Context, req *sip.Request, onProvisional func(*sip.Response)) (*sip.Response, error) {
	tx, err := c.e.st.Transaction(ctx, req)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			c.e.cfg.Metrics.Response(string(req.Method), res.StatusCode, true)
			if res.IsProvisional() {
				if onProvisional != nil {
					onProvisional(res)
				}
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, sip.ErrTransactionTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		case m := <-c.inbox:
			c.serve(m)
		case <-c.stopping:
			return nil, errStopped
		}
	}
}

// byeReason names who hung up by BYE.
func byeReason(l *leg) string {
	if l.idx == 1 {
		return "callee bye"
	}
	return "caller bye"
}
