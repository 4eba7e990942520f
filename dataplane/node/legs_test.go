package node

import (
	"bytes"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// connect creates a session's WebRTC legs' browsers and answers them.
func connect(t *testing.T, n *Node, browsers []*mediatest.Browser, sess *pb.Session) {
	t.Helper()
	for i, b := range browsers {
		if err := b.Accept(mediatest.AnswerSDP(sess.Legs[i], mediatest.BrowserAudio, "active", b.MID)); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range browsers {
		if err := b.WaitConnected(ctx(t)); err != nil {
			t.Fatal(err)
		}
		mediatest.WaitLegState(t, n, sess.Id, i, pb.LegState_LEG_STATE_CONNECTED)
	}
}

func newBrowser(t *testing.T, opt mediatest.BrowserOptions) *mediatest.Browser {
	t.Helper()
	b, err := mediatest.NewBrowser(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// expect waits for count packets tagged tag on b and checks payload type
// and payloads.
func expect(t *testing.T, b *mediatest.Browser, tag string, count int, pt uint8, notSSRC uint32) {
	t.Helper()
	got := 0
	deadline := time.After(5 * time.Second)
	for got < count {
		select {
		case p := <-b.Received:
			if !bytes.HasPrefix(p.Payload, []byte(tag)) {
				continue
			}
			if p.PayloadType != pt || p.SSRC == notSSRC {
				t.Fatalf("%s: PT %d SSRC %#x", tag, p.PayloadType, p.SSRC)
			}
			got++
		case <-deadline:
			t.Fatalf("%s: %d of %d packets arrived", tag, got, count)
		}
	}
}

func TestEchoSession(t *testing.T) {
	n := newTestNode(t, nil)
	b := newBrowser(t, mediatest.BrowserOptions{})
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{mediatest.WebRTCLeg(b, pb.DTLSRole_DTLS_ROLE_CLIENT)}})
	if err != nil {
		t.Fatal(err)
	}
	connect(t, n, []*mediatest.Browser{b}, sess)
	for i := 0; i < 10; i++ {
		b.Send(0, uint16(100+i), uint32(160*i), false, mediatest.Payload("echo", i))
	}
	// The caller's own media comes back decrypted and re-encrypted, under
	// the node's SSRC (never the browser's own, which it would discard).
	expect(t, b, "echo", 10, 0, b.SSRC())
}

func TestWebRTCToWebRTC(t *testing.T) {
	n := newTestNode(t, nil)
	alice := newBrowser(t, mediatest.BrowserOptions{})
	bob := newBrowser(t, mediatest.BrowserOptions{})
	legs := []*pb.LegSpec{mediatest.WebRTCLeg(alice, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.WebRTCLeg(bob, pb.DTLSRole_DTLS_ROLE_SERVER)}
	for _, l := range legs {
		l.Streams[0].RewriteSsrc = true
	}
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: legs})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range []*mediatest.Browser{alice, bob} {
		setup := []string{"active", "passive"}[i]
		if err := b.Accept(mediatest.AnswerSDP(sess.Legs[i], mediatest.BrowserAudio, setup, b.MID)); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range []*mediatest.Browser{alice, bob} {
		if err := b.WaitConnected(ctx(t)); err != nil {
			t.Fatal(err)
		}
		mediatest.WaitLegState(t, n, sess.Id, i, pb.LegState_LEG_STATE_CONNECTED)
	}
	for i := 0; i < 10; i++ {
		alice.Send(0, uint16(i), uint32(160*i), false, mediatest.Payload("a2b", i))
		bob.Send(126, uint16(i), uint32(160*i), false, mediatest.Payload("b2a", i))
	}
	expect(t, bob, "a2b", 10, 0, alice.SSRC())
	expect(t, alice, "b2a", 10, 126, bob.SSRC())
}

// TestSSRCRewriteAndRTCPTranslation: the PBX sees the node's SSRC on the
// media and in the browser's RTCP, and the browser's reports about the
// PBX's stream reach the PBX naming the PBX's own SSRC.
func TestSSRCRewriteAndRTCPTranslation(t *testing.T) {
	n := newTestNode(t, nil)
	c := mediatest.NewCall(t, n, mediatest.CallOptions{Plain: func(l *pb.LegSpec) { l.Streams[0].RewriteSsrc = true }})
	// The WebRTC side rewrites too, as the control plane configures it.
	specs := []*pb.LegSpec{mediatest.WebRTCLeg(c.Browser, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.PlainLeg(c.Plain, pb.PortMode_PORT_MODE_PER_LEG, false)}
	specs[0].Streams[0].RewriteSsrc = true
	specs[1].Streams[0].RewriteSsrc = true
	s, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: c.Sess.Id, Legs: specs})
	if err != nil {
		t.Fatal(err)
	}
	toPBX, toBrowser := s.Legs[1].Streams[0].LocalSsrc, s.Legs[0].Streams[0].LocalSsrc
	c.BrowserToPlain("ssrc", 5)
	c.PlainToBrowser("ssrc-back", 50, 30)
	// Media to the PBX carries the node's SSRC.
	c.BrowserToPlain("ssrc2", 3)
	deadline := time.After(15 * time.Second)
	var sawSR, sawRR bool
	for !(sawSR && sawRR) {
		pk, err := c.Plain.Next(time.Until(time.Now().Add(time.Second)), nil)
		select {
		case <-deadline:
			t.Fatalf("RTCP seen at the PBX: SR %v RR %v", sawSR, sawRR)
		default:
		}
		if err != nil {
			continue
		}
		if pk.RTP != nil && pk.RTP.SSRC != toPBX {
			t.Fatalf("media to the PBX has SSRC %#x, want the node's %#x", pk.RTP.SSRC, toPBX)
		}
		for _, p := range pk.RTCP {
			switch r := p.(type) {
			case *rtcp.SenderReport:
				if r.SSRC != toPBX {
					t.Fatalf("SR sender SSRC %#x, want %#x (the browser's %#x must not leak)", r.SSRC, toPBX, c.Browser.SSRC())
				}
				sawSR = true
			case *rtcp.ReceiverReport:
				for _, rb := range r.Reports {
					if rb.SSRC == toBrowser {
						t.Fatalf("report block names the node's SSRC toward the browser")
					}
					if rb.SSRC == 0x5eed {
						sawRR = true
					}
				}
			}
		}
	}
}

// TestIPv6 relays between two plain legs over ::1 and answers an ICE check
// on an IPv6 WebRTC port. (pion/ice never gathers ::1, which it takes for a
// deprecated IPv4-compatible address, so the pion browser cannot stand in
// on IPv6 loopback.)
func TestIPv6(t *testing.T) {
	v6 := netip.MustParseAddr("::1")
	a, err := mediatest.NewPlain(v6)
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	defer a.Close()
	n := newTestNode(t, func(c *Config) { c.MediaAddrs = []netip.Addr{v6} })
	b, _ := mediatest.NewPlain(v6)
	defer b.Close()
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{
		mediatest.PlainLeg(a, pb.PortMode_PORT_MODE_PER_LEG, false), mediatest.PlainLeg(b, pb.PortMode_PORT_MODE_PER_LEG, false)}})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []*mediatest.Plain{a, b} {
		to := netip.MustParseAddrPort(sess.Legs[i].Streams[0].LocalAddr)
		if !to.Addr().Is6() {
			t.Fatalf("leg %d local address %v", i, to)
		}
		p.SendRTP(to, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, SSRC: 1}, Payload: []byte("v6")})
	}
	for _, p := range []*mediatest.Plain{b, a} {
		pk, err := p.Next(5*time.Second, func(p mediatest.Packet) bool { return p.RTP != nil })
		if err != nil || string(pk.RTP.Payload) != "v6" {
			t.Fatalf("IPv6 relay: %v %v", pk, err)
		}
	}
	web, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{{
		Kind:    pb.LegKind_LEG_KIND_WEBRTC,
		Webrtc:  &pb.WebRTCSpec{RemoteUfrag: "peer", LocalUfrag: "strait", LocalPwd: "abcdefghijklmnopqrstuvwxyz"},
		Streams: []*pb.StreamSpec{{Codecs: mediatest.ProtoCodecs(mediatest.BrowserAudio)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if !stunCheckFrom(t, "udp6", netip.MustParseAddrPort(web.Legs[0].Streams[0].LocalAddr), "strait:peer", "abcdefghijklmnopqrstuvwxyz") {
		t.Fatal("ICE check over IPv6 not answered")
	}
}

// TestDTLSLingerReleasesHandshakeState: once the linger after a handshake
// is over, the leg's handshake goroutine (and pion's behind it) is gone,
// the keys stay, and media keeps flowing both ways.
func TestDTLSLingerReleasesHandshakeState(t *testing.T) {
	// Long enough that the handshake goroutine is certainly still there when
	// NewCall returns, even on a busy machine; the end is waited for below.
	n := newTestNode(t, func(c *Config) { c.DTLSLinger = 2 * time.Second })
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	if got := countStacks("relay.(*Engine).runDTLS"); got != 1 {
		t.Fatalf("%d handshake goroutines during the linger, want 1", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countStacks("relay.(*Engine).runDTLS") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the handshake goroutine outlived the linger")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.BrowserToPlain("after-linger", 5)
	c.PlainToBrowser("after-linger-back", 10, 5)
}

func countStacks(fn string) int {
	buf := make([]byte, 4<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), fn)
}
