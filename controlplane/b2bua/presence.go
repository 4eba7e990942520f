package b2bua

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/upstream"
)

// Presence toward the upstream in trunk mode: Strait publishes its API
// users' presence (PUBLISH, RFC 3903) and subscribes to the presence of
// the users they watch (SUBSCRIBE/NOTIFY, RFC 6665 with the presence
// event package of RFC 3856) on their behalf. These are the primitives;
// package presence/sipbridge keeps the publications and subscriptions
// alive.

// PIDFType is the media type of presence documents (RFC 3863).
const PIDFType = "application/pidf+xml"

// errNotTrunk: presence goes to the upstream only in trunk mode.
var errNotTrunk = sipError(501, "", errors.New("presence toward an upstream needs trunk mode"))

// presenceDialog makes a dialog from user toward user's AOR at the first
// upstream target (From and To both name the user, as a PUBLISH does; a
// SUBSCRIBE's From is the watcher), and returns the targets its first
// request fails over to (requestFailingOver).
func (e *Engine) presenceDialog(from, to string) (*dialog, target, error) {
	if !e.trunk() {
		return nil, target{}, errNotTrunk
	}
	if _, err := userOf(from); err != nil {
		return nil, target{}, sipError(400, "", err)
	}
	if _, err := userOf(to); err != nil {
		return nil, target{}, sipError(400, "", err)
	}
	tgt, err := e.resolve(fromBrowser, to, false)
	if err != nil {
		return nil, target{}, err
	}
	d, _ := e.outbound(tgt, from, "")
	return d, tgt, nil
}

// own marks a Call-ID as Strait's own while f runs (a request of it that
// comes back is recognised as a loop).
func (e *Engine) own(callID string) func() {
	e.mu.Lock()
	e.ownIDs[callID] = true
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.ownIDs, callID)
		e.mu.Unlock()
	}
}

// Publish sends one PUBLISH of user's presence to the upstream (RFC 3903
// section 4): body (a PIDF document) with ifMatch empty for an initial
// publication; ifMatch (the entity tag of the last 2xx's SIP-ETag) and a
// body to modify it, no body to refresh it, expires 0 to remove it. It
// returns the final response (or an error when none came). Each PUBLISH
// goes to the upstream targets in the order a new call tries them and
// fails over as a call does (requestFailingOver): an entity tag the
// target that answers does not know gets 412, and the publisher publishes
// afresh there (RFC 3903 section 6).
func (e *Engine) Publish(ctx context.Context, user, ifMatch string, body []byte, expires int) (*sip.Response, error) {
	d, tgt, err := e.presenceDialog(user, user)
	if err != nil {
		return nil, err
	}
	build := func() *sip.Request {
		req := d.request(sip.PUBLISH, body, PIDFType)
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
		if ifMatch != "" {
			req.AppendHeader(sip.NewHeader("SIP-If-Match", ifMatch))
		}
		return req
	}
	defer e.own(d.callID)()
	res, err := e.requestFailingOver(ctx, d, tgt, build)
	if err != nil {
		return nil, sipError(408, "", err)
	}
	return res, nil
}

// Notify is a NOTIFY of a presence subscription Strait holds.
type Notify struct {
	// State is the Subscription-State's value (active, pending,
	// terminated) and Reason its reason parameter, if any.
	State, Reason string
	// Expires is the Subscription-State's expires parameter, in seconds
	// (0: none).
	Expires int
	// ContentType and Body are the NOTIFY's body (empty: no state yet).
	ContentType string
	Body        []byte
}

// Subscription is a presence subscription Strait holds toward the
// upstream (one dialog). Its methods are safe for concurrent use; the
// NOTIFY callback runs on the request's handler goroutine and must not
// block.
type Subscription struct {
	e        *Engine // frozen
	d        *dialog // frozen
	onNotify func(Notify)
}

// SubscribePresence subscribes watcher to user's presence at the upstream
// (RFC 3856: SUBSCRIBE with Event: presence, Accept PIDF) for expires
// seconds. NOTIFYs of the dialog, including one that comes before the
// 2xx (RFC 6665 section 4.1.2.4), go to onNotify. It returns the
// subscription when the answer is 2xx, and the final response in every
// case where one came. The SUBSCRIBE goes to the upstream targets in the
// order a new call tries them and fails over as a call does
// (requestFailingOver); the subscription then stays with the target that
// took it (Target; Healthy and Displaced say when to move it).
func (e *Engine) SubscribePresence(ctx context.Context, watcher, user string, expires int, onNotify func(Notify)) (*Subscription, *sip.Response, error) {
	d, tgt, err := e.presenceDialog(watcher, user)
	if err != nil {
		return nil, nil, err
	}
	s := &Subscription{e: e, d: d, onNotify: onNotify}
	e.mu.Lock()
	e.subs[d.key()] = s
	e.mu.Unlock()
	defer e.own(d.callID)()
	res, err := e.requestFailingOver(ctx, d, tgt, func() *sip.Request { return s.request(expires) })
	if err != nil {
		err = sipError(408, "", err)
	}
	if err != nil || !res.IsSuccess() {
		s.forget()
		return nil, res, err
	}
	d.established(res)
	return s, res, nil
}

// request makes the dialog's next SUBSCRIBE.
func (s *Subscription) request(expires int) *sip.Request {
	req := s.d.request(sip.SUBSCRIBE, nil, "")
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Accept", PIDFType))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	return req
}

