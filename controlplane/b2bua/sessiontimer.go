package b2bua

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// Session timers (RFC 4028), run by Strait on each leg.
//
// Each of a call's two dialogs negotiates its own session timer with its
// peer, as a user agent does; nothing of one leg's timer reaches the
// other. On a leg whose peer supports timers:
//
//   - As UAS (the caller's leg, and refreshes Strait answers) Strait
//     answers with Session-Expires and lets the peer refresh (refresher=
//     uac, with Require: timer) unless the peer asked Strait to
//     (refresher=uas), or does not support timers while its request
//     carries a Session-Expires (section 9's table).
//   - As UAC (the callee's leg) Strait says Supported: timer, passes on
//     the interval the caller asked for, and takes the role the callee's
//     2xx gives it (section 7.2).
//   - A peer that refreshes is waited for: with no refresh by the
//     interval less min(32 s, interval/3) (section 10), Strait ends the
//     call, BYE on both legs. Every 2xx to a re-INVITE or UPDATE on the
//     leg, either way, is a refresh.
//   - When Strait refreshes it sends an UPDATE without a body at half the
//     interval (section 10); one that times out or gets 408 or 481 ends
//     the call (section 10: the UAC MUST send BYE). Strait refreshes only
//     by UPDATE: toward a peer that does not allow UPDATE it leaves the
//     timer off (its 2xx carries no Session-Expires).
//   - An UPDATE without SDP (a refresh) is answered by Strait; a re-INVITE
//     goes on to the other leg as before, each side's 2xx carrying that
//     leg's own Session-Expires.
//
// A leg's timer is what makes a dead peer visible by signalling when no
// media flows to time out (a call on hold, a silent trunk).

const (
	// minSessionExpires is Strait's Min-SE (section 4: it MUST NOT be
	// below 90 seconds).
	minSessionExpires = 90
	// defaultSessionExpires is the interval Strait picks when a peer that
	// supports timers names none (section 4 recommends 1800 s).
	defaultSessionExpires = 1800
	// maxSessionExpires bounds a peer's interval (a day).
	maxSessionExpires = 86400
)

// sessionExpires is a parsed Session-Expires header.
type sessionExpires struct {
	secs      uint32
	refresher string // "uac", "uas" or ""
}

// readSessionExpires reads a message's Session-Expires (or its compact
// form x): present false when there is none, bad when it does not parse.
func readSessionExpires(m headers) (se sessionExpires, present, bad bool) {
	h := sipnet.Header(m, "Session-Expires")
	if h == nil {
		h = sipnet.Header(m, "x")
	}
	if h == nil {
		return se, false, false
	}
	parts := strings.Split(h.Value(), ";")
	n, err := strconv.ParseUint(strings.TrimSpace(parts[0]), 10, 32)
	if err != nil || n == 0 {
		return se, true, true
	}
	se.secs = uint32(min(n, maxSessionExpires))
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(name), "refresher") {
			se.refresher = strings.ToLower(strings.TrimSpace(val))
		}
	}
	return se, true, false
}

