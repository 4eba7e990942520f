package sdp

import (
	"cmp"
	"slices"
)

// Stream is one m-line as Strait describes it on a leg, whatever the
// profile: what to carry, not how. [OfferStreams], [AnswerStreams] and
// [Policy.NewStream] make them; the builders turn them into SDP with
// Strait's transport. A Stream never holds a peer's transport details, so
// nothing of one side's description can leak into the other's through it.
type Stream struct {
	// Kind of the section; only audio and video are ever accepted.
	Kind Kind
	// Rejected makes the builders write the m-line with port 0 (RFC 3264
	// section 6), keeping the m-line count. The caller may set it, e.g. to
	// turn video down.
	Rejected bool
	// Direction from Strait's point of view, as written in Strait's SDP on
	// this leg; the dataplane's StreamSpec.direction wants the same value.
	Direction Direction
	// Codecs in order of preference, numbered as this leg numbers them.
	Codecs []Codec
	// Ptime and MaxPtime in milliseconds; 0 leaves them out (plain
	// builders write a=ptime:20 for audio then).
	Ptime    int
	MaxPtime int
	// SSRC is Strait's sending SSRC on this stream (the dataplane's
	// Stream.local_ssrc when it rewrites SSRCs); 0 announces none. WebRTC
	// builders announce it with a=ssrc cname and a=msid.
	SSRC uint32

	// media, proto and formats are the m-line this stream came from, and
	// sample a codec of it: what the section is written with if rejected.
	media, proto string
	formats      []string
	sample       []Codec
}

// OfferStreams returns the streams Strait offers on the other leg for the
// description d a peer sent: one per m-line of d, codecs filtered by the
// other leg's policy p (keeping d's order and numbering), direction as in
// d. A section Strait cannot carry (data channel, T.38, a WebRTC section
// outside the BUNDLE group, RTP/SAVP without a usable key, no codec p
// allows) is rejected. d is usually an offer; for a delayed-offer INVITE it
// is the answer from the leg that was offered first.
//
// It fails with status 488 when no audio or video stream is left, or when
// d is a WebRTC description without usable ICE and DTLS parameters.
func OfferStreams(d *Description, p Policy) ([]Stream, error) {
	if d.IsWebRTC() {
		if _, err := d.RemoteWebRTC(); err != nil {
			return nil, err
		}
	}
	out := make([]Stream, len(d.Media))
	accepted := 0
	for i := range d.Media {
		m := &d.Media[i]
		s := Stream{
			Kind:      m.Kind,
			Direction: m.Direction,
			Ptime:     m.Ptime,
			MaxPtime:  m.MaxPtime,
			media:     m.Type,
			proto:     m.Proto,
			formats:   slices.Clone(m.Formats),
			sample:    sampleCodec(m.Codecs),
		}
		if carriable(d, i) {
			s.Codecs = p.Filter(m.Codecs)
		}
		if hasMediaCodec(s.Codecs) {
			accepted++
		} else {
			s.Codecs, s.Rejected = nil, true
		}
		out[i] = s
	}
	if accepted == 0 {
		return nil, noCommonCodec("none of %d m-lines has a codec of %v", len(d.Media), p.Codecs)
	}
	return out, nil
}

