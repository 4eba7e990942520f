package rewrite

import "encoding/binary"

// MaxStreams is how many streams a StreamTable holds: enough for audio,
// video, their retransmission streams and a second video source on one
// leg, with room to spare.
const MaxStreams = 16

// StreamTable lists the streams that one leg's media is sent as on the
// other leg: one [Mapping] per [OutStream], as its Mapping method reports
// it. The caller keeps one table per direction, puts each stream in a slot
// of its choosing and refreshes the slot when the OutStream rebases.
// Inactive slots are ignored; if two active slots name the same SSRC the
// first wins.
//
// The zero value is an empty table. A StreamTable is a fixed-size value with
// no pointers; it is not safe for concurrent use while being modified.
type StreamTable [MaxStreams]Mapping

// byIn returns the active mapping whose input SSRC is ssrc, or nil.
func (t *StreamTable) byIn(ssrc uint32) *Mapping {
	if t == nil {
		return nil
	}
	for i := range t {
		if t[i].Active && t[i].InSSRC == ssrc {
			return &t[i]
		}
	}
	return nil
}

// byOut returns the active mapping whose output SSRC is ssrc, or nil.
func (t *StreamTable) byOut(ssrc uint32) *Mapping {
	if t == nil {
		return nil
	}
	for i := range t {
		if t[i].Active && t[i].OutSSRC == ssrc {
			return &t[i]
		}
	}
	return nil
}

// RTCP packet types (RFC 3550 section 12.1, RFC 4585 section 6.1, RFC 3611
// section 2).
const (
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpSDES  = 202
	rtcpBYE   = 203
	rtcpAPP   = 204
	rtcpRTPFB = 205
	rtcpPSFB  = 206
	rtcpXR    = 207
)

// Feedback message types (FMT) whose FCI this package translates.
const (
	fmtNACK  = 1  // RTPFB generic NACK, RFC 4585 section 6.2.1
	fmtTMMBR = 3  // RTPFB, RFC 5104 section 4.2.1
	fmtTMMBN = 4  // RTPFB, RFC 5104 section 4.2.2
	fmtFIR   = 4  // PSFB, RFC 5104 section 4.3.1
	fmtAFB   = 15 // PSFB application layer feedback, RFC 4585 section 6.4
)

// Sizes of fixed RTCP parts (RFC 3550 sections 6.4.1 and 6.4.2).
const (
	rtcpHeaderLen  = 4
	srFixedLen     = 28 // header, SSRC of sender, 20-byte sender info
	rrFixedLen     = 8  // header, SSRC of packet sender
	reportBlockLen = 24
	feedbackLen    = 12 // header, sender SSRC, media source SSRC
)

