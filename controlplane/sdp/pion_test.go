package sdp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// These tests use a pion/webrtc PeerConnection as the browser: what Strait
// writes must be accepted by a real WebRTC stack, and what such a stack
// writes must be understood. The dataplane values are made up, with the
// fingerprint of a real certificate.

// newPeer returns a PeerConnection with a local track per kind, as a
// browser has once it captured a microphone or camera: PCMU audio (what a
// G.711 trunk ends up with; pion's tracks do not switch codecs the way a
// browser's encoder does) and VP8 video. answerRole is the DTLS role it
// takes when answering: Chrome and Firefox answer a=setup:active (client),
// pion by default passive (server).
func newPeer(t *testing.T, answerRole webrtc.DTLSRole, kinds ...webrtc.RTPCodecType) *webrtc.PeerConnection {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	if err := se.SetAnsweringDTLSRole(answerRole); err != nil {
		t.Fatal(err)
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	for _, k := range kinds {
		mime := webrtc.MimeTypePCMU
		if k == webrtc.RTPCodecTypeVideo {
			mime = webrtc.MimeTypeVP8
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, k.String(), "browser")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(track); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

// straitLocal returns dataplane-like values for a WebRTC leg: made-up ICE
// credentials, the fingerprint of a freshly generated certificate, and a
// loopback address.
func straitLocal(t *testing.T, port uint16) LocalWebRTC {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		t.Fatal(err)
	}
	fps, err := cert.GetFingerprints()
	if err != nil || len(fps) == 0 {
		t.Fatal(fps, err)
	}
	return LocalWebRTC{
		Ufrag:       "StRt",
		Pwd:         "straitPasswordStrait0123",
		Fingerprint: Fingerprint{Algorithm: fps[0].Algorithm, Value: fps[0].Value},
		Addresses:   []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
	}
}

func createOffer(t *testing.T, pc *webrtc.PeerConnection) *Description {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	return mustParse(t, []byte(offer.SDP))
}

func setRemote(t *testing.T, pc *webrtc.PeerConnection, typ webrtc.SDPType, d *Description) {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: string(b)}); err != nil {
		t.Fatalf("pion refused Strait's %s: %v\n%s", typ, err, b)
	}
	want := webrtc.SignalingStateHaveRemoteOffer
	if typ == webrtc.SDPTypeAnswer {
		want = webrtc.SignalingStateStable
	}
	if got := pc.SignalingState(); got != want {
		t.Errorf("signaling state %v after Strait's %s, want %v", got, typ, want)
	}
}

func createAnswer(t *testing.T, pc *webrtc.PeerConnection) *Description {
	t.Helper()
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	return mustParse(t, []byte(answer.SDP))
}