// readMinSE reads a message's Min-SE (0: none or unreadable).
func readMinSE(m headers) uint32 {
	h := sipnet.Header(m, "Min-SE")
	if h == nil {
		return 0
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(min(n, maxSessionExpires))
}

// allowsUpdate reports whether a message's Allow lists UPDATE.
func allowsUpdate(m headers) bool { return hasOption(m, "UPDATE", "Allow") }

// legTimer is the session timer of one leg. mu guards every field: the
// call's loop negotiates and refreshes, a handler goroutine answers an
// UPDATE refresh.
type legTimer struct {
	mu     sync.Mutex
	secs   uint32 // the session interval; 0: no timer on the leg
	strait bool   // Strait refreshes (otherwise the peer does)
	update bool   // the peer allows UPDATE
	last   time.Time
}

// set starts (secs > 0) or stops the timer, as of now.
func (t *legTimer) set(secs uint32, strait bool) {
	t.mu.Lock()
	t.secs, t.strait, t.last = secs, strait, time.Now()
	t.mu.Unlock()
}

// allowUpdate records that the peer allows UPDATE.
func (t *legTimer) allowUpdate() {
	t.mu.Lock()
	t.update = true
	t.mu.Unlock()
}

// postpone moves the next refresh Strait sends d later.
func (t *legTimer) postpone(d time.Duration) {
	t.mu.Lock()
	t.last = t.last.Add(d)
	t.mu.Unlock()
}

// snapshot returns the timer's settings.
func (t *legTimer) snapshot() (secs uint32, strait, update bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.secs, t.strait, t.update
}

// due returns when the leg's timer next needs the loop, with one second
// lasting unit: Strait's refresh at half the interval, or the end of the
// wait for the peer's (section 10). ok is false with no timer.
func (t *legTimer) due(unit time.Duration) (at time.Time, refresh, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.secs == 0 {
		return at, false, false
	}
	interval := time.Duration(t.secs) * unit
	if t.strait {
		return t.last.Add(interval / 2), true, true
	}
	return t.last.Add(interval - min(32*unit, interval/3)), false, true
}

// timerUnit is how long one of RFC 4028's seconds lasts.
func (e *Engine) timerUnit() time.Duration {
	if e.cfg.SessionTimerUnit > 0 {
		return e.cfg.SessionTimerUnit
	}
	return time.Second
}

// tooBrief answers 422 (section 9: MUST, with Min-SE) to a request from
// a peer that supports timers and asks for an interval below Strait's
// minimum, and 400 to an unreadable Session-Expires; true when it did.
func (e *Engine) tooBrief(req *sip.Request, tx sip.ServerTransaction) bool {
	se, present, bad := readSessionExpires(req)
	switch {
	case bad:
		e.st.Respond(tx, req, 400, "Bad Request: Session-Expires", nil)
		return true
	case present && se.secs < minSessionExpires && supportsTimer(req):
		e.st.Respond(tx, req, 422, "", nil, sip.NewHeader("Min-SE", strconv.Itoa(minSessionExpires)))
		return true
	}
	return false
}

// uasTimer negotiates leg l's timer for a request Strait answers with a
// 2xx (the INVITE, a re-INVITE, an UPDATE) and returns the headers the
// 2xx carries (section 9); none turns the leg's timer off.
func (e *Engine) uasTimer(req *sip.Request, l *leg) []sip.Header {
	if allowsUpdate(req) {
		l.timer.allowUpdate()
	}
	se, present, _ := readSessionExpires(req)
	supports := supportsTimer(req)
	if !supports && !present {
		l.timer.set(0, false)
		return nil
	}
	secs := uint32(defaultSessionExpires)
	if present {
		secs = se.secs
	}
	secs = max(secs, readMinSE(req), minSessionExpires)
	// Section 9's table; a peer that says it refreshes (refresher=uac)
	// is taken at its word even without Supported: timer.
	strait := se.refresher == "uas" || !supports && se.refresher != "uac"
	if _, _, update := l.timer.snapshot(); strait && !update {
		l.timer.set(0, false)
		return nil
	}
	l.timer.set(secs, strait)
	if strait {
		return []sip.Header{sip.NewHeader("Session-Expires", strconv.Itoa(int(secs))+";refresher=uas")}
	}
	return []sip.Header{sip.NewHeader("Session-Expires", strconv.Itoa(int(secs))+";refresher=uac"),
		sip.NewHeader("Require", "timer")}
}

// uacTimerHeaders are the timer headers of a re-INVITE or UPDATE Strait
// sends on leg o: Supported, and the leg's interval with Strait's role.
func uacTimerHeaders(o *leg) []sip.Header {
	hs := []sip.Header{sip.NewHeader("Supported", "timer")}
	if secs, strait, _ := o.timer.snapshot(); secs > 0 {
		who := "uas"
		if strait {
			who = "uac"
		}
		hs = append(hs, sip.NewHeader("Session-Expires", strconv.Itoa(int(secs))+";refresher="+who))
	}
	return hs
}

// uacTimerAnswered takes leg o's timer from the 2xx to a request Strait
// sent on it (section 7.2: no Session-Expires, no timer; refresher=uac
// makes Strait the refresher).
func (c *Call) uacTimerAnswered(res *sip.Response, o *leg) {
	if allowsUpdate(res) {
		o.timer.allowUpdate()
	}
	se, present, bad := readSessionExpires(res)
	if !present || bad {
		o.timer.set(0, false)
		return
	}
	strait := se.refresher != "uas"
	if _, _, update := o.timer.snapshot(); strait && !update {
		c.log.Info("session timer off: Strait would refresh a peer that does not allow UPDATE", "leg", o.idx)
		o.timer.set(0, false)
		return
	}
	o.timer.set(max(se.secs, minSessionExpires), strait)
}

// refreshLocally answers an UPDATE without SDP on leg l, a session
// refresh (or a target refresh): Strait answers it itself, with the
// leg's timer. It runs on the request's handler goroutine.
func (c *Call) refreshLocally(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	e := c.e
	if e.tooBrief(req, tx) {
		return
	}
	hs := append([]sip.Header{e.st.Contact(l.d.transport, l.d.contact), sip.NewHeader("Supported", "timer")}, e.uasTimer(req, l)...)
	e.st.Respond(tx, req, 200, "", nil, hs...)
}

// nextTimer returns when the earliest leg timer needs the loop (timers
// run from the answer on). Loop only.
func (c *Call) nextTimer() (time.Time, bool) {
	var next time.Time
	if c.state != StateAnswered {
		return next, false
	}
	found := false
	for _, l := range c.legs {
		if l == nil || l.d == nil {
			continue
		}
		if at, _, ok := l.timer.due(c.e.timerUnit()); ok && (!found || at.Before(next)) {
			next, found = at, true
		}
	}
	return next, found
}

// sessionTimers does what the leg timers that are due ask: Strait's
// refresh, or the end of a call whose peer stopped refreshing. Loop only.
func (c *Call) sessionTimers() {
	if c.state != StateAnswered {
		return
	}
	now := time.Now()
	for _, l := range c.legs {
		if l == nil || l.d == nil {
			continue
		}
		at, refresh, ok := l.timer.due(c.e.timerUnit())
		if !ok || now.Before(at) {
			continue
		}
		if !refresh {
			c.log.Info("session timer expired: no refresh from the peer", "leg", l.idx)
			c.end(408, "session timer expired")
			return
		}
		if !c.refreshLeg(l) {
			return
		}
	}
}

// refreshLeg sends Strait's refresh on leg l; false when the call ended
// (section 10: a refresh that times out or gets 408 or 481 ends it).
// Loop only.
func (c *Call) refreshLeg(l *leg) bool {
	secs, _, _ := l.timer.snapshot()
	if !c.begin() {
		l.timer.postpone(time.Duration(secs) * c.e.timerUnit() / 8) // never spin
		return true
	}
	defer c.finishExchange()
	req := l.d.request(sip.UPDATE, nil, "")
	for _, h := range uacTimerHeaders(l) {
		req.AppendHeader(h)
	}
	ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
	defer cancel()
	res, err := c.transact(ctx, req, nil)
	switch {
	case errors.Is(err, errStopped):
		return false // the loop hangs up next
	case err != nil, res.StatusCode == 408, res.StatusCode == 481:
		why := "no answer"
		if err == nil {
			why = strconv.Itoa(res.StatusCode)
		}
		c.log.Info("session refresh failed; ending the call", "leg", l.idx, "why", why)
		c.end(408, "session refresh failed")
		return false
	case res.IsSuccess():
		c.uacTimerAnswered(res, l)
	default:
		// Another refusal (491, 500...): try again in a while; the peer
		// ends the call at the interval if none succeeds.
		c.log.Info("session refresh refused", "leg", l.idx, "status", res.StatusCode)
		l.timer.postpone(time.Duration(secs) * c.e.timerUnit() / 8)
	}
	return true
}
