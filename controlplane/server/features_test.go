package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// establish makes a browser-to-PBX call with media flowing and returns
// its pieces.
func (tr *trunk) establish(t *testing.T, hdrs ...sip.Header) (*siptest.Dialog, *siptest.Dialog, *browserMedia) {
	t.Helper()
	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer), hdrs...)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain := newPlain(t)
	go inc.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := mb.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tr.waitConnected()
	m := &browserMedia{b: mb, plain: plain, strait: plainAddr(t, inc.Invite.Body()), bseq: 1000, pseq: 3000}
	m.both(t, "up")
	return call, inc, m
}

type browserMedia struct {
	b          *mediatest.Browser
	plain      *mediatest.Plain
	strait     netip.AddrPort
	bseq, pseq uint16
}

// warm waits until media flows both ways again, ten packets in a row each
// way (after an ICE restart the browser moves to the new path, and the
// node sends on it, once checks with the new credentials succeed).
func (m *browserMedia) warm(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i, ok := 0, 0; time.Now().Before(deadline); i++ {
		tag := fmt.Sprintf("probe%03d", i)
		m.b.Send(0, m.bseq, uint32(m.bseq)*160, false, payload(tag, 0))
		m.bseq++
		if _, err := m.plain.Next(200*time.Millisecond, func(pk mediatest.Packet) bool {
			return pk.RTP != nil && bytes.HasPrefix(pk.RTP.Payload, []byte(tag))
		}); err != nil {
			ok = 0
			continue
		}
		if ok++; ok == 10 {
			break
		}
	}
	for i, ok := 0, 0; ok < 10; i++ {
		if time.Now().After(deadline) {
			t.Fatal("media to the browser never came back")
		}
		tag := fmt.Sprintf("probe-back%03d", i)
		plainSend(t, m.plain, m.strait, &m.pseq, tag, 1)
		got := false
		for timeout := time.After(200 * time.Millisecond); !got; {
			select {
			case pk := <-m.b.Received:
				got = bytes.HasPrefix(pk.Payload, []byte(tag))
			case <-timeout:
				ok = -1
				got = true
			}
		}
		ok++
	}
}

func (m *browserMedia) both(t *testing.T, tag string) {
	t.Helper()
	browserToPlain(t, m.b, &m.bseq, m.plain, tag+"-b2p", 5)
	plainToBrowser(t, m.plain, m.strait, &m.pseq, m.b, tag+"-p2b", 5)
}

// The browser restarts ICE with a re-INVITE: Strait's answer has new ICE
// credentials, the PBX is re-offered the same media, and media flows on.
// An UPDATE without SDP (a session refresh) is Strait's to answer (each
// leg has its own session timer, sessiontimer_test.go); REFER passes to
// the PBX.
func TestTrunkICERestartReferUpdate(t *testing.T) {
	tr := startTrunk(t)
	tr.register(t)
	call, inc, m := tr.establish(t, sip.NewHeader("Session-Expires", "1800;refresher=uac"), sip.NewHeader("Min-SE", "90"))
	if h := inc.Invite.GetHeader("Session-Expires"); h == nil || h.Value() != "1800" {
		t.Fatalf("Session-Expires at the PBX: %v, want the interval without the browser's refresher", h)
	}

	pc := m.b.PC
	first := pc.CurrentRemoteDescription().SDP
	offer, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	res, err := call.Reinvite(ctx(t), []byte(pc.LocalDescription().SDP))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("ICE restart re-INVITE: %v %v", res, err)
	}
	if ufrag(string(res.Body())) == ufrag(first) || ufrag(string(res.Body())) == "" {
		t.Fatalf("ICE restart answered with the old credentials:\n%s", res.Body())
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(res.Body())}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inc.Reinvites:
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX was not re-offered")
	}
	m.warm(t)
	m.both(t, "restarted")

	if r, err := call.Request(ctx(t), sip.UPDATE, nil, ""); err != nil || r.StatusCode != 200 {
		t.Fatalf("UPDATE: %v %v", r, err)
	}
	// An UPDATE offer from the browser reaches the PBX as a re-INVITE.
	upd, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(upd); err != nil {
		t.Fatal(err)
	}
	ur, err := call.Request(ctx(t), sip.UPDATE, []byte(pc.LocalDescription().SDP), "application/sdp")
	if err != nil || ur.StatusCode != 200 || len(ur.Body()) == 0 {
		t.Fatalf("UPDATE with an offer: %v %v", ur, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ur.Body())}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inc.Reinvites:
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX got no re-INVITE for the UPDATE")
	}
	m.both(t, "updated")
	r, err := call.Request(ctx(t), sip.REFER, nil, "", sip.NewHeader("Refer-To", "<sip:carol@"+tr.srv.HTTPAddr()+">"))
	if err != nil || r.StatusCode != 202 {
		t.Fatalf("REFER: %v %v", r, err)
	}
	refer, err := tr.pbx.WaitRequest(sip.REFER, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rt := refer.GetHeader("Refer-To").Value(); !strings.Contains(rt, "carol@127.0.0.1:"+port(tr.pbx.Addr)) {
		t.Fatalf("Refer-To at the PBX: %s", rt)
	}
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	tr.waitSessions(0)
}

