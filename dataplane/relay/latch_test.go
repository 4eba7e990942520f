package relay

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// sourceTest is a hot path whose plain leg (the "PBX") is re-negotiated by
// each test, with peers that are real sockets: a datagram the node sends
// to the plain leg lands in one of them, or in none.
type sourceTest struct {
	*hotPath
	t       *testing.T
	web     *pb.LegSpec
	peers   map[string]*net.UDPConn
	addrs   map[string]netip.AddrPort
	pseq    uint16 // the "PBX" side's one stream, whoever sends it
	bseq    uint16
	pbxSDES *srtp.Context // what the PBX encrypts with, when SDES is on
}

func newSourceTest(t *testing.T, names ...string) *sourceTest {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	st := &sourceTest{hotPath: h, t: t, peers: map[string]*net.UDPConn{}, addrs: map[string]netip.AddrPort{}, bseq: 100}
	st.web = proto.Clone(h.sess.specs[0]).(*pb.LegSpec)
	for _, n := range names {
		st.peers[n], st.addrs[n] = sink(t)
	}
	st.peers["pbx"], st.addrs["pbx"] = h.sinks[1], h.pbx
	return st
}

// negotiate updates the plain leg's stream to spec p (after a media move,
// say) and returns the node's SDES key when p has SDES.
func (s *sourceTest) negotiate(p *pb.PlainSpec) {
	s.t.Helper()
	plain := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}, {PayloadType: 101, Name: "telephone-event", ClockRate: 8000}}, Plain: p}}}
	if _, err := s.e.UpdateSession(&pb.UpdateSessionRequest{Id: s.sess.ID, Legs: []*pb.LegSpec{s.web, plain}}); err != nil {
		s.t.Fatal(err)
	}
	if sd := p.GetSdes(); sd != nil {
		kl, _ := srtp.ProtectionProfileAes128CmHmacSha1_80.KeyLen()
		ctx, err := srtp.CreateContext(sd.RemoteKey[:kl], sd.RemoteKey[kl:], srtp.ProtectionProfileAes128CmHmacSha1_80)
		if err != nil {
			s.t.Fatal(err)
		}
		s.pbxSDES = ctx
	} else {
		s.pbxSDES = nil
	}
}

// later advances the worker's clock (rule 6 waits learnDelay).
func (s *sourceTest) later(d time.Duration) { s.w.now += int64(d) }

// from sends n in-sequence RTP packets from peer to the plain leg's RTP
// port (encrypted when the stream has SDES and encrypt is set) and returns
// how many the node relayed to the browser.
func (s *sourceTest) from(peer string, n int, encrypt bool) int {
	s.t.Helper()
	before := s.hotPath.web.ctr.packetsOut.Load()
	for i := 0; i < n; i++ {
		s.pseq++
		pkt := rtpPacket(s.pseq+1000, 0, 0x5eed)
		if encrypt && s.pbxSDES != nil {
			var err error
			if pkt, err = s.pbxSDES.EncryptRTP(nil, pkt, nil); err != nil {
				s.t.Fatal(err)
			}
		}
		s.deliver(s.rtpSlot, pkt, s.addrs[peer])
	}
	s.flush()
	return int(s.hotPath.web.ctr.packetsOut.Load() - before)
}

// browserSends relays one browser packet toward the plain leg and returns
// the peer that received it ("" if none).
func (s *sourceTest) browserSends() string {
	s.t.Helper()
	s.bseq++
	s.deliver(s.webSlot, s.srtpPackets(s.bseq, 1)[0], s.browser)
	s.flush()
	got := ""
	buf := make([]byte, 2048)
	for name, c := range s.peers {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					s.t.Fatal(err)
				}
				break
			}
			if got != "" && got != name {
				s.t.Fatalf("one browser packet reached %s and %s", got, name)
			}
			got = name
		}
	}
	return got
}

func (s *sourceTest) expectSendsTo(want string) {
	s.t.Helper()
	if got := s.browserSends(); got != want {
		s.t.Fatalf("browser media went to %q, want %q", got, want)
	}
}

func (s *sourceTest) expectRelayed(peer string, n int, encrypt bool, want int) {
	s.t.Helper()
	if got := s.from(peer, n, encrypt); got != want {
		s.t.Fatalf("%d packets from %s: %d relayed, want %d", n, peer, got, want)
	}
}

