package relay

import (
	"crypto/tls"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/icelite"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/internal/racecheck"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
	forksrtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// hotPath is one WebRTC<->plain session wired into a worker by hand, with
// keys installed and the browser's path validated, so that the per-packet
// functions can be driven without the network in front of them. Output
// still goes out through the worker's Sender to real loopback sockets.
type hotPath struct {
	e                *Engine
	w                *worker
	sess             *Session
	web, plain       *Leg
	webSlot, rtpSlot *slot
	// plainSlot is leg 0's RTP socket of a second, plain<->plain session:
	// the baseline hop without SRTP.
	plainSlot  *slot
	plainPeers *Session
	browser    netip.AddrPort // the browser's address (a sink socket)
	pbx        netip.AddrPort // the PBX's address (a sink socket)
	browserEnc *srtp.Context  // what the browser encrypts with
	msg        batchconn.Message
	queued     int
	sinks      []*net.UDPConn
}

var testCert = func() tls.Certificate {
	c, err := selfsign.GenerateSelfSigned()
	if err != nil {
		panic(err)
	}
	return c
}()

func sink(tb testing.TB) (*net.UDPConn, netip.AddrPort) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// testPortBase is an even port to start a test's ranges at: between 10000
// and 32000, below the kernel's ephemeral range (32768 and up), so that the
// sockets other tests and processes open on loopback without a port never
// sit in a test's media range (they did, and a range of four pairs then
// had none free).
func testPortBase() uint16 { return uint16(10000 + 2*rand.IntN(11000)) }

// newTestEngine starts an engine on loopback with port ranges of its own.
func newTestEngine(tb testing.TB, workers int) *Engine {
	return newTestEngineIO(tb, workers, batchconn.ModeAuto)
}

func newTestEngineIO(tb testing.TB, workers int, io batchconn.Mode) *Engine {
	tb.Helper()
	var e *Engine
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		base := testPortBase()
		e, err = New(Config{
			Addrs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			WebRTCPorts: portalloc.Range{First: base, Last: base},
			RTPPorts:    portalloc.Range{First: base + 2, Last: base + 9},
			Workers:     workers,
			IO:          io,
			Certificate: testCert,
			Fingerprint: "00",
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

func newHotPath(tb testing.TB, profile srtp.ProtectionProfile) *hotPath {
	return newHotPathIO(tb, profile, batchconn.ModeAuto)
}

func newHotPathIO(tb testing.TB, profile srtp.ProtectionProfile, io batchconn.Mode) *hotPath {
	tb.Helper()
	e := newTestEngineIO(tb, 1, io)
	var err error
	bs, browser := sink(tb)
	ps, pbx := sink(tb)
	pcmu := []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}, {PayloadType: 126, Name: "telephone-event", ClockRate: 8000}}
	pbxCodecs := []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}, {PayloadType: 101, Name: "telephone-event", ClockRate: 8000}}
	sess, err := e.CreateSession(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{
		{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{RemoteUfrag: "brws", LocalUfrag: "node", LocalPwd: "abcdefghijklmnopqrstuvwxyz"},
			Streams: []*pb.StreamSpec{{Codecs: pcmu, RewriteSsrc: true}}},
		{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: pbxCodecs, Plain: &pb.PlainSpec{RemoteAddr: pbx.String()}}}},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	h := &hotPath{e: e, w: e.workers[0], sess: sess, web: sess.legs[0], plain: sess.legs[1], browser: browser, pbx: pbx, sinks: []*net.UDPConn{bs, ps}}
	pcmuOnly := []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}
	h.plainPeers, err = e.CreateSession(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{
		{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: pcmuOnly, Plain: &pb.PlainSpec{RemoteAddr: pbx.String()}}}},
		{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: pcmuOnly, Plain: &pb.PlainSpec{RemoteAddr: browser.String()}}}},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	// Stop the worker goroutine: from here on the test is the worker and
	// drives its per-packet functions itself.
	h.takeOver(tb)

	// Keys as a DTLS handshake would have left them.
	kl, _ := profile.KeyLen()
	sl, _ := profile.SaltLen()
	k1, s1 := make([]byte, kl), make([]byte, sl)
	k2, s2 := make([]byte, kl), make([]byte, sl)
	for i := range k1 {
		k1[i], k2[i] = byte(i), byte(100+i)
	}
	dec, _ := forksrtp.CreateContext(k1, s1, profile, replayOptions()...)
	enc, _ := forksrtp.CreateContext(k2, s2, profile)
	h.browserEnc, _ = srtp.CreateContext(k1, s1, profile)
	h.web.dec, h.web.enc = dec, enc
	h.web.state.Store(int32(pb.LegState_LEG_STATE_CONNECTED))
	p := &icePath{addr: browser}
	p.consent.Store(time.Now().Add(time.Hour).UnixNano()) // consent stays fresh however long the benchmark runs
	h.web.path.Store(p)
	h.w.latch(latchKey{h.web.group.id, browser}, h.web)
	h.w.now = time.Now().UnixNano()
	for i := range h.w.slots {
		s := &h.w.slots[i]
		switch {
		case s.kind == sockWebRTC && s.group == h.web.group:
			h.webSlot = s
		case s.kind == sockPlain && s.stream == h.plain.streams[0] && !s.rtcp:
			h.rtpSlot = s
		case s.kind == sockPlain && s.stream == h.plainPeers.legs[0].streams[0] && !s.rtcp:
			h.plainSlot = s
		}
	}
	if h.webSlot == nil || h.rtpSlot == nil || h.plainSlot == nil {
		tb.Fatal("session sockets not registered with the worker")
	}
	h.msg.Buf = make([]byte, BufferSize)
	return h
}

