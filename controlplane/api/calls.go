package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/sdp"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// httpStatus maps a SIP failure to the HTTP status a web app gets.
func httpStatus(sipCode int) int {
	switch {
	case sipCode == 400:
		return http.StatusBadRequest
	case sipCode == 401 || sipCode == 403 || sipCode == 407:
		return http.StatusForbidden
	case sipCode == 404 || sipCode == 484 || sipCode == 604 || sipCode == 480 || sipCode == 430:
		return http.StatusNotFound
	case sipCode == 408 || sipCode == 504:
		return http.StatusGatewayTimeout
	case sipCode == 486 || sipCode == 600 || sipCode == 603 || sipCode == 491 || sipCode == 487 || sipCode == 481:
		return http.StatusConflict
	case sipCode == 488 || sipCode == 606 || sipCode == 415:
		return http.StatusUnprocessableEntity
	case sipCode == 503:
		return http.StatusServiceUnavailable
	case sipCode == 501:
		return http.StatusNotImplemented
	}
	return http.StatusBadGateway
}

func writeCallError(w http.ResponseWriter, r *http.Request, err error) {
	var be *b2bua.Error
	var se *sdp.Error
	var refusal *dialplan.Refusal
	code := 500
	if errors.As(err, &refusal) {
		// The dial plan's refusals: 403 for a destination, 429 (RFC 6585)
		// for a user's limits, with Retry-After when there is one.
		status := http.StatusForbidden
		if refusal.Reason != dialplan.ReasonDestination {
			status = http.StatusTooManyRequests
		}
		writeProblem(w, r, Problem{Status: status, Type: ProblemDialPlan, SIPStatus: refusal.Status,
			Detail: refusal.Phrase + " (" + string(refusal.Reason) + ")", RetryAfter: retrySeconds(refusal.RetryAfter)})
		return
	}
	switch {
	case errors.As(err, &be):
		code = be.Status
	case errors.As(err, &se):
		code = se.StatusCode()
	}
	status := httpStatus(code)
	kind := ProblemCallFailed
	if status == http.StatusBadRequest {
		kind = ProblemBadRequest
	}
	writeProblem(w, r, Problem{Status: status, Type: kind, Detail: err.Error(), SIPStatus: code})
}

// CallResponse is the body of a successful POST /v1/calls.
type CallResponse struct {
	// ID names the call in the other endpoints.
	ID string `json:"id"`
	// Answer is the SDP answer for the browser's RTCPeerConnection.
	Answer string `json:"answer"`
}

