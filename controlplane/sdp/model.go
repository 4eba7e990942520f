package sdp

import (
	"net/netip"
	"strings"
)

// Description is a session description: the session level and one [Media]
// per m-line, in order.
//
// [Parse] resolves session-level fallbacks (c=, ICE credentials,
// fingerprint, setup, direction) into every Media, so a Media alone says
// what applies to it; the session-level values are kept as written too.
type Description struct {
	// Origin is the o= line.
	Origin Origin
	// Bundle lists the mids of the first a=group:BUNDLE, in order (RFC 8843);
	// the first is the tagged m-line whose transport the others share.
	Bundle []string
	// ICELite is the session-level a=ice-lite (RFC 8445 section 2.5).
	ICELite bool
	// Address is the session-level c= address, as written.
	Address string
	// ICE, Fingerprint and Setup are the session-level values, as written
	// (Firefox puts its fingerprint here); they are already folded into
	// each Media.
	ICE         ICE
	Fingerprint Fingerprint
	Setup       Setup
	// Media are the m-lines, in order.
	Media []Media
}

// Media is one media section (m-line).
type Media struct {
	// Kind classifies Type.
	Kind Kind
	// Type is the media type as written: "audio", "video", "image", ...
	Type string
	// Port is the m-line port; 0 rejects the section unless BundleOnly.
	Port int
	// Proto is the transport protocol as written, e.g. "RTP/AVP" or
	// "UDP/TLS/RTP/SAVPF".
	Proto string
	// Formats is the m-line format list as written. For RTP sections
	// Codecs describes the formats that are payload types.
	Formats []string
	// Address is the connection address (media-level c=, else the
	// session-level one), as written.
	Address string
	// OldHold is set when Address is 0.0.0.0 or :: on a section without
	// ICE: the RFC 2543 way to hold a call. Direction has already been
	// adjusted for it as RFC 3264 section 8.4 describes (the peer does not
	// receive), so callers rarely need this flag. A WebRTC section with
	// 0.0.0.0 (no candidate gathered yet, RFC 8829 section 5.2.1) is not
	// on hold.
	OldHold bool
	// RTCPPort and RTCPAddress are a=rtcp (RFC 3605); 0 and "" when absent.
	RTCPPort    int
	RTCPAddress string
	// Direction is the section's direction from the description's author's
	// point of view (a=sendrecv etc., RFC 3264 section 5.1); SendRecv when
	// absent.
	Direction Direction
	// Mid is a=mid (RFC 5888).
	Mid string
	// BundleOnly is a=bundle-only: port 0 but carried on the BUNDLE
	// transport (RFC 8843).
	BundleOnly bool
	// ICE holds the credentials and options for this section.
	ICE ICE
	// Candidates are the parsed a=candidate lines; malformed ones are
	// skipped (Strait is ICE-lite and only answers checks).
	Candidates []Candidate
	// EndOfCandidates is a=end-of-candidates (RFC 8840).
	EndOfCandidates bool
	// Fingerprint is the DTLS certificate fingerprint (RFC 8122). When
	// several are given, the sha-256 one is kept, else the first.
	Fingerprint Fingerprint
	// Setup is the DTLS role attribute (RFC 4145, RFC 5763).
	Setup Setup
	// RTCPMux is a=rtcp-mux (RFC 5761); RTCPRsize is a=rtcp-rsize (RFC 5506).
	RTCPMux   bool
	RTCPRsize bool
	// Crypto are the SDES a=crypto lines (RFC 4568), in order.
	Crypto []Crypto
	// Codecs are the RTP payload formats in m-line order: from a=rtpmap,
	// or the static table of RFC 3551 for payload types without one.
	Codecs []Codec
	// Ptime and MaxPtime are a=ptime and a=maxptime in milliseconds; 0 when
	// absent.
	Ptime    int
	MaxPtime int
	// MSID is a=msid as written (RFC 8830).
	MSID string
	// SSRCs are the sources of a=ssrc lines with their cname.
	SSRCs []SSRC
}

// Rejected reports whether the section is rejected or disabled: port 0 and
// not bundle-only.
func (m *Media) Rejected() bool { return m.Port == 0 && !m.BundleOnly }

// RemoteRTP returns where to send RTP for a plain section: the connection
// address and port. ok is false for a rejected or held section, or when the
// address is not an IP literal.
func (m *Media) RemoteRTP() (addr netip.AddrPort, ok bool) {
	ip, err := netip.ParseAddr(m.Address)
	if err != nil || ip.IsUnspecified() || ip.Zone() != "" || m.Port <= 0 || m.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(m.Port)), true
}