// takeOver stops the worker goroutine and gives the worker a Loop of the
// same kind owned by the test's goroutine, with the worker's sockets
// registered in it: the test then is the worker.
func (h *hotPath) takeOver(tb testing.TB) {
	tb.Helper()
	h.w.io.Stop()
	<-h.w.exited
	h.w.io.Close()
	h.newLoop(tb, h.e.cfg.BatchSize)
}

// replaceLoop gives the worker a new Loop of batch datagrams.
func (h *hotPath) replaceLoop(tb testing.TB, batch int) {
	tb.Helper()
	h.w.io.Close()
	h.newLoop(tb, batch)
}

func (h *hotPath) newLoop(tb testing.TB, batch int) {
	tb.Helper()
	io, err := batchconn.NewLoop(batchconn.LoopConfig[*Leg]{Mode: h.w.io.Mode(), BatchSize: batch,
		BufSize: BufferSize, Tailroom: Tailroom, Dropped: h.w.sendFailed})
	if err != nil {
		tb.Fatal(err)
	}
	runtime.LockOSThread() // an io_uring Loop is single-issuer
	tb.Cleanup(func() { io.Close(); runtime.UnlockOSThread() })
	if err := io.Bind(); err != nil {
		tb.Fatal(err)
	}
	h.w.io = io
	for i := range h.w.slots {
		if s := &h.w.slots[i]; s.sock != nil {
			if err := io.Add(s.sock, batchconn.Token(i)|batchconn.Token(s.gen)<<32); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// deliver runs one received datagram through the worker as if the Loop had
// just returned it, and flushes the send queue when it is full.
func (h *hotPath) deliver(s *slot, pkt []byte, from netip.AddrPort) {
	h.msg.N = copy(h.msg.Buf, pkt)
	h.msg.Addr = from
	h.w.handle(s, &h.msg)
	if h.queued++; h.queued == h.e.cfg.BatchSize {
		h.flush()
	}
}

func (h *hotPath) flush() {
	h.w.io.Flush()
	h.queued = 0
}

// serve reads what is ready on the worker's sockets, as one round of the
// worker does.
func (h *hotPath) serve(tb testing.TB) {
	tb.Helper()
	h.w.io.Wake() // Next returns even when nothing is ready
	msgs, err := h.w.io.Next()
	if err != nil {
		tb.Fatal(err)
	}
	h.w.round(msgs, time.Now())
}

func rtpPacket(seq uint16, pt uint8, ssrc uint32) []byte {
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: make([]byte, 160)}).Marshal()
	return b
}

// srtpPackets encrypts count browser packets starting at seq.
func (h *hotPath) srtpPackets(seq uint16, count int) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		p, err := h.browserEnc.EncryptRTP(nil, rtpPacket(seq+uint16(i), 0, 0xb0b), nil)
		if err != nil {
			panic(err)
		}
		out[i] = p
	}
	return out
}

