// Package payload writes and checks the RTP payloads the bench harness
// sends: every byte of a payload is either a header field the receiver can
// check (flow, sequence, send time and a check word over them) or filler
// derived deterministically from (flow, sequence), so a receiver verifies a
// payload byte for byte without keeping a copy of what was sent.
//
// The send time makes one-way latency measurable, and the sequence number
// in the payload (not the RTP one, which a relay may renumber) makes loss
// and duplicates countable.
//
// Layout (big-endian):
//
//	0:4   flow id
//	4:12  sequence number within the flow (0, 1, 2, ...)
//	12:20 send time, nanoseconds on the harness's monotonic clock
//	20:24 check word: mix(flow, seq, time)
//	24:   filler: a xorshift stream seeded by (flow, seq)
package payload

import (
	"encoding/binary"
	"errors"
)

// HeaderLen is the length of the checked header; payloads are at least
// this long.
const HeaderLen = 24

// Sizes of the payloads the harness sends: one 20 ms G.711 frame
// (RFC 3551 section 4.5.14), and a typical 20 ms Opus voice frame at
// around 32 kbit/s (RFC 7587 leaves the size to the encoder).
const (
	PCMUSize = 160
	OpusSize = 80
)

// Errors returned by Check.
var (
	ErrShort    = errors.New("payload: shorter than its header")
	ErrMismatch = errors.New("payload: bytes differ from what was sent")
)

// Write fills p (len(p) >= HeaderLen) with the payload of packet seq of
// flow, sent at nanos.
func Write(p []byte, flow uint32, seq uint64, nanos int64) {
	binary.BigEndian.PutUint32(p[0:4], flow)
	binary.BigEndian.PutUint64(p[4:12], seq)
	binary.BigEndian.PutUint64(p[12:20], uint64(nanos))
	binary.BigEndian.PutUint32(p[20:24], check(flow, seq, nanos))
	fill(p[HeaderLen:], flow, seq)
}

// Header reads the header fields of p without checking them.
func Header(p []byte) (flow uint32, seq uint64, nanos int64, ok bool) {
	if len(p) < HeaderLen {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(p[0:4]), binary.BigEndian.Uint64(p[4:12]), int64(binary.BigEndian.Uint64(p[12:20])), true
}

// Check verifies every byte of p, of the expected length, and returns its
// flow, sequence number and send time. It does not allocate.
func Check(p []byte, wantLen int) (flow uint32, seq uint64, nanos int64, err error) {
	flow, seq, nanos, ok := Header(p)
	if !ok {
		return 0, 0, 0, ErrShort
	}
	if len(p) != wantLen || binary.BigEndian.Uint32(p[20:24]) != check(flow, seq, nanos) || !filled(p[HeaderLen:], flow, seq) {
		return flow, seq, nanos, ErrMismatch
	}
	return flow, seq, nanos, nil
}

// check mixes the header fields (a splitmix64 finaliser), so that a flipped
// bit in the flow, sequence or time is caught.
func check(flow uint32, seq uint64, nanos int64) uint32 {
	x := uint64(flow)<<32 ^ seq ^ uint64(nanos)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return uint32(x)
}

func seed(flow uint32, seq uint64) uint64 {
	s := uint64(flow)*0x9e3779b97f4a7c15 ^ seq*0xd1b54a32d192ed03
	if s == 0 {
		s = 1
	}
	return s
}

// next is xorshift64.
func next(s uint64) uint64 {
	s ^= s << 13
	s ^= s >> 7
	s ^= s << 17
	return s
}

func fill(p []byte, flow uint32, seq uint64) {
	s := seed(flow, seq)
	for len(p) >= 8 {
		s = next(s)
		binary.LittleEndian.PutUint64(p, s)
		p = p[8:]
	}
	s = next(s)
	for i := range p {
		p[i] = byte(s >> (8 * i))
	}
}

func filled(p []byte, flow uint32, seq uint64) bool {
	s := seed(flow, seq)
	for len(p) >= 8 {
		s = next(s)
		if binary.LittleEndian.Uint64(p) != s {
			return false
		}
		p = p[8:]
	}
	s = next(s)
	for i := range p {
		if p[i] != byte(s>>(8*i)) {
			return false
		}
	}
	return true
}
