package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/strait-sbc/strait/controlplane/apiauth"
	"github.com/strait-sbc/strait/controlplane/b2bua"
)

// AnswerRequest is the body of POST /v1/calls/{id}/answer: a web app's
// answer to a call routed to it (--app), when it accepted the webhook
// with 202 instead of answering in the webhook's response.
type AnswerRequest struct {
	// Answer is the SDP answer of the app's RTCPeerConnection to the
	// webhook's offer (complete: no trickle).
	Answer string `json:"answer,omitempty"`
	// Reject, 400-699, refuses the call with that SIP status instead.
	Reject int `json:"reject,omitempty"`
}

func checkAnswerRequest(a *AnswerRequest) error {
	switch {
	case a.Answer != "" && a.Reject != 0:
		return errors.New(`give "answer" or "reject", not both`)
	case a.Reject != 0 && (a.Reject < 400 || a.Reject > 699):
		return errors.New(`"reject" must be a SIP status from 400 to 699`)
	case a.Reject == 0 && strings.TrimSpace(a.Answer) == "":
		return errors.New(`"answer" (the SDP answer) or "reject" is required`)
	case a.Reject == 0 && !strings.HasPrefix(strings.TrimSpace(a.Answer), "v=0"):
		return errors.New(`"answer" is not SDP (it must start with v=0)`)
	}
	return nil
}

// answerTimeout bounds how long POST /v1/calls/{id}/answer waits for the
// call to take the answer (a dataplane request).
const answerTimeout = 10 * time.Second

// answerCall hands an app's answer (or refusal) to a call routed to it.
// Only a credential that may receive the call's app may (404 for every
// other: whether the call exists is not its business).
func (a *API) answerCall(w http.ResponseWriter, r *http.Request) {
	var req AnswerRequest
	if !readBody(w, r, &req, checkAnswerRequest) {
		return
	}
	c, ok := a.cfg.Engine.Call(r.PathValue("id"))
	if !ok || c.App() == "" || !principal(r).MayReceive(c.App()) {
		WriteProblem(w, r, http.StatusNotFound, "", "no such call waiting for this app")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	if err := c.AnswerFromApp(ctx, []byte(req.Answer), req.Reject); err != nil {
		if errors.Is(err, b2bua.ErrNotRinging) {
			WriteProblem(w, r, http.StatusConflict, ProblemCallFailed, "the call is no longer waiting for an answer")
			return
		}
		writeCallError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sees reports whether p may see a call: its own user's (apiauth's
// Sees), or one routed to an app p may receive.
func sees(p apiauth.Principal, caller, callee, app string) bool {
	return p.Sees(caller, callee) || (app != "" && p.MayReceive(app))
}
