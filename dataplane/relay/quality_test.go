package relay

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/internal/racecheck"
)

// rtcpSlot returns the worker's slot of the plain leg's RTCP socket.
func (h *hotPath) rtcpSlot(t testing.TB) *slot {
	t.Helper()
	for i := range h.w.slots {
		if s := &h.w.slots[i]; s.kind == sockPlain && s.stream == h.plain.streams[0] && s.rtcp {
			return s
		}
	}
	t.Fatal("no RTCP socket for the plain leg")
	return nil
}

func marshalRTCP(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQualityPerLegAndDirection drives a WebRTC<->plain session through the
// worker's packet functions: the browser sends SRTP with holes and jitter,
// the PBX clean RTP; each side's RTCP receiver reports say what it got of
// what the node sent; the browser's sender report, forwarded to the PBX,
// and the PBX's answer to it give the node <-> PBX round trip on the node's
// own clock. Every figure lands on the right leg and direction.
func TestQualityPerLegAndDirection(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	start := h.w.now
	// Browser -> node: 100 packets, every tenth lost, every other one 4 ms late.
	pkts := h.srtpPackets(1, 100)
	for i, p := range pkts {
		if i%10 == 5 {
			continue
		}
		h.w.now = start + int64(i)*20e6 + int64(i%2)*4e6
		h.deliver(h.webSlot, p, h.browser)
	}
	// PBX -> node: 100 clean packets.
	for i := range 100 {
		h.w.now = start + int64(i)*20e6
		h.deliver(h.rtpSlot, rtpPacket(uint16(1000+i), 0, 0x5eed), h.pbx)
	}
	h.flush()

	// The browser's SR (forwarded to the PBX) and its report on what the
	// node sends it (the web leg's own SSRC: the stream is rewritten).
	ntp := uint64(0xe1a2b3c4) << 32
	h.w.now = start + 2e9
	sr := marshalRTCP(t, &rtcp.SenderReport{SSRC: 0xb0b, NTPTime: ntp, Reports: []rtcp.ReceptionReport{
		{SSRC: h.web.streams[0].localSSRC, FractionLost: 64, TotalLost: 7, Jitter: 240}}})
	srtcp, err := h.browserEnc.EncryptRTCP(nil, sr, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.deliver(h.webSlot, srtcp, h.browser)
	// The PBX answers 130 ms later, having held the SR for 30 ms; it
	// reports on the browser's SSRC, which the node relays unchanged.
	h.w.now = start + 2e9 + 130e6
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 0x5eed, Reports: []rtcp.ReceptionReport{
		{SSRC: 0xb0b, FractionLost: 0, TotalLost: 0, Jitter: 8, LastSenderReport: uint32(ntp >> 16), Delay: 65536 * 30 / 1000}}})
	h.deliver(h.rtcpSlot(t), rr, h.pbx)
	h.flush()
	if c := h.web.ctr.proto(); c.RtcpIn != 1 || c.DropMalformed != 0 {
		t.Fatalf("web counters %v", c)
	}
	if c := h.plain.ctr.proto(); c.RtcpIn != 1 || c.RtcpOut != 1 {
		t.Fatalf("plain counters %v", c)
	}

	h.sess.sampleQuality(start+3e9, true)
	s := h.sess.Proto()
	web, plain := s.Legs[0].Streams[0].Quality, s.Legs[1].Streams[0].Quality

	// Web leg, in: the node's own count of what the browser sent.
	if r := web.Received; r.Received != 89 || r.Expected != 99 || r.Gaps != 10 || r.Late != 0 {
		t.Errorf("web received %v", r)
	}
	if in := web.In; in.Samples != 1 || math.Abs(in.Last.Loss-10.0/99) > 1e-9 || in.PacketsLost != 10 ||
		in.Last.JitterMs < 1 || in.Last.JitterMs > 4 || in.Last.Mos >= plain.In.Last.Mos {
		t.Errorf("web in %v (plain in MOS %v)", in, plain.In.GetLast().GetMos())
	}
	// Web leg, out: from the browser's report block (jitter 240 at 8 kHz).
	if out := web.Out; out.Samples != 1 || out.Last.Loss != 0.25 || out.PacketsLost != 7 || math.Abs(out.Last.JitterMs-30) > 1e-9 {
		t.Errorf("web out %v", out)
	}
	// Plain leg: clean in; out from the PBX's report, with the RTT.
	if in := plain.In; in.Samples != 1 || in.Last.Loss != 0 || in.Last.JitterMs != 0 || in.PacketsLost != 0 {
		t.Errorf("plain in %v", in)
	}
	if out := plain.Out; out.Samples != 1 || out.Last.Loss != 0 || math.Abs(out.Last.RttMs-100) > 0.1 || math.Abs(out.RttMs.GetAvg()-100) > 0.1 {
		t.Errorf("plain out %v", out)
	}
	if m := plain.Out.Last.Mos; m < 4.3 || m > 4.41 {
		t.Errorf("plain out MOS %v for a clean stream with 100 ms RTT", m)
	}
	if web.Out.Last.Mos >= plain.Out.Last.Mos {
		t.Errorf("25%% loss scores %v, no loss %v", web.Out.Last.Mos, plain.Out.Last.Mos)
	}
}

