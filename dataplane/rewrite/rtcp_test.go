package rewrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/rtcp"
)

// The RTCP under test comes from the PBX leg and goes to the browser leg.
// The PBX sends stream pbx (rewritten toward the browser as pbxOut) and
// receives the browser's stream web as webOut.
const (
	pbx       = 0x0000_0b0b
	pbxOut    = 0x5eed_0001
	pbxTSOff  = 1_000_000
	pbxSeqOff = 7
	web       = 0xbb00_0000
	webOut    = 0x5eed_0002
	webSeqOff = 20000
	other     = 0x0707_0707 // in neither table
)

func tables() (sent, received *StreamTable) {
	sent, received = new(StreamTable), new(StreamTable)
	sent[3] = Mapping{Active: true, InSSRC: pbx, OutSSRC: pbxOut, SeqOffset: pbxSeqOff, TSOffset: pbxTSOff}
	sent[5] = Mapping{InSSRC: other, OutSSRC: 1} // inactive: ignored
	received[0] = Mapping{Active: true, InSSRC: web, OutSSRC: webOut, SeqOffset: webSeqOff, TSOffset: 99}
	return sent, received
}

func marshalRTCP(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// translate runs TranslateRTCP on a copy of b and returns pion's parse of
// the result.
func translate(t *testing.T, b []byte) []rtcp.Packet {
	t.Helper()
	sent, received := tables()
	b = bytes.Clone(b)
	if err := TranslateRTCP(b, sent, received); err != nil {
		t.Fatal(err)
	}
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		t.Fatalf("pion cannot parse the result: %v", err)
	}
	return pkts
}

func TestTranslateRTCPReports(t *testing.T) {
	in := marshalRTCP(t,
		&rtcp.SenderReport{
			SSRC: pbx, NTPTime: 0x1122334455667788, RTPTime: 0xfffffff0, PacketCount: 10, OctetCount: 1600,
			Reports: []rtcp.ReceptionReport{
				{SSRC: webOut, FractionLost: 3, TotalLost: 4, LastSequenceNumber: 3<<16 | 25000, Jitter: 5, LastSenderReport: 6, Delay: 7},
				{SSRC: webOut, LastSequenceNumber: 100},         // before the offset: cycles would go negative
				{SSRC: webOut, LastSequenceNumber: 1<<16 | 100}, // borrows from the cycles
				{SSRC: other, LastSequenceNumber: 12345},
			},
		},
		&rtcp.ReceiverReport{SSRC: pbx, Reports: []rtcp.ReceptionReport{{SSRC: webOut, LastSequenceNumber: 20005}}},
		&rtcp.ReceiverReport{SSRC: other},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{
			{Source: pbx, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "pbx@example"}, {Type: rtcp.SDESTool, Text: "x"}}},
			{Source: other, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "mixed"}}},
			{Source: pbx, Items: nil},
		}},
		&rtcp.Goodbye{Sources: []uint32{other, pbx}, Reason: "hold"},
		&rtcp.ApplicationDefined{SSRC: pbx, Name: "STRT", Data: []byte{1, 2, 3, 4}},
	)
	out := translate(t, in)
	if len(out) != 6 {
		t.Fatalf("%d packets", len(out))
	}
	sr := out[0].(*rtcp.SenderReport)
	if sr.SSRC != pbxOut || sr.RTPTime != (0xfffffff0+pbxTSOff)&0xffffffff || sr.NTPTime != 0x1122334455667788 || sr.PacketCount != 10 || sr.OctetCount != 1600 {
		t.Errorf("SR sender info: %+v", sr)
	}
	wantReports := []rtcp.ReceptionReport{
		{SSRC: web, FractionLost: 3, TotalLost: 4, LastSequenceNumber: 3<<16 | 5000, Jitter: 5, LastSenderReport: 6, Delay: 7},
		{SSRC: web, LastSequenceNumber: (100 - webSeqOff) & 0xffff},
		{SSRC: web, LastSequenceNumber: 1<<16 + 100 - webSeqOff},
		{SSRC: other, LastSequenceNumber: 12345},
	}
	for i, want := range wantReports {
		if sr.Reports[i] != want {
			t.Errorf("SR report %d = %+v, want %+v", i, sr.Reports[i], want)
		}
	}
	if rr := out[1].(*rtcp.ReceiverReport); rr.SSRC != pbxOut || rr.Reports[0].SSRC != web || rr.Reports[0].LastSequenceNumber != 5 {
		t.Errorf("RR: %+v", rr)
	}
	if rr := out[2].(*rtcp.ReceiverReport); rr.SSRC != other {
		t.Errorf("unmapped RR sender changed: %+v", rr)
	}
	sdes := out[3].(*rtcp.SourceDescription)
	if sdes.Chunks[0].Source != pbxOut || sdes.Chunks[1].Source != other || sdes.Chunks[2].Source != pbxOut ||
		sdes.Chunks[0].Items[0].Text != "pbx@example" || sdes.Chunks[0].Items[1].Text != "x" {
		t.Errorf("SDES: %+v", sdes)
	}
	if bye := out[4].(*rtcp.Goodbye); bye.Sources[0] != other || bye.Sources[1] != pbxOut || bye.Reason != "hold" {
		t.Errorf("BYE: %+v", bye)
	}
	if app := out[5].(*rtcp.ApplicationDefined); app.SSRC != pbxOut || app.Name != "STRT" || !bytes.Equal(app.Data, []byte{1, 2, 3, 4}) {
		t.Errorf("APP: %+v", app)
	}
}