var sdpParse = sdp.Parse

func port(hostport string) string { _, p, _ := net.SplitHostPort(hostport); return p }

func ufrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\r\n") {
		if v, ok := strings.CutPrefix(l, "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// The PBX calls the browser with no SDP (a delayed offer): Strait offers
// the browser, then the PBX in its 200, and takes the PBX's answer from
// the ACK.
func TestTrunkDelayedOffer(t *testing.T) {
	tr := startTrunk(t)
	binding := tr.register(t)
	call, err := tr.pbx.Invite(ctx(t), binding.Contact.User, nil)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.browser.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(inc.Invite.Body(), []byte("UDP/TLS/RTP/SAVPF")) || bytes.Contains(inc.Invite.Body(), []byte("opus")) {
		t.Fatalf("offer to the browser for a delayed offer:\n%s", inc.Invite.Body())
	}
	mb := newAnswerer(t)
	go inc.Answer(mb.answer(t, inc.Invite.Body()))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 || !bytes.Contains(res.Body(), []byte("RTP/AVP")) {
		t.Fatalf("200 to the PBX: %v %v", res, err)
	}
	plain := newPlain(t)
	if err := call.AckSDP(ctx(t), siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)); err != nil {
		t.Fatal(err)
	}
	mb.waitConnected(t)
	tr.waitConnected()
	var pseq uint16 = 7
	plainSend(t, plain, plainAddr(t, res.Body()), &pseq, "late", 10)
	receiveAt(t, mb.Received, "late", 10)
	mb.send(t, "late-back", 10)
	plainReceive(t, plain, "late-back", 10)
	call.Hangup(ctx(t))
	inc.WaitEnded(5 * time.Second)
	tr.waitSessions(0)
}

// SUBSCRIBE from a browser reaches the PBX, the PBX's NOTIFYs come back in
// the subscription, and a terminating NOTIFY ends the relay. The upstream
// is pinged with OPTIONS; OPTIONS to Strait is answered.
func TestTrunkSubscribeNotifyOptions(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.OptionsInterval = 100 * time.Millisecond })
	pbx := tr.pbx
	if _, err := pbx.WaitRequest(sip.OPTIONS, 5*time.Second); err != nil {
		t.Fatal("no OPTIONS ping at the upstream")
	}
	tr.register(t)
	if r, err := tr.browser.Send(ctx(t), sip.OPTIONS, "", nil, ""); err != nil || r.StatusCode != 200 || r.GetHeader("Allow") == nil {
		t.Fatalf("OPTIONS: %v %v", r, err)
	}

	res, err := tr.browser.Send(ctx(t), sip.SUBSCRIBE, "bob", nil, "", sip.NewHeader("Event", "presence"), sip.NewHeader("Expires", "600"))
	if err != nil || res.StatusCode != 202 {
		t.Fatalf("SUBSCRIBE: %v %v", res, err)
	}
	sub, err := pbx.WaitRequest(sip.SUBSCRIBE, 5*time.Second)
	if err != nil || sub.GetHeader("Event").Value() != "presence" {
		t.Fatalf("SUBSCRIBE at the PBX: %v %v", sub, err)
	}
	hidden(t, "SUBSCRIBE to the PBX", sub.String(), ".invalid")
	if r, err := pbx.Notify(ctx(t), sub, "active;expires=600", []byte("<presence/>"), "application/pidf+xml"); err != nil || r.StatusCode != 200 {
		t.Fatalf("NOTIFY: %v %v", r, err)
	}
	n, err := tr.browser.WaitRequest(sip.NOTIFY, 5*time.Second)
	if err != nil || string(n.Body()) != "<presence/>" || !strings.HasPrefix(n.GetHeader("Subscription-State").Value(), "active") {
		t.Fatalf("NOTIFY at the browser: %v %v", n, err)
	}
	if r, err := pbx.Notify(ctx(t), sub, "terminated;reason=timeout", nil, ""); err != nil || r.StatusCode != 200 {
		t.Fatalf("final NOTIFY: %v %v", r, err)
	}
	tr.waitCalls(0)
}

