package sdp

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// protoWebRTC is the proto of every section Strait offers to a browser
// (RFC 8829 section 5.1.2).
const protoWebRTC = "UDP/TLS/RTP/SAVPF"

// LocalWebRTC is Strait's side of a WebRTC leg, from the dataplane: the one
// ICE-lite + DTLS transport every stream of the leg shares.
type LocalWebRTC struct {
	// Ufrag and Pwd are the leg's ICE credentials (Leg.local_ufrag,
	// Leg.local_pwd).
	Ufrag, Pwd string
	// Fingerprint is the node's certificate fingerprint
	// (Leg.local_fingerprint).
	Fingerprint Fingerprint
	// Addresses are where the leg receives (Stream.local_addr; one per
	// address family at most): one host candidate each, the first also
	// the m-line port and c= address.
	Addresses []netip.AddrPort
	// Role is Strait's current DTLS role on the leg, RoleUnknown before the
	// first exchange. An answer to an actpass re-offer keeps it.
	Role DTLSRole
	// CNAME goes into a=ssrc for streams with an SSRC; "strait" when empty.
	CNAME string
}

// maxHostCandidates bounds LocalWebRTC.Addresses: a node binds one address
// per family, a handful at most; more is a caller bug.
const maxHostCandidates = 16

// validate checks the values Strait is about to publish.
func (l LocalWebRTC) validate() error {
	// RFC 8839 section 5.4: ufrag 4-256 and pwd 22-256 ice-chars.
	if !iceChars(l.Ufrag, 4) || !iceChars(l.Pwd, 22) {
		return invalidInput("ICE credentials %q/%q are not 4+ and 22+ ice-chars", l.Ufrag, l.Pwd)
	}
	if err := l.Fingerprint.validate(); err != nil {
		return invalidInput("local %v", err)
	}
	if len(l.Addresses) == 0 || len(l.Addresses) > maxHostCandidates {
		return invalidInput("%d local addresses, want 1 to %d", len(l.Addresses), maxHostCandidates)
	}
	for _, a := range l.Addresses {
		if !usableLocal(a) {
			return invalidInput("local address %v is not a unicast IP and port", a)
		}
	}
	if l.CNAME != "" && !isToken(l.CNAME) {
		return invalidInput("CNAME %q is not a token", l.CNAME)
	}
	return nil
}

