package sdp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// Made-up dataplane allocations. Strait's addresses come from
// 203.0.113.0/24 so that any other address in an output is a leak.
var (
	straitWebRTC      = netip.MustParseAddrPort("203.0.113.10:3478")
	straitWebRTC6     = netip.MustParseAddrPort("[2001:db8::10]:3478")
	straitFingerprint = Fingerprint{Algorithm: "sha-256",
		Value: "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"}
)

func localWebRTC() LocalWebRTC {
	return LocalWebRTC{
		Ufrag:       "StRt",
		Pwd:         "straitPasswordStrait0123",
		Fingerprint: straitFingerprint,
		Addresses:   []netip.AddrPort{straitWebRTC, straitWebRTC6},
	}
}

func localPlain(n int) []LocalPlain {
	out := make([]LocalPlain, n)
	for i := range out {
		out[i].RTP = netip.AddrPortFrom(netip.MustParseAddr("203.0.113.10"), uint16(20000+2*i))
	}
	return out
}

func marshal(t testing.TB, d *Description) string {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(b); err != nil {
		t.Fatalf("output does not re-parse: %v\n%s", err, b)
	}
	return string(b)
}

func wantLines(t testing.TB, sdp string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(sdp, "\r\n"+l+"\r\n") {
			t.Errorf("missing line %q in\n%s", l, sdp)
		}
	}
}

func wantAbsent(t testing.TB, sdp string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(sdp, s) {
			t.Errorf("unexpected %q in\n%s", s, sdp)
		}
	}
}

// webrtcOnly is what must never reach a PBX.
var webrtcOnly = []string{"a=ice", "a=fingerprint", "a=setup", "a=rtcp-fb", "a=extmap", "a=ssrc", "a=msid",
	"a=group", "a=candidate", "a=end-of-candidates", "a=rtcp-rsize", "a=mid"}

// plainOnly is what must never reach a browser; neither may 0.0.0.0.
var plainOnly = []string{"a=crypto", "RTP/AVP", "RTP/SAVP ", "0.0.0.0", "a=rtcp:"}

// answerFromPBX is an Asterisk-like answer taking PCMU and DTMF, numbering
// telephone-event 101 whatever the offer said (as some PBXs do).
const answerFromPBX = "v=0\r\no=- 1700000000 1700000000 IN IP4 198.51.100.10\r\ns=Asterisk\r\n" +
	"c=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"

// chromeAnswer is a browser's answer to one of Strait's offers.
func chromeAnswer(formats, rtpmaps, direction string) []byte {
	r := strings.NewReplacer("FORMATS", formats, "RTPMAPS", rtpmaps, "DIRECTION", direction)
	return []byte(r.Replace("v=0\r\no=- 8346122379011236533 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"a=group:BUNDLE 0\r\na=msid-semantic: WMS 1f2e3d4c\r\n" +
		"m=audio 49203 UDP/TLS/RTP/SAVPF FORMATS\r\nc=IN IP4 192.0.2.44\r\na=rtcp:9 IN IP4 0.0.0.0\r\n" +
		"a=candidate:3511 1 udp 2122260223 192.0.2.44 49203 typ host generation 0\r\n" +
		"a=ice-ufrag:bRwS\r\na=ice-pwd:brOwserPassWord0123456789\r\na=ice-options:trickle\r\n" +
		"a=fingerprint:sha-256 12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0:12:34:56:78:9A:BC:DE:F0\r\n" +
		"a=setup:active\r\na=mid:0\r\na=DIRECTION\r\na=msid:1f2e3d4c 5b6a7988\r\na=rtcp-mux\r\nRTPMAPS" +
		"a=ssrc:901234567 cname:br0wserCname\r\n"))
}