// RemoteRTCP returns where to send RTCP for a plain section: the RTP address
// with rtcp-mux, else a=rtcp when present, else the RTP port plus one
// (RFC 3550 section 11).
func (m *Media) RemoteRTCP() (addr netip.AddrPort, ok bool) {
	rtp, ok := m.RemoteRTP()
	if !ok {
		return netip.AddrPort{}, false
	}
	switch {
	case m.RTCPMux:
		return rtp, true
	case m.RTCPPort > 0 && m.RTCPPort <= 65535:
		ip := rtp.Addr()
		if m.RTCPAddress != "" {
			a, err := netip.ParseAddr(m.RTCPAddress)
			if err != nil || a.IsUnspecified() || a.Zone() != "" {
				return netip.AddrPort{}, false
			}
			ip = a.Unmap()
		}
		return netip.AddrPortFrom(ip, uint16(m.RTCPPort)), true
	case rtp.Port() == 65535:
		return netip.AddrPort{}, false
	default:
		return netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1), true
	}
}

// IsWebRTC reports whether the description uses the WebRTC profile: some
// section runs RTP over DTLS (UDP/TLS/RTP/SAVPF and relatives).
func (d *Description) IsWebRTC() bool {
	for i := range d.Media {
		if isWebRTCProto(d.Media[i].Proto) {
			return true
		}
	}
	return false
}

// OnHold reports whether the peer that wrote d has put the call on hold: it
// has at least one accepted audio or video section, and receives on none of
// them (sendonly, inactive, or old-style c=0.0.0.0).
func (d *Description) OnHold() bool {
	held := false
	for i := range d.Media {
		m := &d.Media[i]
		if m.Rejected() || (m.Kind != KindAudio && m.Kind != KindVideo) {
			continue
		}
		if m.Direction.Receives() {
			return false
		}
		held = true
	}
	return held
}

// Kind classifies a media section.
type Kind uint8

// Kinds of media section.
const (
	// KindOther is any media type Strait does not relay ("text", "image"
	// for T.38, "message", ...); such sections are always rejected.
	KindOther Kind = iota
	// KindAudio is "audio".
	KindAudio
	// KindVideo is "video".
	KindVideo
	// KindApplication is "application", e.g. a WebRTC data channel; Strait
	// rejects it.
	KindApplication
)

// String returns the SDP media type, or "other".
func (k Kind) String() string {
	switch k {
	case KindAudio:
		return "audio"
	case KindVideo:
		return "video"
	case KindApplication:
		return "application"
	}
	return "other"
}

// relayed reports whether Strait carries sections of this kind.
func (k Kind) relayed() bool { return k == KindAudio || k == KindVideo }

func kindOf(media string) Kind {
	switch strings.ToLower(media) {
	case "audio":
		return KindAudio
	case "video":
		return KindVideo
	case "application":
		return KindApplication
	}
	return KindOther
}

// Direction is a media section's direction from its author's point of view
// (RFC 3264 section 5.1). The zero value is SendRecv, the default when a
// description says nothing.
type Direction uint8

// Directions.
const (
	// SendRecv: the author sends and receives.
	SendRecv Direction = iota
	// SendOnly: the author sends only (e.g. music on hold).
	SendOnly
	// RecvOnly: the author receives only.
	RecvOnly
	// Inactive: neither.
	Inactive
)

// String returns the attribute name, e.g. "sendonly".
func (d Direction) String() string {
	switch d {
	case SendOnly:
		return "sendonly"
	case RecvOnly:
		return "recvonly"
	case Inactive:
		return "inactive"
	}
	return "sendrecv"
}

// Sends reports whether the author sends media.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether the author receives media.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

// Reverse returns the direction seen from the other end: sendonly becomes
// recvonly and vice versa.
func (d Direction) Reverse() Direction { return directionOf(d.Receives(), d.Sends()) }

// And returns the direction that allows only what both d and o allow.
func (d Direction) And(o Direction) Direction {
	return directionOf(d.Sends() && o.Sends(), d.Receives() && o.Receives())
}

func directionOf(sends, receives bool) Direction {
	switch {
	case sends && receives:
		return SendRecv
	case sends:
		return SendOnly
	case receives:
		return RecvOnly
	}
	return Inactive
}

func parseDirection(attr string) (Direction, bool) {
	switch attr {
	case "sendrecv":
		return SendRecv, true
	case "sendonly":
		return SendOnly, true
	case "recvonly":
		return RecvOnly, true
	case "inactive":
		return Inactive, true
	}
	return SendRecv, false
}

// ICE holds a section's ICE credentials and options (RFC 8839 section 5.4).
type ICE struct {
	// Ufrag is a=ice-ufrag.
	Ufrag string
	// Pwd is a=ice-pwd.
	Pwd string
	// Options are the a=ice-options tokens, e.g. "trickle".
	Options []string
}

// SSRC is one RTP source a section announces with a=ssrc (RFC 5576).
type SSRC struct {
	// ID is the synchronization source identifier.
	ID uint32
	// CNAME is the source's canonical name (RFC 3550 section 6.5.1).
	CNAME string
}
