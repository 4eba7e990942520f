// Package demux classifies datagrams that share one UDP port by their first
// bytes, as RFC 7983 (section 7) and RFC 5761 (section 4) prescribe, so that
// STUN, DTLS and RTP/RTCP can be told apart without parsing them.
package demux

// Class is what a datagram carries.
type Class uint8

// Classes of datagram, in the order RFC 7983 lists their first-byte ranges.
const (
	// Unknown is anything outside the ranges below (ZRTP, TURN channels,
	// garbage, or a datagram too short to classify).
	Unknown Class = iota
	// STUN: first byte 0..3 (RFC 7983 section 7).
	STUN
	// DTLS: first byte 20..63.
	DTLS
	// RTP: first byte 128..191 and a second byte outside the RTCP range.
	RTP
	// RTCP: first byte 128..191 and a second byte (packet type) 192..223
	// (RFC 5761 section 4: RTP payload types 64..95 are avoided so that
	// the marker bit plus payload type never collides with these values).
	RTCP
)

// String returns the class name as used in metric labels.
func (c Class) String() string {
	switch c {
	case STUN:
		return "stun"
	case DTLS:
		return "dtls"
	case RTP:
		return "rtp"
	case RTCP:
		return "rtcp"
	}
	return "unknown"
}

// Minimum sizes below which a datagram cannot be what its first byte says:
// a STUN header is 20 bytes (RFC 5389 section 6), a DTLS record header 13
// (RFC 6347 section 4.1), an RTP header 12 (RFC 3550 section 5.1) and an RTCP
// header 8 (RFC 3550 section 6.4.1; an empty RR is 8 bytes).
const (
	minSTUN = 20
	minDTLS = 13
	minRTP  = 12
	minRTCP = 8
)

// Classify returns the class of datagram b. It reads at most two bytes plus
// the length and never allocates.
func Classify(b []byte) Class {
	if len(b) < minRTCP {
		return Unknown
	}
	switch first := b[0]; {
	case first <= 3:
		if len(b) < minSTUN {
			return Unknown
		}
		return STUN
	case first >= 20 && first <= 63:
		if len(b) < minDTLS {
			return Unknown
		}
		return DTLS
	case first >= 128 && first <= 191:
		if pt := b[1]; pt >= 192 && pt <= 223 {
			return RTCP
		}
		if len(b) < minRTP {
			return Unknown
		}
		return RTP
	}
	return Unknown
}
