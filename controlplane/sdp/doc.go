// Package sdp reads and writes the session descriptions Strait exchanges on
// both sides of a call, and negotiates codecs between them.
//
// Strait bridges two SDP profiles. Browsers speak WebRTC: ICE, DTLS-SRTP,
// rtcp-mux and BUNDLE over UDP/TLS/RTP/SAVPF. PBXs and trunks speak plain
// RTP/AVP, sometimes RTP/SAVP with SDES keys (RFC 4568). This package is
// pure: it neither calls the dataplane nor sends SIP. The B2BUA composes it
// with dataplane calls:
//
//  1. [Parse] the peer's description into a [Description].
//  2. [OfferStreams] turns a peer's offer into the [Stream]s Strait offers on
//     the other leg (codecs filtered by a [Policy]); [AnswerStreams] turns
//     the other leg's final description into the streams of Strait's answer
//     to an offer, numbered as that offer numbers them (RFC 3264 section 6.1).
//  3. [WebRTCOffer], [WebRTCAnswer], [PlainOffer] and [PlainAnswer] build the
//     description Strait sends from those streams plus what the dataplane
//     allocated ([LocalWebRTC], [LocalPlain]); [Description.Marshal] writes it.
//
// Stream i of one leg is always m-line i of the other: a section Strait
// cannot carry is rejected (port 0) on both legs rather than dropped, so the
// m-line counts match, as RFC 3264 section 6 requires of an answer and the
// dataplane requires of a session's legs.
//
// Builders start from Strait's own values and the streams only: nothing of
// one side's description (addresses, origin, ICE credentials, fingerprints,
// SSRCs, msid, mids, candidates) reaches the description built for the
// other side.
//
// Errors carry the SIP status a UAS should answer with; see [Error].
package sdp