func (a *API) placeCall(w http.ResponseWriter, r *http.Request) {
	var req CallRequest
	if !readBody(w, r, &req, checkCallRequest) {
		return
	}
	from, ok := callerOf(w, r, req.From)
	if !ok {
		return
	}
	id, answer, err := a.cfg.Engine.Place(r.Context(), b2bua.PlaceRequest{To: req.To, From: from,
		Offer: []byte(req.Offer), Early: req.Early})
	if err != nil {
		writeCallError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/calls/"+id)
	writeJSON(w, http.StatusCreated, CallResponse{ID: id, Answer: string(answer)})
}

// callerOf returns the identity a request's call goes out as: the
// credential's user, never the body's "from" (which may only repeat it),
// except for admins, who may name anyone (default: their own user, else
// "api"). It answers 403 itself and returns false otherwise.
func callerOf(w http.ResponseWriter, r *http.Request, asked string) (string, bool) {
	p := principal(r)
	switch {
	case p.Admin() && asked != "":
		return asked, true
	case p.User != "" && (asked == "" || asked == p.User):
		return p.User, true
	case p.Admin():
		return "", true // the engine's default identity
	}
	WriteProblem(w, r, http.StatusForbidden, ProblemScope, `this token calls as "`+p.User+`": "from" may not name another user`)
	return "", false
}

// call returns the call named by the path's id if the principal may see
// it; otherwise it answers 404 (not 403: whether a call exists is not
// every token's business) and returns false.
func (a *API) call(w http.ResponseWriter, r *http.Request) (*b2bua.Call, bool) {
	c, ok := a.cfg.Engine.Call(r.PathValue("id"))
	if ok {
		in := c.Info()
		ok = sees(principal(r), in.Caller, in.Callee, in.App)
	}
	if !ok {
		WriteProblem(w, r, http.StatusNotFound, "", "no such call")
	}
	return c, ok
}

func (a *API) listCalls(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	calls := a.cfg.Engine.Calls()
	if a.cfg.Peers != nil {
		// Every control plane's calls (several on one store): a peer
		// that does not answer in time is left out, and logged.
		more, err := a.cfg.Peers.Calls(r.Context())
		if err != nil {
			a.cfg.Log.Warn("calls of other control planes not listed", "err", err)
		}
		seen := map[string]bool{}
		for _, c := range calls {
			seen[c.ID] = true
		}
		for _, c := range more {
			if !seen[c.ID] {
				seen[c.ID] = true
				calls = append(calls, c)
			}
		}
	}
	calls = slices.DeleteFunc(calls, func(in b2bua.Info) bool { return !sees(p, in.Caller, in.Callee, in.App) })
	sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	writeJSON(w, http.StatusOK, map[string]any{"calls": calls})
}

// remoteCall finds a call another control plane holds (Config.Peers) if
// the principal may see it; otherwise it answers 404 and returns false.
func (a *API) remoteCall(w http.ResponseWriter, r *http.Request) (b2bua.Info, bool) {
	var in b2bua.Info
	err := errNoPeers
	if a.cfg.Peers != nil {
		in, err = a.cfg.Peers.Call(r.Context(), r.PathValue("id"))
	}
	if err != nil || !sees(principal(r), in.Caller, in.Callee, in.App) {
		WriteProblem(w, r, http.StatusNotFound, "", "no such call")
		return in, false
	}
	return in, true
}

// errNoPeers: this control plane is the only one.
var errNoPeers = errors.New("no other control plane")

// local reports whether the path's call is held by this control plane.
func (a *API) local(r *http.Request) bool {
	_, ok := a.cfg.Engine.Call(r.PathValue("id"))
	return ok || a.cfg.Peers == nil
}

func (a *API) getCall(w http.ResponseWriter, r *http.Request) {
	if !a.local(r) {
		if in, ok := a.remoteCall(w, r); ok {
			writeJSON(w, http.StatusOK, in)
		}
		return
	}
	c, ok := a.call(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, c.Info())
}

func (a *API) hangup(w http.ResponseWriter, r *http.Request) {
	if !a.local(r) {
		// The control plane holding the call hangs it up and answers
		// once it ended there.
		if _, ok := a.remoteCall(w, r); !ok {
			return
		}
		if err := a.cfg.Peers.Hangup(r.Context(), r.PathValue("id")); err != nil {
			WriteProblem(w, r, http.StatusNotFound, "", "no such call")
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c, ok := a.call(w, r)
	if !ok {
		return
	}
	// Over here (CDR written, media released) is over for the API: a BYE
	// to a browser that is reconnecting goes out when it is back.
	c.Hangup(200, "api hangup")
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) dtmf(w http.ResponseWriter, r *http.Request) {
	var d DTMFRequest
	if !readBody(w, r, &d, checkDTMFRequest) {
		return
	}
	digits := d.Digits
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if !a.local(r) {
		if _, ok := a.remoteCall(w, r); !ok {
			return
		}
		if err := a.cfg.Peers.SendDTMF(ctx, r.PathValue("id"), digits); err != nil {
			writeCallError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c, ok := a.call(w, r)
	if !ok {
		return
	}
	if err := c.SendDTMF(ctx, digits); err != nil {
		writeCallError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sseKeepalive is how often an idle event stream gets a comment line, so
// that proxies do not close it.
const sseKeepalive = 15 * time.Second

// events streams call events as server-sent events, named for the state
// (ringing, early, answered, ended) with a JSON b2bua.Event as data; all calls', or one call's at
// /v1/calls/{id}/events or with ?call=ID.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	only := r.PathValue("id")
	if only == "" {
		only = r.URL.Query().Get("call")
	}
	if id := r.PathValue("id"); id != "" {
		if _, ok := a.call(w, r); !ok {
			return
		}
	}
	p := principal(r)
	streamEvents(w, r, "strait call events", a.cfg.Engine.Watch, func(ev b2bua.Event) (string, any, bool, bool) {
		if (only != "" && ev.Call != only) || !sees(p, ev.Caller, ev.Callee, ev.App) {
			return "", nil, false, false
		}
		return ev.State, ev, true, only != "" && ev.State == "ended"
	})
}

func (a *API) cdrs(w http.ResponseWriter, _ *http.Request) {
	recs := []cdr.Record{}
	if a.cfg.CDR != nil {
		recs = append(recs, a.cfg.CDR.List()...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"cdrs": recs})
}

// Registration is one binding as the API shows it.
type Registration struct {
	// User is the registered user name.
	User string `json:"user"`
	// Contact is the device's own contact URI.
	Contact string `json:"contact"`
	// Transport is WS for a browser, UDP or TCP for a SIP device.
	Transport string `json:"transport"`
	// Expires is when the binding lapses.
	Expires time.Time `json:"expires"`
}

func (a *API) registrations(w http.ResponseWriter, _ *http.Request) {
	out := []Registration{}
	if a.cfg.Registry != nil {
		for _, b := range a.cfg.Registry.All() {
			out = append(out, Registration{User: b.AOR, Contact: b.Contact.String(), Transport: b.Transport, Expires: b.Expires})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	writeJSON(w, http.StatusOK, map[string]any{"registrations": out})
}
