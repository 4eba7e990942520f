package rewrite

import "encoding/binary"

// rtpHeaderLen is the size of the fixed RTP header (RFC 3550 section 5.1).
const rtpHeaderLen = 12

// maxPT is the largest RTP payload type; the field has 7 bits.
const maxPT = 127

// Header is a decoded view of an RTP packet's header, as returned by
// [ParseRTP]. It is a plain value: it holds no reference to the packet, so
// offsets in it are meaningful only for the buffer it was parsed from.
type Header struct {
	// Padding, Extension and Marker are the P, X and M bits.
	Padding   bool
	Extension bool
	Marker    bool
	// CSRCCount is the CC field: how many CSRCs follow the fixed header.
	CSRCCount uint8
	// PayloadType is the 7-bit PT field.
	PayloadType uint8
	// Sequence, Timestamp and SSRC are the fixed header's fields.
	Sequence  uint16
	Timestamp uint32
	SSRC      uint32
	// ExtensionProfile is the 16-bit profile-defined field that starts the
	// header extension (RFC 3550 section 5.3.1): 0xBEDE for RFC 8285
	// one-byte elements, 0x100x for two-byte ones. It is 0 without one.
	ExtensionProfile uint16
	// HeaderLen is the offset of the payload: 12 bytes, plus 4 per CSRC,
	// plus the extension's 4-byte header and 4 bytes per word of its length.
	HeaderLen int
	// PayloadLen is the length of the payload, padding excluded.
	PayloadLen int
	// PaddingLen is the number of padding bytes at the end of the packet,
	// count byte included; 0 unless Padding is set.
	PaddingLen int
}

// Payload returns the payload of b, the packet h was parsed from, with
// padding removed. The result aliases b.
func (h *Header) Payload(b []byte) []byte {
	return b[h.HeaderLen : h.HeaderLen+h.PayloadLen]
}

// ParseRTP decodes the header of the RTP packet b (RFC 3550 section 5.1).
// It checks that the version is 2 and that the CSRC list, the header
// extension (RFC 3550 section 5.3.1, RFC 8285 section 4) and the padding
// (whose count, in the last byte, includes itself and must be at least 1)
// all fit in b, and returns [ErrTooShort], [ErrVersion], [ErrCSRCOverrun],
// [ErrExtensionOverrun] or [ErrPadding] otherwise. A packet that is all
// padding, with an empty payload, is valid.
//
// ParseRTP only reads b and does not retain it. It never allocates.
func ParseRTP(b []byte) (Header, error) {
	if len(b) < rtpHeaderLen {
		return Header{}, ErrTooShort
	}
	if b[0]>>6 != 2 {
		return Header{}, ErrVersion
	}
	h := Header{
		Padding:     b[0]&0x20 != 0,
		Extension:   b[0]&0x10 != 0,
		CSRCCount:   b[0] & 0x0f,
		Marker:      b[1]&0x80 != 0,
		PayloadType: b[1] & 0x7f,
		Sequence:    binary.BigEndian.Uint16(b[2:]),
		Timestamp:   binary.BigEndian.Uint32(b[4:]),
		SSRC:        binary.BigEndian.Uint32(b[8:]),
	}
	n := rtpHeaderLen + 4*int(h.CSRCCount)
	if n > len(b) {
		return Header{}, ErrCSRCOverrun
	}
	if h.Extension {
		if n+4 > len(b) {
			return Header{}, ErrExtensionOverrun
		}
		h.ExtensionProfile = binary.BigEndian.Uint16(b[n:])
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
		if n > len(b) {
			return Header{}, ErrExtensionOverrun
		}
	}
	end := len(b)
	if h.Padding {
		if end == n {
			return Header{}, ErrPadding
		}
		p := int(b[end-1])
		if p == 0 || p > end-n {
			return Header{}, ErrPadding
		}
		h.PaddingLen = p
		end -= p
	}
	h.HeaderLen = n
	h.PayloadLen = end - n
	return h, nil
}
