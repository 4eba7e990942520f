package node

import (
	"bytes"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// fakeClock is time.Now shifted by an offset the test advances.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func watch(t *testing.T, n *Node, id string) <-chan *pb.Event {
	ch, err := n.WatchEvents(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func waitEvent(t *testing.T, ch <-chan *pb.Event, typ pb.EventType, leg int) *pb.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Type == typ && int(ev.Leg) == leg {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event for leg %d", typ, leg)
		}
	}
}

func TestSDESPlainLeg(t *testing.T) {
	n := newTestNode(t, nil)
	remoteKey := bytes.Repeat([]byte{7}, 30) // AES_CM_128 key (16) + salt (14)
	c := mediatest.NewCall(t, n, mediatest.CallOptions{Plain: func(l *pb.LegSpec) {
		l.Streams[0].Plain.Sdes = &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: remoteKey}
	}})
	local := c.Sess.Legs[1].Streams[0].SdesLocalKey
	if len(local) != 30 {
		t.Fatalf("node generated a %d-byte SDES key, want 30", len(local))
	}
	if err := c.Plain.UseSDES(srtp.ProtectionProfileAes128CmHmacSha1_80, remoteKey, local); err != nil {
		t.Fatal(err)
	}
	c.BrowserToPlain("sdes-b2p", 10)
	c.PlainToBrowser("sdes-p2b", 500, 10)
	// A packet the PBX did not encrypt is an authentication failure.
	raw, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 600, SSRC: 0x5eed}, Payload: make([]byte, 160)}).Marshal()
	c.Plain.RTP.WriteToUDPAddrPort(raw, c.PlainLocal())
	waitCounter(t, n, c.Sess.Id, 1, func(lc *pb.LegCounters) bool { return lc.DropSrtpAuth > 0 }, "drop_srtp_auth")
}

