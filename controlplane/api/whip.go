package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
)

// WHIP (RFC 9725): a WebRTC publisher (OBS, GStreamer's whipsink, a
// browser's WHIP library) POSTs its SDP offer to /whip/{callee} and Strait
// places a SIP call to callee as the credential's user, exactly as POST
// /v1/calls does; the session lives at the Location it answers with until
// the publisher DELETEs it or the callee hangs up.
//
// Strait is ICE-lite and takes a complete offer (its candidates gathered
// first, as WHIP clients do by default), so a session supports neither
// trickle ICE nor ICE restarts: PATCH on a session is 405 with Allow
// (RFC 9725 section 4.3.1 makes both optional). Its media address is
// public, so no ICE servers are offered in Link headers (section 4.6).

// sdpType is the media type of WHIP's offer and answer (RFC 9725 section
// 4.2: the POST MUST carry application/sdp).
const sdpType = "application/sdp"

// whipSessions is where WHIP sessions live.
const whipSessions = "/whip/sessions/"

// whipPublish turns a WHIP offer into a call.
func (a *API) whipPublish(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != sdpType {
		WriteProblem(w, r, http.StatusUnsupportedMediaType, "", "a WHIP offer is application/sdp (RFC 9725 section 4.2)")
		return
	}
	offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		WriteProblem(w, r, http.StatusRequestEntityTooLarge, "", ErrTooLarge.Error())
		return
	case err != nil:
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, "reading the offer: "+err.Error())
		return
	}
	req := CallRequest{To: r.PathValue("callee"), Offer: string(offer)}
	if err := checkCallRequest(&req); err != nil {
		WriteProblem(w, r, http.StatusBadRequest, ProblemBadRequest, err.Error())
		return
	}
	from, ok := callerOf(w, r, "")
	if !ok {
		return
	}
	id, answer, err := a.cfg.Engine.Place(r.Context(), b2bua.PlaceRequest{To: req.To, From: from, Offer: offer})
	if err != nil {
		writeCallError(w, r, err)
		return
	}
	a.cfg.Log.Info("whip session", "call", id, "from", from, "to", req.To)
	h := w.Header()
	h.Set("Location", whipSessions+id)
	h.Set("Content-Type", sdpType)
	w.WriteHeader(http.StatusCreated)
	w.Write(answer)
}

// whipDelete ends a WHIP session: 200 once the call is hung up (RFC 9725
// section 4.2).
func (a *API) whipDelete(w http.ResponseWriter, r *http.Request) {
	c, ok := a.call(w, r)
	if !ok {
		return
	}
	c.Hangup(200, "whip delete")
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
	}
	w.WriteHeader(http.StatusOK)
}
