package b2bua

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/sipnet"
)

// onOptions answers OPTIONS outside a dialog; inside one it is passed on.
func (e *Engine) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		e.onInDialog(req, tx)
		return
	}
	if !e.admit(req, tx) || !e.trustedSource(req, tx) {
		return
	}
	e.st.Respond(tx, req, 200, "", nil, sip.NewHeader("Allow", allow),
		sip.NewHeader("Accept", "application/sdp"), sip.NewHeader("Supported", "100rel, timer, outbound"))
}

// onOutOfDialog relays MESSAGE, NOTIFY (e.g. message waiting) and
// SUBSCRIBE outside a dialog to where the R-URI's user is: the upstream
// for a browser in trunk mode, a registered browser or device otherwise.
func (e *Engine) onOutOfDialog(req *sip.Request, tx sip.ServerTransaction) {
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		e.onInDialog(req, tx)
		return
	}
	if !e.admit(req, tx) {
		return
	}
	s, ok := e.sideOf(req)
	if !ok {
		e.st.Respond(tx, req, 403, "Forbidden: untrusted source", nil)
		return
	}
	who, ok := e.authorize(req, tx, s)
	if !ok {
		return
	}
	// A MESSAGE also goes to the recipient's listeners on the HTTP API;
	// when they took it, a recipient without a registration is no error.
	took := req.Method == sip.MESSAGE && e.cfg.OnMessage != nil &&
		e.cfg.OnMessage(MessageID(req), who, req.Recipient.User, contentType(req), req.Body())
	tgt, err := e.resolve(s, req.Recipient.User, false)
	if err != nil && took {
		e.st.Respond(tx, req, 200, "", nil)
		return
	}
	if err != nil && !took && e.keepOffline(req, tx, s, who, err) {
		return
	}
	if err != nil {
		code, reason := statusOf(err)
		e.st.Respond(tx, req, code, reason, nil)
		return
	}
	d, kind := e.outbound(tgt, who, req.From().DisplayName)
	if req.Method == sip.SUBSCRIBE {
		e.relaySubscribe(req, tx, d, kind, who)
		return
	}
	fwd := d.request(req.Method, req.Body(), contentType(req))
	fwd.ReplaceHeader(maxForwards(req))
	copyHeaders(req, fwd, passHeaders...)
	ctx, cancel := context.WithTimeout(e.ctx, requestTimeout)
	defer cancel()
	e.mu.Lock()
	e.ownIDs[d.callID] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.ownIDs, d.callID)
		e.mu.Unlock()
	}()
	res, err := d.send(ctx, fwd)
	if err != nil {
		if !took && e.keepOffline(req, tx, s, who, errFlowFailed) {
			return
		}
		e.st.Respond(tx, req, 408, "", nil)
		return
	}
	if (res.StatusCode == 408 || res.StatusCode == 430 || res.StatusCode == 480) && !took && !tgt.upstream &&
		e.keepOffline(req, tx, s, who, errOffline) {
		return // the registration's browser did not take it
	}
	out := e.st.Response(req, mapFailure(res.StatusCode), "", res.Body())
	if len(res.Body()) > 0 {
		out.AppendHeader(sip.NewHeader("Content-Type", contentType(res)))
	}
	e.st.RespondWith(tx, out)
}

// keepOffline offers a MESSAGE nobody took to the Offline hook when its
// recipient is one of Strait's own users and the routing found them
// offline (not unknown: 404 stands), and answers it when the hook did.
func (e *Engine) keepOffline(req *sip.Request, tx sip.ServerTransaction, s side, who string, why error) bool {
	if req.Method != sip.MESSAGE || e.cfg.Offline == nil || (e.trunk() && s != fromUpstream) {
		return false
	}
	if code, _ := statusOf(why); code != 408 && code != 430 && code != 480 {
		return false
	}
	switch code := e.cfg.Offline(MessageID(req), who, req.Recipient.User, contentType(req), req.Body()); code {
	case 0:
		return false
	case 202:
		e.st.Respond(tx, req, 202, "Accepted", nil)
	case 480:
		e.st.Respond(tx, req, 480, "Temporarily Unavailable (mailbox full)", nil)
	default:
		e.st.Respond(tx, req, code, "", nil)
	}
	return true
}

// subscriptionSlack is how long a relayed subscription outlives its
// Expires without a refresh before Strait forgets it.
const subscriptionSlack = 32 * time.Second

// relaySubscribe makes a subscription relay: two dialogs and no media.
// NOTIFYs and refreshes then pass as in-dialog requests. The handler's
// goroutine is the relay's loop until it ends.
func (e *Engine) relaySubscribe(req *sip.Request, tx sip.ServerTransaction, d *dialog, kind legKind, who string) {
	c := e.newCall(who, req.Recipient.User)
	c.sub = true
	a := &leg{c: c, idx: 0, d: newUAS(e.st, req, tx), kind: kindPlain, acks: make(chan *sip.Request, 1)}
	if sipnet.IsWebSocket(req.Transport()) {
		a.kind = kindWebRTC
	}
	b := &leg{c: c, idx: 1, d: d, kind: kind, acks: make(chan *sip.Request, 1)}
	c.legs = [2]*leg{a, b}
	if err := e.register(c); err != nil {
		e.st.Respond(tx, req, 503, "", nil)
		return
	}
	e.addDialog(a)
	e.addDialog(b) // a NOTIFY may come before the 2xx (RFC 6665 section 4.1.2.4)
	c.run(func() {
		fwd := d.request(sip.SUBSCRIBE, req.Body(), contentType(req))
		fwd.ReplaceHeader(maxForwards(req))
		copyHeaders(req, fwd, passHeaders...)
		ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
		defer cancel()
		res, err := c.transact(ctx, fwd, nil)
		if err != nil {
			e.st.Respond(tx, req, 408, "", nil)
			c.end(408, "subscribe timeout")
			return
		}
		if !res.IsSuccess() {
			e.st.Respond(tx, req, mapFailure(res.StatusCode), "", nil)
			c.end(res.StatusCode, "subscribe refused")
			return
		}
		d.established(res)
		out := a.d.response(res.StatusCode, res.Reason, nil)
		copyHeaders(res, out, "Expires")
		e.st.RespondWith(tx, out)
		if c.stopped() {
			c.hangup()
			return
		}
		c.renew(subscriptionExpiry(req, res))
	})
}

// subscriptionUpdate keeps a subscription relay alive for its Expires, or
// ends it on a terminating NOTIFY. It runs on the goroutine that relayed
// req (see forward) and hands the change to the relay's loop.
func (c *Call) subscriptionUpdate(req *sip.Request, res *sip.Response) {
	switch req.Method {
	case sip.NOTIFY:
		if h := sipnet.Header(req, "Subscription-State"); h != nil && strings.HasPrefix(strings.ToLower(strings.TrimSpace(h.Value())), "terminated") {
			c.stop(200, "subscription terminated", nil)
		}
	case sip.SUBSCRIBE:
		c.post(message{refresh: subscriptionExpiry(req, res)})
	}
}

// subscriptionExpiry is how long a SUBSCRIBE's answer keeps the relay:
// its Expires (the request's when the answer has none, else an hour)
// plus subscriptionSlack.
func subscriptionExpiry(req *sip.Request, res *sip.Response) time.Duration {
	exp := 3600
	for _, m := range []headers{res, req} {
		if h := sipnet.Header(m, "Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil {
				exp = n
				break
			}
		}
	}
	return time.Duration(exp)*time.Second + subscriptionSlack
}