// TranslateRTCP rewrites, in place, the SSRCs, RTP timestamps and sequence
// numbers named by the RTCP packet pkt, which is a compound packet (RFC 3550
// section 6.1) or a reduced-size one (RFC 5506) as received from one leg, so
// that it makes sense on the other leg, where the media it talks about went
// through [OutStream]s. pkt is modified only if the whole of it is valid;
// otherwise TranslateRTCP returns an error and leaves pkt untouched.
//
// sent lists the streams the RTCP packet's sender sends, as they were
// rewritten toward the other leg (the OutStreams of the packet's direction).
// Fields that name the sender's own streams are looked up by input SSRC and
// mapped forward:
//
//   - the sender SSRC of SR, RR, APP, RTPFB, PSFB and XR packets, every
//     chunk's SSRC/CSRC in SDES and every SSRC in BYE: to the output SSRC;
//   - the RTP timestamp in an SR's sender info: plus the stream's TSOffset,
//     so that it stays in step with the rewritten media and the NTP time
//     beside it (RFC 3550 section 6.4.1).
//
// received lists the streams the RTCP packet's sender receives: the other
// leg's streams as they were rewritten toward it (the OutStreams of the
// opposite direction). Fields that name those streams are looked up by
// output SSRC and mapped back:
//
//   - the "SSRC of source" of SR and RR report blocks: to the input SSRC;
//     the extended highest sequence number received: minus the stream's
//     SeqOffset, so that the far end's loss and jitter statistics stay
//     sane (the low 16 bits map exactly; the cycle count is kept where it
//     can be, and a rebase shows up once as a step in it);
//   - the media source SSRC of RTPFB and PSFB packets; in generic NACK
//     (RFC 4585 section 6.2.1) each packet ID, minus SeqOffset, so that the
//     far end retransmits what was actually lost (the bitmask is relative
//     and unchanged); the SSRC in each FCI entry of TMMBR and TMMBN (RFC
//     5104 sections 4.2.1, 4.2.2) and FIR (section 4.3.1); and the SSRC
//     list of REMB (draft-alvestrand-rmcat-remb);
//   - in XR (RFC 3611), the SSRC of source of loss RLE, duplicate RLE,
//     packet receipt times, statistics summary and VoIP metrics blocks,
//     with begin_seq and end_seq minus SeqOffset where the block has
//     them, and the SSRC of each DLRR sub-block.
//
// Not translated: SSRCs that are in neither table (left as they are, so a
// mixer's CSRCs or a receive-only SSRC pass through); NTP timestamps, LSR
// and DLSR (the relay does not change NTP time); packet and octet counts,
// cumulative and fractional loss and jitter; SDES items, BYE reasons and
// APP data; transport-wide congestion control (RTPFB FMT 15), whose
// sequence numbers live in a header extension this package does not
// rewrite; RPSI, SLI and other FCI not listed above; XR blocks of other
// types. A BYE for a stream is translated like any other packet: a caller
// that wants to keep the other leg's stream alive across a far-end restart
// should not forward it.
//
// Validation, before anything is modified: every packet has version 2, a
// packet type in 192..223 (RFC 5761 section 4), a length within what is
// left of pkt, a valid padding count if its P bit is set, a report or
// source count that fits its length, and a body whose SDES chunks, BYE
// reason, feedback FCI and XR blocks fit; the packets exactly fill pkt.
// The first packet need not be an SR or RR (RFC 5506 section 3). Errors are
// [ErrTooShort], [ErrVersion], [ErrRTCPType], [ErrRTCPLength], [ErrPadding],
// [ErrRTCPCount] and [ErrRTCPMalformed].
//
// TranslateRTCP reads only sent and received (either may be nil, meaning
// empty) and does not retain pkt. It never allocates.
func TranslateRTCP(pkt []byte, sent, received *StreamTable) error {
	if err := walkRTCP(pkt, nil); err != nil {
		return err
	}
	x := translator{sent: sent, received: received}
	return walkRTCP(pkt, &x)
}

// translator rewrites the fields walkRTCP finds. Its methods do nothing on a
// nil receiver, which is how walkRTCP validates without writing.
type translator struct {
	sent, received *StreamTable
}

// forward maps the SSRC in b[:4] through sent.
func (x *translator) forward(b []byte) *Mapping {
	if x == nil {
		return nil
	}
	m := x.sent.byIn(binary.BigEndian.Uint32(b))
	if m != nil {
		binary.BigEndian.PutUint32(b, m.OutSSRC)
	}
	return m
}

// back maps the SSRC in b[:4] back through received.
func (x *translator) back(b []byte) *Mapping {
	if x == nil {
		return nil
	}
	m := x.received.byOut(binary.BigEndian.Uint32(b))
	if m != nil {
		binary.BigEndian.PutUint32(b, m.InSSRC)
	}
	return m
}

// unmapSeq16 subtracts the sequence offset of m from the 16-bit sequence
// number in b[:2], if m is not nil.
func unmapSeq16(b []byte, m *Mapping) {
	if m != nil {
		binary.BigEndian.PutUint16(b, binary.BigEndian.Uint16(b)-m.SeqOffset)
	}
}

