package siptest

import (
	"fmt"
	"net/netip"
	"strings"
)

// PlainSDP is a PBX's description of a plain RTP endpoint: RTP at rtp,
// RTCP at rtcp (a=rtcp when it is not the next port), PCMU at 0 and
// telephone-event at 101 unless codecs ("8 PCMA/8000", ...) are given,
// with version as the o= version and a direction attribute. hold writes
// the RFC 2543 c=0.0.0.0 form.
func PlainSDP(version int, rtp, rtcp netip.AddrPort, direction string, hold bool, codecs ...string) []byte {
	if len(codecs) == 0 {
		codecs = []string{"0 PCMU/8000", "101 telephone-event/8000"}
	}
	addr := rtp.Addr().String()
	if hold {
		addr = "0.0.0.0"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=pbx 4242 %d IN IP4 %s\r\ns=pbx\r\nc=IN IP4 %s\r\nt=0 0\r\n", version, rtp.Addr(), addr)
	fmt.Fprintf(&b, "m=audio %d RTP/AVP", rtp.Port())
	for _, c := range codecs {
		pt, _, _ := strings.Cut(c, " ")
		b.WriteString(" " + pt)
	}
	b.WriteString("\r\n")
	for _, c := range codecs {
		fmt.Fprintf(&b, "a=rtpmap:%s\r\n", c)
		if strings.Contains(c, "telephone-event") {
			pt, _, _ := strings.Cut(c, " ")
			fmt.Fprintf(&b, "a=fmtp:%s 0-16\r\n", pt)
		}
	}
	if rtcp.IsValid() && rtcp.Port() != rtp.Port()+1 {
		fmt.Fprintf(&b, "a=rtcp:%d\r\n", rtcp.Port())
	}
	fmt.Fprintf(&b, "a=ptime:20\r\na=%s\r\n", direction)
	return []byte(b.String())
}