// AnswerStreams returns the streams of Strait's answer to offer, given far,
// the description the other leg ended up with for the same streams (the
// far end's answer to what Strait offered it, or its last description when
// Strait answers on its own, e.g. a re-INVITE for hold).
//
// Each stream takes the codecs of offer that far also has, numbered as
// offer numbers them, in far's order with Opus first ([AnswerCodecs]), and
// far's ptime (offer's when far names none). Its direction is far's, narrowed to what offer allows
// (RFC 3264 section 6.1): an offer to send only is answered recvonly or
// inactive. A section far rejected, or offer cannot have carried, is
// rejected.
//
// It fails with status 488 when far does not have offer's m-line count or
// no audio or video stream is left.
func AnswerStreams(offer, far *Description) ([]Stream, error) {
	if len(far.Media) != len(offer.Media) {
		return nil, unacceptable("far description has %d m-lines, offer %d", len(far.Media), len(offer.Media))
	}
	if offer.IsWebRTC() {
		if _, err := offer.RemoteWebRTC(); err != nil {
			return nil, err
		}
	}
	out := make([]Stream, len(offer.Media))
	accepted := 0
	for i := range offer.Media {
		om, fm := &offer.Media[i], &far.Media[i]
		s := Stream{
			Kind:      om.Kind,
			Direction: fm.Direction.And(om.Direction.Reverse()),
			Ptime:     cmp.Or(fm.Ptime, om.Ptime),
			MaxPtime:  cmp.Or(fm.MaxPtime, om.MaxPtime),
			media:     om.Type,
			proto:     om.Proto,
			formats:   slices.Clone(om.Formats),
			sample:    sampleCodec(om.Codecs),
		}
		if carriable(offer, i) && !fm.Rejected() && fm.Kind == om.Kind {
			s.Codecs = AnswerCodecs(om.Codecs, fm.Codecs)
		}
		if hasMediaCodec(s.Codecs) {
			accepted++
		} else {
			s.Codecs, s.Rejected = nil, true
		}
		out[i] = s
	}
	if accepted == 0 {
		return nil, noCommonCodec("no m-line of the offer is carried by the far leg")
	}
	return out, nil
}

// carriable reports whether Strait can terminate m-line i of d on the leg d
// came from: audio or video over RTP in the profile of the whole
// description (a leg is WebRTC or plain, not both), and either a WebRTC
// section on the one ICE+DTLS transport (the BUNDLE group, or the first
// section without one), or a plain section (with a key the dataplane can
// use for RTP/SAVP).
func carriable(d *Description, i int) bool {
	m := &d.Media[i]
	if m.Rejected() || !m.Kind.relayed() {
		return false
	}
	webrtc := d.IsWebRTC()
	switch {
	case webrtc && isWebRTCProto(m.Proto):
		t := d.transportIndex()
		if t < 0 || !d.Media[t].RTCPMux {
			return false
		}
		if len(d.Bundle) == 0 {
			return i == t
		}
		return m.Mid != "" && slices.Contains(d.Bundle, m.Mid)
	case !webrtc && isPlainProto(m.Proto):
		if isSecureProto(m.Proto) {
			_, ok := SelectCrypto(m.Crypto)
			return ok
		}
		return true
	}
	return false
}

// subsetOf checks that every codec of answer is offered with the same
// payload type, as an answer must (RFC 3264 section 6.1).
func subsetOf(answer, offered []Codec) bool {
	for _, c := range answer {
		i := slices.IndexFunc(offered, func(o Codec) bool { return o.PayloadType == c.PayloadType })
		if i < 0 || offered[i].baseKey() != c.baseKey() {
			return false
		}
	}
	return true
}

// rejectedCodecs returns what a rejected RTP m-line lists: one payload
// type with its rtpmap, since some stacks (pion) refuse a payload type they
// cannot look up even on a rejected line. Without any codec to name it is
// PCMU, static and known to all (RFC 3551).
func (s Stream) rejectedCodecs() []Codec {
	if c := sampleCodec(s.Codecs); c != nil {
		return c
	}
	if s.sample != nil {
		return slices.Clone(s.sample)
	}
	return []Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}
}

// sampleCodec returns the first codec of cs with its name and clock only,
// or nil.
func sampleCodec(cs []Codec) []Codec {
	if len(cs) == 0 {
		return nil
	}
	c := cs[0]
	return []Codec{{PayloadType: c.PayloadType, Name: c.Name, ClockRate: c.ClockRate, Channels: c.Channels}}
}

// accepted reports whether a builder writes the stream as an active
// section; Rejected streams and kinds Strait does not relay are written
// with port 0.
func (s Stream) accepted() bool { return !s.Rejected && s.Kind.relayed() }