// iceChars reports whether s is min to 256 ice-chars (ALPHA / DIGIT / "+" /
// "/", RFC 8839 section 5.4).
func iceChars(s string, min int) bool {
	if len(s) < min || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// usableLocal reports whether a is an address Strait may publish: a
// specific IP (never 0.0.0.0, which a browser would not send to) and port.
func usableLocal(a netip.AddrPort) bool {
	return a.IsValid() && !a.Addr().IsUnspecified() && a.Addr().Zone() == "" && a.Port() != 0
}

// media returns the section Strait writes for an accepted stream.
func (l LocalWebRTC) media(s Stream, mid string, setup Setup) Media {
	addr := l.Addresses[0]
	m := Media{
		Kind:            s.Kind,
		Type:            s.Kind.String(),
		Port:            int(addr.Port()),
		Proto:           protoWebRTC,
		Address:         addr.Addr().Unmap().String(),
		Direction:       s.Direction,
		Mid:             mid,
		ICE:             ICE{Ufrag: l.Ufrag, Pwd: l.Pwd},
		Candidates:      hostCandidates(l.Addresses),
		EndOfCandidates: true,
		Fingerprint:     Fingerprint{Algorithm: strings.ToLower(l.Fingerprint.Algorithm), Value: strings.ToUpper(l.Fingerprint.Value)},
		Setup:           setup,
		RTCPMux:         true,
		Codecs:          webrtcCodecs(s),
		Ptime:           s.Ptime,
		MaxPtime:        s.MaxPtime,
	}
	if s.SSRC != 0 && s.Direction.Sends() {
		cname := l.CNAME
		if cname == "" {
			cname = "strait"
		}
		m.MSID = cname + " " + cname + "-" + m.Type + "-" + mid
		m.SSRCs = []SSRC{{ID: s.SSRC, CNAME: cname}}
	}
	return m
}

// webrtcFeedback are the RTCP feedback types Strait passes to browsers, for
// video only: loss recovery and key frame requests travel end to end
// through the dataplane. transport-cc and goog-remb need feedback the
// dataplane does not generate, and audio gains nothing from NACK or PLI.
var webrtcFeedback = []string{"nack", "nack pli", "ccm fir"}

// Default fmtp parameters when the source gave none.
const (
	// fmtpTelephoneEvent: the DTMF events 0-9, *, #, A-D and flash (RFC 4733
	// section 3.2), what browsers send.
	fmtpTelephoneEvent = "0-16"
	// fmtpOpus: what browsers offer; in-band FEC costs nothing to accept.
	fmtpOpus = "minptime=10;useinbandfec=1"
)

// webrtcCodecs returns a stream's codecs as a browser gets them: Opus
// first, rtcp-fb limited to webrtcFeedback on video, default fmtp filled in.
func webrtcCodecs(s Stream) []Codec {
	out := make([]Codec, 0, len(s.Codecs))
	for _, c := range s.Codecs {
		fb := c.RTCPFeedback
		c.RTCPFeedback = nil
		if s.Kind == KindVideo {
			for _, f := range fb {
				if slices.Contains(webrtcFeedback, f) {
					c.RTCPFeedback = append(c.RTCPFeedback, f)
				}
			}
		}
		out = append(out, withDefaultFmtp(c))
	}
	slices.SortStableFunc(out, func(a, b Codec) int {
		switch {
		case a.Is(nameOpus) && !b.Is(nameOpus):
			return -1
		case b.Is(nameOpus) && !a.Is(nameOpus):
			return 1
		}
		return 0
	})
	return out
}

func withDefaultFmtp(c Codec) Codec {
	if c.Fmtp == "" {
		switch {
		case c.Is(nameTelephoneEvent):
			c.Fmtp = fmtpTelephoneEvent
		case c.Is(nameOpus):
			c.Fmtp = fmtpOpus
		}
	}
	return c
}

// RemoteWebRTC is what a WebRTC peer's description says about its one
// transport, for the dataplane's WebRTCSpec: remote ICE credentials,
// certificate fingerprint, and the setup that decides the DTLS roles.
type RemoteWebRTC struct {
	// ICE holds the peer's credentials (WebRTCSpec.remote_ufrag and
	// remote_pwd).
	ICE ICE
	// Fingerprint is the peer's certificate fingerprint
	// (WebRTCSpec.remote_fingerprint).
	Fingerprint Fingerprint
	// Setup is the peer's a=setup; see [DTLSRoleForOffer] and
	// [DTLSRoleFromAnswer] for Strait's role (WebRTCSpec.dtls_role).
	Setup Setup
}

// RemoteWebRTC returns the peer's transport parameters, taken from the
// BUNDLE-tagged m-line (the first mid of the group that is not rejected),
// or the first WebRTC m-line without a group. It fails with status 488
// when there is no such m-line, when ICE credentials or the fingerprint
// are missing, or when the peer is ICE-lite too (then neither end would
// run connectivity checks, RFC 8445 section 2.5).
func (d *Description) RemoteWebRTC() (RemoteWebRTC, error) {
	i := d.transportIndex()
	if i < 0 {
		return RemoteWebRTC{}, unacceptable("no WebRTC m-line (%s) with a port", protoWebRTC)
	}
	m := &d.Media[i]
	switch {
	case d.ICELite:
		return RemoteWebRTC{}, unacceptable("peer is ICE-lite like Strait: nobody would run checks")
	case m.ICE.Ufrag == "" || m.ICE.Pwd == "":
		return RemoteWebRTC{}, unacceptable("m-line %d has no ICE credentials", i)
	case m.Fingerprint.IsZero():
		return RemoteWebRTC{}, unacceptable("m-line %d has no DTLS fingerprint", i)
	}
	return RemoteWebRTC{ICE: m.ICE, Fingerprint: m.Fingerprint, Setup: m.Setup}, nil
}

// transportIndex returns the index of the m-line whose transport a WebRTC
// description's streams share, or -1.
func (d *Description) transportIndex() int {
	for _, mid := range d.Bundle {
		for i := range d.Media {
			m := &d.Media[i]
			if m.Mid == mid && m.Port != 0 && isWebRTCProto(m.Proto) {
				return i
			}
		}
	}
	if len(d.Bundle) > 0 {
		return -1
	}
	for i := range d.Media {
		if d.Media[i].Port != 0 && isWebRTCProto(d.Media[i].Proto) {
			return i
		}
	}
	return -1
}

// ICERestart reports whether next, a peer's new description, restarts ICE
// compared with prev, its previous one: the transport's ufrag or password
// changed (RFC 8839 section 4.4.1.1.1). The B2BUA then asks the dataplane
// for an ICE restart and answers with the new local credentials.
func ICERestart(prev, next *Description) bool {
	a, errA := prev.RemoteWebRTC()
	b, errB := next.RemoteWebRTC()
	if errA != nil || errB != nil {
		return false
	}
	return a.ICE.Ufrag != b.ICE.Ufrag || a.ICE.Pwd != b.ICE.Pwd
}

// WebRTCOffer builds Strait's offer on a WebRTC leg: UDP/TLS/RTP/SAVPF,
// a=ice-lite, Strait's credentials, fingerprint and host candidates,
// a=setup:actpass (RFC 8842 section 5.2), rtcp-mux, mids "0", "1", ... by
// m-line index (stable across re-offers), and a BUNDLE group of every
// accepted stream on one port. Opus, when a stream has it, goes first:
// the far end has it too, and it is what browsers do best. Payload types that would repeat across
// bundled m-lines are renumbered (RFC 8843 wants a payload type to
// identify one codec across the bundle, and the dataplane demultiplexes by
// it); the returned description's codecs are the ones to give the
// dataplane. No a=ice-options is written: Strait lists all its candidates
// at once and has none to trickle. A rejected stream is written with port 0, and one that is not
// audio or video as a rejected data channel, which every browser parses.
func WebRTCOffer(o *Origin, streams []Stream, local LocalWebRTC) (*Description, error) {
	if err := local.validate(); err != nil {
		return nil, err
	}
	streams, err := uniquePayloadTypes(streams)
	if err != nil {
		return nil, err
	}
	d := &Description{ICELite: true}
	for i, s := range streams {
		mid := strconv.Itoa(i)
		if !s.accepted() {
			d.Media = append(d.Media, rejectedWebRTC(s, mid, local.Addresses[0]))
			continue
		}
		if !hasMediaCodec(s.Codecs) {
			return nil, invalidInput("stream %d is accepted but has no media codec", i)
		}
		d.Media = append(d.Media, local.media(s, mid, SetupActpass))
		d.Bundle = append(d.Bundle, mid)
	}
	if len(d.Bundle) == 0 {
		return nil, noCommonCodec("every stream is rejected")
	}
	if err := o.stamp(d, local.Addresses[0].Addr().Unmap().String()); err != nil {
		return nil, err
	}
	return d, nil
}

// WebRTCAnswer builds Strait's answer to a WebRTC peer's offer, with
// streams from [AnswerStreams] (or [OfferStreams] when the caller answers
// straight from the offer): one transport for the whole BUNDLE group, the
// offer's mids and protos echoed, a=setup from [DTLSRoleForOffer] (active
// for a new leg), rtcp-rsize where offered. Header extensions, rtcp-fb
// other than video NACK/PLI/FIR, and anything else the offer had but the
// dataplane does not implement are left out. It fails with status 488 when
// the offer lacks usable ICE/DTLS parameters, and 500 when streams do not
// fit the offer.
func WebRTCAnswer(o *Origin, offer *Description, streams []Stream, local LocalWebRTC) (*Description, error) {
	if err := local.validate(); err != nil {
		return nil, err
	}
	if len(streams) != len(offer.Media) {
		return nil, invalidInput("%d streams for an offer of %d m-lines", len(streams), len(offer.Media))
	}
	remote, err := offer.RemoteWebRTC()
	if err != nil {
		return nil, err
	}
	setup := DTLSRoleForOffer(remote.Setup, local.Role).setup()
	d := &Description{ICELite: true}
	var mids []string
	for i, s := range streams {
		om := &offer.Media[i]
		if !s.accepted() {
			d.Media = append(d.Media, echoRejected(om, local.Addresses[0].Addr().Unmap().String()))
			continue
		}
		if err := checkAnswerStream(offer, i, s); err != nil {
			return nil, err
		}
		if !isWebRTCProto(om.Proto) {
			return nil, invalidInput("m-line %d is %s, not WebRTC", i, om.Proto)
		}
		m := local.media(s, om.Mid, setup)
		m.Type, m.Proto, m.RTCPRsize = om.Type, om.Proto, om.RTCPRsize
		d.Media = append(d.Media, m)
		mids = append(mids, om.Mid)
	}
	if len(mids) == 0 {
		return nil, noCommonCodec("every stream is rejected")
	}
	for _, mid := range offer.Bundle {
		if slices.Contains(mids, mid) {
			d.Bundle = append(d.Bundle, mid)
		}
	}
	if err := o.stamp(d, local.Addresses[0].Addr().Unmap().String()); err != nil {
		return nil, err
	}
	return d, nil
}

// checkAnswerStream checks an accepted stream against m-line i of the
// offer it answers.
func checkAnswerStream(offer *Description, i int, s Stream) error {
	om := &offer.Media[i]
	switch {
	case s.Kind != om.Kind:
		return invalidInput("stream %d is %v, offer m-line is %v", i, s.Kind, om.Kind)
	case !carriable(offer, i):
		return invalidInput("stream %d is accepted but m-line %d of the offer cannot be carried", i, i)
	case !hasMediaCodec(s.Codecs):
		return invalidInput("stream %d is accepted but has no media codec", i)
	case !subsetOf(s.Codecs, om.Codecs):
		return invalidInput("stream %d has codecs the offer does not have with those payload types", i)
	}
	return nil
}

// rejectedWebRTC returns a port-0 section for a stream Strait does not
// offer, in a form browsers parse.
func rejectedWebRTC(s Stream, mid string, addr netip.AddrPort) Media {
	m := Media{
		Kind:    s.Kind,
		Type:    s.Kind.String(),
		Proto:   protoWebRTC,
		Codecs:  s.rejectedCodecs(),
		Address: addr.Addr().Unmap().String(),
		Mid:     mid,
	}
	if !s.Kind.relayed() {
		m.Kind, m.Type, m.Proto, m.Formats, m.Codecs = KindApplication, "application", "UDP/DTLS/SCTP",
			[]string{"webrtc-datachannel"}, nil
	}
	return m
}

// echoRejected returns the port-0 section answering offered m-line om: its
// media type, proto, mid, and formats (one codec of an RTP section, with
// its rtpmap), at Strait's address (never 0.0.0.0, which reads as hold).
func echoRejected(om *Media, addr string) Media {
	m := Media{Kind: om.Kind, Type: om.Type, Proto: om.Proto, Address: addr, Mid: om.Mid}
	switch {
	case len(om.Codecs) > 0:
		m.Codecs = sampleCodec(om.Codecs)
	case len(om.Formats) > 0 && !isRTPProto(om.Proto):
		m.Formats = slices.Clone(om.Formats)
	default:
		m.Formats = []string{"0"}
	}
	return m
}

// Payload type ranges for renumbering: the dynamic range (RFC 3551
// section 6), then the unassigned range browsers also use once it is full
// (RFC 5761 section 4 keeps 64-95 clear for RTCP demultiplexing).
const (
	dynamicFirst, dynamicLast       = 96, 127
	unassignedFirst, unassignedLast = 35, 63
)

// uniquePayloadTypes returns copies of streams in which no payload type of
// an accepted stream repeats one of an earlier accepted stream.
func uniquePayloadTypes(streams []Stream) ([]Stream, error) {
	out := make([]Stream, len(streams))
	used := map[uint8]bool{}
	for i, s := range streams {
		s.Codecs = slices.Clone(s.Codecs)
		if !s.accepted() {
			out[i] = s
			continue
		}
		own := map[uint8]bool{}
		for _, c := range s.Codecs {
			own[c.PayloadType] = true
		}
		renumber := map[uint8]uint8{}
		for _, c := range s.Codecs {
			if !used[c.PayloadType] {
				continue
			}
			pt, ok := freePayloadType(used, own)
			if !ok {
				return nil, invalidInput("no payload type left for stream %d", i)
			}
			renumber[c.PayloadType] = pt
			own[pt] = true
		}
		for j, c := range s.Codecs {
			c = c.clone().withRefs(renumber)
			if n, ok := renumber[c.PayloadType]; ok {
				c.PayloadType = n
			}
			s.Codecs[j] = c
		}
		for _, c := range s.Codecs {
			used[c.PayloadType] = true
		}
		out[i] = s
	}
	return out, nil
}

func freePayloadType(used, own map[uint8]bool) (uint8, bool) {
	for _, r := range [][2]uint8{{dynamicFirst, dynamicLast}, {unassignedFirst, unassignedLast}} {
		for pt := r[0]; pt <= r[1]; pt++ {
			if !used[pt] && !own[pt] {
				return pt, true
			}
		}
	}
	return 0, false
}
