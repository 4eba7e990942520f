package quality

import (
	"encoding/binary"
	"errors"
)

// Errors of [ParseReports]: the compound packet is not RTCP a relay should
// forward. They are sentinel values; returning them does not allocate.
var (
	ErrTooShort = errors.New("quality: RTCP packet too short")
	ErrVersion  = errors.New("quality: RTCP version is not 2")
	ErrLength   = errors.New("quality: RTCP length overruns the datagram")
	ErrCount    = errors.New("quality: RTCP report count overruns its packet")
)

// RTCP packet types read here (RFC 3550 section 12.1).
const (
	typeSR = 200
	typeRR = 201
)

// Fixed sizes of SR and RR packets (RFC 3550 sections 6.4.1 and 6.4.2).
const (
	headerLen  = 4
	srFixedLen = 28 // header, sender SSRC, NTP timestamp, RTP timestamp, counts
	rrFixedLen = 8  // header, sender SSRC
	blockLen   = 24 // one report block
)

// MaxBlocks is how many report blocks [Reports] keeps from one compound
// packet. An endpoint reports on each stream it receives: one audio and a
// few video streams. Further blocks are counted in Reports.Skipped.
const MaxBlocks = 8

// Block is one report block of an SR or RR (RFC 3550 section 6.4.1): what
// the report's sender received of the stream SSRC.
type Block struct {
	// SSRC is the source the block reports on, as the report's sender
	// knows it.
	SSRC uint32
	// FractionLost is the fraction of packets lost since the previous
	// report, in 1/256 units.
	FractionLost uint8
	// CumulativeLost is the signed 24-bit count of packets lost since
	// reception began (negative with duplicates).
	CumulativeLost int32
	// HighestSeq is the extended highest sequence number received.
	HighestSeq uint32
	// Jitter is the interarrival jitter in RTP timestamp units.
	Jitter uint32
	// LSR is the middle 32 bits of the NTP timestamp of the last SR the
	// report's sender received from SSRC, 0 if none; DLSR the delay since
	// then in 1/65536 seconds.
	LSR, DLSR uint32
}

// Reports is what a compound RTCP packet says about quality: the sender
// info of its first SR and its report blocks. The zero value is empty; a
// Reports is a fixed-size value with no pointers, reused packet after
// packet.
type Reports struct {
	// HasSR tells whether the packet carried a sender report; SenderSSRC
	// and NTP (the full 64-bit NTP timestamp) are its sender info.
	HasSR      bool
	SenderSSRC uint32
	NTP        uint64
	// Blocks[:N] are the report blocks of every SR and RR in the packet.
	Blocks [MaxBlocks]Block
	N      int
	// Skipped counts report blocks beyond MaxBlocks.
	Skipped int
}

// LSR is the middle 32 bits of the SR's NTP timestamp: the value a receiver
// of this SR puts in the LSR field of its reports (RFC 3550 section 6.4.1).
func (r *Reports) LSR() uint32 { return uint32(r.NTP >> 16) }

// ParseReports reads the SR and RR packets of the compound (RFC 3550
// section 6.1) or reduced-size (RFC 5506) RTCP packet pkt into r,
// overwriting it. Other packet types are skipped. pkt comes from the
// network: every length is checked against what is left of pkt, and an
// invalid packet is refused whole (r then holds whatever was read before
// the error and must not be used). It does not modify or retain pkt and
// never allocates.
func ParseReports(pkt []byte, r *Reports) error {
	*r = Reports{}
	if len(pkt) < headerLen {
		return ErrTooShort
	}
	for len(pkt) > 0 {
		if len(pkt) < headerLen {
			return ErrTooShort
		}
		if pkt[0]>>6 != 2 {
			return ErrVersion
		}
		size := 4 * (int(binary.BigEndian.Uint16(pkt[2:])) + 1)
		if size > len(pkt) {
			return ErrLength
		}
		p := pkt[:size]
		pkt = pkt[size:]
		if p[0]&0x20 != 0 { // padding: the last octet counts it (section 6.4.1)
			n := int(p[size-1])
			if n == 0 || n > size-headerLen {
				return ErrLength
			}
			p = p[:size-n]
		}
		count := int(p[0] & 0x1f)
		switch p[1] {
		case typeSR:
			if len(p) < srFixedLen+count*blockLen {
				return ErrCount
			}
			if !r.HasSR {
				r.HasSR = true
				r.SenderSSRC = binary.BigEndian.Uint32(p[4:])
				r.NTP = binary.BigEndian.Uint64(p[8:])
			}
			r.blocks(p[srFixedLen:], count)
		case typeRR:
			if len(p) < rrFixedLen+count*blockLen {
				return ErrCount
			}
			r.blocks(p[rrFixedLen:], count)
		}
	}
	return nil
}

// blocks reads count report blocks from b, whose length the caller checked.
func (r *Reports) blocks(b []byte, count int) {
	for i := range count {
		if r.N == MaxBlocks {
			r.Skipped += count - i
			return
		}
		q := b[i*blockLen:]
		lost := int32(binary.BigEndian.Uint32(q[4:])<<8) >> 8 // sign-extend 24 bits
		r.Blocks[r.N] = Block{
			SSRC:           binary.BigEndian.Uint32(q),
			FractionLost:   q[4],
			CumulativeLost: lost,
			HighestSeq:     binary.BigEndian.Uint32(q[8:]),
			Jitter:         binary.BigEndian.Uint32(q[12:]),
			LSR:            binary.BigEndian.Uint32(q[16:]),
			DLSR:           binary.BigEndian.Uint32(q[20:]),
		}
		r.N++
	}
}
