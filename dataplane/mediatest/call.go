package mediatest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// Call is a browser on leg 0 and a plain endpoint on leg 1 of one
// dataplane session, with helpers that send media each way and check it
// arrives byte for byte with the programmed payload types.
type Call struct {
	T       testing.TB
	N       pb.Node
	Browser *Browser
	Plain   *Plain
	Sess    *pb.Session
	// BSeq is the browser's next sequence number: a browser's stream never
	// goes back.
	BSeq uint16
}

// WebRTCLeg is the leg spec for the browser's offer, Strait in role.
func WebRTCLeg(b *Browser, role pb.DTLSRole) *pb.LegSpec {
	return &pb.LegSpec{
		Kind: pb.LegKind_LEG_KIND_WEBRTC,
		Webrtc: &pb.WebRTCSpec{
			RemoteUfrag:       b.Ufrag,
			RemotePwd:         b.Pwd,
			RemoteFingerprint: &pb.Fingerprint{Algorithm: "sha-256", Value: b.Fingerprint},
			DtlsRole:          role,
		},
		Streams: []*pb.StreamSpec{{Media: "audio", Codecs: ProtoCodecs(BrowserAudio)}},
	}
}

// PlainLeg is the leg spec for a plain endpoint.
func PlainLeg(p *Plain, mode pb.PortMode, mux bool) *pb.LegSpec {
	ps := &pb.PlainSpec{RemoteAddr: p.Addr().String(), PortMode: mode, RtcpMux: mux}
	if !mux {
		ps.RemoteRtcpAddr = p.RTCPAddr().String()
	}
	return &pb.LegSpec{
		Kind:    pb.LegKind_LEG_KIND_PLAIN,
		Streams: []*pb.StreamSpec{{Media: "audio", Codecs: ProtoCodecs(PBXAudio), Plain: ps}},
	}
}

// CallOptions shape a Call.
type CallOptions struct {
	Role  pb.DTLSRole       // Strait's DTLS role (default client)
	Mode  pb.PortMode       // the plain leg's port mode
	Mux   bool              // rtcp-mux on the plain leg
	Plain func(*pb.LegSpec) // edits the plain leg spec
}

