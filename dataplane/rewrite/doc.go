// Package rewrite edits RTP and RTCP packets in place as they are relayed
// between the two legs of a media session, after SRTP decryption and before
// re-encryption.
//
// It has four parts, one file each:
//
//   - [ParseRTP] decodes the fixed RTP header, CSRC list, header extension
//     and padding of a packet (RFC 3550 section 5.1, RFC 8285) into a small
//     [Header] value.
//   - [PTMap] maps the payload types one leg uses to those the other leg
//     negotiated.
//   - [OutStream] turns whatever a far end sends on one stream into a single
//     continuous RTP stream on the other leg: payload type and SSRC
//     rewritten, sequence numbers and timestamps rebased across restarts so
//     that an SRTP receiver never mistakes new media for a replay.
//   - [TranslateRTCP] rewrites the SSRCs, RTP timestamps and sequence
//     numbers that an RTCP compound packet names so that they agree with
//     what [OutStream] did to the media.
//
// Everything here runs once per packet on the dataplane's hot path: no
// function allocates, takes a lock or starts a goroutine. Buffers belong to
// the caller and are modified only where a function's documentation says
// so. State structs ([OutStream], [PTMap], [StreamTable]) belong to the
// caller too, which must serialise access to each of them; none is safe for
// concurrent use.
package rewrite
