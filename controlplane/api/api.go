// Package api is Strait's HTTP API for web apps and operators, under /v1:
// place a call from a browser's WebRTC offer (POST /v1/calls), list, get
// and hang up calls, send DTMF, follow call events (server-sent events at
// /v1/events), read call records (/v1/cdrs) and registrations. Errors are
// JSON {"error": ...} with the matching HTTP status; a bearer token is
// required when one is configured.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/dialplan"
	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/sdp"
)

// Config configures the API.
type Config struct {
	// Engine places and holds the calls.
	Engine *b2bua.Engine
	// CDR serves /v1/cdrs; Registry /v1/registrations. Either may be nil.
	CDR      *cdr.Store
	Registry *registrar.Registry
	// Token returns the token that must be sent as "Authorization: Bearer
	// TOKEN" (read per request, so that a reload may change it); nil or an
	// empty token requires none.
	Token func() string
	// Log is the logger; nil is slog.Default().
	Log *slog.Logger
}

// API serves /v1.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the API handler.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /v1/calls", a.placeCall)
	a.mux.HandleFunc("GET /v1/calls", a.listCalls)
	a.mux.HandleFunc("GET /v1/calls/{id}", a.getCall)
	a.mux.HandleFunc("DELETE /v1/calls/{id}", a.hangup)
	a.mux.HandleFunc("POST /v1/calls/{id}/dtmf", a.dtmf)
	a.mux.HandleFunc("GET /v1/events", a.events)
	a.mux.HandleFunc("GET /v1/calls/{id}/events", a.events)
	a.mux.HandleFunc("GET /v1/cdrs", a.cdrs)
	a.mux.HandleFunc("GET /v1/registrations", a.registrations)
	a.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return a
}

// ServeHTTP checks the token and serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := ""
	if a.cfg.Token != nil {
		token = a.cfg.Token()
	}
	if !Authorized(r, token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="strait"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	a.mux.ServeHTTP(w, r)
}

// Authorized reports whether r carries the bearer token (always true when
// token is empty).
func Authorized(r *http.Request, token string) bool {
	if token == "" {
		return true
	}
	want := "Bearer " + token
	got := r.Header.Get("Authorization")
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Error is the body of every error response.
type Error struct {
	// Error says what went wrong.
	Error string `json:"error"`
	// SIPStatus is the SIP status behind a failed call, when there is one.
	SIPStatus int `json:"sip_status,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, Error{Error: msg})
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

func writeCallError(w http.ResponseWriter, err error) {
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
		if refusal.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(refusal.RetryAfter.Seconds()))))
		}
		writeJSON(w, status, Error{Error: refusal.Phrase + " (" + string(refusal.Reason) + ")", SIPStatus: refusal.Status})
		return
	}
	switch {
	case errors.As(err, &be):
		code = be.Status
	case errors.As(err, &se):
		code = se.StatusCode()
	}
	writeJSON(w, httpStatus(code), Error{Error: err.Error(), SIPStatus: code})
}

// CallResponse is the body of a successful POST /v1/calls.
type CallResponse struct {
	// ID names the call in the other endpoints.
	ID string `json:"id"`
	// Answer is the SDP answer for the browser's RTCPeerConnection.
	Answer string `json:"answer"`
}

func (a *API) placeCall(w http.ResponseWriter, r *http.Request) {
	req, err := ParseCallRequest(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, answer, err := a.cfg.Engine.Place(r.Context(), b2bua.PlaceRequest{To: req.To, From: req.From,
		Offer: []byte(req.Offer), Early: req.Early})
	if err != nil {
		writeCallError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/calls/"+id)
	writeJSON(w, http.StatusCreated, CallResponse{ID: id, Answer: string(answer)})
}

func (a *API) listCalls(w http.ResponseWriter, _ *http.Request) {
	calls := a.cfg.Engine.Calls()
	sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	writeJSON(w, http.StatusOK, map[string]any{"calls": calls})
}

func (a *API) getCall(w http.ResponseWriter, r *http.Request) {
	c, ok := a.cfg.Engine.Call(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such call")
		return
	}
	writeJSON(w, http.StatusOK, c.Info())
}

func (a *API) hangup(w http.ResponseWriter, r *http.Request) {
	c, ok := a.cfg.Engine.Call(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such call")
		return
	}
	c.Hangup(200, "api hangup")
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) dtmf(w http.ResponseWriter, r *http.Request) {
	digits, err := ParseDTMFRequest(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, ok := a.cfg.Engine.Call(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such call")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := c.SendDTMF(ctx, digits); err != nil {
		writeCallError(w, err)
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
		if _, ok := a.cfg.Engine.Call(id); !ok {
			writeError(w, http.StatusNotFound, "no such call")
			return
		}
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	ch, stop := a.cfg.Engine.Watch()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": strait call events\n\n")
	fl.Flush()
	t := time.NewTicker(sseKeepalive)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if only != "" && ev.Call != only {
				continue
			}
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.State, b)
			fl.Flush()
			if only != "" && ev.State == "ended" {
				return
			}
		}
	}
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