func TestHotPathRelaysBothWays(t *testing.T) {
	for _, io := range ioModes(t) {
		t.Run(string(io), func(t *testing.T) { testHotPathRelaysBothWays(t, io) })
	}
}

func testHotPathRelaysBothWays(t *testing.T, io batchconn.Mode) {
	h := newHotPathIO(t, srtp.ProtectionProfileAeadAes128Gcm, io)
	for _, p := range h.srtpPackets(1, 10) {
		h.deliver(h.webSlot, p, h.browser)
	}
	for i := 0; i < 10; i++ {
		h.deliver(h.rtpSlot, rtpPacket(uint16(500+i), 101, 0x5eed), h.pbx)
	}
	h.flush()
	c := h.web.ctr.proto()
	if c.PacketsIn != 10 || c.PacketsOut != 10 || h.plain.ctr.packetsOut.Load() != 10 {
		t.Fatalf("web %v plain out %d", c, h.plain.ctr.packetsOut.Load())
	}
	// What reached the browser decrypts with the node's keys and carries
	// the mapped payload type and the leg's own SSRC.
	kl, _ := srtp.ProtectionProfileAeadAes128Gcm.KeyLen()
	sl, _ := srtp.ProtectionProfileAeadAes128Gcm.SaltLen()
	k2 := make([]byte, kl)
	for i := range k2 {
		k2[i] = byte(100 + i)
	}
	bdec, _ := srtp.CreateContext(k2, make([]byte, sl), srtp.ProtectionProfileAeadAes128Gcm)
	buf := make([]byte, 2048)
	h.sinks[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := h.sinks[0].ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	var hdr rtp.Header
	if _, err := bdec.DecryptRTP(nil, buf[:n], &hdr); err != nil {
		t.Fatalf("browser cannot decrypt: %v", err)
	}
	if hdr.PayloadType != 126 || hdr.SSRC != h.web.streams[0].localSSRC {
		t.Fatalf("header %+v", hdr)
	}
}

// The per-packet path allocates nothing: SRTP->RTP, RTP->SRTP (lookup,
// decrypt, payload-type map, sequence/SSRC rewrite, encrypt, queueing and
// the batched send included) and STUN answering.
func TestHotPathAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("allocation counts are pinned without -race")
	}
	for _, c := range []struct {
		profile srtp.ProtectionProfile
		io      batchconn.Mode
	}{
		{srtp.ProtectionProfileAeadAes128Gcm, batchconn.ModeMmsg}, {srtp.ProtectionProfileAes128CmHmacSha1_80, batchconn.ModeMmsg},
		{srtp.ProtectionProfileAeadAes128Gcm, batchconn.ModeUring}, {srtp.ProtectionProfileAes128CmHmacSha1_80, batchconn.ModeUring},
	} {
		if c.io == batchconn.ModeUring && len(ioModes(t)) == 1 {
			continue
		}
		profile := c.profile
		h := newHotPathIO(t, profile, c.io)
		pkts := h.srtpPackets(1, 300)
		i := 0
		if a := testing.AllocsPerRun(200, func() { h.deliver(h.webSlot, pkts[i], h.browser); i++ }); a != 0 {
			t.Errorf("%v SRTP->RTP: %v allocs per packet", profile, a)
		}
		seq := uint16(0)
		plain := rtpPacket(0, 0, 0x5eed)
		if a := testing.AllocsPerRun(200, func() {
			binary.BigEndian.PutUint16(plain[2:], seq)
			seq++
			h.deliver(h.rtpSlot, plain, h.pbx)
		}); a != 0 {
			t.Errorf("%v RTP->SRTP: %v allocs per packet", profile, a)
		}
		if got := h.web.ctr.packetsOut.Load(); got < 200 {
			t.Fatalf("only %d packets relayed to the browser", got)
		}
	}
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	for name, req := range map[string]*stun.Message{
		"bare": stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("node:brws"),
			stun.NewShortTermIntegrity("abcdefghijklmnopqrstuvwxyz"), stun.Fingerprint),
		// What browsers send every few seconds for consent (RFC 7675
		// section 5.1), and once with USE-CANDIDATE (RFC 8445 section 7.1).
		"consent": stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("node:brws"),
			ice.PriorityAttr(2130706431), ice.AttrControlling(0x1234),
			stun.NewShortTermIntegrity("abcdefghijklmnopqrstuvwxyz"), stun.Fingerprint),
		"nomination": stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("node:brws"),
			ice.PriorityAttr(2130706431), ice.AttrControlling(0x1234), ice.UseCandidate(),
			stun.NewShortTermIntegrity("abcdefghijklmnopqrstuvwxyz"), stun.Fingerprint),
	} {
		before := h.web.ctr.stunIn.Load()
		if a := testing.AllocsPerRun(200, func() { h.deliver(h.webSlot, req.Raw, h.browser) }); a != 0 {
			t.Errorf("STUN answer (%s): %v allocs per check", name, a)
		}
		if n := h.web.ctr.stunIn.Load() - before; n < 200 {
			t.Fatalf("%s checks answered: %d", name, n)
		}
	}
}

