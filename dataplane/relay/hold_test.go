package relay

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/internal/racecheck"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func TestHoldBuckets(t *testing.T) {
	for _, c := range []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0}, {999 * time.Nanosecond, 0}, {time.Microsecond, 1}, {3 * time.Microsecond, 2}, {4 * time.Microsecond, 3},
		{1000 * time.Microsecond, 10}, {time.Second, HoldBuckets - 1}, {2 * time.Second, HoldBuckets}, {-time.Microsecond, 0},
	} {
		var h holdHist
		h.add(c.d, 3)
		for i := range h.counts {
			want := uint64(0)
			if i == c.bucket {
				want = 3
			}
			if got := h.counts[i].Load(); got != want {
				t.Fatalf("%v: bucket %d holds %d, want %d", c.d, i, got, want)
			}
		}
		if c.bucket < HoldBuckets && c.d > 0 && c.d > HoldBound(c.bucket) {
			t.Fatalf("%v above its bucket's bound %v", c.d, HoldBound(c.bucket))
		}
	}
}

// TestHoldIsCounted: datagrams a running worker relays are counted in the
// hold histogram, each once.
func TestHoldIsCounted(t *testing.T) {
	e := newTestEngine(t, 1)
	a, aAddr := sink(t)
	_, bAddr := sink(t)
	pcmu := []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}
	sess, err := e.CreateSession(&pb.CreateSessionRequest{Legs: []*pb.LegSpec{
		{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: pcmu, Plain: &pb.PlainSpec{RemoteAddr: aAddr.String()}}}},
		{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: pcmu, Plain: &pb.PlainSpec{RemoteAddr: bAddr.String()}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), sess.legs[0].streams[0].rtpPort)
	for i := range 5 {
		if _, err := a.WriteToUDPAddrPort(rtpPacket(uint16(i), 0, 0x5eed), to); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n uint64
		st := e.HoldStats()
		for _, c := range st.Counts {
			n += c
		}
		if n == 5 && st.Sum > 0 {
			return
		}
		if n > 5 || time.Now().After(deadline) {
			t.Fatalf("hold histogram counts %d datagrams (sum %v), want 5", n, st.Sum)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLongRoundSendsAsItGoes: a round that has taken maxHold sends what it
// has queued every holdCheck datagrams instead of holding it to the end,
// and counts those datagrams' hold then.
func TestLongRoundSendsAsItGoes(t *testing.T) {
	for _, io := range ioModes(t) {
		t.Run(string(io), func(t *testing.T) {
			h := newHotPathIO(t, srtp.ProtectionProfileAeadAes128Gcm, io)
			pkts := h.srtpPackets(1, 2*holdCheck+3)
			msgs := make([]batchconn.Message, len(pkts))
			idx := uint32(0)
			for i := range h.w.slots {
				if &h.w.slots[i] == h.webSlot {
					idx = uint32(i)
				}
			}
			for i, p := range pkts {
				msgs[i] = batchconn.Message{Buf: make([]byte, BufferSize), Addr: h.browser,
					Token: batchconn.Token(idx) | batchconn.Token(h.webSlot.gen)<<32}
				msgs[i].N = copy(msgs[i].Buf, p)
			}
			// A round that started a second ago: past maxHold from its
			// first datagram on.
			sent := h.w.round(msgs, time.Now().Add(-time.Second))
			if sent != 2*holdCheck {
				t.Fatalf("sent %d datagrams during the round, want %d", sent, 2*holdCheck)
			}
			buf := make([]byte, 2048)
			for i := range sent {
				h.sinks[1].SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, _, err := h.sinks[1].ReadFromUDPAddrPort(buf); err != nil {
					t.Fatalf("datagram %d not sent during the round: %v", i, err)
				}
			}
			st := h.e.HoldStats()
			if st.Counts[HoldBuckets-1] != uint64(sent) || st.Sum < time.Duration(sent)*time.Second {
				t.Fatalf("hold histogram %v sum %v after %d datagrams held about 1 s", st.Counts, st.Sum, sent)
			}
		})
	}
}

// roundOf is a worker round of n plain RTP datagrams toward the plain
// peer leg, and how to refill it (relaying rewrites the buffers).
func roundOf(h *hotPath, n int) (msgs []batchconn.Message, refill func()) {
	idx := uint32(0)
	for i := range h.w.slots {
		if &h.w.slots[i] == h.plainSlot {
			idx = uint32(i)
		}
	}
	msgs = make([]batchconn.Message, n)
	for i := range msgs {
		msgs[i] = batchconn.Message{Buf: make([]byte, BufferSize), Addr: h.pbx,
			Token: batchconn.Token(idx) | batchconn.Token(h.plainSlot.gen)<<32}
	}
	seq := uint16(0)
	pkt := rtpPacket(0, 0, 0x5eed)
	return msgs, func() {
		for i := range msgs {
			msgs[i].N = copy(msgs[i].Buf, pkt)
			binary.BigEndian.PutUint16(msgs[i].Buf[2:], seq)
			seq++
		}
	}
}

// TestRoundAllocs pins a whole worker round at zero allocations, the
// hold histogram and, in a long round, the sends every holdCheck
// datagrams included.
func TestRoundAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("allocation counts are pinned without -race")
	}
	h := newHotPath(t, srtp.ProtectionProfileAeadAes128Gcm)
	msgs, refill := roundOf(h, 64)
	for _, long := range []bool{false, true} {
		sent := 0
		a := testing.AllocsPerRun(100, func() {
			refill()
			start := time.Now()
			if long {
				start = start.Add(-time.Second)
			}
			sent = h.w.round(msgs, start)
			h.w.hold.add(time.Since(start), len(msgs)-sent)
			h.flush()
		})
		if a != 0 {
			t.Errorf("long round %v: %v allocs per round of %d", long, a, len(msgs))
		}
		if want := map[bool]int{false: 0, true: 48}[long]; sent != want {
			t.Errorf("long round %v: sent %d during the round, want %d", long, sent, want)
		}
	}
	if got := h.plainPeers.legs[1].ctr.packetsOut.Load(); got < 100*64 {
		t.Fatalf("relayed %d datagrams in 200 rounds of 64", got)
	}
}

// BenchmarkRound is one worker round of 64 plain datagrams, as run()
// does it (hold histogram included): "short" a round under maxHold (the
// hold check costs a clock read per holdCheck datagrams), "long" one past
// it from its start (a send every holdCheck datagrams).
func BenchmarkRound(b *testing.B) {
	for _, long := range []bool{false, true} {
		name := map[bool]string{false: "short", true: "long"}[long]
		b.Run(name, func(b *testing.B) {
			h := newHotPath(b, srtp.ProtectionProfileAeadAes128Gcm)
			msgs, refill := roundOf(h, 64)
			b.ReportAllocs()
			for b.Loop() {
				refill()
				start := time.Now()
				if long {
					start = start.Add(-time.Second)
				}
				sent := h.w.round(msgs, start)
				h.w.hold.add(time.Since(start), len(msgs)-sent)
				h.flush()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/datagram")
		})
	}
}
