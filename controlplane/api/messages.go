package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/messaging"
)

// Instant messages: POST /v1/messages sends as the credential's user to
// the recipient's API listeners (GET /v1/events/messages) and, as a SIP
// MESSAGE, to its registrations (or the PBX in trunk mode); SIP MESSAGEs
// to a user reach its API listeners through b2bua's OnMessage hook. A
// message nobody took is kept for a known user (messaging.Mailbox) and
// handed over when the user comes online: a browser registers, the event
// stream opens, or GET /v1/messages asks.

// Delivery outcomes of POST /v1/messages.
const (
	// DeliveryDelivered: an API listener of the recipient on this control
	// plane or a registration (2xx to the MESSAGE) took it.
	DeliveryDelivered = "delivered"
	// DeliveryStored: nobody took it; it is kept until the recipient
	// comes online (answered 202).
	DeliveryStored = "stored"
	// DeliveryUndelivered: nobody took it and it is not kept (an unknown
	// recipient, or no mailbox).
	DeliveryUndelivered = "undelivered"
)

// MessageRequest is the body of POST /v1/messages.
type MessageRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// MessageSent is the answer to POST /v1/messages.
type MessageSent struct {
	ID string `json:"id"`
	// SIPStatus is the SIP final status of the MESSAGE toward the
	// recipient's registrations or the PBX (404 or 480: none there; the
	// recipient's API listeners got it all the same).
	SIPStatus int `json:"sip_status"`
	// Delivery is one of the Delivery* outcomes.
	Delivery string `json:"delivery"`
}

// KeptMessages is the answer to GET /v1/messages.
type KeptMessages struct {
	Messages []messaging.Message `json:"messages"`
}

func checkMessageRequest(m *MessageRequest) error {
	if m.To == "" || len(m.To) > 64 {
		return errors.New("to: a user, 1 to 64 characters")
	}
	return messaging.CheckText(m.Text)
}

func (a *API) sendMessage(w http.ResponseWriter, r *http.Request) {
	from, ok := ownUser(w, r)
	if !ok {
		return
	}
	if a.cfg.Messages == nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "no messaging here")
		return
	}
	if ok, wait := a.cfg.MessageLimit.Allow(from, time.Now()); !ok {
		if a.cfg.Refused != nil {
			a.cfg.Refused("message_rate")
		}
		WriteTooManyRequests(w, r, wait, "message rate limit of "+from+" (--max-messages-per-minute)")
		return
	}
	var req MessageRequest
	if !readBody(w, r, &req, checkMessageRequest) {
		return
	}
	m := messaging.Message{ID: messaging.NewID(), From: from, To: req.To, ContentType: messaging.TextType,
		Text: req.Text, Time: time.Now().UTC(), Via: "api"}
	listening := a.cfg.Messages.Listening(req.To)
	if err := a.cfg.Messages.Send(r.Context(), m, a.mayKeep(req.To)); err != nil {
		a.cfg.Log.Warn("message not delivered to API listeners", "to", req.To, "err", err)
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "the message bus is unavailable")
		return
	}
	out := MessageSent{ID: m.ID, Delivery: DeliveryUndelivered}
	if a.cfg.Engine != nil {
		code, err := a.cfg.Engine.SendMessage(r.Context(), from, req.To, messaging.TextType, []byte(req.Text))
		var be *b2bua.Error
		switch {
		case errors.As(err, &be) && be.Status == 400:
			WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, err.Error())
			return
		case errors.As(err, &be):
			code = be.Status
		case err != nil:
			code = 500
		}
		out.SIPStatus = code
	}
	status := http.StatusCreated
	switch {
	case listening || (out.SIPStatus >= 200 && out.SIPStatus < 300):
		out.Delivery = DeliveryDelivered
	case a.keeps(out.SIPStatus):
		switch err := a.cfg.Mailbox.Put(r.Context(), m); {
		case err == nil:
			out.Delivery, status = DeliveryStored, http.StatusAccepted
		case errors.Is(err, messaging.ErrTaken):
			// A listener on another control plane took it meanwhile.
			out.Delivery = DeliveryDelivered
		case errors.Is(err, messaging.ErrSenderShare):
			// 507, not 429: the share frees as recipients come online
			// (or in days, as kept messages expire), not with time; no
			// Retry-After could be true. The rate itself is the 429 above.
			a.cfg.Log.Info("message refused: the sender's share of the mailbox is used up", "id", m.ID, "from", from, "to", req.To)
			WriteProblem(w, r, http.StatusInsufficientStorage, ProblemSenderShareFull,
				from+" has as many messages waiting for offline users as one sender may: the message was not kept")
			return
		case errors.Is(err, messaging.ErrMailboxFull):
			a.cfg.Log.Info("message refused: mailbox full", "id", m.ID, "from", from, "to", req.To)
			WriteProblem(w, r, http.StatusInsufficientStorage, ProblemMailboxFull,
				"the mailbox of "+req.To+" is full: the message was not kept")
			return
		case !errors.Is(err, messaging.ErrUnknownUser):
			a.cfg.Log.Warn("message not kept", "to", req.To, "err", err)
		}
	}
	a.cfg.Log.Info("message", "id", m.ID, "from", from, "to", req.To, "sip_status", out.SIPStatus, "delivery", out.Delivery)
	writeJSON(w, status, out)
}