// BenchmarkSRTPToRTP is the browser->PBX hop per packet: demultiplex, find
// the leg by its latched address, decrypt in place, map the payload type,
// queue, and the batched send (one sendmmsg per 64 packets).
func BenchmarkSRTPToRTP(b *testing.B) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		b.Run(profileName(profile), func(b *testing.B) {
			h := newHotPath(b, profile)
			const chunk = 4096
			seq := uint16(1)
			b.ReportAllocs()
			b.SetBytes(172)
			for i := 0; i < b.N; {
				b.StopTimer() // the browser's encryption is not the node's cost
				pkts := h.srtpPackets(seq, chunk)
				seq += chunk
				b.StartTimer()
				for _, p := range pkts {
					if i == b.N {
						break
					}
					h.deliver(h.webSlot, p, h.browser)
					i++
				}
			}
		})
	}
}

// BenchmarkRTPToSRTP is the PBX->browser hop per packet: the stream found
// by its socket, source check, payload-type map, sequence/SSRC
// normalisation, encryption in place into the tailroom, queue and send.
func BenchmarkRTPToSRTP(b *testing.B) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		b.Run(profileName(profile), func(b *testing.B) {
			h := newHotPath(b, profile)
			plain := rtpPacket(0, 0, 0x5eed)
			b.ReportAllocs()
			b.SetBytes(172)
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint16(plain[2:], uint16(i))
				h.deliver(h.rtpSlot, plain, h.pbx)
			}
		})
	}
}

// BenchmarkRTPToRTP is the baseline: the same hop between two plain legs
// (no SRTP), through the same code.
func BenchmarkRTPToRTP(b *testing.B) {
	h := newHotPath(b, srtp.ProtectionProfileAeadAes128Gcm)
	plain := rtpPacket(0, 0, 0x5eed)
	b.ReportAllocs()
	b.SetBytes(172)
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint16(plain[2:], uint16(i))
		h.deliver(h.plainSlot, plain, h.pbx)
	}
	if h.plainPeers.legs[1].ctr.packetsOut.Load() == 0 {
		b.Fatal("nothing relayed")
	}
}

