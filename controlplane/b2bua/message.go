package b2bua

import (
	"context"

	"github.com/emiago/sipgo/sip"
)

// SendMessage sends an instant message (SIP MESSAGE, RFC 3428) for a web
// app's user: from the user from to the user to, routed as a browser's
// MESSAGE is (to the upstream in trunk mode, to to's registration
// otherwise). It returns the final SIP status; an error says why there
// was none (no such user: a *Error with 404 or 480; no answer: 408).
func (e *Engine) SendMessage(ctx context.Context, from, to, contentType string, body []byte) (int, error) {
	user, err := userOf(to)
	if err != nil {
		return 0, sipError(400, "", err)
	}
	fromUser, err := userOf(from)
	if err != nil {
		return 0, sipError(400, "", err)
	}
	tgt, err := e.resolve(fromBrowser, user, false)
	if err != nil {
		return 0, err
	}
	d, _ := e.outbound(tgt, fromUser, "")
	req := d.request(sip.MESSAGE, body, contentType)
	e.mu.Lock()
	e.ownIDs[d.callID] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.ownIDs, d.callID)
		e.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := d.send(ctx, req)
	if err != nil {
		return 0, sipError(408, "", err)
	}
	return res.StatusCode, nil
}
