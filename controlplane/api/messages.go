package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/messaging"
)

// Instant messages: POST /v1/messages sends as the credential's user to
// the recipient's API listeners (GET /v1/events/messages) and, as a SIP
// MESSAGE, to its registrations (or the PBX in trunk mode); SIP MESSAGEs
// to a user reach its API listeners through b2bua's OnMessage hook.

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
	if err := a.cfg.Messages.Send(r.Context(), m); err != nil {
		a.cfg.Log.Warn("message not delivered to API listeners", "to", req.To, "err", err)
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "the message bus is unavailable")
		return
	}
	out := MessageSent{ID: m.ID}
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
	a.cfg.Log.Info("message", "id", m.ID, "from", from, "to", req.To, "sip_status", out.SIPStatus)
	writeJSON(w, http.StatusCreated, out)
}

// messageEvents streams the messages to the credential's user as
// "message" events.
func (a *API) messageEvents(w http.ResponseWriter, r *http.Request) {
	user, ok := ownUser(w, r)
	if !ok {
		return
	}
	if a.cfg.Messages == nil {
		WriteProblem(w, r, http.StatusServiceUnavailable, "", "no messaging here")
		return
	}
	listen := func() (<-chan messaging.Message, func()) { return a.cfg.Messages.Listen(user) }
	streamEvents(w, r, "strait messages", listen, func(m messaging.Message) (string, any, bool, bool) {
		return "message", m, true, false
	})
}