func TestTranslateRTCPFeedback(t *testing.T) {
	in := marshalRTCP(t,
		&rtcp.ReceiverReport{SSRC: pbx},
		&rtcp.PictureLossIndication{SenderSSRC: pbx, MediaSSRC: webOut},
		&rtcp.TransportLayerNack{SenderSSRC: pbx, MediaSSRC: webOut, Nacks: []rtcp.NackPair{{PacketID: 20010, LostPackets: 0x8001}, {PacketID: 3, LostPackets: 1}}},
		&rtcp.TransportLayerNack{SenderSSRC: pbx, MediaSSRC: other, Nacks: []rtcp.NackPair{{PacketID: 20010}}},
		&rtcp.FullIntraRequest{SenderSSRC: pbx, MediaSSRC: webOut, FIR: []rtcp.FIREntry{{SSRC: webOut, SequenceNumber: 9}, {SSRC: other, SequenceNumber: 10}}},
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: pbx, Bitrate: 1e6, SSRCs: []uint32{webOut, other}},
		&rtcp.TransportLayerCC{Header: rtcp.Header{Padding: true, Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback, Length: 5}, SenderSSRC: pbx, MediaSSRC: webOut, BaseSequenceNumber: 77, PacketStatusCount: 1, PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1}}, RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}}},
	)
	out := translate(t, in)
	if pli := out[1].(*rtcp.PictureLossIndication); pli.SenderSSRC != pbxOut || pli.MediaSSRC != web {
		t.Errorf("PLI: %+v", pli)
	}
	nack := out[2].(*rtcp.TransportLayerNack)
	if nack.SenderSSRC != pbxOut || nack.MediaSSRC != web ||
		nack.Nacks[0] != (rtcp.NackPair{PacketID: 10, LostPackets: 0x8001}) ||
		nack.Nacks[1] != (rtcp.NackPair{PacketID: (3 - webSeqOff) & 0xffff, LostPackets: 1}) {
		t.Errorf("NACK: %+v", nack)
	}
	if nack := out[3].(*rtcp.TransportLayerNack); nack.MediaSSRC != other || nack.Nacks[0].PacketID != 20010 {
		t.Errorf("NACK for an unmapped stream changed: %+v", nack)
	}
	fir := out[4].(*rtcp.FullIntraRequest)
	if fir.SenderSSRC != pbxOut || fir.MediaSSRC != web || fir.FIR[0] != (rtcp.FIREntry{SSRC: web, SequenceNumber: 9}) || fir.FIR[1].SSRC != other {
		t.Errorf("FIR: %+v", fir)
	}
	remb := out[5].(*rtcp.ReceiverEstimatedMaximumBitrate)
	if remb.SenderSSRC != pbxOut || len(remb.SSRCs) != 2 || remb.SSRCs[0] != web || remb.SSRCs[1] != other || remb.Bitrate < 9e5 {
		t.Errorf("REMB: %+v", remb)
	}
	if cc := out[6].(*rtcp.TransportLayerCC); cc.SenderSSRC != pbxOut || cc.MediaSSRC != web || cc.BaseSequenceNumber != 77 {
		t.Errorf("TWCC: %+v", cc)
	}
}