// BenchmarkSTUNAnswer is an ICE check answered by a worker: parse, find
// the leg by ufrag, verify MESSAGE-INTEGRITY and FINGERPRINT, answer.
func BenchmarkSTUNAnswer(b *testing.B) {
	h := newHotPath(b, srtp.ProtectionProfileAeadAes128Gcm)
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("node:brws"),
		stun.RawAttribute{Type: stun.AttrUseCandidate}, stun.NewShortTermIntegrity("abcdefghijklmnopqrstuvwxyz"), stun.Fingerprint)
	before := h.web.ctr.stunIn.Load()
	b.ReportAllocs()
	for b.Loop() {
		h.deliver(h.webSlot, req.Raw, h.browser)
	}
	if got := h.web.ctr.stunIn.Load() - before; got != uint64(b.N) {
		b.Fatalf("answered %d of %d checks", got, b.N)
	}
}

func profileName(p srtp.ProtectionProfile) string {
	if p == srtp.ProtectionProfileAeadAes128Gcm {
		return "gcm"
	}
	return "cm80"
}

// FuzzHandle feeds arbitrary datagrams to a worker on the WebRTC port and
// the plain leg's port, from the validated browser, the PBX (at its SDP
// address, which has spoken) and a stranger. Nothing may panic; every
// datagram is accounted for (received and relayed, answered, or counted as
// a drop); what is relayed is the session's media (from the browser: it
// decrypts with the browser's keys; on the plain port: from the PBX), and
// a check is answered only if it verifies with the leg's password.
func FuzzHandle(f *testing.F) {
	h := newHotPath(f, srtp.ProtectionProfileAeadAes128Gcm)
	stranger := netip.MustParseAddrPort("127.0.0.1:9")
	const pwd = "abcdefghijklmnopqrstuvwxyz"
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("node:brws"),
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	// The PBX has spoken from its SDP address: nobody else can be learnt.
	h.deliver(h.rtpSlot, rtpPacket(1, 0, 0x5eed), h.pbx)
	h.flush()
	kl, _ := srtp.ProtectionProfileAeadAes128Gcm.KeyLen()
	sl, _ := srtp.ProtectionProfileAeadAes128Gcm.SaltLen()
	k1 := make([]byte, kl)
	for i := range k1 {
		k1[i] = byte(i)
	}
	oracle, err := srtp.CreateContext(k1, make([]byte, sl), srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		f.Fatal(err)
	}
	key, err := icelite.NewKey([]byte(pwd))
	if err != nil {
		f.Fatal(err)
	}
	isBrowserMedia := func(pkt []byte) bool {
		b := append([]byte(nil), pkt...)
		if _, err := oracle.DecryptRTP(nil, b, nil); err == nil {
			return true
		}
		b = append(b[:0], pkt...)
		_, err := oracle.DecryptRTCP(nil, b, nil)
		return err == nil
	}
	isValidCheck := func(pkt []byte) bool {
		var r icelite.Request
		var x icelite.Responder
		return icelite.ParseRequest(pkt, &r) == nil && string(r.LocalUfrag) == "node" && x.Verify(pkt, &r, key)
	}
	f.Add(byte(0), req.Raw)
	f.Add(byte(1), h.srtpPackets(1, 1)[0])
	f.Add(byte(2), h.srtpPackets(2, 1)[0])
	f.Add(byte(2), req.Raw)
	f.Add(byte(5), rtpPacket(7, 0, 0x5eed))
	f.Add(byte(6), rtpPacket(8, 0, 0x5eed))
	f.Add(byte(3), []byte{0x80, 200, 0, 1, 0, 0, 0, 1})
	f.Add(byte(4), []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, who byte, pkt []byte) {
		if len(pkt) > BufferSize-Tailroom {
			return
		}
		from := []netip.AddrPort{h.browser, h.pbx, stranger}[int(who)%3]
		s := h.webSlot
		if who&4 != 0 {
			s = h.rtpSlot
		}
		strangerValid := h.w.latches[latchKey{h.web.group.id, stranger}] != nil
		b := h.e.Totals()
		h.deliver(s, pkt, from)
		a := h.e.Totals()
		seen := func(c *pb.LegCounters) uint64 { return c.PacketsIn + c.RtcpIn + c.StunIn + c.DtlsIn + c.Dropped() }
		if seen(a) == seen(b) {
			t.Fatalf("a datagram from %v was neither received nor counted as a drop", from)
		}
		if a.PacketsOut+a.RtcpOut > b.PacketsOut+b.RtcpOut {
			switch {
			case s == h.webSlot && (from == h.browser || (from == stranger && strangerValid)):
				if !isBrowserMedia(pkt) {
					t.Fatalf("relayed a datagram from %v that does not authenticate as the browser's", from)
				}
			case s == h.rtpSlot && from == h.pbx:
			default:
				t.Fatalf("relayed a datagram from %v on %v that is not the session's media", from, s.kind)
			}
		}
		if a.StunIn > b.StunIn && (s != h.webSlot || !isValidCheck(pkt)) {
			t.Fatalf("answered a check from %v that does not verify", from)
		}
	})
}