func waitCounter(t *testing.T, n *Node, id string, leg int, ok func(*pb.LegCounters) bool, what string) *pb.LegCounters {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second) // a bound for a busy machine, not a wait
	for {
		s, err := n.GetSession(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(s.Legs[leg].Counters) {
			return s.Legs[leg].Counters
		}
		if time.Now().After(deadline) {
			t.Fatalf("leg %d counters never showed %s: %v", leg, what, s.Legs[leg].Counters)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSharedPlainPort(t *testing.T) {
	for _, io := range ioModes(t) {
		t.Run(string(io), func(t *testing.T) { testSharedPlainPort(t, io) })
	}
}

func testSharedPlainPort(t *testing.T, io batchconn.Mode) {
	n := newTestNode(t, func(c *Config) {
		c.PlainSharedPorts.First = c.RTPPorts.Last + 1
		c.PlainSharedPorts.Last = c.RTPPorts.Last + 4
		c.IO = io
	})
	c := mediatest.NewCall(t, n, mediatest.CallOptions{Mode: pb.PortMode_PORT_MODE_SHARED})
	c.BrowserToPlain("shared-b2p", 10)
	c.PlainToBrowser("shared-p2b", 10, 10)
	// Someone else writing to the shared port is nobody's media.
	other, err := mediatest.NewPlain(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before, _ := n.NodeInfo(ctx(t))
	other.SendRTP(c.PlainLocal(), &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1}, Payload: []byte("intruder")})
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, _ := n.NodeInfo(ctx(t))
		if info.Totals.DropUnknownSource > before.Totals.DropUnknownSource {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a packet from an unknown address on the shared port was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHoldAndReinvite(t *testing.T) {
	n := newTestNode(t, nil)
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	c.PlainToBrowser("before-hold", 10, 5)

	// The PBX holds: it will only send (music on hold), so Strait's side
	// is recvonly toward it and sendonly toward the browser.
	specs := []*pb.LegSpec{mediatest.WebRTCLeg(c.Browser, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.PlainLeg(c.Plain, pb.PortMode_PORT_MODE_PER_LEG, false)}
	specs[0].Streams[0].Direction = pb.Direction_DIRECTION_SENDONLY
	specs[1].Streams[0].Direction = pb.Direction_DIRECTION_RECVONLY
	if _, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: c.Sess.Id, Legs: specs}); err != nil {
		t.Fatal(err)
	}
	c.PlainToBrowser("moh", 20, 5) // music on hold still reaches the browser
	before := waitCounter(t, n, c.Sess.Id, 0, func(*pb.LegCounters) bool { return true }, "")
	for i := 0; i < 5; i++ {
		c.Browser.Send(0, c.BSeq, 0, false, mediatest.Payload("held", i))
		c.BSeq++
	}
	waitCounter(t, n, c.Sess.Id, 0, func(lc *pb.LegCounters) bool { return lc.DropDirection >= before.DropDirection+5 }, "drop_direction during hold")

	// Re-INVITE: resume, and the PBX moves its media to a new address.
	moved, err := mediatest.NewPlain(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	specs = []*pb.LegSpec{mediatest.WebRTCLeg(c.Browser, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.PlainLeg(moved, pb.PortMode_PORT_MODE_PER_LEG, false)}
	if _, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: c.Sess.Id, Legs: specs}); err != nil {
		t.Fatal(err)
	}
	c.Plain = moved
	c.BrowserToPlain("resumed", 10)
	c.PlainToBrowserFrom(moved, "resumed-p2b", 30, 4800, 5)
}

// TestLongHoldSequenceJump: after 15 minutes of hold the PBX resumes with a
// new sequence and timestamp base; the browser (pion's SRTP with replay
// protection, as libsrtp) must still accept the media.
func TestLongHoldSequenceJump(t *testing.T) {
	clock := &fakeClock{}
	n := newTestNode(t, func(c *Config) { c.Now = clock.Now })
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	c.PlainToBrowserFrom(c.Plain, "pre", 40000, 1_000_000, 10)

	specs := []*pb.LegSpec{mediatest.WebRTCLeg(c.Browser, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.PlainLeg(c.Plain, pb.PortMode_PORT_MODE_PER_LEG, false)}
	specs[0].Streams[0].Direction = pb.Direction_DIRECTION_INACTIVE
	specs[1].Streams[0].Direction = pb.Direction_DIRECTION_INACTIVE
	if _, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: c.Sess.Id, Legs: specs}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(15 * time.Minute)
	// The browser's consent checks (every 2 s in pion) renew consent at
	// the new time.
	waitConsent(t, n, c)
	specs[0].Streams[0].Direction = pb.Direction_DIRECTION_SENDRECV
	specs[1].Streams[0].Direction = pb.Direction_DIRECTION_SENDRECV
	if _, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: c.Sess.Id, Legs: specs}); err != nil {
		t.Fatal(err)
	}
	// Sequence numbers 30000 behind, timestamps elsewhere entirely.
	c.PlainToBrowserFrom(c.Plain, "post", 10000, 77, 20)
	c.BrowserToPlain("post-b2p", 10)
}

// waitConsent waits until the browser's path has fresh consent at the
// node's (possibly advanced) clock.
func waitConsent(t *testing.T, n *Node, c *mediatest.Call) {
	t.Helper()
	before := waitCounter(t, n, c.Sess.Id, 0, func(*pb.LegCounters) bool { return true }, "")
	waitCounter(t, n, c.Sess.Id, 0, func(lc *pb.LegCounters) bool { return lc.StunIn > before.StunIn }, "a consent check from the browser")
}

func TestWrongFingerprintFailsLeg(t *testing.T) {
	n := newTestNode(t, nil)
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, _ := mediatest.NewPlain(loopback)
	defer p.Close()
	leg := mediatest.WebRTCLeg(b, pb.DTLSRole_DTLS_ROLE_CLIENT)
	leg.Webrtc.RemoteFingerprint.Value = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
	events := watch(t, n, "")
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{leg, mediatest.PlainLeg(p, pb.PortMode_PORT_MODE_PER_LEG, false)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Accept(mediatest.AnswerSDP(sess.Legs[0], mediatest.BrowserAudio, "active", b.MID)); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, events, pb.EventType_EVENT_TYPE_DTLS_FAILED, 0)
	t.Logf("DTLS_FAILED: %s", ev.Detail)
	mediatest.WaitLegState(t, n, sess.Id, 0, pb.LegState_LEG_STATE_FAILED)
	// No media flows either way.
	for i := 0; i < 5; i++ {
		p.SendRTP(netip.MustParseAddrPort(sess.Legs[1].Streams[0].LocalAddr), &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i)}, Payload: []byte("x")})
	}
	waitCounter(t, n, sess.Id, 0, func(lc *pb.LegCounters) bool { return lc.DropNotReady >= 5 }, "drop_not_ready")
	s, _ := n.GetSession(ctx(t), sess.Id)
	if s.Legs[0].Counters.PacketsOut != 0 {
		t.Fatalf("%d packets sent to a leg whose DTLS failed", s.Legs[0].Counters.PacketsOut)
	}
}