// Malformed and looping requests are refused without harm.
func TestBadRequests(t *testing.T) {
	e := startStandalone(t)
	conn, err := net.Dial("udp", e.srv.SIPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, raw := range []string{
		"garbage\r\n\r\n",
		"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + conn.LocalAddr().String() + ";branch=z9hG4bKbad1\r\nContent-Length: 0\r\n\r\n",
		"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + conn.LocalAddr().String() + ";branch=z9hG4bKbad2\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: bad2\r\nCSeq: 1 INVITE\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
		"BYE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + conn.LocalAddr().String() + ";branch=z9hG4bKbad3\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:bob@127.0.0.1>;tag=nope\r\nCall-ID: bad3\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
	} {
		conn.Write([]byte(raw))
	}
	got := map[string]bool{}
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for len(got) < 3 {
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		got[strings.SplitN(string(buf[:n]), "\r\n", 2)[0]] = true
	}
	if !got["SIP/2.0 400 Bad Request"] || !got["SIP/2.0 483 Too Many Hops"] || !got["SIP/2.0 481 Call/Transaction Does Not Exist"] {
		t.Fatalf("responses %v", got)
	}
	// Still alive.
	p, _ := siptest.NewUDP(e.srv.SIPAddr(), "x")
	defer p.Close()
	if r, err := p.Send(ctx(t), sip.OPTIONS, "", nil, ""); err != nil || r.StatusCode != 200 {
		t.Fatalf("OPTIONS after garbage: %v %v", r, err)
	}
	e.waitCalls(0)
}

// Media that stops ends the call: the dataplane's MEDIA_TIMEOUT makes
// Strait send BYE both ways.
func TestMediaTimeoutHangsUp(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.MediaTimeout = 2 * time.Second })
	e := tr.env
	tr.register(t)
	call, inc, _ := tr.establish(t) // sends a little media, then nothing
	if err := call.WaitEnded(10 * time.Second); err != nil {
		t.Fatal("the browser got no BYE after the media stopped")
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE after the media stopped")
	}
	e.waitSessions(0)
	e.waitCalls(0)
	if lines := e.cdrLines(); !strings.Contains(lines[len(lines)-1], `"reason":"media timeout"`) {
		t.Fatalf("CDR %s", lines[len(lines)-1])
	}
}

