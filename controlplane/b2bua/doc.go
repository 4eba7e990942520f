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
package b2bua