// subscribe sends the dialog's next SUBSCRIBE to the target that holds
// the subscription.
func (s *Subscription) subscribe(ctx context.Context, expires int) (*sip.Response, error) {
	req := s.request(expires)
	defer s.e.own(s.d.callID)()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := s.d.send(ctx, req)
	if err != nil {
		return nil, sipError(408, "", err)
	}
	return res, nil
}

// Target names the upstream target holding the subscription
// ("udp/192.0.2.5:5060"), for logs and tests.
func (s *Subscription) Target() string { return s.d.upstreamKey() }

// Healthy reports false when the target holding the subscription did not
// answer its last OPTIONS ping and another target did: the subscription
// is better made again there than left to expire where nobody notifies.
// True without pings, before the first, or when no other target answers
// (nowhere better to go).
func (s *Subscription) Healthy() bool {
	cur, ok := s.d.upstreamTarget()
	set := s.e.cfg.Upstreams
	if !ok || set == nil || set.IsUp(cur) {
		return true
	}
	for _, t := range set.All() {
		if t.Key() != cur.Key() && set.IsUp(t) {
			return false
		}
	}
	return true
}

// Displaced reports whether a target preferred to the one holding the
// subscription (a better priority or DNS rank: upstream.Prefer) answers
// its OPTIONS pings: a subscription moved away while that target was down
// goes back, at its next refresh. Without pings there is no telling a
// target came back: false.
func (s *Subscription) Displaced() bool {
	cur, ok := s.d.upstreamTarget()
	set := s.e.cfg.Upstreams
	if !ok || set == nil || s.e.cfg.OptionsInterval == 0 {
		return false
	}
	for _, t := range set.All() {
		if t.Key() != cur.Key() && upstream.Prefer(t, cur) && set.IsUp(t) {
			return true
		}
	}
	return false
}

// Refresh extends the subscription (a SUBSCRIBE in its dialog). A 481
// means the upstream no longer has it: subscribe again.
func (s *Subscription) Refresh(ctx context.Context, expires int) (*sip.Response, error) {
	return s.subscribe(ctx, expires)
}

// finalNotifyWait is how long an ended subscription's dialog still takes
// the notifier's final NOTIFY (RFC 6665 section 4.1.2.3: it sends one
// with Subscription-State: terminated); 64*T1, as for a transaction.
const finalNotifyWait = 32 * time.Second

// End unsubscribes (SUBSCRIBE with Expires: 0, RFC 6665 section 4.1.2.3);
// the dialog is forgotten at the final NOTIFY, or finalNotifyWait later.
func (s *Subscription) End(ctx context.Context) {
	res, err := s.subscribe(ctx, 0)
	if err != nil || !res.IsSuccess() {
		s.forget()
		return
	}
	time.AfterFunc(finalNotifyWait, s.forget)
}

// Forget drops the dialog without telling the upstream (it ended there).
func (s *Subscription) Forget() { s.forget() }

func (s *Subscription) forget() {
	s.e.mu.Lock()
	delete(s.e.subs, s.d.key())
	s.e.mu.Unlock()
}

// subOf returns the subscription a request's dialog is, if any.
func (e *Engine) subOf(req *sip.Request) *Subscription {
	tag, _ := req.To().Params.Get("tag")
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subs[key(req.CallID().Value(), tag)]
}

// onSubscriptionRequest answers a request in a subscription's dialog: a
// NOTIFY is taken (200) and handed over, anything else refused.
func (s *Subscription) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	st := s.e.st
	if req.Method != sip.NOTIFY {
		st.Respond(tx, req, 405, "", nil, sip.NewHeader("Allow", "NOTIFY"))
		return
	}
	if ev := req.GetHeader("Event"); ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), "presence") {
		st.Respond(tx, req, 489, "Bad Event", nil)
		return
	}
	if !s.d.checkCSeq(req) {
		st.Respond(tx, req, 500, "Server Internal Error: CSeq out of order", nil, sip.NewHeader("Retry-After", "1"))
		return
	}
	s.d.notified(req)
	n := Notify{ContentType: contentType(req), Body: req.Body()}
	if h := req.GetHeader("Subscription-State"); h != nil {
		parts := strings.Split(h.Value(), ";")
		n.State = strings.ToLower(strings.TrimSpace(parts[0]))
		for _, p := range parts[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			switch strings.ToLower(k) {
			case "reason":
				n.Reason = strings.ToLower(v)
			case "expires":
				n.Expires, _ = strconv.Atoi(v)
			}
		}
	}
	st.Respond(tx, req, 200, "", nil)
	if n.State == "terminated" {
		s.forget()
	}
	s.onNotify(n)
}

// notified completes a subscription dialog from a NOTIFY that came before
// the SUBSCRIBE's 2xx (RFC 6665 section 4.1.2.4): the notifier's tag,
// Contact and Record-Route (in order, as a UAS takes them, RFC 3261
// section 12.1.1).
func (d *dialog) notified(req *sip.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.remoteTag != "" {
		return
	}
	if f := req.From(); f != nil {
		d.remoteTag, _ = f.Params.Get("tag")
	}
	if c := req.Contact(); c != nil && d.flow == "" {
		d.target = *c.Address.Clone()
	}
	d.routes = routeEntries(req.GetHeaders("Record-Route"))
	d.fixed = true
}
