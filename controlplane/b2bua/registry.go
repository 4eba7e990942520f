package b2bua

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/internal/logging"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func (e *Engine) addDialog(l *leg) {
	if l.c != nil {
		// The line that ties Strait's call id to the leg's SIP Call-ID.
		l.c.log.Debug("dialog", logging.KeyLeg, l.idx, logging.KeySIPCallID, l.d.callID)
	}
	if l.d.flow != "" {
		l.d.mu.Lock()
		l.d.reflow = e.reflow
		l.d.mu.Unlock()
	}
	k := l.d.key()
	e.mu.Lock()
	e.dialogs[k] = l
	if !l.d.uas {
		e.ownIDs[l.d.callID] = true
	}
	e.mu.Unlock()
}

func (e *Engine) removeDialog(l *leg) {
	if l == nil || l.d == nil {
		return
	}
	k := l.d.key()
	e.mu.Lock()
	if e.dialogs[k] == l {
		delete(e.dialogs, k)
	}
	if !l.d.uas {
		delete(e.ownIDs, l.d.callID)
	}
	e.mu.Unlock()
}

// reflow returns the flow a request in a dialog with a browser goes to:
// its own while that WebSocket is open, else the flow of the browser's
// newest registration with the same Contact (it reconnected, e.g. after
// this control plane restarted, maybe to another control plane: then
// through it, see Relay), else its own (the request fails with the
// flow). callID is the dialog's: a holder elsewhere passes the browser's
// requests in it here.
func (e *Engine) reflow(target sip.Uri, flow, callID string) string {
	if e.cfg.Flows == nil || e.cfg.Flows.Open(flow) {
		return flow
	}
	b, ok := e.cfg.Registry.NewestFlow(target)
	if !ok {
		return flow
	}
	nf := b.Source
	if !e.heldHere(b.Holder) {
		var err error
		if nf, err = e.relayFlow(b.Holder, b.Source, callID); err != nil {
			return flow
		}
	}
	if e.cfg.Flows.Open(nf) {
		return nf
	}
	return flow
}

// legOf finds the leg an in-dialog request (or ACK) belongs to.
func (e *Engine) legOf(req *sip.Request) *leg {
	tag, _ := req.To().Params.Get("tag")
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dialogs[key(req.CallID().Value(), tag)]
}

// onDataplaneEvent ends calls whose media stopped or whose DTLS failed.
func (e *Engine) onDataplaneEvent(ev *pb.Event) {
	id := ev.GetLabels()[dpool.LabelCall]
	if id == "" {
		return
	}
	e.mu.Lock()
	c := e.calls[id]
	e.mu.Unlock()
	if c == nil {
		return
	}
	switch ev.GetType() {
	case pb.EventType_EVENT_TYPE_MEDIA_TIMEOUT:
		if c.State() == StateAnswered {
			c.log.Info("media timeout", logging.KeyLeg, ev.GetLeg())
			c.stop(408, "media timeout", nil)
		}
	case pb.EventType_EVENT_TYPE_DTLS_FAILED:
		c.log.Warn("DTLS failed", logging.KeyLeg, ev.GetLeg(), "detail", ev.GetDetail())
		c.stop(488, "dtls failed", nil)
	}
}

// FlowClosed ends the calls (and subscriptions) that had a leg on a
// browser's WebSocket that closed: the browser is gone, so the other leg
// gets BYE (or CANCEL while ringing) and the session is deleted. It asks
// the calls' loops and returns without waiting for them.
func (e *Engine) FlowClosed(flow string) {
	e.legsOnFlow(flow, func(c *Call, l *leg) {
		c.log.Info("browser connection lost", logging.KeyLeg, l.idx)
		c.lost(l)
	})
}

// legsOnFlow tells every call that may ring a browser on flow (its loop
// checks) and calls gone with each call's first leg on flow. Shared by
// FlowClosed and FlowMoved.
func (e *Engine) legsOnFlow(flow string, gone func(c *Call, l *leg)) {
	for _, c := range e.snapshot() {
		if c.forking.Load() {
			// Never blocks: with the inbox full, the fork ends at Timer B.
			select {
			case c.inbox <- message{lostFlow: flow}:
			default:
			}
		}
		for _, l := range c.legsNow() {
			if l != nil && l.d != nil && l.d.flowNow() == flow {
				gone(c, l)
				break
			}
		}
	}
}

// CallFlows returns the set of browser flows that carry a leg of a call
// in progress.
func (e *Engine) CallFlows() map[string]bool {
	out := map[string]bool{}
	for _, c := range e.snapshot() {
		for _, l := range c.legsNow() {
			if l == nil || l.d == nil {
				continue
			}
			if flow := l.d.flowNow(); flow != "" {
				out[flow] = true
			}
		}
	}
	return out
}

// Calls returns every call in progress.
func (e *Engine) Calls() []Info {
	e.mu.Lock()
	calls := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		calls = append(calls, c)
	}
	e.mu.Unlock()
	out := make([]Info, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.Info())
	}
	return out
}

// Call returns a call in progress by id.
func (e *Engine) Call(id string) (*Call, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.calls[id]
	return c, ok
}

// ActiveSessions lists the dataplane sessions of calls in progress (for
// reaping orphans after a restart).
func (e *Engine) ActiveSessions() map[string]bool {
	out := map[string]bool{}
	for _, c := range e.snapshot() {
		if id := c.Info().Session; id != "" {
			out[id] = true
		}
	}
	return out
}

func (e *Engine) snapshot() []*Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		out = append(out, c)
	}
	return out
}

// register publishes a complete call: from here on its loop owns it and
// other goroutines find it. It fails while the engine shuts down.
func (e *Engine) register(c *Call) error {
	c.publish()
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return sipError(503, "", errors.New("shutting down"))
	}
	e.calls[c.ID] = c
	if !c.sub {
		e.cfg.Metrics.CallState("", StateRinging.String())
	}
	e.mu.Unlock()
	e.journalStart(c)
	return nil
}

// unregister forgets an ended call.
func (e *Engine) unregister(c *Call) {
	e.mu.Lock()
	delete(e.calls, c.ID)
	e.mu.Unlock()
}
