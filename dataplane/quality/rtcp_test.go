package quality

import (
	"errors"
	"testing"

	"github.com/pion/rtcp"
)

// compound builds RTCP with pion/rtcp, a third-party encoder.
func compound(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseReports(t *testing.T) {
	sr := &rtcp.SenderReport{SSRC: 0x11111111, NTPTime: 0xe1a2b3c4d5e6f708, RTPTime: 1234, PacketCount: 50, OctetCount: 8000,
		Reports: []rtcp.ReceptionReport{{SSRC: 0x22222222, FractionLost: 64, TotalLost: 17, LastSequenceNumber: 0x10005,
			Jitter: 80, LastSenderReport: 0xb3c4d5e6, Delay: 65536}}}
	rr := &rtcp.ReceiverReport{SSRC: 0x33333333, Reports: []rtcp.ReceptionReport{
		{SSRC: 0x44444444, FractionLost: 255, TotalLost: 0x7fffff, Jitter: 1},
		{SSRC: 0x55555555, TotalLost: 0}}}
	sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 0x11111111,
		Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "a@b"}}}}}
	many := &rtcp.ReceiverReport{SSRC: 1}
	for i := range 10 {
		many.Reports = append(many.Reports, rtcp.ReceptionReport{SSRC: uint32(100 + i)})
	}
	pli := &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}

	for _, tc := range []struct {
		name    string
		pkt     []byte
		err     error
		hasSR   bool
		n, skip int
	}{
		{"sr+sdes", compound(t, sr, sdes), nil, true, 1, 0},
		{"rr two blocks", compound(t, rr, sdes), nil, false, 2, 0},
		{"sr then rr", compound(t, sr, rr), nil, true, 3, 0},
		{"reduced size pli", compound(t, pli), nil, false, 0, 0},
		{"more blocks than kept", compound(t, many), nil, false, MaxBlocks, 10 - MaxBlocks},
		{"empty", nil, ErrTooShort, false, 0, 0},
		{"three bytes", []byte{0x80, 201, 0}, ErrTooShort, false, 0, 0},
		{"version 1", []byte{0x40, 201, 0, 1, 0, 0, 0, 0}, ErrVersion, false, 0, 0},
		{"length overruns", []byte{0x80, 201, 0, 9, 0, 0, 0, 0}, ErrLength, false, 0, 0},
		{"count overruns", []byte{0x81, 201, 0, 1, 0, 0, 0, 0}, ErrCount, false, 0, 0},
		{"sr too short", []byte{0x80, 200, 0, 1, 0, 0, 0, 0}, ErrCount, false, 0, 0},
		{"padding zero", []byte{0xa0, 201, 0, 1, 0, 0, 0, 0}, ErrLength, false, 0, 0},
		{"padding too long", []byte{0xa0, 201, 0, 1, 0, 0, 0, 9}, ErrLength, false, 0, 0},
		{"trailing bytes", append(compound(t, rr), 0x80, 201), ErrTooShort, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Reports
			err := ParseReports(tc.pkt, &r)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if r.HasSR != tc.hasSR || r.N != tc.n || r.Skipped != tc.skip {
				t.Fatalf("HasSR %v N %d Skipped %d, want %v %d %d", r.HasSR, r.N, r.Skipped, tc.hasSR, tc.n, tc.skip)
			}
		})
	}

	var r Reports
	if err := ParseReports(compound(t, sr, rr), &r); err != nil {
		t.Fatal(err)
	}
	if r.SenderSSRC != 0x11111111 || r.NTP != 0xe1a2b3c4d5e6f708 || r.LSR() != 0xb3c4d5e6 {
		t.Errorf("sender info %x %x lsr %x", r.SenderSSRC, r.NTP, r.LSR())
	}
	want := Block{SSRC: 0x22222222, FractionLost: 64, CumulativeLost: 17, HighestSeq: 0x10005, Jitter: 80, LSR: 0xb3c4d5e6, DLSR: 65536}
	if r.Blocks[0] != want {
		t.Errorf("block 0 %+v, want %+v", r.Blocks[0], want)
	}
	if r.Blocks[1].CumulativeLost != 0x7fffff || r.Blocks[1].FractionLost != 255 || r.Blocks[2].SSRC != 0x55555555 {
		t.Errorf("blocks %+v", r.Blocks[1:3])
	}
	// A negative cumulative loss (duplicates) is sign-extended from 24 bits.
	b := compound(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}})
	b[8+5], b[8+6], b[8+7] = 0xff, 0xff, 0xfe
	if err := ParseReports(b, &r); err != nil || r.Blocks[0].CumulativeLost != -2 {
		t.Errorf("negative loss: %v %d", err, r.Blocks[0].CumulativeLost)
	}
}

// TestParseReportsAllocs pins the parse at zero allocations per packet: it
// runs on the dataplane's packet path for every RTCP packet relayed.
func TestParseReportsAllocs(t *testing.T) {
	pkt := compound(t, &rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}})
	var r Reports
	if n := testing.AllocsPerRun(1000, func() { _ = ParseReports(pkt, &r) }); n != 0 {
		t.Fatalf("ParseReports: %v allocs per packet, want 0", n)
	}
	var l SRLog
	var rx Receiver
	seq, now := uint16(0), int64(1e18)
	if n := testing.AllocsPerRun(1000, func() {
		l.Record(0x1234, now)
		_, _ = l.RTT(0x1234, 0, now)
		seq++
		now += 2e7
		rx.Update(seq, uint32(seq)*160, 0, 8000, now)
	}); n != 0 {
		t.Fatalf("SRLog and Receiver: %v allocs per packet, want 0", n)
	}
}

// FuzzParseReports feeds hostile bytes to the parser: it must never panic,
// and what it accepts must be well-formed RTCP pion/rtcp can read too.
func FuzzParseReports(f *testing.F) {
	f.Add(compound(f, &rtcp.SenderReport{SSRC: 1, NTPTime: 5, Reports: []rtcp.ReceptionReport{{SSRC: 2, TotalLost: 3}}}))
	f.Add(compound(f, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}, {SSRC: 3}}},
		&rtcp.Goodbye{Sources: []uint32{1}}))
	f.Add(compound(f, &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 4}}}))
	f.Add([]byte{0xa0, 201, 0, 1, 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Reports
		if ParseReports(b, &r) != nil {
			return
		}
		if r.N > MaxBlocks || r.N < 0 || r.Skipped < 0 {
			t.Fatalf("N %d Skipped %d", r.N, r.Skipped)
		}
		for _, blk := range r.Blocks[:r.N] {
			if blk.CumulativeLost > 0x7fffff || blk.CumulativeLost < -0x800000 {
				t.Fatalf("cumulative lost %d out of 24 bits", blk.CumulativeLost)
			}
		}
	})
}