// stunCheck sends an ICE check to the node's WebRTC port as a browser
// would and reports whether an answer came.
func stunCheck(t *testing.T, to netip.AddrPort, username, password string) bool {
	t.Helper()
	return stunCheckFrom(t, "udp4", to, username, password)
}

func stunCheckFrom(t *testing.T, network string, to netip.AddrPort, username, password string) bool {
	t.Helper()
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(username), stun.NewShortTermIntegrity(password), stun.Fingerprint)
	conn.WriteToUDPAddrPort(msg.Raw, to)
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 1500)
	nr, _, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return false
	}
	resp := &stun.Message{Raw: buf[:nr]}
	if err := resp.Decode(); err != nil {
		t.Fatalf("undecodable answer: %v", err)
	}
	if err := stun.NewShortTermIntegrity(password).Check(resp); err != nil {
		t.Fatalf("answer fails integrity: %v", err)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(resp); err != nil || xor.Port != conn.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %v (%v), want our port", xor, err)
	}
	return true
}

func TestSTUNIntegrityAndUnlatchedSources(t *testing.T) {
	n := newTestNode(t, nil)
	p, _ := mediatest.NewPlain(loopback)
	defer p.Close()
	leg := &pb.LegSpec{
		Kind:    pb.LegKind_LEG_KIND_WEBRTC,
		Webrtc:  &pb.WebRTCSpec{RemoteUfrag: "peer", LocalUfrag: "strait", LocalPwd: "abcdefghijklmnopqrstuvwxyz"},
		Streams: []*pb.StreamSpec{{Codecs: mediatest.ProtoCodecs(mediatest.BrowserAudio)}},
	}
	pl := mediatest.PlainLeg(p, pb.PortMode_PORT_MODE_PER_LEG, false)
	pl.Streams[0].Plain.StrictSource = true
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{Legs: []*pb.LegSpec{leg, pl}})
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(sess.Legs[0].Streams[0].LocalAddr)
	// Before any valid check, the PBX's media has nowhere to go: nothing is
	// sent toward a WebRTC peer that has not proven itself (no open relay).
	p.SendRTP(netip.MustParseAddrPort(sess.Legs[1].Streams[0].LocalAddr), &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1}, Payload: []byte("x")})
	waitCounter(t, n, sess.Id, 0, func(lc *pb.LegCounters) bool { return lc.DropNoConsent == 1 }, "drop_no_consent")
	if stunCheck(t, port, "strait:peer", "wrong-password-xxxxxxxxxx") {
		t.Fatal("a check with the wrong password was answered")
	}
	if stunCheck(t, port, "nobody:peer", "abcdefghijklmnopqrstuvwxyz") {
		t.Fatal("a check for an unknown ufrag was answered")
	}
	if stunCheck(t, port, "strait:other", "abcdefghijklmnopqrstuvwxyz") {
		t.Fatal("a check with the wrong remote ufrag was answered")
	}
	if !stunCheck(t, port, "strait:peer", "abcdefghijklmnopqrstuvwxyz") {
		t.Fatal("a valid check was not answered")
	}
	s, _ := n.GetSession(ctx(t), sess.Id)
	if s.Legs[0].Counters.DropStunAuth != 2 || s.Legs[0].Counters.StunIn != 1 {
		t.Fatalf("stun counters: %v", s.Legs[0].Counters)
	}
	// RTP from an address no check came from is dropped and counted.
	before, _ := n.NodeInfo(ctx(t))
	intruder, _ := mediatest.NewPlain(loopback)
	defer intruder.Close()
	intruder.SendRTP(port, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1}, Payload: []byte("x")})
	// ...and on the strict plain port, from anywhere but the SDP address.
	intruder.SendRTP(netip.MustParseAddrPort(sess.Legs[1].Streams[0].LocalAddr), &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1}, Payload: []byte("x")})
	waitCounter(t, n, sess.Id, 1, func(lc *pb.LegCounters) bool { return lc.DropUnknownSource == 1 }, "drop_unknown_source on the plain leg")
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, _ := n.NodeInfo(ctx(t))
		if info.Totals.DropUnknownSource > before.Totals.DropUnknownSource {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RTP from an unvalidated address on the WebRTC port was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s, _ := n.GetSession(ctx(t), sess.Id); s.Legs[0].Counters.PacketsOut != 0 {
		t.Fatalf("%d packets sent toward the WebRTC leg", s.Legs[0].Counters.PacketsOut)
	}
}

