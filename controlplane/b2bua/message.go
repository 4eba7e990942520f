package b2bua

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// MessageID names an out-of-dialog MESSAGE for the hooks (Config.OnMessage,
// Config.Offline): a digest of what identifies its transaction's request
// (Call-ID, CSeq, From tag; RFC 3261 section 8.1.1), 24 hex digits as
// package messaging's ids, so that the copy an API listener got and the
// one kept for later are known to be one message.
func MessageID(req *sip.Request) string {
	h := sha256.New()
	if c := req.CallID(); c != nil {
		h.Write([]byte(c.Value()))
	}
	if c := req.CSeq(); c != nil {
		h.Write([]byte{0})
		h.Write(strconv.AppendUint(nil, uint64(c.SeqNo), 10))
	}
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		h.Write([]byte{0})
		h.Write([]byte(tag))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// SendMessage sends an instant message (SIP MESSAGE, RFC 3428) for a web
// app's user: from the user from to the user to, routed as a browser's
// MESSAGE is (to the upstream in trunk mode, to to's registration
// otherwise). It returns the final SIP status; an error says why there
// was none (no such user: a *Error with 404 or 480; no answer: 408).
func (e *Engine) SendMessage(ctx context.Context, from, to, contentType string, body []byte) (int, error) {
	return e.sendMessage(ctx, fromBrowser, from, to, contentType, body, time.Time{})
}

// DeliverMessage sends a kept instant message (SIP MESSAGE, RFC 3428) to
// the registered browser or device of the user to, whatever the mode
// (never to the upstream): the message to a user who just came online.
// sent, when set, goes in a Date header (RFC 3261 section 20.17) so that
// the recipient can show when it was written. It returns the final SIP
// status as SendMessage does.
func (e *Engine) DeliverMessage(ctx context.Context, from, to, contentType string, body []byte, sent time.Time) (int, error) {
	return e.sendMessage(ctx, fromUpstream, from, to, contentType, body, sent)
}

func (e *Engine) sendMessage(ctx context.Context, s side, from, to, contentType string, body []byte, sent time.Time) (int, error) {
	user, err := userOf(to)
	if err != nil {
		return 0, sipError(400, "", err)
	}
	fromUser, err := userOf(from)
	if err != nil {
		return 0, sipError(400, "", err)
	}
	tgt, err := e.resolve(s, user, false)
	if err != nil {
		return 0, err
	}
	d, _ := e.outbound(tgt, fromUser, "")
	build := func() *sip.Request {
		req := d.request(sip.MESSAGE, body, contentType)
		if !sent.IsZero() {
			req.AppendHeader(sip.NewHeader("Date", sent.UTC().Format(http.TimeFormat)))
		}
		return req
	}
	defer e.own(d.callID)()
	// Toward the upstreams the MESSAGE fails over as a call does.
	res, err := e.requestFailingOver(ctx, d, tgt, build)
	if err != nil {
		return 0, sipError(408, "", err)
	}
	return res.StatusCode, nil
}