// With --sdes the trunk is offered RTP/SAVP with Strait's key; the PBX's
// answer key decrypts what it sends, and media flows both ways encrypted.
func TestTrunkSDES(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.SDES = true })
	e, pbx, b := tr.env, tr.pbx, tr.browser
	tr.register(t)
	mb := newBrowserMedia(t)
	call, err := b.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := sdpParse(inc.Invite.Body())
	if err != nil || offer.Media[0].Proto != "RTP/SAVP" || len(offer.Media[0].Crypto) != 1 {
		t.Fatalf("offer to the PBX (%v):\n%s", err, inc.Invite.Body())
	}
	straitKey := offer.Media[0].Crypto[0].Key
	pbxKey := bytes.Repeat([]byte{0x42}, 30)
	plain := newPlain(t)
	if err := plain.UseSDES(srtp.ProtectionProfileAes128CmHmacSha1_80, pbxKey, straitKey); err != nil {
		t.Fatal(err)
	}
	ans := strings.Replace(string(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)), "RTP/AVP", "RTP/SAVP", 1)
	ans += "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(pbxKey) + "\r\n"
	go inc.Answer([]byte(ans))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := mb.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitConnected()
	var bseq, pseq uint16 = 1, 1
	browserToPlain(t, mb, &bseq, plain, "srtp-b2p", 5)
	plainToBrowser(t, plain, plainAddr(t, inc.Invite.Body()), &pseq, mb, "srtp-p2b", 5)
	call.Hangup(ctx(t))
	e.waitSessions(0)
}

// The PBX sends a re-INVITE without SDP: the browser is asked for an
// offer the same way, Strait offers the PBX in its 200, and the PBX's
// answer in the ACK reaches the browser in Strait's ACK. Media flows on.
func TestTrunkOfferlessReinvite(t *testing.T) {
	tr := startTrunk(t)
	tr.register(t)
	call, inc, m := tr.establish(t)
	pc := m.b.PC
	call.OnReinvite(func(offer []byte) (int, []byte) {
		if len(offer) != 0 {
			t.Errorf("the browser got an offer: %s", offer)
		}
		o, err := pc.CreateOffer(nil)
		if err != nil {
			t.Error(err)
			return 500, nil
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		pc.SetLocalDescription(o)
		<-gathered
		return 200, []byte(pc.LocalDescription().SDP)
	})
	var pbxOffer []byte
	res, err := inc.ReinviteForOffer(ctx(t), func(offer []byte) []byte {
		pbxOffer = offer
		return siptest.PlainSDP(2, m.plain.Addr(), m.plain.RTCPAddr(), "sendrecv", false)
	})
	if err != nil || res.StatusCode != 200 || !bytes.Contains(pbxOffer, []byte("RTP/AVP")) {
		t.Fatalf("offerless re-INVITE: %v %v\n%s", res, err, pbxOffer)
	}
	var ack *sip.Request
	select {
	case ack = <-call.Acks:
	case <-time.After(5 * time.Second):
		t.Fatal("the browser got no ACK")
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ack.Body())}); err != nil {
		t.Fatalf("answer in the ACK: %v\n%s", err, ack.Body())
	}
	m.strait = plainAddr(t, pbxOffer)
	m.warm(t)
	m.both(t, "after")
	call.Hangup(ctx(t))
	tr.waitSessions(0)
}

// A PBX over TCP: the registration is relayed, the browser calls it, and
// the PBX hangs up (its in-dialog request reaches Strait's TCP port).
func TestTrunkOverTCP(t *testing.T) {
	pbx, err := siptest.NewTCP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	e := start(t, func(c *config.Config) { c.Upstream = []string{"sip:" + pbx.Addr + ";transport=tcp"} })
	pbx.SetPeer(e.srv.SIPAddr())
	b, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr := &trunk{env: e, pbx: pbx, reg: reg, browser: b}
	binding := tr.register(t)
	if binding.Contact.UriParams == nil || !binding.Contact.UriParams.Has("transport") {
		t.Fatalf("contact registered over TCP lacks transport=tcp: %s", binding.Contact.String())
	}
	call, inc, m := tr.establish(t)
	if inc.Invite.Transport() != "TCP" {
		t.Fatalf("INVITE came over %s", inc.Invite.Transport())
	}
	_ = m
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
}

// An upstream that routes Strait's INVITE back to Strait is a loop: the
// request comes back with a Call-ID Strait made and gets 482.
func TestLoopDetected(t *testing.T) {
	self := freeSIPAddr(t)
	e := start(t, func(c *config.Config) {
		c.SIP = self
		c.Upstream = []string{"sip:" + self}
		c.PBXAuthenticatesCalls = true // nothing to register with: the upstream is Strait
	})
	b, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	call, err := b.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 482 {
		t.Fatalf("looped call: %v", res)
	}
	e.waitCalls(0)
	e.waitSessions(0)
}

