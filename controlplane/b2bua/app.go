package b2bua

import (
	"context"
	"errors"

	"github.com/strait-sbc/strait/controlplane/apps"
	"github.com/strait-sbc/strait/controlplane/sdp"
)

// Calls to web apps. A callee number that the configuration routes to an
// app (controlplane/apps) gets a callee's leg without a SIP dialog: a
// WebRTC leg whose offer goes to the app in a signed webhook and whose
// answer comes back in the webhook's response or through the API
// (Call.AnswerFromApp). Everything after the answer (re-INVITEs from the
// caller, answered locally on the app's side as for an API caller;
// BYE; media timeout; CDR) is what any call does.

// directionApp is the direction of a call routed to a web app.
const directionApp = "app"

// appAnswer is an app's answer (or refusal) handed to the call's loop by
// the API; the loop reports on done (buffered) whether it took it.
type appAnswer struct {
	sdp    []byte
	reject int
	done   chan error
}

// Errors of AnswerFromApp.
var (
	// ErrNotApp: the call was not routed to an app.
	ErrNotApp = sipError(404, "", errors.New("the call was not routed to an app"))
	// ErrNotRinging: the call is answered or over.
	ErrNotRinging = sipError(481, "", errors.New("the call is no longer waiting for an answer"))
)

// appName returns the name of the call's app, "" for none.
func (c *Call) appName() string {
	if c.app == nil {
		return ""
	}
	return c.app.Name
}

// App returns the name of the web app the call was routed to ("" for
// none): who may answer it (scope receive:APP).
func (c *Call) App() string { return c.appName() }

// AnswerFromApp gives the call the app's SDP answer, or with reject
// (400-699) refuses it with that SIP status. It returns once the call's
// loop took it: nil when the caller was answered (or refused); the
// answer's error when it was unusable (the call then ends with 488).
func (c *Call) AnswerFromApp(ctx context.Context, answer []byte, reject int) error {
	if c.app == nil {
		return ErrNotApp
	}
	if c.State() != StateRinging {
		return ErrNotRinging
	}
	m := appAnswer{sdp: answer, reject: reject, done: make(chan error, 1)}
	select {
	case c.answers <- m:
	case <-c.appOver:
		// Answered (or ended) already: the state may not say so yet.
		return ErrNotRinging
	case <-c.done:
		return ErrNotRinging
	case <-ctx.Done():
		return sipError(408, "", ctx.Err())
	}
	select {
	case err := <-m.done:
		return err
	case <-ctx.Done():
		return sipError(408, "", ctx.Err())
	}
}

// runApp offers the call to its app and bridges the app's answer to the
// caller; it returns once the call is answered or has ended. Loop only.
func (c *Call) runApp(offer *sdp.Description, cl caller) {
	defer close(c.appOver)
	e := c.e
	a := c.app
	hooks := e.cfg.Apps.Hooks()
	ctx, cancel := context.WithTimeout(c.ctx, e.cfg.Apps.AnswerTimeout())
	defer cancel()
	if c.stopped() {
		hooks.Outcome(a, apps.OutcomeCancelled)
		c.refuse(cl)
		return
	}
	delayed := offer == nil
	body, ok := c.offerToCallee(ctx, offer, cl)
	if !ok {
		return
	}
	cl.progress(180, nil)
	now := c.start
	deadline, _ := ctx.Deadline()
	c.e.emit(Event{Call: c.ID, State: StateRinging.String(), Time: now, Caller: c.caller, Callee: c.callee, App: a.Name})
	c.log.Info("offering the call to an app", "app", a.Name)

	// The webhook runs beside the loop; hookDone tells that it is over,
	// and runApp waits for it, so no request outlives the call's setup.
	hctx, hcancel := context.WithCancel(ctx)
	replies := make(chan apps.Reply, 1)
	hookDone := make(chan struct{})
	go func() {
		defer close(hookDone)
		replies <- hooks.Offer(hctx, a, apps.Incoming{Call: c.ID, Caller: c.caller, Callee: c.callee, Time: now,
			Expires: deadline, Offer: string(body), CallURL: "/v1/calls/" + c.ID, AnswerURL: "/v1/calls/" + c.ID + "/answer"})
	}()
	defer func() {
		hcancel()
		<-hookDone
	}()
	fail := func(code int, reason, outcome string) {
		hooks.Outcome(a, outcome)
		cl.failed(code, "", nil)
		c.end(code, reason)
	}
	for {
		select {
		case r := <-replies:
			switch {
			case r.Answer != nil:
				c.answerFromApp(ctx, r.Answer, cl, delayed, nil)
				return
			case r.Reject != 0:
				c.log.Info("the app refused the call", "status", r.Reject)
				fail(r.Reject, "app rejected", apps.OutcomeRejected)
				return
			case r.Later:
				c.log.Info("the app will answer through the API")
			default:
				if c.stopped() {
					continue // the stop is served next
				}
				c.log.Warn("app unreachable", "app", a.Name, "err", r.Err)
				if errors.Is(r.Err, context.DeadlineExceeded) && ctx.Err() != nil {
					fail(408, "app answer timeout", apps.OutcomeTimeout)
					return
				}
				fail(480, "app unreachable", apps.OutcomeUnreachable)
				return
			}
		case m := <-c.answers:
			if m.reject != 0 {
				m.done <- nil
				c.log.Info("the app refused the call", "status", m.reject)
				fail(m.reject, "app rejected", apps.OutcomeRejected)
				return
			}
			c.answerFromApp(ctx, m.sdp, cl, delayed, m.done)
			return
		case m := <-c.inbox:
			c.serve(m)
		case <-c.stopping:
			hooks.Outcome(a, apps.OutcomeCancelled)
			c.refuse(cl)
			return
		case <-ctx.Done():
			if e.ctx.Err() != nil {
				fail(503, "shutdown", apps.OutcomeCancelled)
				return
			}
			c.log.Info("the app did not answer in time", "app", a.Name)
			fail(408, "app answer timeout", apps.OutcomeTimeout)
			return
		}
	}
}

// answerFromApp applies the app's SDP answer and answers the caller; an
// unusable answer ends the call with 488. done, when not nil, gets the
// answer's verdict (the API request that brought it). Loop only.
func (c *Call) answerFromApp(ctx context.Context, raw []byte, cl caller, delayed bool, done chan error) {
	hooks := c.e.cfg.Apps.Hooks()
	report := func(err error) {
		if done != nil {
			done <- err
		}
	}
	bad := func(err error) {
		hooks.Outcome(c.app, apps.OutcomeBadAnswer)
		c.log.Info("the app's answer refused", "err", err)
		report(err)
		code, reason := statusOf(err)
		if code < 400 || code == 500 {
			code, reason = 488, ""
		}
		cl.failed(code, reason, nil)
		c.end(code, "app answer: "+err.Error())
	}
	ans, err := sdpBody(raw, "application/sdp")
	if err == nil && ans == nil {
		err = sipError(488, "", errors.New("empty SDP answer"))
	}
	if err == nil && !ans.IsWebRTC() {
		err = sipError(488, "", errors.New("the answer is not a WebRTC answer"))
	}
	if err != nil {
		bad(err)
		return
	}
	out, _, err := c.m.answer(ctx, 1, ans, raw)
	if err != nil {
		bad(err)
		return
	}
	report(nil)
	hooks.Outcome(c.app, apps.OutcomeAnswered)
	c.setState(StateAnswered)
	c.log.Info("answered", "app", c.app.Name)
	c.answerCaller(cl, out, delayed)
}