// unmapExtSeq maps an extended highest sequence number (cycles<<16 | seq,
// RFC 3550 section 6.4.1) back through a sequence offset. The offset is
// taken as signed, so that the cycle count moves as little as possible; a
// result that would be negative keeps only its low 16 bits.
func unmapExtSeq(ext uint32, off uint16) uint32 {
	in := int64(ext) - int64(int16(off))
	if in < 0 {
		return uint32(uint16(in))
	}
	return uint32(in)
}

// walkRTCP validates the compound packet pkt and, if x is not nil,
// translates it. With x nil it never writes.
func walkRTCP(pkt []byte, x *translator) error {
	if len(pkt) == 0 {
		return ErrTooShort
	}
	for len(pkt) > 0 {
		if len(pkt) < rtcpHeaderLen {
			return ErrTooShort
		}
		if pkt[0]>>6 != 2 {
			return ErrVersion
		}
		if pkt[1] < 192 || pkt[1] > 223 {
			return ErrRTCPType
		}
		size := 4 * (int(binary.BigEndian.Uint16(pkt[2:])) + 1)
		if size > len(pkt) {
			return ErrRTCPLength
		}
		p := pkt[:size]
		pkt = pkt[size:]
		if p[0]&0x20 != 0 {
			n := int(p[size-1])
			if n == 0 || n > size-rtcpHeaderLen {
				return ErrPadding
			}
			p = p[:size-n]
		}
		if err := x.packet(p); err != nil {
			return err
		}
	}
	return nil
}

// packet handles one RTCP packet p, padding already removed.
func (x *translator) packet(p []byte) error {
	count := int(p[0] & 0x1f)
	switch p[1] {
	case rtcpSR:
		if len(p) < srFixedLen {
			return ErrTooShort
		}
		if len(p) < srFixedLen+count*reportBlockLen {
			return ErrRTCPCount
		}
		if m := x.forward(p[4:]); m != nil {
			binary.BigEndian.PutUint32(p[16:], binary.BigEndian.Uint32(p[16:])+m.TSOffset)
		}
		x.reportBlocks(p[srFixedLen:], count)
	case rtcpRR:
		if len(p) < rrFixedLen+count*reportBlockLen {
			return ErrRTCPCount
		}
		x.forward(p[4:])
		x.reportBlocks(p[rrFixedLen:], count)
	case rtcpSDES:
		return x.sdes(p, count)
	case rtcpBYE:
		q := rtcpHeaderLen + 4*count
		if len(p) < q {
			return ErrRTCPCount
		}
		if q < len(p) && q+1+int(p[q]) > len(p) {
			return ErrRTCPMalformed // reason overruns
		}
		for i := rtcpHeaderLen; i < q; i += 4 {
			x.forward(p[i:])
		}
	case rtcpAPP:
		if len(p) < 12 { // header, SSRC/CSRC, name
			return ErrTooShort
		}
		x.forward(p[4:])
	case rtcpRTPFB, rtcpPSFB:
		return x.feedback(p, count)
	case rtcpXR:
		return x.xr(p)
	}
	return nil
}

// reportBlocks handles count report blocks at the start of b (RFC 3550
// section 6.4.1); the caller has checked that they fit.
func (x *translator) reportBlocks(b []byte, count int) {
	for i := range count {
		blk := b[i*reportBlockLen:]
		if m := x.back(blk); m != nil {
			ext := binary.BigEndian.Uint32(blk[8:])
			binary.BigEndian.PutUint32(blk[8:], unmapExtSeq(ext, m.SeqOffset))
		}
	}
}

// sdes handles an SDES packet's count chunks (RFC 3550 section 6.5): an
// SSRC/CSRC, items of type, length and text, and a null item type that ends
// the list, followed by nulls up to the next 32-bit boundary.
func (x *translator) sdes(p []byte, count int) error {
	q := rtcpHeaderLen
	for range count {
		if q+4 > len(p) {
			return ErrRTCPCount
		}
		x.forward(p[q:])
		q += 4
		for {
			if q >= len(p) {
				return ErrRTCPMalformed // no end of item list
			}
			if p[q] == 0 {
				q = (q + 4) &^ 3
				break
			}
			if q+2 > len(p) {
				return ErrRTCPMalformed
			}
			q += 2 + int(p[q+1])
		}
		if q > len(p) {
			return ErrRTCPMalformed
		}
	}
	return nil
}