func TestTranslateRTCPXR(t *testing.T) {
	in := marshalRTCP(t,
		&rtcp.ReceiverReport{SSRC: pbx},
		&rtcp.ExtendedReport{SenderSSRC: pbx, Reports: []rtcp.ReportBlock{
			&rtcp.ReceiverReferenceTimeReportBlock{NTPTimestamp: 42},
			&rtcp.DLRRReportBlock{Reports: []rtcp.DLRRReport{{SSRC: webOut, LastRR: 1, DLRR: 2}, {SSRC: other}}},
			&rtcp.StatisticsSummaryReportBlock{SSRC: webOut, BeginSeq: 20100, EndSeq: 20200, LostPackets: 3},
			&rtcp.LossRLEReportBlock{SSRC: webOut, BeginSeq: 20001, EndSeq: 20002, Chunks: []rtcp.Chunk{0x4001, 0}}, // pion miscounts an odd number of chunks
			&rtcp.VoIPMetricsReportBlock{SSRC: webOut, LossRate: 9},
			&rtcp.PacketReceiptTimesReportBlock{SSRC: other, BeginSeq: 20001, EndSeq: 20002, ReceiptTime: []uint32{5}},
		}},
	)
	out := translate(t, in)
	xr := out[1].(*rtcp.ExtendedReport)
	if xr.SenderSSRC != pbxOut {
		t.Errorf("XR sender %#x", xr.SenderSSRC)
	}
	if b := xr.Reports[0].(*rtcp.ReceiverReferenceTimeReportBlock); b.NTPTimestamp != 42 {
		t.Errorf("RRT: %+v", b)
	}
	if b := xr.Reports[1].(*rtcp.DLRRReportBlock); b.Reports[0] != (rtcp.DLRRReport{SSRC: web, LastRR: 1, DLRR: 2}) || b.Reports[1].SSRC != other {
		t.Errorf("DLRR: %+v", b)
	}
	if b := xr.Reports[2].(*rtcp.StatisticsSummaryReportBlock); b.SSRC != web || b.BeginSeq != 100 || b.EndSeq != 200 || b.LostPackets != 3 {
		t.Errorf("statistics summary: %+v", b)
	}
	if b := xr.Reports[3].(*rtcp.LossRLEReportBlock); b.SSRC != web || b.BeginSeq != 1 || b.EndSeq != 2 || b.Chunks[0] != 0x4001 {
		t.Errorf("loss RLE: %+v", b)
	}
	if b := xr.Reports[4].(*rtcp.VoIPMetricsReportBlock); b.SSRC != web || b.LossRate != 9 {
		t.Errorf("VoIP metrics: %+v", b)
	}
	if b := xr.Reports[5].(*rtcp.PacketReceiptTimesReportBlock); b.SSRC != other || b.BeginSeq != 20001 {
		t.Errorf("unmapped receipt times changed: %+v", b)
	}
}

// TestTranslateRTCPReducedSize: RFC 5506 allows a lone feedback packet.
func TestTranslateRTCPReducedSize(t *testing.T) {
	out := translate(t, marshalRTCP(t, &rtcp.PictureLossIndication{SenderSSRC: pbx, MediaSSRC: webOut}))
	if pli := out[0].(*rtcp.PictureLossIndication); pli.SenderSSRC != pbxOut || pli.MediaSSRC != web {
		t.Errorf("PLI: %+v", pli)
	}
}

// TestTranslateRTCPTMMBR: pion has no TMMBR type, so it is built by hand.
func TestTranslateRTCPTMMBR(t *testing.T) {
	b := []byte{
		0x80 | fmtTMMBR, rtcpRTPFB, 0, 4,
		0, 0, 0x0b, 0x0b, // sender: pbx
		0, 0, 0, 0, // media source: unused
		0x5e, 0xed, 0, 0x02, 0x12, 0x34, 0x56, 0x78, // webOut, MxTBR
	}
	sent, received := tables()
	if err := TranslateRTCP(b, sent, received); err != nil {
		t.Fatal(err)
	}
	if s, m := binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[12:]); s != pbxOut || m != web {
		t.Errorf("TMMBR sender %#x, FCI SSRC %#x", s, m)
	}
}