// TestKernelDropsAreCounted: datagrams the kernel drops for a full receive
// buffer (the node overloaded) show up as the leg's drop_rcvbuf.
func TestKernelDropsAreCounted(t *testing.T) {
	for _, io := range ioModes(t) {
		t.Run(string(io), func(t *testing.T) { testKernelDropsAreCounted(t, io) })
	}
}

func testKernelDropsAreCounted(t *testing.T, io batchconn.Mode) {
	h := newHotPathIO(t, srtp.ProtectionProfileAeadAes128Gcm, io)
	if err := unix.SetsockoptInt(h.rtpSlot.sock.FD, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096); err != nil {
		t.Fatal(err)
	}
	pbx := h.sinks[1]
	pkt := make([]byte, 1000)
	pkt[0] = 0x80
	for i := 0; i < 200; i++ {
		pbx.WriteToUDPAddrPort(pkt, h.rtpSlot.sock.Local)
	}
	waitReadable(t, h.rtpSlot.sock)
	for range 4 {
		h.serve(t) // drains what fitted: queued before any drop
	}
	pbx.WriteToUDPAddrPort(pkt, h.rtpSlot.sock.Local)
	waitReadable(t, h.rtpSlot.sock)
	h.serve(t) // this one carries the socket's drop count
	if got := h.plain.ctr.drop[pb.DropRcvbuf].Load(); got == 0 || got >= 200 {
		t.Fatalf("drop_rcvbuf = %d after overflowing the socket with 200 datagrams", got)
	}
	if tot := h.e.Totals(); tot.DropRcvbuf != h.plain.ctr.drop[pb.DropRcvbuf].Load() {
		t.Fatalf("node totals drop_rcvbuf %d", tot.DropRcvbuf)
	}
}

// TestSequenceRefusalsAreNotReplays: a duplicate RTP packet from the PBX
// is refused by the browser leg's sequence normalisation and counted as
// drop_sequence on the leg it was to be sent to, not as an SRTP replay.
func TestSequenceRefusalsAreNotReplays(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	pkt := rtpPacket(500, 0, 0x5eed)
	h.deliver(h.rtpSlot, pkt, h.pbx)
	h.deliver(h.rtpSlot, pkt, h.pbx)
	c := h.web.ctr.proto()
	if c.PacketsOut != 1 || c.DropSequence != 1 || c.DropReplay != 0 {
		t.Fatalf("browser leg after a duplicate from the PBX: out %d, drop_sequence %d, drop_replay %d", c.PacketsOut, c.DropSequence, c.DropReplay)
	}
}