// Flow 1 (and 3): a browser calls a trunk.
func TestFlowBrowserOfferToTrunk(t *testing.T) {
	bo := mustParseFile(t, "jssip_chrome156_offer.sdp")
	remote, err := bo.RemoteWebRTC() // -> dataplane leg 0 WebRTCSpec
	if err != nil {
		t.Fatal(err)
	}
	if role := DTLSRoleForOffer(remote.Setup, RoleUnknown); role != RoleClient {
		t.Errorf("role = %v", role)
	}
	streams, err := OfferStreams(bo, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	trunkOrigin, browserOrigin := Origin{SessionID: 42}, Origin{SessionID: 43}
	po, err := PlainOffer(&trunkOrigin, streams, localPlain(1))
	if err != nil {
		t.Fatal(err)
	}
	offer := marshal(t, po)
	wantLines(t, offer, "o=- 42 1 IN IP4 203.0.113.10", "c=IN IP4 203.0.113.10", "m=audio 20000 RTP/AVP 9 0 8 126",
		"a=rtpmap:126 telephone-event/8000", "a=fmtp:126 0-16", "a=ptime:20", "a=sendrecv")
	wantAbsent(t, offer, webrtcOnly...)
	wantAbsent(t, offer, "opus", "red/", "CN/", "a=rtcp")

	pa := mustParse(t, []byte(answerFromPBX))
	if addr, ok := pa.Media[0].RemoteRTP(); !ok || addr.String() != "198.51.100.10:10000" {
		t.Errorf("PBX RTP address %v", addr) // -> dataplane leg 1 PlainSpec
	}
	answerStreams, err := AnswerStreams(bo, pa)
	if err != nil {
		t.Fatal(err)
	}
	answerStreams[0].SSRC = 0x5eed
	wa, err := WebRTCAnswer(&browserOrigin, bo, answerStreams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	answer := marshal(t, wa)
	wantLines(t, answer, "o=- 43 1 IN IP4 203.0.113.10", "a=ice-lite", "a=group:BUNDLE 0",
		"m=audio 3478 UDP/TLS/RTP/SAVPF 0 126", "c=IN IP4 203.0.113.10",
		"a=candidate:1 1 udp 2130706431 203.0.113.10 3478 typ host",
		"a=candidate:2 1 udp 2130706175 2001:db8::10 3478 typ host", "a=end-of-candidates",
		"a=ice-ufrag:StRt", "a=ice-pwd:straitPasswordStrait0123", "a=fingerprint:sha-256 "+straitFingerprint.Value,
		"a=setup:active", "a=mid:0", "a=sendrecv", "a=rtcp-mux", "a=rtcp-rsize", "a=rtpmap:0 PCMU/8000",
		"a=rtpmap:126 telephone-event/8000", "a=fmtp:126 0-16", "a=ptime:20",
		"a=msid:strait strait-audio-0", "a=ssrc:24301 cname:strait")
	wantAbsent(t, answer, plainOnly...)
	wantAbsent(t, answer, "extmap", "transport-cc", "a=rtcp-fb", "ice-options", "opus")

	// The dataplane's per-leg codec lists: telephone-event 126 <-> 101.
	b, p := SharedCodecs(wa.Media[0].Codecs, pa.Media[0].Codecs)
	if got := brief(b); strings.Join(got, ",") != "0 PCMU/8000,126 telephone-event/8000;0-16" {
		t.Errorf("browser leg codecs %q", got)
	}
	if got := brief(p); strings.Join(got, ",") != "0 PCMU/8000,101 telephone-event/8000;0-16" {
		t.Errorf("trunk leg codecs %q", got)
	}
}

// Flow 2: a PBX offers RTP/SAVP to a browser.
func TestFlowTrunkOfferToBrowser(t *testing.T) {
	po := mustParseFile(t, "freeswitch_savp_offer.sdp")
	remoteKey, ok := SelectCrypto(po.Media[0].Crypto) // -> dataplane PlainSpec.sdes
	if !ok || remoteKey.Tag != 5 {
		t.Fatalf("SelectCrypto = %+v, %v", remoteKey, ok)
	}
	streams, err := OfferStreams(po, WebRTCPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var browserOrigin, trunkOrigin Origin
	wo, err := WebRTCOffer(&browserOrigin, streams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	offer := marshal(t, wo)
	wantLines(t, offer, "a=ice-lite", "a=group:BUNDLE 0", "m=audio 3478 UDP/TLS/RTP/SAVPF 9 0 8 101",
		"a=setup:actpass", "a=mid:0", "a=rtcp-mux", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv",
		"a=end-of-candidates")
	wantAbsent(t, offer, plainOnly...)
	wantAbsent(t, offer, "CN/", "FreeSWITCH", "198.51.100.20", "a=rtcp-rsize")
	if browserOrigin.SessionID == 0 || browserOrigin.SessionID>>63 != 0 || browserOrigin.Version != 1 ||
		browserOrigin.Address != "203.0.113.10" {
		t.Errorf("origin = %+v", browserOrigin)
	}

	ba := mustParse(t, chromeAnswer("9 0 101", "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n", "sendrecv"))
	remote, err := ba.RemoteWebRTC()
	if err != nil {
		t.Fatal(err)
	}
	if role, err := DTLSRoleFromAnswer(remote.Setup); err != nil || role != RoleServer {
		t.Errorf("role = %v, %v", role, err)
	}
	answerStreams, err := AnswerStreams(po, ba)
	if err != nil {
		t.Fatal(err)
	}
	local := localPlain(1)
	local[0].RTCP = netip.MustParseAddrPort("203.0.113.10:20001")
	local[0].Crypto = &Crypto{Suite: remoteKey.Suite, Key: bytes.Repeat([]byte{7}, 30)}
	pa, err := PlainAnswer(&trunkOrigin, po, answerStreams, local)
	if err != nil {
		t.Fatal(err)
	}
	answer := marshal(t, pa)
	wantLines(t, answer, "m=audio 20000 RTP/SAVP 9 0 101", "c=IN IP4 203.0.113.10",
		"a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:"+base64.StdEncoding.EncodeToString(local[0].Crypto.Key),
		"a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv")
	wantAbsent(t, answer, webrtcOnly...)
	wantAbsent(t, answer, "a=rtcp:", "192.0.2.44", "bRwS", "br0wserCname", "opus")
}

// Flow 5: a delayed-offer INVITE from a PBX. Strait offers the browser only
// what the trunk takes, then offers the PBX what the browser chose.
func TestFlowDelayedOffer(t *testing.T) {
	var browserOrigin, trunkOrigin Origin
	wo, err := WebRTCOffer(&browserOrigin, []Stream{DefaultPolicy().NewStream(KindAudio)}, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, marshal(t, wo), "m=audio 3478 UDP/TLS/RTP/SAVPF 0 8 9 101", "a=fmtp:101 0-16")

	ba := mustParse(t, chromeAnswer("8 0 101", "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", "sendrecv"))
	streams, err := OfferStreams(ba, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	po, err := PlainOffer(&trunkOrigin, streams, localPlain(1))
	if err != nil {
		t.Fatal(err)
	}
	offer := marshal(t, po)
	wantLines(t, offer, "m=audio 20000 RTP/AVP 8 0 101", "a=sendrecv")
	wantAbsent(t, offer, webrtcOnly...)
	wantAbsent(t, offer, "192.0.2.44", "bRwS")

	// The PBX answers in the ACK.
	pa := mustParse(t, []byte(strings.ReplaceAll(answerFromPBX, "RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000", "RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000")))
	b, p := SharedCodecs(ba.Media[0].Codecs, pa.Media[0].Codecs)
	if len(b) != 2 || b[0].Name != "PCMA" || p[1].PayloadType != 101 {
		t.Errorf("shared codecs %q / %q", brief(b), brief(p))
	}
}

// Flow 6: a PBX holds the call the old way, Strait re-offers to the browser
// with a direction, never with 0.0.0.0, then the PBX resumes.
func TestFlowHoldResume(t *testing.T) {
	browserOrigin, trunkOrigin := Origin{SessionID: 77}, Origin{SessionID: 78}
	local := localWebRTC()
	po := mustParseFile(t, "asterisk_offer.sdp")
	streams, err := OfferStreams(po, WebRTCPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WebRTCOffer(&browserOrigin, streams, local); err != nil {
		t.Fatal(err)
	}
	ba := mustParse(t, chromeAnswer("0 8 101", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\n", "sendrecv"))
	local.Role, _ = DTLSRoleFromAnswer(ba.Media[0].Setup)

	// Re-INVITE: c=0.0.0.0.
	hold := mustParseFile(t, "pbx_oldhold_offer.sdp")
	if !hold.OnHold() {
		t.Error("hold offer not recognised")
	}
	holdStreams, err := OfferStreams(hold, WebRTCPolicy())
	if err != nil {
		t.Fatal(err)
	}
	wo, err := WebRTCOffer(&browserOrigin, holdStreams, local)
	if err != nil {
		t.Fatal(err)
	}
	offer := marshal(t, wo)
	wantLines(t, offer, "o=- 77 2 IN IP4 203.0.113.10", "c=IN IP4 203.0.113.10", "a=sendonly",
		"m=audio 3478 UDP/TLS/RTP/SAVPF 0 8 101")
	wantAbsent(t, offer, "0.0.0.0", "a=sendrecv")

	// The browser answers recvonly; Strait answers the PBX recvonly at its
	// real address.
	ba2 := mustParse(t, bytes.ReplaceAll(chromeAnswer("0 101", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n", "recvonly"),
		[]byte("o=- 8346122379011236533 2"), []byte("o=- 8346122379011236533 3")))
	answerStreams, err := AnswerStreams(hold, ba2)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := PlainAnswer(&trunkOrigin, hold, answerStreams, localPlain(1))
	if err != nil {
		t.Fatal(err)
	}
	answer := marshal(t, pa)
	wantLines(t, answer, "c=IN IP4 203.0.113.10", "a=recvonly", "m=audio 20000 RTP/AVP 0 101")
	wantAbsent(t, answer, "0.0.0.0")

	// Answering the hold locally from the browser's last (sendrecv) answer
	// narrows the direction to what the offer allows.
	local2, err := AnswerStreams(hold, ba)
	if err != nil || local2[0].Direction != RecvOnly {
		t.Errorf("local hold answer direction %v, %v", local2[0].Direction, err)
	}

	// Resume: version goes up again; re-sending it unchanged does not.
	resumeStreams, _ := OfferStreams(po, WebRTCPolicy())
	wo, err = WebRTCOffer(&browserOrigin, resumeStreams, local)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, marshal(t, wo), "o=- 77 3 IN IP4 203.0.113.10", "a=sendrecv")
	if _, err := WebRTCOffer(&browserOrigin, resumeStreams, local); err != nil || browserOrigin.Version != 3 {
		t.Errorf("unchanged re-offer: version %d, %v", browserOrigin.Version, err)
	}
}

// A browser re-offer with new ICE credentials is an ICE restart; Strait's
// answer keeps its DTLS role.
func TestICERestartAndRoleKept(t *testing.T) {
	first := mustRead(t, "jssip_chrome156_offer.sdp")
	bo := mustParse(t, first)
	again := mustParse(t, first)
	restart := mustParse(t, []byte(strings.NewReplacer("tvyA", "n3wU", "gjy+7XCPesMlzxykFSy39poC", "newPasswordNewPassword00").Replace(string(first))))
	if ICERestart(bo, again) || !ICERestart(bo, restart) {
		t.Errorf("ICERestart: same %v, new %v", ICERestart(bo, again), ICERestart(bo, restart))
	}
	streams, err := OfferStreams(restart, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	local := localWebRTC()
	local.Role = RoleServer // Strait was the DTLS server on this leg
	var o Origin
	wa, err := WebRTCAnswer(&o, restart, streams, local)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, marshal(t, wa), "a=setup:passive")
}

// Video the trunk does not take is rejected with port 0 on both legs, and
// the m-line count stays.
func TestVideoRejectedKeepsMLines(t *testing.T) {
	bo := mustParseFile(t, "chrome_av_bundle_offer.sdp")
	streams, err := OfferStreams(bo, Policy{Codecs: []string{"PCMU", "PCMA", "telephone-event", "VP8"}})
	if err != nil {
		t.Fatal(err)
	}
	streams[1].Rejected = true // the caller turns video down
	var o1, o2 Origin
	po, err := PlainOffer(&o1, streams, localPlain(2))
	if err != nil {
		t.Fatal(err)
	}
	offer := marshal(t, po)
	wantLines(t, offer, "m=audio 20000 RTP/AVP 0 8 126", "m=video 0 RTP/AVP 96")
	wantAbsent(t, offer, webrtcOnly...)

	pa := mustParse(t, []byte(answerFromPBX+"m=video 0 RTP/AVP 96\r\n"))
	answerStreams, err := AnswerStreams(bo, pa)
	if err != nil {
		t.Fatal(err)
	}
	wa, err := WebRTCAnswer(&o2, bo, answerStreams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	answer := marshal(t, wa)
	wantLines(t, answer, "a=group:BUNDLE 0", "m=audio 3478 UDP/TLS/RTP/SAVPF 0 126",
		"m=video 0 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 VP8/90000", "a=mid:1")
	if strings.Count(answer, "m=") != 2 {
		t.Errorf("want 2 m-lines:\n%s", answer)
	}

	// A PBX answer with the wrong m-line count is refused.
	if _, err := AnswerStreams(bo, mustParse(t, []byte(answerFromPBX))); !errors.Is(err, ErrUnacceptable) {
		t.Errorf("short answer: %v", err)
	}
}

// Browser video both ways: payload types stay unique across the bundle.
func TestWebRTCOfferRenumbersAcrossBundle(t *testing.T) {
	streams := []Stream{
		{Kind: KindAudio, Codecs: codecs("96 opus/48000/2", "101 telephone-event/48000")},
		{Kind: KindVideo, Codecs: codecs("96 VP8/90000", "97 rtx/90000;apt=96", "101 H264/90000", "98 rtx/90000;apt=101")},
	}
	streams[1].Codecs[0].RTCPFeedback = []string{"goog-remb", "transport-cc", "nack pli"}
	var o Origin
	wo, err := WebRTCOffer(&o, streams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(brief(wo.Media[1].Codecs), ",")
	if want := "99 VP8/90000,97 rtx/90000;apt=99,100 H264/90000,98 rtx/90000;apt=100"; got != want {
		t.Errorf("video codecs %s, want %s", got, want)
	}
	if streams[1].Codecs[0].PayloadType != 96 {
		t.Error("caller's streams modified")
	}
	offer := marshal(t, wo)
	wantLines(t, offer, "a=group:BUNDLE 0 1", "a=rtcp-fb:99 nack pli")
	wantAbsent(t, offer, "goog-remb", "transport-cc")
}

// T.38 in a re-INVITE: the image section is rejected, audio goes on.
func TestT38Rejected(t *testing.T) {
	text := strings.Replace(string(mustRead(t, "asterisk_offer.sdp")), "a=sendrecv\r\n",
		"a=sendrecv\r\nm=image 10002 udptl t38\r\na=T38FaxVersion:0\r\n", 1)
	po := mustParse(t, []byte(text))
	streams, err := OfferStreams(po, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var o Origin
	pa, err := PlainAnswer(&o, po, streams, localPlain(2))
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, marshal(t, pa), "m=audio 20000 RTP/AVP 0 8 101", "m=image 0 udptl t38")
	var o2 Origin
	wo, err := WebRTCOffer(&o2, streams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, marshal(t, wo), "m=application 0 UDP/DTLS/SCTP webrtc-datachannel")
}

// Browser offers Strait cannot serve are refused with 488.
func TestUnacceptableWebRTC(t *testing.T) {
	offer := string(mustRead(t, "jssip_chrome156_offer.sdp"))
	for name, text := range map[string]string{
		"no ICE credentials": strings.Replace(offer, "a=ice-ufrag:tvyA\r\n", "", 1),
		"no fingerprint":     offer[:strings.Index(offer, "a=fingerprint")] + offer[strings.Index(offer, "a=setup"):],
		"ICE-lite peer":      strings.Replace(offer, "t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n", 1),
		"no rtcp-mux":        strings.Replace(offer, "a=rtcp-mux\r\n", "", 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := OfferStreams(mustParse(t, []byte(text)), DefaultPolicy())
			var e *Error
			if !errors.As(err, &e) || e.StatusCode() != 488 {
				t.Errorf("err = %v, want 488", err)
			}
		})
	}
}

// Builders refuse streams that do not fit the offer (a caller bug, 500).
func TestBuilderInputErrors(t *testing.T) {
	bo := mustParseFile(t, "jssip_chrome156_offer.sdp")
	po := mustParseFile(t, "freeswitch_savp_offer.sdp")
	var o Origin
	bad := []struct {
		name string
		err  error
	}{
		{"codec not offered", func() error {
			_, err := WebRTCAnswer(&o, bo, []Stream{{Kind: KindAudio, Codecs: codecs("18 G729/8000")}}, localWebRTC())
			return err
		}()},
		{"wrong stream count", func() error {
			_, err := WebRTCAnswer(&o, bo, nil, localWebRTC())
			return err
		}()},
		{"short ICE password", func() error {
			l := localWebRTC()
			l.Pwd = "short"
			_, err := WebRTCOffer(&o, []Stream{DefaultPolicy().NewStream(KindAudio)}, l)
			return err
		}()},
		{"unspecified address", func() error {
			l := localWebRTC()
			l.Addresses = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3478")}
			_, err := WebRTCOffer(&o, []Stream{DefaultPolicy().NewStream(KindAudio)}, l)
			return err
		}()},
		{"SAVP answer without key", func() error {
			s, _ := OfferStreams(po, DefaultPolicy())
			_, err := PlainAnswer(&o, po, s, localPlain(1))
			return err
		}()},
		{"plain answer to a WebRTC offer", func() error {
			s, _ := OfferStreams(bo, DefaultPolicy())
			_, err := PlainAnswer(&o, bo, s, localPlain(1))
			return err
		}()},
	}
	for _, tt := range bad {
		var e *Error
		if !errors.As(tt.err, &e) || e.StatusCode() != 500 || !errors.Is(tt.err, ErrInvalidInput) {
			t.Errorf("%s: err = %v, want 500", tt.name, tt.err)
		}
	}
	if o.Version != 0 {
		t.Errorf("failed builds bumped the origin to %d", o.Version)
	}
}

// Topology hiding: nothing identifying one side reaches the other.
func TestTopologyHiding(t *testing.T) {
	bo := mustParseFile(t, "chrome_av_bundle_offer.sdp")
	streams, err := OfferStreams(bo, Policy{Codecs: []string{"opus", "PCMU", "telephone-event", "VP8", "rtx"}})
	if err != nil {
		t.Fatal(err)
	}
	var o1, o2, o3 Origin
	po, err := PlainOffer(&o1, streams, localPlain(2))
	if err != nil {
		t.Fatal(err)
	}
	// Browser to browser: the other browser sees Strait only.
	wo, err := WebRTCOffer(&o2, streams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	browserSecrets := []string{"192.0.2.15", "198.51.100.77", ".local", "6971502463251437392", "Xk3P",
		"q8Vn2LxR7tYw0eZc4JbH1sMf", bo.Media[0].Fingerprint.Value[:20], "1511406402", "2840105143",
		"Qm9zc2FuZHJvY2tz", "2b7a3c1e", "9c1d2e3f", "52110", "1467250027"}
	wantAbsent(t, marshal(t, po), browserSecrets...)
	wantAbsent(t, marshal(t, wo), browserSecrets...)

	fs := mustParseFile(t, "freeswitch_savp_offer.sdp")
	fsStreams, err := OfferStreams(fs, WebRTCPolicy())
	if err != nil {
		t.Fatal(err)
	}
	wo2, err := WebRTCOffer(&o3, fsStreams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	pbxSecrets := []string{"198.51.100.20", "FreeSWITCH", "1700001000", "24576", "24577", "inline:"}
	for _, c := range fs.Media[0].Crypto {
		pbxSecrets = append(pbxSecrets, c.String()[strings.Index(c.String(), "inline:")+7:][:16])
	}
	wantAbsent(t, marshal(t, wo2), pbxSecrets...)
}

// Toward a browser Opus goes first when the far end offered it.
func TestWebRTCOfferOpusFirst(t *testing.T) {
	po := mustParse(t, []byte(strings.Replace(string(mustRead(t, "asterisk_offer.sdp")),
		"RTP/AVP 0 8 101\r\n", "RTP/AVP 0 8 107 101\r\na=rtpmap:107 opus/48000/2\r\n", 1)))
	streams, err := OfferStreams(po, WebRTCPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if got := brief(streams[0].Codecs); got[0] != "0 PCMU/8000" {
		t.Errorf("OfferStreams reordered: %q", got)
	}
	var o Origin
	wo, err := WebRTCOffer(&o, streams, localWebRTC())
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, marshal(t, wo), "m=audio 3478 UDP/TLS/RTP/SAVPF 107 0 8 101", "a=fmtp:107 minptime=10;useinbandfec=1")
}

// Issue 9 item 6: an answer that leaves out m-lines reads them as
// rejected; an offer toward a plain leg leaves out its trailing rejected
// m-lines, never below what was exchanged before; a plain re-offer with
// fewer m-lines than the other leg negotiated is padded for it.
func TestMLineCounts(t *testing.T) {
	av := mustParseFile(t, "chrome_av_bundle_offer.sdp")
	streams, err := OfferStreams(av, Policy{Codecs: []string{"PCMU", "telephone-event"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2 || streams[0].Rejected || !streams[1].Rejected {
		t.Fatalf("streams %+v", streams)
	}
	audioOnly := mustParse(t, []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"+
		"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"))
	padded := PadAnswer(audioOnly, streams)
	if len(padded.Media) != 2 || !padded.Media[1].Rejected() || padded.Media[1].Kind != KindVideo || len(audioOnly.Media) != 1 {
		t.Fatalf("PadAnswer: %+v (input now %d m-lines)", padded.Media, len(audioOnly.Media))
	}
	if _, err := AnswerStreams(av, padded); err != nil {
		t.Fatalf("a padded answer is refused: %v", err)
	}
	if _, err := AnswerStreams(av, audioOnly); err == nil {
		t.Fatal("AnswerStreams took a short answer itself")
	}
	if got := PadAnswer(av, streams[:1]); got != av {
		t.Error("PadAnswer changed an answer long enough")
	}
	trimmed := TrimRejected(&Description{Media: []Media{{Port: 4000}, {Port: 0}, {Port: 0}}}, 2)
	if len(trimmed.Media) != 2 {
		t.Errorf("TrimRejected went below keep: %d", len(trimmed.Media))
	}
	if got := TrimRejected(&Description{Media: []Media{{Port: 4000}, {Port: 0}, {Port: 5000}}}, 0); len(got.Media) != 3 {
		t.Errorf("TrimRejected dropped a rejected m-line that is not trailing: %d", len(got.Media))
	}
	if got := TrimRejected(&Description{Media: []Media{{Port: 0}}}, 0); len(got.Media) != 1 {
		t.Error("TrimRejected left no m-line")
	}
	po := PadOffer(audioOnly, av)
	if len(po.Media) != 2 || po.Media[1].Type != "video" || !po.Media[1].Rejected() {
		t.Fatalf("PadOffer: %+v", po.Media)
	}
}