// TestPlainSourceRules walks the source rules of latch.go with a PBX at its
// SDP address, strangers, and a NAT'd peer.
func TestPlainSourceRules(t *testing.T) {
	t.Run("the SDP address wins; a stranger is never learnt once it spoke", func(t *testing.T) {
		s := newSourceTest(t, "stranger")
		s.expectSendsTo("pbx") // before any packet: the SDP address
		s.expectRelayed("stranger", 3, false, 0)
		s.expectSendsTo("pbx")
		s.expectRelayed("pbx", 2, false, 2)
		s.later(10 * time.Second)
		s.expectRelayed("stranger", 20, false, 0) // a long in-sequence run: still nobody
		s.expectSendsTo("pbx")
		if d := s.plain.ctr.drop[pb.DropUnknownSource].Load(); d != 23 {
			t.Fatalf("drop_unknown_source %d, want 23", d)
		}
	})
	t.Run("a run of in-sequence packets is learnt only after the SDP address stayed silent", func(t *testing.T) {
		s := newSourceTest(t, "nat", "stranger")
		s.negotiate(&pb.PlainSpec{RemoteAddr: "10.0.0.1:4000"}) // behind NAT: a private address nobody sends from
		s.expectRelayed("nat", 10, false, 0)                    // within learnDelay: nothing learnt
		s.later(2 * learnDelay)
		s.expectRelayed("nat", 2, false, 0)
		s.expectRelayed("stranger", 1, false, 0) // breaks nat's run
		s.expectRelayed("nat", learnRun, false, 1)
		s.expectSendsTo("nat")
		s.expectRelayed("nat", 5, false, 5)
		s.expectRelayed("stranger", 10, false, 0) // never switching later
		s.expectSendsTo("nat")
	})
	t.Run("the signalling peer's IP is learnt at once, and the SDP address still wins", func(t *testing.T) {
		s := newSourceTest(t, "nat", "other")
		s.negotiate(&pb.PlainSpec{RemoteAddr: s.addrs["pbx"].String(), SignallingIp: "127.0.0.1"})
		// The PBX's media comes from its NAT's port, not its SDP's.
		s.expectRelayed("nat", 1, false, 1)
		s.expectSendsTo("nat")
		s.expectRelayed("other", 5, false, 0) // same IP, another port: learnt is learnt
		s.expectRelayed("pbx", 1, false, 1)   // the SDP address wins
		s.expectSendsTo("pbx")
		s.expectRelayed("nat", 3, false, 0)
	})
	t.Run("a public SDP address is where the peer is: a silent one is never replaced", func(t *testing.T) {
		s := newSourceTest(t, "stranger")
		s.negotiate(&pb.PlainSpec{RemoteAddr: "192.0.2.1:4000"}) // TEST-NET-1: public, silent
		s.later(time.Minute)
		s.expectRelayed("stranger", 50, false, 0)
		s.expectSendsTo("")
	})
	t.Run("nothing is learnt before the SDP gives an address", func(t *testing.T) {
		s := newSourceTest(t, "early")
		s.negotiate(&pb.PlainSpec{SignallingIp: "127.0.0.1"})
		s.later(time.Minute)
		s.expectRelayed("early", 10, false, 0)
		s.expectSendsTo("")
	})
	t.Run("strict: nothing but the SDP address", func(t *testing.T) {
		s := newSourceTest(t, "nat")
		s.negotiate(&pb.PlainSpec{RemoteAddr: s.addrs["pbx"].String(), SignallingIp: "127.0.0.1", StrictSource: true})
		s.later(time.Minute)
		s.expectRelayed("nat", 10, false, 0)
		s.expectSendsTo("pbx")
		s.expectRelayed("pbx", 1, false, 1)
	})
}

// TestMediaMoveIgnoresStalePackets is issue 9 item 7: after a re-INVITE
// moves the PBX's media to a new port, packets still arriving from the old
// one must not win the stream back, even from the signalling peer's IP;
// media goes to the new address at once.
func TestMediaMoveIgnoresStalePackets(t *testing.T) {
	s := newSourceTest(t, "moved")
	s.negotiate(&pb.PlainSpec{RemoteAddr: s.addrs["pbx"].String(), SignallingIp: "127.0.0.1"})
	s.expectRelayed("pbx", 3, false, 3)
	s.expectSendsTo("pbx")
	s.negotiate(&pb.PlainSpec{RemoteAddr: s.addrs["moved"].String(), SignallingIp: "127.0.0.1"})
	s.expectSendsTo("moved") // before the new address sent anything
	s.later(time.Minute)
	s.expectRelayed("pbx", 20, false, 0) // stale: a retired address
	s.expectSendsTo("moved")
	s.expectRelayed("moved", 2, false, 2)
	s.expectSendsTo("moved")
	// And back again: the first address is the SDP address once more.
	s.negotiate(&pb.PlainSpec{RemoteAddr: s.addrs["pbx"].String(), SignallingIp: "127.0.0.1"})
	s.expectRelayed("moved", 5, false, 0)
	s.expectSendsTo("pbx")
	s.expectRelayed("pbx", 1, false, 1)
}

