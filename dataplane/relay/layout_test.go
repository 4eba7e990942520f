package relay

import (
	"testing"
	"unsafe"
)

// field is a struct field's place: offset and size in bytes.
type field struct {
	name      string
	off, size uintptr
}

// apart reports whether every field of a and every field of b are at
// least a cache line apart, so that no 64-byte line holds one of each
// wherever the struct starts.
func apart(a, b []field) (string, bool) {
	const line = 64
	for _, x := range a {
		for _, y := range b {
			lo, hi := x, y
			if y.off < x.off {
				lo, hi = y, x
			}
			if hi.off-(lo.off+lo.size) < line-1 {
				return x.name + " and " + y.name, false
			}
		}
	}
	return "", true
}

// TestLegLayout pins what the packet path writes from the receiving side
// and from the sending side of a leg or stream onto different cache lines
// (two workers often serve the two directions of one session).
func TestLegLayout(t *testing.T) {
	var l Leg
	ctr := unsafe.Offsetof(l.ctr)
	in := []field{
		{"started", unsafe.Offsetof(l.started), unsafe.Sizeof(l.started)},
		{"timedOut", unsafe.Offsetof(l.timedOut), unsafe.Sizeof(l.timedOut)},
		{"inMu", unsafe.Offsetof(l.inMu), unsafe.Sizeof(l.inMu)},
		{"dec", unsafe.Offsetof(l.dec), unsafe.Sizeof(l.dec)},
		{"decProven", unsafe.Offsetof(l.decProven), 1},
		{"ctr.packetsIn", ctr + unsafe.Offsetof(l.ctr.packetsIn), 8},
		{"ctr.lastIn", ctr + unsafe.Offsetof(l.ctr.lastIn), 8},
	}
	out := []field{
		{"ctr.packetsOut", ctr + unsafe.Offsetof(l.ctr.packetsOut), 8},
		{"ctr.rtcpOut", ctr + unsafe.Offsetof(l.ctr.rtcpOut), 8},
		{"outMu", unsafe.Offsetof(l.outMu), unsafe.Sizeof(l.outMu)},
		{"enc", unsafe.Offsetof(l.enc), unsafe.Sizeof(l.enc)},
	}
	if pair, ok := apart(in, out); !ok {
		t.Errorf("Leg: %s share a cache line", pair)
	}
	var s Stream
	sIn := []field{
		{"inSSRC", unsafe.Offsetof(s.inSSRC), unsafe.Sizeof(s.inSSRC)},
		{"q.rxBusy", unsafe.Offsetof(s.q) + unsafe.Offsetof(s.q.rxBusy), 4},
	}
	sOut := []field{{"out", unsafe.Offsetof(s.out), unsafe.Sizeof(s.out)}}
	if pair, ok := apart(sIn, sOut); !ok {
		t.Errorf("Stream: %s share a cache line", pair)
	}
}