// feedback handles an RTPFB or PSFB packet (RFC 4585 section 6.1) with
// feedback message type format.
func (x *translator) feedback(p []byte, format int) error {
	if len(p) < feedbackLen {
		return ErrTooShort
	}
	fci := p[feedbackLen:]
	switch {
	case p[1] == rtcpRTPFB && format == fmtNACK:
		if len(fci)%4 != 0 {
			return ErrRTCPMalformed
		}
	case p[1] == rtcpRTPFB && (format == fmtTMMBR || format == fmtTMMBN),
		p[1] == rtcpPSFB && format == fmtFIR:
		if len(fci)%8 != 0 {
			return ErrRTCPMalformed
		}
	case p[1] == rtcpPSFB && format == fmtAFB && isREMB(fci):
		if len(fci) < 8 || len(fci) < 8+4*int(fci[4]) {
			return ErrRTCPMalformed
		}
	}
	x.forward(p[4:])
	m := x.back(p[8:])
	if x == nil {
		return nil
	}
	switch {
	case p[1] == rtcpRTPFB && format == fmtNACK:
		for i := 0; i < len(fci); i += 4 {
			unmapSeq16(fci[i:], m)
		}
	case p[1] == rtcpRTPFB && (format == fmtTMMBR || format == fmtTMMBN),
		p[1] == rtcpPSFB && format == fmtFIR:
		for i := 0; i < len(fci); i += 8 {
			x.back(fci[i:])
		}
	case p[1] == rtcpPSFB && format == fmtAFB && isREMB(fci):
		for i := range int(fci[4]) {
			x.back(fci[8+4*i:])
		}
	}
	return nil
}

// isREMB reports whether application layer feedback FCI is a REMB message:
// the ASCII identifier "REMB", then the number of SSRCs, the bitrate and
// the SSRCs.
func isREMB(fci []byte) bool {
	return len(fci) >= 4 && fci[0] == 'R' && fci[1] == 'E' && fci[2] == 'M' && fci[3] == 'B'
}

// XR report block types (RFC 3611 section 4).
const (
	xrLossRLE        = 1
	xrDuplicateRLE   = 2
	xrReceiptTimes   = 3
	xrDLRR           = 5
	xrStatsSummary   = 6
	xrVoIPMetrics    = 7
	xrDLRRSubLen     = 12 // SSRC, LRR, DLRR
	xrSeqRangeOffset = 8  // begin_seq, end_seq
)

// xr handles an XR packet (RFC 3611 section 2): a header, the sender's
// SSRC and report blocks of type, type-specific byte and length in 32-bit
// words after the block header.
func (x *translator) xr(p []byte) error {
	if len(p) < 8 {
		return ErrTooShort
	}
	x.forward(p[4:])
	for q := 8; q < len(p); {
		if q+4 > len(p) {
			return ErrRTCPMalformed
		}
		n := 4 + 4*int(binary.BigEndian.Uint16(p[q+2:]))
		if q+n > len(p) {
			return ErrRTCPMalformed
		}
		blk := p[q : q+n]
		q += n
		switch blk[0] {
		case xrLossRLE, xrDuplicateRLE, xrReceiptTimes, xrStatsSummary:
			if n < 12 {
				return ErrRTCPMalformed
			}
			m := x.back(blk[4:])
			unmapSeq16(blk[xrSeqRangeOffset:], m)
			unmapSeq16(blk[xrSeqRangeOffset+2:], m)
		case xrVoIPMetrics:
			if n < 8 {
				return ErrRTCPMalformed
			}
			x.back(blk[4:])
		case xrDLRR:
			if (n-4)%xrDLRRSubLen != 0 {
				return ErrRTCPMalformed
			}
			for i := 4; i < n; i += xrDLRRSubLen {
				x.back(blk[i:])
			}
		}
	}
	return nil
}
