package sdp_test

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/strait-sbc/strait/controlplane/sdp"
)

// A browser calls a trunk: the browser's offer becomes a plain offer, the
// PBX's answer becomes the answer to the browser. The dataplane values
// (addresses, ICE credentials, fingerprint) are made up here.
func Example_browserToTrunk() {
	body, err := os.ReadFile("testdata/jssip_chrome156_offer.sdp")
	if err != nil {
		panic(err)
	}
	browserOffer, err := sdp.Parse(body)
	if err != nil {
		panic(err) // reply err.(*sdp.Error).StatusCode()
	}
	remote, _ := browserOffer.RemoteWebRTC()
	role := sdp.DTLSRoleForOffer(remote.Setup, sdp.RoleUnknown)
	fmt.Println("browser ufrag", remote.ICE.Ufrag, "- Strait is DTLS", role)

	// ... CreateSession: leg 0 WebRTC (remote, role), leg 1 plain ...
	streams, err := sdp.OfferStreams(browserOffer, sdp.DefaultPolicy())
	if err != nil {
		panic(err)
	}
	trunkOrigin := sdp.Origin{SessionID: 1001} // kept with the trunk leg
	trunkOffer, err := sdp.PlainOffer(&trunkOrigin, streams, []sdp.LocalPlain{
		{RTP: netip.MustParseAddrPort("203.0.113.10:20000")},
	})
	if err != nil {
		panic(err)
	}
	out, _ := trunkOffer.Marshal()
	fmt.Println(strings.ReplaceAll(string(out), "\r\n", "\n"))

	pbxAnswer, err := sdp.Parse([]byte("v=0\r\no=- 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\n" +
		"t=0 0\r\nm=audio 10000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"))
	if err != nil {
		panic(err)
	}
	// ... UpdateSession: leg 1 remote address and codecs ...
	answerStreams, err := sdp.AnswerStreams(browserOffer, pbxAnswer)
	if err != nil {
		panic(err)
	}
	browserOrigin := sdp.Origin{SessionID: 1002} // kept with the browser leg
	browserAnswer, err := sdp.WebRTCAnswer(&browserOrigin, browserOffer, answerStreams, sdp.LocalWebRTC{
		Ufrag: "StRt",
		Pwd:   "straitPasswordStrait0123",
		Fingerprint: sdp.Fingerprint{Algorithm: "sha-256",
			Value: "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"},
		Addresses: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.10:3478")},
	})
	if err != nil {
		panic(err)
	}
	out, _ = browserAnswer.Marshal()
	fmt.Println(strings.ReplaceAll(string(out), "\r\n", "\n"))

	browserCodecs, trunkCodecs := sdp.SharedCodecs(browserAnswer.Media[0].Codecs, pbxAnswer.Media[0].Codecs)
	for i := range browserCodecs {
		fmt.Printf("%s: browser PT %d, trunk PT %d\n", browserCodecs[i], browserCodecs[i].PayloadType, trunkCodecs[i].PayloadType)
	}
	// Output:
	// browser ufrag tvyA - Strait is DTLS client
	// v=0
	// o=- 1001 1 IN IP4 203.0.113.10
	// s=-
	// c=IN IP4 203.0.113.10
	// t=0 0
	// m=audio 20000 RTP/AVP 9 0 8 126
	// a=sendrecv
	// a=rtpmap:9 G722/8000
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:8 PCMA/8000
	// a=rtpmap:126 telephone-event/8000
	// a=fmtp:126 0-16
	// a=ptime:20
	//
	// v=0
	// o=- 1002 1 IN IP4 203.0.113.10
	// s=-
	// t=0 0
	// a=ice-lite
	// a=group:BUNDLE 0
	// m=audio 3478 UDP/TLS/RTP/SAVPF 0 126
	// c=IN IP4 203.0.113.10
	// a=candidate:1 1 udp 2130706431 203.0.113.10 3478 typ host
	// a=end-of-candidates
	// a=ice-ufrag:StRt
	// a=ice-pwd:straitPasswordStrait0123
	// a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99
	// a=setup:active
	// a=mid:0
	// a=sendrecv
	// a=rtcp-mux
	// a=rtcp-rsize
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:126 telephone-event/8000
	// a=fmtp:126 0-16
	//
	// PCMU/8000: browser PT 0, trunk PT 0
	// telephone-event/8000: browser PT 126, trunk PT 101
}
