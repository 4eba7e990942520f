package b2bua

import (
	"context"
	"encoding/json"
	"time"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/internal/logging"
)

// Several control planes on one state store (package cluster) each carry
// their own calls; when one dies, a survivor claims its calls and Restore
// rebuilds them here with the survivor as their owner (the loop's next
// persist rewrites the record with it). The PBX-side dialogs go on: the
// PBX's in-dialog requests reach the survivor through the shared SIP
// address. A browser's WebSocket died with its control plane: the call
// waits TakeoverGrace for the browser to register again on this process
// (JsSIP and SIP.js reconnect by themselves within seconds, and the
// takeover comes a lease after the death), and otherwise ends cleanly:
// BYE to the other leg, CDR reason ReasonControlPlaneLost.

// DefaultTakeoverGrace is how long a call taken over waits for its
// browser: the takeover comes at least a lease (10 s) after the death, by
// when a browser that reconnects has usually done so; the grace covers
// a slower reconnection backoff.
const DefaultTakeoverGrace = 10 * time.Second

// ReasonControlPlaneLost is the CDR reason of a call taken over from a
// dead control plane whose browser did not come back.
const ReasonControlPlaneLost = "control plane lost"

// takeoverPoll is how often a taken-over call checks for its browser.
const takeoverPoll = 250 * time.Millisecond

// takeOver makes c this process's: a journal entry of its own (the dead
// peer's journal went with it; a CDR written here closes this one), and
// a watch on its browser legs. Called by restoreCall before the loop runs.
func (e *Engine) takeOver(c *Call) {
	if j := e.cfg.Journal; j != nil {
		r := cdr.Record{ID: c.ID, Caller: c.caller, Callee: c.callee, Direction: c.direction, Start: c.start}
		if err := j.Start(r); err != nil {
			c.log.Warn("CDR journal: start of a call taken over not recorded", "err", err)
		}
		answer := c.answer
		if err := j.Interim(c.ID, cdr.Interim{Answer: &answer, Direction: c.direction, At: time.Now()}); err != nil {
			c.log.Warn("CDR journal: answer of a call taken over not recorded", "err", err)
		}
	}
	e.cfg.Metrics.CallTakenOver()
	for _, l := range c.legs {
		if l != nil && l.d != nil && l.d.flow != "" && e.cfg.Flows != nil {
			back := l.awaitBack()
			go e.awaitBrowser(c, l, back, func() { c.stop(480, ReasonControlPlaneLost, l) })
		}
	}
}

// awaitBack marks leg l as waiting for its browser to come back on a new
// flow and returns the mark, for awaitBrowser to close: set before the
// wait's goroutine starts, so that no BYE sent meanwhile misses it.
func (l *leg) awaitBack() *browserWait {
	w := &browserWait{back: make(chan struct{})}
	l.back.Store(w)
	return w
}

// awaitBrowser ends c unless the browser on leg l registers again (on
// this control plane or another) within the grace: requests to it then
// use its new flow (see reflow). gone ends the call when it does not. It
// runs on a goroutine of its own and only asks the loop (stop never
// blocks). It ends w (l.awaitBack) once the browser is back or the grace
// ran out: the call's BYE to the browser, if it ended meanwhile, waits for
// that (bye), so that it finds the browser's new flow.
//
// Found back, the browser is looked for again every poll until the grace
// ends: the flow first found may be one a peer no longer has (a binding
// it adopted from the dead member at its start, published before the
// browser's own registration there), and the newer binding's flow must
// then be claimed in turn, or the browser's own requests in the dialog
// (its BYE) would not reach this process.
func (e *Engine) awaitBrowser(c *Call, l *leg, w *browserWait, gone func()) {
	found := false
	settle := func() {
		if !found {
			found = true
			close(w.back)
			l.back.CompareAndSwap(w, nil)
		}
	}
	defer settle()
	grace := e.cfg.TakeoverGrace
	if grace <= 0 {
		grace = DefaultTakeoverGrace
	}
	select {
	case <-e.ready:
	case <-c.done:
		return
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(takeoverPoll)
	defer tick.Stop()
	for {
		// The leg's flow itself is changed only by its loop (refreshFlow,
		// at its next request): reflow here finds the browser's new flow
		// and claims the dialog at its holder, so that the browser's own
		// requests reach this process meanwhile.
		l.d.mu.Lock()
		target, flow, callID := l.d.target, l.d.flow, l.d.callID
		l.d.mu.Unlock()
		if e.cfg.Flows.Open(e.reflow(target, flow, callID)) && !found {
			c.log.Info("the browser of a call is back on a new connection", "leg", l.idx)
			settle()
		}
		select {
		case <-c.done:
			return
		case <-deadline.C:
			if !found {
				c.log.Info("the browser of a call did not come back; ending the call", "leg", l.idx)
				gone()
			}
			return
		case <-tick.C:
		}
	}
}

// FlowMoved is FlowClosed for a browser's WebSocket that another process
// holds and that went away with it (it handed over, SIGUSR2, or died):
// the browser reconnects and registers again, so each answered call with
// a leg on it waits TakeoverGrace for the browser's new flow (requests to
// the browser then go there) and ends only if it does not come back;
// calls still ringing on it end as FlowClosed ends them.
func (e *Engine) FlowMoved(flow string) {
	e.legsOnFlow(flow, func(c *Call, l *leg) {
		if c.State() != StateAnswered || e.cfg.Flows == nil {
			c.log.Info("browser connection lost", logging.KeyLeg, l.idx)
			c.lost(l)
			return
		}
		c.log.Info("browser connection handed over; waiting for the browser's new one", logging.KeyLeg, l.idx)
		back := l.awaitBack()
		go e.awaitBrowser(c, l, back, func() { c.lost(l) })
	})
}

// StoredCalls returns every call record in the state store as its owner
// and its dataplane session: what no control plane may delete, whoever
// carries the call on.
func (e *Engine) StoredCalls(ctx context.Context) (map[string]StoredCall, error) {
	out := map[string]StoredCall{}
	if e.cfg.State == nil {
		return out, nil
	}
	recs, err := e.cfg.State.Store().Load(ctx, state.Calls)
	if err != nil {
		return nil, err
	}
	for id, b := range recs {
		var r callRecord
		if json.Unmarshal(b, &r) == nil {
			out[id] = StoredCall{Owner: r.Owner, Session: r.Session}
		}
	}
	return out, nil
}

// StoredCall is what StoredCalls tells of a call record.
type StoredCall struct {
	// Owner is the instance id of the control plane carrying it on.
	Owner string
	// Session is its dataplane session id ("" for none).
	Session string
}