// audioOnlyAnswer is a PBX's answer with one audio m-line, whatever the
// offer had.
func audioOnlyAnswer(plain *mediatest.Plain, version int, direction string) []byte {
	return siptest.PlainSDP(version, plain.Addr(), plain.RTCPAddr(), direction, false)
}

// Issue 9 item 6: a browser's audio and video call to an audio-only PBX
// connects with audio, whether the PBX was offered the video (a trunk
// with a video codec in --codecs, answering with the audio m-line only) or
// not (without video codecs Strait leaves the rejected m=video out); the
// browser's answer keeps both m-lines, video rejected, and so does a
// re-offer from the PBX that names audio only.
func TestTrunkFewerMLines(t *testing.T) {
	for _, tc := range []struct {
		name       string
		codecs     []string
		offerLines int
	}{{"no video codec", nil, 1}, {"video codec offered", []string{"PCMU", "PCMA", "telephone-event", "VP8"}, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := startTrunkWith(t, func(c *config.Config) {
				if tc.codecs != nil {
					c.Codecs = tc.codecs
				}
			})
			tr.register(t)
			mb := newBrowserMediaAV(t)
			call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
			if err != nil {
				t.Fatal(err)
			}
			inc, err := tr.pbx.WaitCall(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(inc.Invite.Body()), "\nm="); n != tc.offerLines {
				t.Fatalf("offer to the PBX has %d m-lines, want %d:\n%s", n, tc.offerLines, inc.Invite.Body())
			}
			plain := newPlain(t)
			go inc.Answer(audioOnlyAnswer(plain, 1, "sendrecv"))
			res, err := call.WaitAnswer(ctx(t), "")
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("an audio-only answer to a video call: %v %v", res, err)
			}
			call.Ack(ctx(t))
			body := string(res.Body())
			if strings.Count(body, "\nm=") != 2 || !strings.Contains(body, "m=video 0 ") {
				t.Fatalf("answer to the browser does not keep and reject its video m-line:\n%s", body)
			}
			if err := mb.Accept(body); err != nil {
				t.Fatal(err)
			}
			if err := mb.WaitConnected(ctx(t)); err != nil {
				t.Fatal(err)
			}
			tr.waitConnected()
			var bseq, pseq uint16 = 100, 200
			straitRTP := plainAddr(t, inc.Invite.Body())
			browserToPlain(t, mb, &bseq, plain, "b2p", 10)
			plainToBrowser(t, plain, straitRTP, &pseq, mb, "p2b", 10)

			// The PBX holds, offering the audio it was offered only.
			call.OnReinvite(func(offer []byte) (int, []byte) { return 200, reanswer(t, mb.PC, offer) })
			r, err := inc.Reinvite(ctx(t), audioOnlyAnswer(plain, 2, "sendonly"))
			if err != nil || r.StatusCode != 200 {
				t.Fatalf("hold with audio only: %v %v", r, err)
			}
			if n := strings.Count(string(r.Body()), "\nm="); n != 1 {
				t.Errorf("answer to the PBX's one m-line has %d", n)
			}
			reoffer := <-call.Reinvites
			if b := string(reoffer.Body()); strings.Count(b, "\nm=") != 2 || !strings.Contains(b, "m=video 0 ") {
				t.Fatalf("re-offer to the browser drops its video m-line:\n%s", b)
			}
			if err := call.Hangup(ctx(t)); err != nil {
				t.Fatal(err)
			}
			inc.WaitEnded(5 * time.Second)
			tr.waitSessions(0)
		})
	}
}

// freeSIPAddr is a loopback address whose port is free for both UDP and
// TCP, as Strait's SIP listener binds both: a port only checked for UDP
// was once held by another test's TCP connection ("bind: address already
// in use"). Another process may still take it before Strait binds it.
func freeSIPAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			return addr
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP in 20 tries")
	return ""
}