// TestReplayIsCountedAsReplay pins how a replayed SRTP or SRTCP packet is
// recognised (errSRTPReplay, learnt from pion at start): it must count as
// drop_replay, never as drop_malformed or drop_srtp_auth, and a pion
// upgrade that wraps the error differently fails here.
func TestReplayIsCountedAsReplay(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		h := newHotPath(t, profile)
		pkt := h.srtpPackets(1, 1)[0]
		h.deliver(h.webSlot, pkt, h.browser)
		h.deliver(h.webSlot, pkt, h.browser)
		rr, _ := (&rtcp.ReceiverReport{SSRC: 0xb0b}).Marshal()
		srtcp, err := h.browserEnc.EncryptRTCP(nil, rr, nil)
		if err != nil {
			t.Fatal(err)
		}
		h.deliver(h.webSlot, srtcp, h.browser)
		h.deliver(h.webSlot, srtcp, h.browser)
		c := h.web.ctr.proto()
		if c.PacketsIn != 1 || c.RtcpIn != 1 || c.DropReplay != 2 || c.DropMalformed != 0 || c.DropSrtpAuth != 0 {
			t.Fatalf("%v: after replaying one SRTP and one SRTCP packet: %v", profile, c)
		}
	}
	if errSRTPReplay == nil || errSRTPReplay.Error() != "duplicated packet" {
		t.Logf("pion's replay error is now %q", errSRTPReplay)
	}
}

// TestSendQueueFullIsFlushed: the worker's send queue is never full in
// steady state (see worker.send); a queue smaller than the traffic it gets
// is flushed instead of losing datagrams.
func TestSendQueueFullIsFlushed(t *testing.T) {
	for _, io := range ioModes(t) {
		t.Run(string(io), func(t *testing.T) {
			h := newHotPathIO(t, srtp.ProtectionProfileAeadAes128Gcm, io)
			h.replaceLoop(t, 1) // a queue of one datagram
			bufs := [][]byte{make([]byte, BufferSize), make([]byte, BufferSize), make([]byte, BufferSize)}
			for i, p := range h.srtpPackets(1, 3) {
				m := batchconn.Message{Buf: bufs[i], Addr: h.browser}
				m.N = copy(m.Buf, p)
				h.w.handle(h.webSlot, &m)
			}
			h.flush()
			if out, drops := h.plain.ctr.packetsOut.Load(), h.plain.ctr.drop[pb.DropSend].Load(); out != 3 || drops != 0 {
				t.Fatalf("relayed %d of 3, %d send drops", out, drops)
			}
			buf := make([]byte, 2048)
			for i := 0; i < 3; i++ {
				h.sinks[1].SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, _, err := h.sinks[1].ReadFromUDPAddrPort(buf); err != nil {
					t.Fatalf("datagram %d never reached the PBX: %v", i, err)
				}
			}
		})
	}
}

// waitReadable waits until s has a datagram queued.
func waitReadable(t *testing.T, s *batchconn.Socket) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(s.FD), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 2000); n != 1 || err != nil {
		t.Fatalf("socket %v not readable: %v", s.Local, err)
	}
}

// ioModes are the packet I/O implementations to test: mmsg always, io_uring
// where the kernel allows it.
func ioModes(t *testing.T) []batchconn.Mode {
	modes := []batchconn.Mode{batchconn.ModeMmsg}
	l, err := batchconn.NewLoop(batchconn.LoopConfig[int]{Mode: batchconn.ModeUring, BatchSize: 1, BufSize: 2048})
	if err != nil {
		// A kernel (or a container's seccomp profile) may refuse io_uring;
		// that is the host's choice, so it is reported, not failed.
		t.Logf("io_uring not tested: %v", err)
		return modes
	}
	l.Close()
	return append(modes, batchconn.ModeUring)
}