func TestTranslateRTCPPadding(t *testing.T) {
	// An RR with 4 bytes of padding, then a PLI.
	b := []byte{
		0xa0, rtcpRR, 0, 2, 0, 0, 0x0b, 0x0b, 0, 0, 0, 4,
		0x81, rtcpPSFB, 0, 2, 0, 0, 0x0b, 0x0b, 0x5e, 0xed, 0, 0x02,
	}
	sent, received := tables()
	if err := TranslateRTCP(b, sent, received); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(b[4:]) != pbxOut || binary.BigEndian.Uint32(b[20:]) != web || b[11] != 4 {
		t.Errorf("got % x", b)
	}
}

func TestTranslateRTCPRejects(t *testing.T) {
	valid := marshalRTCP(t,
		&rtcp.SenderReport{SSRC: pbx, Reports: []rtcp.ReceptionReport{{SSRC: webOut}}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: pbx, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "c"}}}}},
	)
	edit := func(b []byte, f func(b []byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	srLen := 4 * (int(binary.BigEndian.Uint16(valid[2:])) + 1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTooShort},
		{"three bytes", valid[:3], ErrTooShort},
		{"trailing bytes", append(bytes.Clone(valid), 0x80, 0xc9), ErrTooShort},
		{"truncated", valid[:len(valid)-4], ErrRTCPLength},
		{"truncated by one", valid[:len(valid)-1], ErrRTCPLength},
		{"first length too long", edit(valid, func(b []byte) { b[3] += 50 }), ErrRTCPLength},
		{"version 1", edit(valid, func(b []byte) { b[0] = b[0]&0x3f | 0x40 }), ErrVersion},
		{"second packet version 3", edit(valid, func(b []byte) { b[srLen] |= 0xc0 }), ErrVersion},
		{"not RTCP", edit(valid, func(b []byte) { b[srLen+1] = 96 }), ErrRTCPType},
		{"report count too big", edit(valid, func(b []byte) { b[0] = b[0]&0xe0 | 2 }), ErrRTCPCount},
		{"SR too short", []byte{0x80, rtcpSR, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrTooShort},
		{"padding zero", edit(valid, func(b []byte) { b[srLen] |= 0x20; b[len(b)-1] = 0 }), ErrPadding},
		{"padding too big", edit(valid, func(b []byte) { b[srLen] |= 0x20; b[len(b)-1] = 200 }), ErrPadding},
		{"SDES chunk count too big", edit(valid, func(b []byte) { b[srLen] = b[srLen]&0xe0 | 2 }), ErrRTCPCount},
		{"SDES without end", []byte{0x81, rtcpSDES, 0, 2, 0, 0, 0, 1, 1, 2, 'a', 'b'}, ErrRTCPMalformed},
		{"SDES item overrun", []byte{0x81, rtcpSDES, 0, 2, 0, 0, 0, 1, 1, 9, 'a', 'b'}, ErrRTCPMalformed},
		{"BYE count too big", []byte{0x83, rtcpBYE, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2}, ErrRTCPCount},
		{"BYE reason overrun", []byte{0x81, rtcpBYE, 0, 2, 0, 0, 0, 1, 9, 'a', 'b', 'c'}, ErrRTCPMalformed},
		{"APP too short", []byte{0x80, rtcpAPP, 0, 1, 0, 0, 0, 1}, ErrTooShort},
		{"PLI too short", []byte{0x81, rtcpPSFB, 0, 1, 0, 0, 0, 1}, ErrTooShort},
		{"NACK FCI misaligned", []byte{0xa1, rtcpRTPFB, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 2}, ErrRTCPMalformed},
		{"FIR FCI short", []byte{0x84, rtcpPSFB, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, ErrRTCPMalformed},
		{"REMB SSRC count overrun", []byte{0x8f, rtcpPSFB, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 'R', 'E', 'M', 'B', 2, 0, 0, 1, 0, 0, 0, 3}, ErrRTCPMalformed},
		{"XR block overrun", []byte{0x80, rtcpXR, 0, 3, 0, 0, 0, 1, 4, 0, 0, 2, 0, 0, 0, 0}, ErrRTCPMalformed},
		{"XR block header cut", []byte{0xa0, rtcpXR, 0, 2, 0, 0, 0, 1, 4, 0, 0, 2}, ErrRTCPMalformed},
		{"XR stats block too short", []byte{0x80, rtcpXR, 0, 3, 0, 0, 0, 1, 6, 0, 0, 1, 0, 0, 0, 9}, ErrRTCPMalformed},
		{"XR DLRR sub-block cut", []byte{0x80, rtcpXR, 0, 4, 0, 0, 0, 1, 5, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0}, ErrRTCPMalformed},
	}
	sent, received := tables()
	for _, tt := range tests {
		in := bytes.Clone(tt.in)
		if err := TranslateRTCP(in, sent, received); !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
		if !bytes.Equal(in, tt.in) {
			t.Errorf("%s: rejected packet was modified", tt.name)
		}
	}
}

func TestTranslateRTCPNilTables(t *testing.T) {
	in := marshalRTCP(t, &rtcp.SenderReport{SSRC: pbx, Reports: []rtcp.ReceptionReport{{SSRC: webOut}}})
	b := bytes.Clone(in)
	if err := TranslateRTCP(b, nil, nil); err != nil || !bytes.Equal(b, in) {
		t.Fatalf("nil tables: %v, changed %v", err, !bytes.Equal(b, in))
	}
}

// typicalRTCP is what a PBX sends every few seconds: an SR with one report
// block and an SDES CNAME.
func typicalRTCP(t testing.TB) []byte {
	return marshalRTCP(t,
		&rtcp.SenderReport{SSRC: pbx, NTPTime: 1, RTPTime: 2, PacketCount: 3, OctetCount: 4,
			Reports: []rtcp.ReceptionReport{{SSRC: webOut, LastSequenceNumber: 5}}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{
			{Source: pbx, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "f0e1d2c3b4a59687"}}}}},
	)
}

