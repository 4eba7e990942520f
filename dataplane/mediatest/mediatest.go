// Package mediatest holds real media peers for tests of the dataplane and
// of whatever drives it: a browser stand-in built on pion/webrtc (full ICE,
// DTLS, SRTP, RTCP reports, as Chrome does them) and a plain RTP endpoint
// (a PBX or trunk stand-in, optionally with SDES-SRTP). Tests and the bench
// harness import it; nothing here is a mock.
package mediatest

import (
	"fmt"
	"net/netip"
	"strings"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Codec is an rtpmap entry.
type Codec struct {
	PT       uint8
	Name     string
	Clock    uint32
	Channels uint16
}

// Proto returns c as the dataplane API writes it.
func (c Codec) Proto() *pb.Codec {
	return &pb.Codec{PayloadType: uint32(c.PT), Name: c.Name, ClockRate: c.Clock, Channels: uint32(c.Channels)}
}

// ProtoCodecs converts a codec list.
func ProtoCodecs(cs []Codec) []*pb.Codec {
	out := make([]*pb.Codec, len(cs))
	for i, c := range cs {
		out[i] = c.Proto()
	}
	return out
}

// Common codec lists: what a browser offers (telephone-event at 126, as
// Chrome does) and what a PBX answers (telephone-event at 101, Asterisk's).
var (
	BrowserAudio = []Codec{{PT: 0, Name: "PCMU", Clock: 8000, Channels: 1}, {PT: 126, Name: "telephone-event", Clock: 8000, Channels: 1}}
	PBXAudio     = []Codec{{PT: 0, Name: "PCMU", Clock: 8000, Channels: 1}, {PT: 101, Name: "telephone-event", Clock: 8000, Channels: 1}}
)

// AnswerSDP builds the SDP answer an ICE-lite SBC gives a browser for a
// WebRTC leg the dataplane created: one audio section at the leg's address,
// the node's ICE credentials and fingerprint, and setup active (Strait is
// the DTLS client) or passive. mid is the offer's mid.
func AnswerSDP(leg *pb.Leg, codecs []Codec, setup, mid string) string {
	addr := netip.MustParseAddrPort(leg.GetStreams()[0].GetLocalAddr())
	ipver := "IP4"
	if addr.Addr().Is6() {
		ipver = "IP6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE %s\r\n", ipver, addr.Addr(), mid)
	fmt.Fprintf(&b, "m=audio %d UDP/TLS/RTP/SAVPF", addr.Port())
	for _, c := range codecs {
		fmt.Fprintf(&b, " %d", c.PT)
	}
	fmt.Fprintf(&b, "\r\nc=IN %s %s\r\na=mid:%s\r\n", ipver, addr.Addr(), mid)
	fmt.Fprintf(&b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", leg.GetLocalUfrag(), leg.GetLocalPwd())
	fmt.Fprintf(&b, "a=fingerprint:sha-256 %s\r\na=setup:%s\r\na=rtcp-mux\r\na=sendrecv\r\n", leg.GetLocalFingerprint().GetValue(), setup)
	for _, c := range codecs {
		fmt.Fprintf(&b, "a=rtpmap:%d %s/%d\r\n", c.PT, c.Name, c.Clock)
	}
	fmt.Fprintf(&b, "a=candidate:1 1 udp 2130706431 %s %d typ host\r\na=end-of-candidates\r\n", addr.Addr(), addr.Port())
	return b.String()
}