// pbxAnswer plays a PBX taking PCMU (and DTMF) from Strait's plain offer.
func pbxAnswer(t *testing.T, offer *Description) *Description {
	t.Helper()
	streams, err := OfferStreams(offer, Policy{Codecs: []string{"PCMU", "telephone-event"}})
	if err != nil {
		t.Fatal(err)
	}
	local := make([]LocalPlain, len(streams))
	for i := range local {
		local[i].RTP = netip.AddrPortFrom(netip.MustParseAddr("198.51.100.10"), uint16(10000+2*i))
	}
	pbx := Origin{Username: "pbx", SessionID: 9}
	d, err := PlainAnswer(&pbx, offer, streams, local)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Flow 1 with a real browser stack: the browser offers audio and video, the
// trunk takes audio only, and Strait's answer must satisfy the browser.
func TestPionAcceptsStraitAnswer(t *testing.T) {
	pc := newPeer(t, webrtc.DTLSRoleClient, webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo)
	bo := createOffer(t, pc)
	streams, err := OfferStreams(bo, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var trunkOrigin, browserOrigin Origin
	po, err := PlainOffer(&trunkOrigin, streams, localPlain(len(streams)))
	if err != nil {
		t.Fatal(err)
	}
	pa := pbxAnswer(t, mustParse(t, []byte(marshal(t, po))))
	answerStreams, err := AnswerStreams(bo, pa)
	if err != nil {
		t.Fatal(err)
	}
	wa, err := WebRTCAnswer(&browserOrigin, bo, answerStreams, straitLocal(t, 40000))
	if err != nil {
		t.Fatal(err)
	}
	setRemote(t, pc, webrtc.SDPTypeAnswer, wa)
	if got := brief(wa.Media[0].Codecs); len(got) == 0 || got[0] != "0 PCMU/8000" {
		t.Errorf("audio codecs %q", got)
	}
	sent := pc.GetTransceivers()[0].Sender().GetParameters().Codecs
	if len(sent) == 0 || sent[0].MimeType != webrtc.MimeTypePCMU || sent[0].PayloadType != 0 {
		t.Errorf("pion sends with %+v, want PCMU/0", sent)
	}
	if !wa.Media[1].Rejected() {
		t.Error("video accepted")
	}
}

// Flow 2 with a real browser stack: Strait's offer must satisfy the
// browser, whose answer then decides Strait's DTLS role.
func TestPionAnswersStraitOffer(t *testing.T) {
	for _, tt := range []struct {
		answerRole webrtc.DTLSRole
		setup      Setup
		want       DTLSRole
	}{
		{webrtc.DTLSRoleClient, SetupActive, RoleServer}, // as browsers answer
		{webrtc.DTLSRoleServer, SetupPassive, RoleClient},
	} {
		t.Run(tt.setup.String(), func(t *testing.T) {
			po := mustParseFile(t, "asterisk_offer.sdp")
			streams, err := OfferStreams(po, WebRTCPolicy())
			if err != nil {
				t.Fatal(err)
			}
			var browserOrigin, trunkOrigin Origin
			wo, err := WebRTCOffer(&browserOrigin, streams, straitLocal(t, 40002))
			if err != nil {
				t.Fatal(err)
			}
			pc := newPeer(t, tt.answerRole, webrtc.RTPCodecTypeAudio)
			setRemote(t, pc, webrtc.SDPTypeOffer, wo)
			ba := createAnswer(t, pc)
			remote, err := ba.RemoteWebRTC()
			if err != nil {
				t.Fatal(err)
			}
			role, err := DTLSRoleFromAnswer(remote.Setup)
			if remote.Setup != tt.setup || err != nil || role != tt.want {
				t.Errorf("pion answered setup %v: role %v, %v; want %v, %v", remote.Setup, role, err, tt.setup, tt.want)
			}
			if ba.OnHold() || ba.Media[0].OldHold {
				t.Error("pion's c=0.0.0.0 read as hold")
			}
			answerStreams, err := AnswerStreams(po, ba)
			if err != nil {
				t.Fatal(err)
			}
			pa, err := PlainAnswer(&trunkOrigin, po, answerStreams, localPlain(1))
			if err != nil {
				t.Fatal(err)
			}
			answer := marshal(t, pa)
			wantLines(t, answer, "a=sendrecv", "a=rtpmap:0 PCMU/8000")
			wantAbsent(t, answer, webrtcOnly...)
			wantAbsent(t, answer, remote.ICE.Ufrag+"\r", remote.Fingerprint.Value)
		})
	}
}

// Flow 4: browser to browser through Strait, both legs WebRTC, each
// browser seeing only Strait's credentials.
func TestPionBrowserToBrowser(t *testing.T) {
	a := newPeer(t, webrtc.DTLSRoleClient, webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo)
	b := newPeer(t, webrtc.DTLSRoleClient, webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo)
	aOffer := createOffer(t, a)
	policy := Policy{Codecs: []string{"opus", "PCMU", "telephone-event", "VP8", "rtx"}}
	streams, err := OfferStreams(aOffer, policy)
	if err != nil {
		t.Fatal(err)
	}
	localA, localB := straitLocal(t, 40004), straitLocal(t, 40006)
	localB.Ufrag, localB.Pwd = "StRb", "straitPasswordForLegB01"
	var originA, originB Origin
	bOffer, err := WebRTCOffer(&originB, streams, localB)
	if err != nil {
		t.Fatal(err)
	}
	setRemote(t, b, webrtc.SDPTypeOffer, bOffer)
	bAnswer := createAnswer(t, b)
	answerStreams, err := AnswerStreams(aOffer, bAnswer)
	if err != nil {
		t.Fatal(err)
	}
	aAnswer, err := WebRTCAnswer(&originA, aOffer, answerStreams, localA)
	if err != nil {
		t.Fatal(err)
	}
	setRemote(t, a, webrtc.SDPTypeAnswer, aAnswer)

	for i, kind := range []string{"opus/48000/2", "VP8/90000"} {
		ca, cb := SharedCodecs(aAnswer.Media[i].Codecs, bAnswer.Media[i].Codecs)
		if len(ca) == 0 || ca[0].String() != kind || cb[0].String() != kind {
			t.Errorf("m-line %d: shared codecs %q / %q, want %s first", i, brief(ca), brief(cb), kind)
		}
	}
	ra, _ := aOffer.RemoteWebRTC()
	rb, _ := bAnswer.RemoteWebRTC()
	toB, toA := marshal(t, bOffer), marshal(t, aAnswer)
	wantAbsent(t, toB, ra.ICE.Ufrag+"\r", ra.ICE.Pwd, ra.Fingerprint.Value)
	wantAbsent(t, toA, rb.ICE.Ufrag+"\r", rb.ICE.Pwd, rb.Fingerprint.Value)
	for _, m := range aOffer.Media {
		for _, s := range m.SSRCs {
			wantAbsent(t, toB, s.CNAME)
		}
		if m.MSID != "" {
			wantAbsent(t, toB, strings.Fields(m.MSID)[0])
		}
	}
}