// TestSDESLearnsOnlyFromAuthenticPackets is CVE-2025-53399 (rtpengine
// learnt a source from spoofed SRTP): on an SDES stream, a source is
// learnt only from a packet that authenticates, and every packet of a
// learning run must.
func TestSDESLearnsOnlyFromAuthenticPackets(t *testing.T) {
	s := newSourceTest(t, "nat", "attacker")
	key := bytes.Repeat([]byte{9}, 30)
	s.negotiate(&pb.PlainSpec{RemoteAddr: "10.0.0.1:4000", SignallingIp: "127.0.0.1",
		Sdes: &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: key}})
	// The attacker shares the PBX's NAT IP here (loopback): only
	// authentication tells them apart.
	s.expectRelayed("attacker", 10, false, 0)
	if d := s.plain.ctr.drop[pb.DropSrtpAuth].Load(); d != 10 {
		t.Fatalf("drop_srtp_auth %d after 10 forged packets", d)
	}
	s.expectSendsTo("") // the SDP address is nowhere: nothing learnt
	s.expectRelayed("nat", 1, true, 1)
	s.expectSendsTo("nat")
	s.expectRelayed("attacker", 10, false, 0)
	s.expectSendsTo("nat")

	// Rule 6 (no signalling IP): a run of forged packets never completes.
	s2 := newSourceTest(t, "nat", "attacker")
	s2.negotiate(&pb.PlainSpec{RemoteAddr: "10.0.0.1:4000", Sdes: &pb.SDESCrypto{Suite: "AES_CM_128_HMAC_SHA1_80", RemoteKey: key}})
	s2.later(time.Minute)
	s2.expectRelayed("attacker", 20, false, 0)
	s2.expectSendsTo("")
	s2.expectRelayed("nat", learnRun, true, 1)
	s2.expectSendsTo("nat")
}

// TestSharedPortsAreStrict: on a shared plain port, only the SDP address
// reaches the stream, whatever else sends, for however long.
func TestSharedPortsAreStrict(t *testing.T) {
	e := newStoppedEngine(t, 1)
	_, pbx := sink(t)
	stranger := netip.MustParseAddrPort("127.0.0.1:9")
	spec := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{plainStream(0, pbx.String())}}
	spec.Streams[0].Plain.PortMode = pb.PortMode_PORT_MODE_SHARED
	spec.Streams[0].Plain.SignallingIp = "127.0.0.1"
	s, err := e.CreateSession(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{spec}})
	if err != nil {
		t.Fatal(err)
	}
	w := e.workers[0]
	var slotOf *slot
	for i := range w.slots {
		if sl := &w.slots[i]; sl.kind == sockPlainShared && sl.group == s.legs[0].streams[0].shared.rtp {
			slotOf = sl
		}
	}
	w.now = time.Now().Add(time.Hour).UnixNano()
	m := batchconn.Message{Buf: make([]byte, BufferSize)}
	for i := 0; i < 10; i++ {
		m.N = copy(m.Buf, rtpPacket(uint16(i), 0, 1))
		m.Addr = stranger
		w.handle(slotOf, &m)
	}
	if got := s.legs[0].ctr.packetsIn.Load(); got != 0 {
		t.Fatalf("%d packets from a stranger reached the stream", got)
	}
	m.N = copy(m.Buf, rtpPacket(100, 0, 1))
	m.Addr = pbx
	w.handle(slotOf, &m)
	if got := s.legs[0].ctr.packetsIn.Load(); got != 1 {
		t.Fatalf("the SDP address's packet: %d in", got)
	}
}

func TestNatted(t *testing.T) {
	for a, want := range map[string]bool{
		"10.1.2.3": true, "172.16.0.9": true, "192.168.1.10": true, "100.64.0.1": true, "100.127.255.254": true,
		"169.254.1.1": true, "fd00::1": true, "fe80::1": true, "::ffff:192.168.0.1": true,
		"192.0.2.1": false, "203.0.113.9": false, "8.8.8.8": false, "127.0.0.1": false, "100.128.0.1": false, "2001:db8::1": false,
	} {
		if got := natted(netip.MustParseAddr(a)); got != want {
			t.Errorf("natted(%s) = %v, want %v", a, got, want)
		}
	}
}