// mayKeep reports whether a message to user may end in the mailbox, so
// that the control planes delivering it live claim it first
// (messaging.Hub.Send).
func (a *API) mayKeep(user string) bool {
	return a.cfg.Mailbox != nil && (a.cfg.Engine == nil || !a.cfg.Engine.Trunk()) && a.cfg.Mailbox.Keeps(user)
}

// keeps reports whether a message the SIP side answered sipStatus to (0:
// no SIP side) is kept for later: the recipient is offline (408, 430,
// 480), not unknown (404), and this is not trunk mode (where the PBX is
// the recipient's server and keeps what it keeps).
func (a *API) keeps(sipStatus int) bool {
	if a.cfg.Mailbox == nil || (a.cfg.Engine != nil && a.cfg.Engine.Trunk()) {
		return false
	}
	switch sipStatus {
	case 0, 408, 430, 480:
		return true
	}
	return false
}

// take hands the messages kept for user over to fn (which delivers them)
// and removes them.
func (a *API) take(ctx context.Context, user string, fn func([]messaging.Message)) {
	if a.cfg.Mailbox == nil {
		fn(nil)
		return
	}
	msgs, done := a.cfg.Mailbox.Take(ctx, user)
	defer done()
	fn(msgs)
	for _, m := range msgs {
		if err := a.cfg.Mailbox.Delivered(ctx, m); err != nil {
			a.cfg.Log.Warn("delivered message not removed", "id", m.ID, "err", err)
		}
	}
	if len(msgs) > 0 {
		a.cfg.Log.Info("kept messages delivered", "to", user, "count", len(msgs), "via", "api")
	}
}

// keptMessages answers GET /v1/messages: the messages kept for the
// credential's user while offline, oldest first, removed once sent (the
// polling client's way to come online).
func (a *API) keptMessages(w http.ResponseWriter, r *http.Request) {
	user, ok := ownUser(w, r)
	if !ok {
		return
	}
	out := KeptMessages{Messages: []messaging.Message{}}
	a.take(r.Context(), user, func(msgs []messaging.Message) {
		out.Messages = append(out.Messages, msgs...)
	})
	writeJSON(w, http.StatusOK, out)
}

// messageEvents streams the messages to the credential's user as
// "message" events, the ones kept while offline first.
func (a *API) messageEvents(w http.ResponseWriter, r *http.Request) {
	user, ok := ownUser(w, r)
	if !ok {
		return
	}
	if a.cfg.Messages == nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "no messaging here")
		return
	}
	listen := func() (ch <-chan messaging.Message, stop func()) {
		a.take(r.Context(), user, func(kept []messaging.Message) {
			ch, stop = a.cfg.Messages.ListenWith(user, kept)
		})
		if a.cfg.Mailbox != nil {
			// What was kept between the Take and the listener's start.
			a.cfg.Mailbox.HandOver(user)
		}
		return ch, stop
	}
	streamEvents(w, r, "strait messages", listen, func(m messaging.Message) (string, any, bool, bool) {
		return "message", m, true, false
	})
}
