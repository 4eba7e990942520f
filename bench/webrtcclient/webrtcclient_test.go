package webrtcclient

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/strait-sbc/strait/bench/rtpgen"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestLegThroughNode connects client legs to an in-process Strait node, one
// per SRTP profile and DTLS role, and checks media flows both ways through
// the node byte for byte.
func TestLegThroughNode(t *testing.T) {
	// Ports of a loopback address of the test's own, away from others.
	base := uint16(31000 + rand.IntN(1000)*16)
	n, err := node.New(node.Config{
		MediaAddrs:  []netip.Addr{netip.MustParseAddr("127.0.0.5")},
		WebRTCPorts: portalloc.Range{First: base, Last: base + 1},
		RTPPorts:    portalloc.Range{First: base + 2, Last: base + 9},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	e, err := rtpgen.New(rtpgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	codecs := []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000, Channels: 1}}
	e.SetRate(100)
	for _, tc := range []struct {
		profile Profile
		role    pb.DTLSRole
	}{{GCM, pb.DTLSRole_DTLS_ROLE_CLIENT}, {CM80, pb.DTLSRole_DTLS_ROLE_SERVER}} {
		cep, _ := e.Listen(lo)
		pep, _ := e.Listen(lo)
		leg := NewLeg(cep, id)
		defer leg.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := n.CreateSession(ctx, &pb.CreateSessionRequest{Legs: []*pb.LegSpec{
			{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: leg.Ufrag, RemotePwd: leg.Pwd,
				RemoteFingerprint: &pb.Fingerprint{Algorithm: "sha-256", Value: id.Fingerprint}, DtlsRole: tc.role},
				Streams: []*pb.StreamSpec{{Media: "audio", Codecs: codecs}}},
			{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Media: "audio", Codecs: codecs,
				Plain: &pb.PlainSpec{RemoteAddr: pep.Addr().String(), RtcpMux: true}}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		relay0 := netip.MustParseAddrPort(s.Legs[0].Streams[0].LocalAddr)
		relay1 := netip.MustParseAddrPort(s.Legs[1].Streams[0].LocalAddr)
		keys, err := leg.Connect(ctx, Remote{Addr: relay0, Ufrag: s.Legs[0].LocalUfrag, Pwd: s.Legs[0].LocalPwd,
			Fingerprint: s.Legs[0].LocalFingerprint.Value, DTLSClient: tc.role == pb.DTLSRole_DTLS_ROLE_SERVER}, tc.profile)
		if err != nil {
			t.Fatalf("%s: %v", tc.profile.Name, err)
		}
		if keys.Profile != tc.profile || keys.Handshake <= 0 {
			t.Fatalf("keys %+v", keys)
		}
		if err := leg.SendConsent(); err != nil {
			t.Fatal(err)
		}
		up, _ := e.NewFlow(cep, relay0, pep, rtpgen.PCMU)
		down, _ := e.NewFlow(pep, relay1, cep, rtpgen.PCMU)
		e.SetDecrypt(cep, keys.Dec)
		e.Activate(up, keys.Enc)
		e.Activate(down, nil)
		for up.FirstArrival() == 0 || down.FirstArrival() == 0 {
			if ctx.Err() != nil {
				t.Fatalf("%s: media did not flow (up %v, down %v)", tc.profile.Name, up.FirstArrival(), down.FirstArrival())
			}
			time.Sleep(5 * time.Millisecond)
		}
		e.Remove(up, down)
		if m := e.Mismatches(); m != 0 {
			t.Fatalf("%d mismatches", m)
		}
	}
}
