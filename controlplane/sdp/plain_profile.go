package sdp

import "net/netip"

// Protos of the plain profile Strait offers: RTP/AVP, or RTP/SAVP with SDES
// keys (RFC 4568). Strait does not offer AVPF: PBXs rarely implement it and
// the dataplane relays RTCP feedback only between WebRTC legs.
const (
	protoAVP  = "RTP/AVP"
	protoSAVP = "RTP/SAVP"
)

// defaultPtime is the packet duration Strait announces for audio when the
// source named none: what browsers and most PBXs send (RFC 3551 section 4.2
// makes 20 ms the default packetization), since the dataplane relays
// packets as they come and cannot repacketise.
const defaultPtime = 20

// LocalPlain is Strait's side of one stream of a plain leg, from the
// dataplane's Stream of that leg.
type LocalPlain struct {
	// RTP is where Strait receives RTP (Stream.local_addr).
	RTP netip.AddrPort
	// RTCP is where Strait receives RTCP (Stream.local_rtcp_addr); when
	// zero, or RTP's port plus one, no a=rtcp is written (RFC 3605).
	RTCP netip.AddrPort
	// RTCPMux: RTCP arrives on the RTP port (RFC 5761). An answer may only
	// say so when the offer did.
	RTCPMux bool
	// Crypto holds the SDES key Strait sends with (Stream.sdes_local_key)
	// and its suite; nil for RTP/AVP. The builders choose the tag.
	Crypto *Crypto
}

func (l LocalPlain) validate(i int) error {
	if !usableLocal(l.RTP) {
		return invalidInput("stream %d: local RTP address %v is not a unicast IP and port", i, l.RTP)
	}
	if l.RTCP.IsValid() && !usableLocal(l.RTCP) {
		return invalidInput("stream %d: local RTCP address %v is not a unicast IP and port", i, l.RTCP)
	}
	if c := l.Crypto; c != nil {
		if n, ok := cryptoKeySizes[c.Suite]; !ok || len(c.Key) != n {
			return invalidInput("stream %d: SDES suite %q with a %d-byte key", i, c.Suite, len(c.Key))
		}
	}
	return nil
}

// media returns the section Strait writes for an accepted stream.
func (l LocalPlain) media(s Stream, proto string, cryptoTag int) Media {
	m := Media{
		Kind:      s.Kind,
		Type:      s.Kind.String(),
		Port:      int(l.RTP.Port()),
		Proto:     proto,
		Address:   l.RTP.Addr().Unmap().String(),
		Direction: s.Direction,
		Codecs:    make([]Codec, len(s.Codecs)),
		Ptime:     s.Ptime,
		MaxPtime:  s.MaxPtime,
	}
	for i, c := range s.Codecs {
		c = withDefaultFmtp(c.clone())
		c.RTCPFeedback = nil
		m.Codecs[i] = c
	}
	if m.Ptime == 0 && s.Kind == KindAudio {
		m.Ptime = defaultPtime
	}
	switch {
	case l.RTCPMux:
		// RFC 5761 section 5.1.1: name the RTP port in a=rtcp too, for
		// peers that ignore a=rtcp-mux.
		m.RTCPMux, m.RTCPPort = true, m.Port
	case l.RTCP.IsValid() && (l.RTCP.Addr() != l.RTP.Addr() || l.RTCP.Port() != l.RTP.Port()+1):
		m.RTCPPort = int(l.RTCP.Port())
		if l.RTCP.Addr() != l.RTP.Addr() {
			m.RTCPAddress = l.RTCP.Addr().Unmap().String()
		}
	}
	if l.Crypto != nil {
		m.Crypto = []Crypto{{Tag: cryptoTag, Suite: l.Crypto.Suite, Key: append([]byte(nil), l.Crypto.Key...)}}
	}
	return m
}