func TestConsentExpiryStopsSending(t *testing.T) {
	clock := &fakeClock{}
	n := newTestNode(t, func(c *Config) { c.Now = clock.Now })
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	events := watch(t, n, c.Sess.Id)
	c.PlainToBrowser("fresh", 10, 3)
	c.Browser.Close() // no more consent checks
	clock.Advance(31 * time.Second)
	before := waitCounter(t, n, c.Sess.Id, 0, func(*pb.LegCounters) bool { return true }, "")
	for i := 0; i < 3; i++ {
		c.Plain.SendRTP(c.PlainLocal(), &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(20 + i), SSRC: 0x5eed}, Payload: []byte("late")})
	}
	after := waitCounter(t, n, c.Sess.Id, 0, func(lc *pb.LegCounters) bool { return lc.DropNoConsent >= before.DropNoConsent+3 }, "drop_no_consent")
	if after.PacketsOut != before.PacketsOut {
		t.Fatalf("sent %d packets after consent expired", after.PacketsOut-before.PacketsOut)
	}
	n.Engine().Sweep()
	waitEvent(t, events, pb.EventType_EVENT_TYPE_CONSENT_EXPIRED, 0)
}

func TestMediaTimeoutEventAndDeleteFreesPorts(t *testing.T) {
	clock := &fakeClock{}
	n := newTestNode(t, func(c *Config) { c.Now = clock.Now })
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	events := watch(t, n, c.Sess.Id)
	c.BrowserToPlain("talk", 3)
	clock.Advance(61 * time.Second)
	n.Engine().Sweep()
	waitEvent(t, events, pb.EventType_EVENT_TYPE_MEDIA_TIMEOUT, 0)

	if got := n.Engine().PortsInUse(); got != 1 {
		t.Fatalf("%d port pairs in use, want 1", got)
	}
	rtpAddr := c.PlainLocal()
	if _, err := n.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: c.Sess.Id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, events, pb.EventType_EVENT_TYPE_SESSION_ENDED, 0)
	if ev.Detail != "test" || ev.Labels["call"] != t.Name() {
		t.Fatalf("SESSION_ENDED %v", ev)
	}
	if got := n.Engine().PortsInUse(); got != 0 {
		t.Fatalf("%d port pairs in use after delete", got)
	}
	// The ports are really closed: they can be bound again.
	for _, a := range []netip.AddrPort{rtpAddr, netip.AddrPortFrom(rtpAddr.Addr(), rtpAddr.Port()+1)} {
		l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			t.Fatalf("port %v still held: %v", a, err)
		}
		l.Close()
	}
	if _, err := n.GetSession(ctx(t), c.Sess.Id); err == nil {
		t.Fatal("deleted session still listed")
	}
}

