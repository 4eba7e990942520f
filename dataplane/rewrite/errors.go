package rewrite

import "errors"

// Errors returned by this package. They are sentinel values, compared with
// == or [errors.Is], and returning them never allocates. A function that
// returns one of them has left its buffer unchanged.
var (
	// ErrTooShort: the packet is shorter than its fixed header, or than a
	// length it announces.
	ErrTooShort = errors.New("rewrite: packet too short")
	// ErrVersion: the version field of an RTP or RTCP header is not 2.
	ErrVersion = errors.New("rewrite: version is not 2")
	// ErrCSRCOverrun: the RTP CSRC count announces more CSRCs than the
	// packet holds.
	ErrCSRCOverrun = errors.New("rewrite: CSRC list overruns packet")
	// ErrExtensionOverrun: the RTP header extension, or its length field,
	// does not fit in the packet.
	ErrExtensionOverrun = errors.New("rewrite: header extension overruns packet")
	// ErrPadding: the padding bit is set but the padding count is zero or
	// larger than what follows the header.
	ErrPadding = errors.New("rewrite: invalid padding count")
	// ErrPayloadType: a payload type is not in 0..127.
	ErrPayloadType = errors.New("rewrite: payload type out of range")

	// ErrDuplicate: the packet would be sent with an output sequence number
	// that this stream has already sent. The caller drops it.
	ErrDuplicate = errors.New("rewrite: duplicate output sequence number")
	// ErrStale: the packet arrived too late to be given an output sequence
	// number that is known to be unused. The caller drops it.
	ErrStale = errors.New("rewrite: packet too late to renumber")
	// ErrJump: the packet's sequence number jumps away from the stream's
	// without a pause before it, so it is either very late or the first
	// of a restarted stream; the next packet decides. The caller drops it.
	ErrJump = errors.New("rewrite: sequence jump awaiting confirmation")

	// ErrRTCPType: an RTCP packet type is outside 192..223, the range that
	// RFC 5761 section 4 reserves for RTCP.
	ErrRTCPType = errors.New("rewrite: not an RTCP packet type")
	// ErrRTCPLength: an RTCP length field points past the end of the
	// compound packet.
	ErrRTCPLength = errors.New("rewrite: RTCP length overruns packet")
	// ErrRTCPCount: an RTCP report or source count announces more entries
	// than the packet's length holds.
	ErrRTCPCount = errors.New("rewrite: RTCP count overruns packet")
	// ErrRTCPMalformed: the body of an RTCP packet (SDES chunks, BYE reason,
	// feedback FCI, XR blocks) is inconsistent with its length.
	ErrRTCPMalformed = errors.New("rewrite: malformed RTCP packet")
)
