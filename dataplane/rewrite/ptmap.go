package rewrite

// ptMapped marks a PTMap entry as present; the low 7 bits are the output
// payload type.
const ptMapped = 0x80

// PTMap maps the RTP payload types received on one leg to the payload types
// negotiated for the same codecs on the other leg. The caller builds one per
// direction from the two codec lists; a payload type that is not in the map
// is one the caller drops (and counts).
//
// The zero value maps nothing: every payload type is dropped. A PTMap is a
// 128-byte value with no pointers; copy it to snapshot it. It is not safe
// for concurrent use while being modified.
type PTMap struct {
	m [maxPT + 1]uint8 // ptMapped|out, or 0 for drop
}

// Set maps input payload type in to output payload type out. It returns
// [ErrPayloadType], and changes nothing, if either is above 127. It does not
// enforce RFC 5761 section 4's advice to avoid 64..95 when RTP and RTCP share
// a port; that is the negotiating side's job.
func (m *PTMap) Set(in, out uint8) error {
	if in > maxPT || out > maxPT {
		return ErrPayloadType
	}
	m.m[in] = ptMapped | out
	return nil
}

// Delete removes the mapping for in, if any, so that in is dropped.
func (m *PTMap) Delete(in uint8) {
	if in <= maxPT {
		m.m[in] = 0
	}
}

// Lookup returns the output payload type for in, and false if in is not
// mapped (or is above 127) and the packet must be dropped.
func (m *PTMap) Lookup(in uint8) (out uint8, ok bool) {
	if in > maxPT {
		return 0, false
	}
	e := m.m[in]
	return e &^ ptMapped, e&ptMapped != 0
}