// PlainOffer builds Strait's offer on a plain leg: RTP/AVP, or RTP/SAVP with
// one a=crypto line (tag 1) for a stream whose local has Crypto, at the
// local addresses (local[i] is stream i's; ignored for rejected streams),
// codecs as the streams number them, without anything of the WebRTC
// profile. It fails with status 500 when the arguments do not fit together
// and 488 when every stream is rejected.
func PlainOffer(o *Origin, streams []Stream, local []LocalPlain) (*Description, error) {
	if len(local) != len(streams) {
		return nil, invalidInput("%d local transports for %d streams", len(local), len(streams))
	}
	d := &Description{}
	for i, s := range streams {
		if !s.accepted() {
			d.Media = append(d.Media, rejectedPlain(s))
			continue
		}
		if !hasMediaCodec(s.Codecs) {
			return nil, invalidInput("stream %d is accepted but has no media codec", i)
		}
		l := local[i]
		if err := l.validate(i); err != nil {
			return nil, err
		}
		proto := protoAVP
		if l.Crypto != nil {
			proto = protoSAVP
		}
		d.Media = append(d.Media, l.media(s, proto, 1))
	}
	return finishPlain(o, d)
}

// PlainAnswer builds Strait's answer to a plain peer's offer, with streams
// from [AnswerStreams] and local transports as for [PlainOffer]: the
// offer's proto echoed (RTP/SAVP answered with one a=crypto line carrying
// the tag of the offered line of the same suite, RFC 4568 section 7.1.2),
// rtcp-mux only where offered, mids echoed when the offer had them. It
// fails with status 500 when the arguments do not fit the offer (e.g. no
// key for an RTP/SAVP m-line) and 488 when every stream is rejected.
func PlainAnswer(o *Origin, offer *Description, streams []Stream, local []LocalPlain) (*Description, error) {
	if len(streams) != len(offer.Media) || len(local) != len(streams) {
		return nil, invalidInput("%d streams and %d local transports for an offer of %d m-lines",
			len(streams), len(local), len(offer.Media))
	}
	d := &Description{}
	for i, s := range streams {
		om := &offer.Media[i]
		if !s.accepted() {
			d.Media = append(d.Media, echoRejected(om, ""))
			continue
		}
		if err := checkAnswerStream(offer, i, s); err != nil {
			return nil, err
		}
		if !isPlainProto(om.Proto) {
			return nil, invalidInput("m-line %d is %s, not plain RTP", i, om.Proto)
		}
		l := local[i]
		if err := l.validate(i); err != nil {
			return nil, err
		}
		tag := 0
		switch {
		case isSecureProto(om.Proto) && l.Crypto == nil:
			return nil, invalidInput("m-line %d is %s but no local key is given", i, om.Proto)
		case isSecureProto(om.Proto):
			found := false
			for _, c := range om.Crypto {
				if c.Suite == l.Crypto.Suite && c.Supported() {
					tag, found = c.Tag, true
					break
				}
			}
			if !found {
				return nil, invalidInput("m-line %d does not offer suite %s", i, l.Crypto.Suite)
			}
		case l.Crypto != nil:
			return nil, invalidInput("m-line %d is %s, which takes no SDES key", i, om.Proto)
		}
		if l.RTCPMux && !om.RTCPMux {
			return nil, invalidInput("m-line %d did not offer rtcp-mux", i)
		}
		m := l.media(s, om.Proto, tag)
		m.Type, m.Mid = om.Type, om.Mid
		d.Media = append(d.Media, m)
	}
	return finishPlain(o, d)
}

// finishPlain moves the first accepted section's address to the session
// level c= (where old PBXs look for it; sections with the same address
// then leave theirs out) and stamps the origin.
func finishPlain(o *Origin, d *Description) (*Description, error) {
	for i := range d.Media {
		if !d.Media[i].Rejected() {
			d.Address = d.Media[i].Address
			break
		}
	}
	if d.Address == "" {
		return nil, noCommonCodec("every stream is rejected")
	}
	for i := range d.Media {
		if d.Media[i].Address == "" {
			d.Media[i].Address = d.Address
		}
	}
	if err := o.stamp(d, d.Address); err != nil {
		return nil, err
	}
	return d, nil
}

// rejectedPlain returns a port-0 section for a stream Strait does not
// offer: RTP/AVP for audio and video, the stream's own m-line otherwise
// (e.g. a browser's data channel), which PBXs decline.
func rejectedPlain(s Stream) Media {
	if s.Kind.relayed() || s.media == "" || s.proto == "" {
		t := s.Kind.String()
		if !s.Kind.relayed() {
			t = "application"
		}
		return Media{Kind: s.Kind, Type: t, Proto: protoAVP, Codecs: s.rejectedCodecs()}
	}
	formats := s.formats
	if len(formats) == 0 {
		formats = []string{"0"}
	}
	return Media{Kind: s.Kind, Type: s.media, Proto: s.proto, Formats: append([]string(nil), formats...)}
}