func TestTranslateRTCPAllocs(t *testing.T) {
	b := typicalRTCP(t)
	sent, received := tables()
	n := testing.AllocsPerRun(1000, func() {
		if err := TranslateRTCP(b, sent, received); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("TranslateRTCP allocates %v times", n)
	}
}

func FuzzTranslateRTCP(f *testing.F) {
	f.Add(typicalRTCP(f))
	f.Add(marshalRTCP(f,
		&rtcp.ReceiverReport{SSRC: pbx, Reports: []rtcp.ReceptionReport{{SSRC: webOut}}},
		&rtcp.TransportLayerNack{SenderSSRC: pbx, MediaSSRC: webOut, Nacks: []rtcp.NackPair{{PacketID: 1}}},
		&rtcp.FullIntraRequest{SenderSSRC: pbx, MediaSSRC: webOut, FIR: []rtcp.FIREntry{{SSRC: webOut}}},
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: pbx, Bitrate: 1e6, SSRCs: []uint32{webOut}},
		&rtcp.Goodbye{Sources: []uint32{pbx}, Reason: "bye"},
	))
	f.Add(marshalRTCP(f, &rtcp.ExtendedReport{SenderSSRC: pbx, Reports: []rtcp.ReportBlock{
		&rtcp.DLRRReportBlock{Reports: []rtcp.DLRRReport{{SSRC: webOut}}},
		&rtcp.StatisticsSummaryReportBlock{SSRC: webOut},
		&rtcp.VoIPMetricsReportBlock{SSRC: webOut},
	}}, &rtcp.ApplicationDefined{SSRC: pbx, Name: "abcd"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		sent, received := tables()
		in := bytes.Clone(b)
		_, pionErr := rtcp.Unmarshal(in)
		err := TranslateRTCP(b, sent, received)
		if err != nil {
			if !bytes.Equal(b, in) {
				t.Fatalf("rejected with %v but modified", err)
			}
			return
		}
		if len(b) != len(in) {
			t.Fatal("length changed")
		}
		if err := walkRTCP(b, nil); err != nil {
			t.Fatalf("output no longer valid: %v", err)
		}
		if pionErr == nil {
			if _, err := rtcp.Unmarshal(b); err != nil {
				t.Fatalf("pion parsed the input but not the output: %v\nin  % x\nout % x", err, in, b)
			}
		}
	})
}

func BenchmarkTranslateRTCP(b *testing.B) {
	pkt := typicalRTCP(b)
	sent, received := tables()
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if err := TranslateRTCP(pkt, sent, received); err != nil {
			b.Fatal(err)
		}
	}
}