// NewCall creates the session, connects the browser and waits until the
// node has its keys.
func NewCall(t testing.TB, n pb.Node, o CallOptions) *Call {
	t.Helper()
	if o.Role == 0 {
		o.Role = pb.DTLSRole_DTLS_ROLE_CLIENT
	}
	b, err := NewBrowser(BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	p, err := NewPlain(loopback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	pl := PlainLeg(p, o.Mode, o.Mux)
	if o.Plain != nil {
		o.Plain(pl)
	}
	sess, err := n.CreateSession(ctx(t), &pb.CreateSessionRequest{
		Labels: map[string]string{"call": t.Name()},
		Legs:   []*pb.LegSpec{WebRTCLeg(b, o.Role), pl},
	})
	if err != nil {
		t.Fatal(err)
	}
	setup := "active"
	if o.Role == pb.DTLSRole_DTLS_ROLE_SERVER {
		setup = "passive"
	}
	if err := b.Accept(AnswerSDP(sess.Legs[0], BrowserAudio, setup, b.MID)); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	WaitLegState(t, n, sess.Id, 0, pb.LegState_LEG_STATE_CONNECTED)
	return &Call{T: t, N: n, Browser: b, Plain: p, Sess: sess, BSeq: 1000}
}

// WaitLegState waits until a leg reaches state (the browser may finish its
// side of the handshake a moment before the node installs its keys).
func WaitLegState(t testing.TB, n pb.Node, id string, leg int, want pb.LegState) *pb.Session {
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

// PlainLocal is the plain leg's RTP address on the node.
func (c *Call) PlainLocal() netip.AddrPort {
	return netip.MustParseAddrPort(c.Sess.Legs[1].Streams[0].LocalAddr)
}

// PlainLocalRTCP is the plain leg's RTCP address on the node.
func (c *Call) PlainLocalRTCP() netip.AddrPort {
	return netip.MustParseAddrPort(c.Sess.Legs[1].Streams[0].LocalRtcpAddr)
}

// Payload is test payload number i of a run tagged tag (160 bytes, as G.711).
func Payload(tag string, i int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, 160)
	copy(b, fmt.Sprintf("%s-%d", tag, i))
	return b
}

// BrowserToPlain sends count packets (PCMU, then one telephone-event at
// the browser's PT 126) and checks they reach the plain side byte for byte
// with the PBX's payload types.
func (c *Call) BrowserToPlain(tag string, count int) {
	c.T.Helper()
	seq0 := c.BSeq
	for i := 0; i < count; i++ {
		if err := c.Browser.Send(0, seq0+uint16(i), uint32(160*i), false, Payload(tag, i)); err != nil {
			c.T.Fatal(err)
		}
	}
	if err := c.Browser.Send(126, seq0+uint16(count), uint32(160*count), true, Payload(tag+"-dtmf", 0)); err != nil {
		c.T.Fatal(err)
	}
	c.BSeq += uint16(count + 1)
	got := 0
	for got < count+1 {
		pk, err := c.Plain.Next(5*time.Second, func(p Packet) bool { return p.RTP != nil && bytes.HasPrefix(p.RTP.Payload, []byte(tag)) })
		if err != nil {
			c.T.Fatalf("browser->plain: %d of %d packets arrived: %v\n%s", got, count+1, err, c.counters())
		}
		dtmf := bytes.HasPrefix(pk.RTP.Payload, []byte(tag+"-dtmf"))
		switch {
		case dtmf && pk.RTP.PayloadType != 101:
			c.T.Fatalf("telephone-event arrived with PT %d, want 101", pk.RTP.PayloadType)
		case !dtmf && pk.RTP.PayloadType != 0:
			c.T.Fatalf("PCMU arrived with PT %d", pk.RTP.PayloadType)
		}
		i := int(pk.RTP.SequenceNumber - seq0)
		want := Payload(tag, i)
		if dtmf {
			want = Payload(tag+"-dtmf", 0)
		}
		if !bytes.Equal(pk.RTP.Payload, want) {
			c.T.Fatalf("payload of seq %d differs", pk.RTP.SequenceNumber)
		}
		if pk.From != c.PlainLocal() {
			c.T.Fatalf("media came from %v, want the leg's port %v", pk.From, c.PlainLocal())
		}
		got++
	}
}

// counters describes the session's legs' counters, for failure messages.
func (c *Call) counters() string {
	s, err := c.N.GetSession(context.Background(), c.Sess.GetId())
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for i, l := range s.GetLegs() {
		fmt.Fprintf(&b, "leg %d: %v\n", i, l.GetCounters())
	}
	return b.String()
}

// PlainToBrowser sends count packets from the plain side (PCMU and one
// telephone-event at the PBX's PT 101) and checks the browser gets them
// with its own payload types.
func (c *Call) PlainToBrowser(tag string, seq0 uint16, count int) {
	c.T.Helper()
	c.PlainToBrowserFrom(c.Plain, tag, seq0, 0, count)
}

// PlainToBrowserFrom is PlainToBrowser from another plain endpoint, with
// its own sequence and timestamp bases.
func (c *Call) PlainToBrowserFrom(p *Plain, tag string, seq0 uint16, ts0 uint32, count int) {
	c.T.Helper()
	for i := 0; i < count; i++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq0 + uint16(i), Timestamp: ts0 + uint32(160*i), SSRC: 0x5eed}, Payload: Payload(tag, i)}
		if i == count-1 {
			pkt.PayloadType = 101
		}
		if err := p.SendRTP(c.PlainLocal(), pkt); err != nil {
			c.T.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	got := 0
	deadline := time.After(5 * time.Second)
	for got < count {
		select {
		case pk := <-c.Browser.Received:
			if !bytes.HasPrefix(pk.Payload, []byte(tag)) {
				continue
			}
			var idx int
			fmt.Sscanf(string(pk.Payload[len(tag)+1:len(tag)+4]), "%d", &idx)
			if !bytes.Equal(pk.Payload, Payload(tag, idx)) {
				c.T.Fatalf("payload %d differs", idx)
			}
			wantPT := uint8(0)
			if idx == count-1 {
				wantPT = 126
			}
			if pk.PayloadType != wantPT {
				c.T.Fatalf("packet %d arrived with PT %d, want %d", idx, pk.PayloadType, wantPT)
			}
			got++
		case <-deadline:
			c.T.Fatalf("plain->browser: %d of %d packets arrived\n%s", got, count, c.counters())
		}
	}
}
