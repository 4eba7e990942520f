package node

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestNode starts a node on loopback with port ranges of its own (tests
// of several packages run at once, so fixed ports would collide).
func newTestNode(t *testing.T, mutate func(*Config)) *Node {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		base := uint16(20000 + 2*rand.IntN(20000))
		cfg := Config{
			ID:          "test",
			MediaAddrs:  []netip.Addr{loopback},
			WebRTCPorts: portalloc.Range{First: base, Last: base + 1},
			RTPPorts:    portalloc.Range{First: base + 2, Last: base + 41},
			Workers:     2,
		}
		if mutate != nil {
			mutate(&cfg)
		}
		n, err := New(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	t.Fatalf("no node: %v", lastErr)
	return nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// call is a browser on leg 0 and a plain endpoint on leg 1 of one session.
type call struct {
	t       *testing.T
	n       *Node
	browser *mediatest.Browser
	plain   *mediatest.Plain
	sess    *pb.Session
	bseq    uint16 // the browser's next sequence number: a browser's stream never goes back
}

// webrtcLeg is the leg spec for the browser's offer, Strait in role.
func webrtcLeg(b *mediatest.Browser, role pb.DTLSRole) *pb.LegSpec {
	return &pb.LegSpec{
		Kind: pb.LegKind_LEG_KIND_WEBRTC,
		Webrtc: &pb.WebRTCSpec{
			RemoteUfrag:       b.Ufrag,
			RemotePwd:         b.Pwd,
			RemoteFingerprint: &pb.Fingerprint{Algorithm: "sha-256", Value: b.Fingerprint},
			DtlsRole:          role,
		},
		Streams: []*pb.StreamSpec{{Media: "audio", Codecs: mediatest.ProtoCodecs(mediatest.BrowserAudio)}},
	}
}

func plainLeg(p *mediatest.Plain, mode pb.PortMode, mux bool) *pb.LegSpec {
	ps := &pb.PlainSpec{RemoteAddr: p.Addr().String(), PortMode: mode, RtcpMux: mux}
	if !mux {
		ps.RemoteRtcpAddr = p.RTCPAddr().String()
	}
	return &pb.LegSpec{
		Kind:    pb.LegKind_LEG_KIND_PLAIN,
		Streams: []*pb.StreamSpec{{Media: "audio", Codecs: mediatest.ProtoCodecs(mediatest.PBXAudio), Plain: ps}},
	}
}

type callOptions struct {
	role  pb.DTLSRole
	mode  pb.PortMode
	mux   bool
	plain func(*pb.LegSpec) // edits the plain leg spec
}

func newCall(t *testing.T, n *Node, o callOptions) *call {
	t.Helper()
	if o.role == 0 {
		o.role = pb.DTLSRole_DTLS_ROLE_CLIENT
	}
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p, err := mediatest.NewPlain(loopback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	pl := plainLeg(p, o.mode, o.mux)
	if o.plain != nil {
		o.plain(pl)
	}
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{
		Labels: map[string]string{"call": t.Name()},
		Legs:   []*pb.LegSpec{webrtcLeg(b, o.role), pl},
	})
	if err != nil {
		t.Fatal(err)
	}
	setup := "active"
	if o.role == pb.DTLSRole_DTLS_ROLE_SERVER {
		setup = "passive"
	}
	if err := b.Accept(mediatest.AnswerSDP(sess.Legs[0], mediatest.BrowserAudio, setup, b.MID)); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waitLegState(t, n, sess.Id, 0, pb.LegState_LEG_STATE_CONNECTED)
	return &call{t: t, n: n, browser: b, plain: p, sess: sess, bseq: 1000}
}

// waitLegState waits until a leg reaches state (the browser may finish its
// side of the handshake a moment before the node installs its keys).
func waitLegState(t *testing.T, n *Node, id string, leg int, want pb.LegState) *pb.Session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := n.GetSession(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Legs[leg].State == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("leg %d is %v, want %v", leg, s.Legs[leg].State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *call) plainLocal() netip.AddrPort {
	return netip.MustParseAddrPort(c.sess.Legs[1].Streams[0].LocalAddr)
}

func (c *call) plainLocalRTCP() netip.AddrPort {
	return netip.MustParseAddrPort(c.sess.Legs[1].Streams[0].LocalRtcpAddr)
}

func payload(tag string, i int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, 160)
	copy(b, fmt.Sprintf("%s-%d", tag, i))
	return b
}

// browserToPlain sends count packets (PCMU, then one telephone-event at
// the browser's PT 126) and checks they reach the plain side byte for byte
// with the PBX's payload types.
func (c *call) browserToPlain(tag string, count int) {
	c.t.Helper()
	seq0 := c.bseq
	for i := 0; i < count; i++ {
		if err := c.browser.Send(0, seq0+uint16(i), uint32(160*i), false, payload(tag, i)); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.browser.Send(126, seq0+uint16(count), uint32(160*count), true, payload(tag+"-dtmf", 0)); err != nil {
		c.t.Fatal(err)
	}
	c.bseq += uint16(count + 1)
	got := 0
	for got < count+1 {
		pk, err := c.plain.Next(5*time.Second, func(p mediatest.Packet) bool { return p.RTP != nil && bytes.HasPrefix(p.RTP.Payload, []byte(tag)) })
		if err != nil {
			c.t.Fatalf("browser->plain: %d of %d packets arrived: %v", got, count+1, err)
		}
		dtmf := bytes.HasPrefix(pk.RTP.Payload, []byte(tag+"-dtmf"))
		switch {
		case dtmf && pk.RTP.PayloadType != 101:
			c.t.Fatalf("telephone-event arrived with PT %d, want 101", pk.RTP.PayloadType)
		case !dtmf && pk.RTP.PayloadType != 0:
			c.t.Fatalf("PCMU arrived with PT %d", pk.RTP.PayloadType)
		}
		i := int(pk.RTP.SequenceNumber - seq0)
		want := payload(tag, i)
		if dtmf {
			want = payload(tag+"-dtmf", 0)
		}
		if !bytes.Equal(pk.RTP.Payload, want) {
			c.t.Fatalf("payload of seq %d differs", pk.RTP.SequenceNumber)
		}
		if pk.From != c.plainLocal() {
			c.t.Fatalf("media came from %v, want the leg's port %v", pk.From, c.plainLocal())
		}
		got++
	}
}

// plainToBrowser sends count packets from the plain side (PCMU and one
// telephone-event at the PBX's PT 101) and checks the browser gets them
// with its own payload types.
func (c *call) plainToBrowser(tag string, seq0 uint16, count int) {
	c.t.Helper()
	c.plainToBrowserFrom(c.plain, tag, seq0, 0, count)
}

func (c *call) plainToBrowserFrom(p *mediatest.Plain, tag string, seq0 uint16, ts0 uint32, count int) {
	c.t.Helper()
	for i := 0; i < count; i++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq0 + uint16(i), Timestamp: ts0 + uint32(160*i), SSRC: 0x5eed}, Payload: payload(tag, i)}
		if i == count-1 {
			pkt.PayloadType = 101
		}
		if err := p.SendRTP(c.plainLocal(), pkt); err != nil {
			c.t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	got := 0
	deadline := time.After(5 * time.Second)
	for got < count {
		select {
		case pk := <-c.browser.Received:
			if !bytes.HasPrefix(pk.Payload, []byte(tag)) {
				continue
			}
			var idx int
			fmt.Sscanf(string(pk.Payload[len(tag)+1:len(tag)+4]), "%d", &idx)
			if !bytes.Equal(pk.Payload, payload(tag, idx)) {
				c.t.Fatalf("payload %d differs", idx)
			}
			wantPT := uint8(0)
			if idx == count-1 {
				wantPT = 126
			}
			if pk.PayloadType != wantPT {
				c.t.Fatalf("packet %d arrived with PT %d, want %d", idx, pk.PayloadType, wantPT)
			}
			got++
		case <-deadline:
			c.t.Fatalf("plain->browser: %d of %d packets arrived", got, count)
		}
	}
}

func TestWebRTCToPlainMediaBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    callOptions
	}{
		{"dtls-client/port-per-leg", callOptions{role: pb.DTLSRole_DTLS_ROLE_CLIENT, mode: pb.PortMode_PORT_MODE_PER_LEG}},
		{"dtls-server/port-per-leg", callOptions{role: pb.DTLSRole_DTLS_ROLE_SERVER, mode: pb.PortMode_PORT_MODE_PER_LEG}},
		{"dtls-client/port-per-leg/rtcp-mux", callOptions{role: pb.DTLSRole_DTLS_ROLE_CLIENT, mode: pb.PortMode_PORT_MODE_PER_LEG, mux: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, nil)
			c := newCall(t, n, tc.o)
			c.browserToPlain("b2p", 20)
			c.plainToBrowser("p2b", 100, 20)

			// RTCP both ways: a receiver report from the PBX reaches the
			// browser, and the browser's own reports reach the PBX.
			rr := &rtcp.ReceiverReport{SSRC: 0x5eed, Reports: []rtcp.ReceptionReport{{SSRC: c.browser.SSRC(), LastSequenceNumber: 1019}}}
			to := c.plainLocalRTCP()
			if err := c.plain.SendRTCP(to, tc.o.mux, rr); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(5 * time.Second)
		waitRR:
			for {
				select {
				case p := <-c.browser.RTCP:
					if r, ok := p.(*rtcp.ReceiverReport); ok && r.SSRC == 0x5eed {
						break waitRR
					}
				case <-deadline:
					t.Fatal("the PBX's receiver report never reached the browser")
				}
			}
			pk, err := c.plain.Next(10*time.Second, func(p mediatest.Packet) bool { return p.RTCP != nil })
			if err != nil {
				t.Fatalf("no RTCP from the browser reached the PBX: %v", err)
			}
			if !tc.o.mux && pk.From != c.plainLocalRTCP() {
				t.Fatalf("RTCP came from %v, want the RTCP port %v", pk.From, c.plainLocalRTCP())
			}
			s, err := n.GetSession(ctx(t), c.sess.Id)
			if err != nil {
				t.Fatal(err)
			}
			l0 := s.Legs[0]
			if l0.State != pb.LegState_LEG_STATE_CONNECTED || l0.SrtpProfile != "AEAD_AES_128_GCM" {
				t.Errorf("WebRTC leg state %v profile %q", l0.State, l0.SrtpProfile)
			}
			if l0.Counters.PacketsIn < 21 || s.Legs[1].Counters.PacketsIn < 20 || l0.Counters.RtcpIn == 0 {
				t.Errorf("counters: %v / %v", l0.Counters, s.Legs[1].Counters)
			}
		})
	}
}