// TestQualitySampling: the janitor samples a stream once per
// QualityInterval, skips streams with nothing new, and deletion takes the
// last short interval.
func TestQualitySampling(t *testing.T) {
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	t0 := h.sess.Created.UnixNano()
	seq := uint16(0)
	send := func(until int64) {
		for ; h.w.now < until; h.w.now += 20e6 {
			h.deliver(h.rtpSlot, rtpPacket(seq, 0, 0x5eed), h.pbx)
			seq++
		}
		h.flush()
	}
	h.w.now = t0
	send(t0 + 4e9)
	q := &h.plain.streams[0].q
	h.sess.sampleQuality(t0+4e9, false) // under an interval: nothing
	if q.in.MOS.N != 0 {
		t.Fatal("sampled before an interval passed")
	}
	send(t0 + 6e9)
	h.sess.sampleQuality(t0+6e9, false)
	h.sess.sampleQuality(t0+7e9, false) // too soon again
	if q.in.MOS.N != 1 || q.in.Last.Seconds != 6 {
		t.Fatalf("samples %d, last %+v", q.in.MOS.N, q.in.Last)
	}
	h.sess.sampleQuality(t0+20e9, false) // on hold: nothing received
	if q.in.MOS.N != 1 {
		t.Fatal("sampled an interval without media")
	}
	send(t0 + 21e9)
	h.e.cfg.Now = func() time.Time { return time.Unix(0, t0+21e9) }
	if _, err := h.e.DeleteSession(h.sess.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if q.in.MOS.N != 2 || q.out.MOS.N != 0 {
		t.Fatalf("after delete: in %d out %d samples", q.in.MOS.N, q.out.MOS.N)
	}
}

// TestQualityAllocs pins the quality work on the packet path at zero
// allocations: RTP accounting in both directions and RTCP with an SR and
// report blocks from each side, parsed, matched to streams and timed.
func TestQualityAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("allocation counts are pinned without -race")
	}
	h := newHotPath(t, srtp.ProtectionProfileAes128CmHmacSha1_80)
	h.w.now = time.Now().UnixNano()
	for _, p := range h.srtpPackets(1, 3) { // the PBX reports on the browser's SSRC
		h.deliver(h.webSlot, p, h.browser)
	}
	h.deliver(h.rtpSlot, rtpPacket(60000, 0, 0x5eed), h.pbx) // the PBX's media latches its address
	compound := marshalRTCP(t,
		&rtcp.SenderReport{SSRC: 0xb0b, NTPTime: 0xe1a2b3c400000000, Reports: []rtcp.ReceptionReport{{SSRC: h.web.streams[0].localSSRC, FractionLost: 3}}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 0xb0b, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "browser"}}}}})
	srtcp := make([][]byte, 300)
	for i := range srtcp {
		var err error
		if srtcp[i], err = h.browserEnc.EncryptRTCP(nil, compound, nil); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	if a := testing.AllocsPerRun(200, func() { h.deliver(h.webSlot, srtcp[i], h.browser); i++ }); a != 0 {
		t.Errorf("SRTCP SR+RR -> RTCP: %v allocs per packet", a)
	}
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 0x5eed, Reports: []rtcp.ReceptionReport{
		{SSRC: 0xb0b, LastSenderReport: 0xb3c40000, Delay: 100}}})
	slot := h.rtcpSlot(t)
	h.w.now += 50e6
	if a := testing.AllocsPerRun(200, func() { h.deliver(slot, rr, h.pbx) }); a != 0 {
		t.Errorf("RTCP RR -> SRTCP: %v allocs per packet", a)
	}
	if n := h.plain.streams[0].q.rrCount.Load(); n < 200 {
		t.Fatalf("only %d PBX report blocks taken", n)
	}
	if n := h.web.streams[0].q.rrCount.Load(); n < 200 {
		t.Fatalf("only %d browser report blocks taken", n)
	}
	if h.plain.streams[0].q.rtt.Load() == 0 {
		t.Fatal("no RTT from the PBX's reports")
	}
	// RTP: the receiver statistics of both legs were updated while the
	// hot-path pins ran; here they run once more under the pin.
	seq := uint16(0)
	plain := rtpPacket(0, 0, 0x5eed)
	if a := testing.AllocsPerRun(200, func() {
		binary.BigEndian.PutUint16(plain[2:], seq)
		binary.BigEndian.PutUint32(plain[4:], uint32(seq)*160)
		seq++
		h.w.now += 20e6
		h.deliver(h.rtpSlot, plain, h.pbx)
	}); a != 0 {
		t.Errorf("RTP with receiver statistics: %v allocs per packet", a)
	}
	if s := h.plain.streams[0].q.rx.Stats(); s.Received < 190 {
		t.Fatalf("receiver statistics: %+v", s)
	}
}

// TestStreamClock: a payload type's clock rate comes from the stream's
// codecs, the first one's without reading the table, the first listing of
// a payload type winning as before.
func TestStreamClock(t *testing.T) {
	sc := streamConfig{
		clocks: []ptClock{{0, 8000}, {101, 8000}, {111, 48000}, {0, 16000}},
		clock0: 8000,
		pt0:    0,
	}
	for _, c := range []struct {
		pt   uint8
		want uint32
	}{{0, 8000}, {101, 8000}, {111, 48000}, {9, 0}} {
		if got := sc.clock(c.pt); got != c.want {
			t.Errorf("clock(%d) = %d, want %d", c.pt, got, c.want)
		}
	}
	if got := (&streamConfig{}).clock(0); got != 0 {
		t.Errorf("no codecs: clock(0) = %d, want 0", got)
	}
}
