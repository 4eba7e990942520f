package sdp

import "slices"

// PadAnswer returns answer with the m-lines it leaves out of an offer of
// the offered streams appended, rejected (port 0, inactive). RFC 3264
// section 6 wants as many m-lines in an answer as in the offer, but many
// PBXs and scripts leave out the sections an offer had already rejected
// (m=video 0) or that they do not do at all (a browser's video toward an
// audio-only PBX): reading the missing ones as rejected lets such a call
// connect with what was answered. An answer with as many m-lines or more
// is returned as it is (more is still an error for AnswerStreams).
func PadAnswer(answer *Description, offered []Stream) *Description {
	if answer == nil || len(answer.Media) >= len(offered) {
		return answer
	}
	out := *answer
	out.Media = slices.Clone(answer.Media)
	for _, s := range offered[len(answer.Media):] {
		typ := s.media
		if typ == "" {
			typ = s.Kind.String()
		}
		proto := s.proto
		if proto == "" {
			proto = "RTP/AVP"
		}
		formats := slices.Clone(s.formats)
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		out.Media = append(out.Media, Media{Kind: s.Kind, Type: typ, Port: 0, Proto: proto, Formats: formats,
			Direction: Inactive})
	}
	return &out
}

// TrimRejected drops the rejected m-lines at the end of d, keeping at
// least keep m-lines (RFC 3264 section 8: an offer has at least as many
// as the last description exchanged on the leg). An offer toward a plain
// leg then does not show the peer streams it never asked for (a video
// section Strait rejected because the trunk takes no video codec), which
// some PBXs refuse outright; the answer, shorter by as many, is read back
// with PadAnswer. d is changed in place and returned.
func TrimRejected(d *Description, keep int) *Description {
	n := len(d.Media)
	for n > keep && n > 1 && d.Media[n-1].Rejected() {
		n--
	}
	d.Media = d.Media[:n]
	return d
}

// PadOffer returns offer with the m-lines it has fewer than previous (the
// last description of the other leg, which Strait's offer on that leg must
// not shorten, RFC 3264 section 8) appended, rejected like previous's. A
// plain peer re-offers only what it was offered, and Strait left out the
// trailing sections it had rejected (TrimRejected); a browser on the other
// leg still wants every m-line it negotiated. An offer as long or longer is
// returned as it is.
func PadOffer(offer, previous *Description) *Description {
	if offer == nil || previous == nil || len(offer.Media) >= len(previous.Media) {
		return offer
	}
	out := *offer
	out.Media = slices.Clone(offer.Media)
	for _, pm := range previous.Media[len(offer.Media):] {
		proto := "RTP/AVP"
		formats := slices.Clone(pm.Formats)
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		out.Media = append(out.Media, Media{Kind: pm.Kind, Type: pm.Type, Port: 0, Proto: proto, Formats: formats,
			Direction: Inactive})
	}
	return &out
}