// TestICERestart: the browser restarts ICE (new credentials); the node
// takes the new remote credentials, issues new local ones, keeps the DTLS
// association, and media continues.
func TestICERestart(t *testing.T) {
	n := newTestNode(t, nil)
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	c.BrowserToPlain("before", 3)
	oldUfrag := c.Sess.Legs[0].LocalUfrag
	if err := c.Browser.RestartICE(); err != nil {
		t.Fatal(err)
	}
	specs := []*pb.LegSpec{mediatest.WebRTCLeg(c.Browser, pb.DTLSRole_DTLS_ROLE_CLIENT), mediatest.PlainLeg(c.Plain, pb.PortMode_PORT_MODE_PER_LEG, false)}
	s, err := n.UpdateSession(ctx(t), &pb.UpdateSessionRequest{Id: c.Sess.Id, Legs: specs, IceRestart: []bool{true, false}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Legs[0].LocalUfrag == oldUfrag || s.Legs[0].LocalPwd == c.Sess.Legs[0].LocalPwd {
		t.Fatal("ICE restart kept the old local credentials")
	}
	c.Sess = s
	if err := c.Browser.Accept(mediatest.AnswerSDP(s.Legs[0], mediatest.BrowserAudio, "active", c.Browser.MID)); err != nil {
		t.Fatal(err)
	}
	// Checks with the new credentials are answered...
	waitCounter(t, n, s.Id, 0, func(lc *pb.LegCounters) bool { return lc.StunIn > c.Sess.Legs[0].Counters.GetStunIn()+1 }, "checks with new credentials")
	c.BrowserToPlain("after", 3)
	c.PlainToBrowser("after-back", 200, 3)
	if got, _ := n.GetSession(ctx(t), s.Id); got.Legs[0].State != pb.LegState_LEG_STATE_CONNECTED {
		t.Fatalf("leg state %v after ICE restart", got.Legs[0].State)
	}
}

// TestUnknownPayloadTypeDropped: media in a payload type the leg did not
// negotiate is dropped and counted, not relayed.
func TestUnknownPayloadTypeDropped(t *testing.T) {
	n := newTestNode(t, nil)
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	for i := 0; i < 3; i++ {
		c.Browser.Send(8, c.BSeq, 0, false, []byte("pcma is not negotiated"))
		c.BSeq++
	}
	waitCounter(t, n, c.Sess.Id, 0, func(lc *pb.LegCounters) bool { return lc.DropUnknownPt == 3 }, "drop_unknown_pt")
	c.Plain.SendRTP(c.PlainLocal(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 18, SequenceNumber: 1, SSRC: 0x5eed}, Payload: []byte("g729")})
	waitCounter(t, n, c.Sess.Id, 1, func(lc *pb.LegCounters) bool { return lc.DropUnknownPt == 1 }, "drop_unknown_pt on the plain leg")
	if s, _ := n.GetSession(ctx(t), c.Sess.Id); s.Legs[1].Counters.PacketsOut != 0 || s.Legs[0].Counters.PacketsOut != 0 {
		t.Fatalf("unknown payload types were relayed: %v %v", s.Legs[0].Counters, s.Legs[1].Counters)
	}
}
