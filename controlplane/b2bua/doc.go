// Package b2bua is Strait's back-to-back user agent: every call is two SIP
// dialogs (or one dialog and an API client) and one dataplane session.
//
// A [Call] answers the caller's dialog and places the callee's with
// nothing copied across but what the call needs: user names, SDP
// translated by controlplane/sdp, DTMF and message bodies. Call-IDs, tags,
// Via chains, Contacts and media addresses are Strait's own on each side,
// which is the topology hiding a session border controller owes both
// sides.
//
// The [Engine] holds the calls and routes requests. In trunk mode
// (an upstream is configured) calls from browsers go to the upstream and
// calls from the upstream go to registered browsers; in standalone mode
// calls go to registered users, or to the echo extension, whose
// dataplane session has a single leg that reflects the caller's media.
// MESSAGE, SUBSCRIBE/NOTIFY, INFO and REFER pass through; OPTIONS is
// answered, and the upstream is pinged with it.
//
// Every offer/answer exchange goes through media: the first offer
// creates the session (a WebRTC leg for a browser, a plain leg for a PBX),
// the answer updates it, and re-INVITE or UPDATE exchanges (hold,
// resume, codec change, new address, ICE restart) update it again. A call
// that ends deletes its session and leaves a CDR.
//
// Files by concern: engine.go (the Engine, its handlers and shutdown),
// route.go (where a request comes from and goes), policy.go (who may
// place a request, as whom, and the dial plan), upstream.go (the PBX's
// addresses and OPTIONS keepalive), registry.go (calls and dialogs by id),
// events.go (the API's event stream); call.go (the Call and its state),
// invite.go (a new call: the callee's INVITE, ringing, CANCEL), bridge.go
// (the answer and its ACK), reoffer.go (re-INVITE and UPDATE offers),
// indialog.go (other in-dialog requests), outofdialog.go (MESSAGE,
// SUBSCRIBE and OPTIONS outside a dialog), hangup.go (every way a call
// ends), cdr.go (its record), accounting.go (the CDR journal, interim
// media samples, calls of a lost dataplane node), api.go (calls placed by
// the HTTP API), app.go (calls routed to web apps by webhook);
// dialog.go (one SIP dialog), sipmsg.go (header helpers); media.go (the
// session and what was negotiated), offeranswer.go (offer/answer
// exchanges), media_sdp.go (Strait's SDP from the session), media_spec.go
// (the session's legs as the dataplane takes them).
package b2bua
