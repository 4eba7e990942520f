package relay

import (
	"encoding/binary"
	"testing"

	"github.com/pion/transport/v5/replaydetector"
)

// FuzzReplayWindow is a differential fuzz target: replayWindow and pion's
// own sliding window (replaydetector.New(128, max), what
// srtp.SRTPReplayProtection builds) are driven with the same arbitrary
// sequence of events (an index checked, a checked token accepted once
// its packet authenticated, in any order, or never) and must give the
// same answers. It also holds replayWindow to RFC 3711 section 3.3.2
// itself: an accepted index never passes the check again, an index more
// than 128 behind the highest one accepted never passes, and an index
// never accepted that is within the window always passes.
//
// Each event is 9 bytes: an op byte and a 64-bit operand.
func FuzzReplayWindow(f *testing.F) {
	ev := func(op byte, v uint64) []byte {
		b := make([]byte, 9)
		b[0] = op
		binary.LittleEndian.PutUint64(b[1:], v)
		return b
	}
	cat := func(evs ...[]byte) []byte {
		var out []byte
		for _, e := range evs {
			out = append(out, e...)
		}
		return out
	}
	f.Add(cat(ev(0, 0), ev(0x80, 0), ev(0, 0)))                                      // index 0 accepted once
	f.Add(cat(ev(1, 5), ev(1, 1000), ev(0x80, 1), ev(0x80, 0)))                      // accepts out of order
	f.Add(cat(ev(1, 200), ev(0x80, 0), ev(2, 128), ev(2, 127), ev(0x80, 0)))         // window edges
	f.Add(cat(ev(3, 0), ev(0x80, 0), ev(4, 64), ev(0x80, 0), ev(2, 1), ev(0x80, 0))) // near the top
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, max := range []uint64{maxSRTPIndex, maxSRTCPIndex} {
			replayDifferential(t, max, data)
		}
	})
}

func replayDifferential(t *testing.T, max uint64, data []byte) {
	ours := &replayWindow{max: max}
	pion := replaydetector.New(replayWindowBits, max).(replaydetector.CheckAccepter)
	type pending struct{ a, b replaydetector.Token }
	var toks []pending
	accepted := map[uint64]bool{}
	var latest uint64 // highest index accepted
	anyAccepted := false
	for len(data) >= 9 {
		op, v := data[0], binary.LittleEndian.Uint64(data[1:9])
		data = data[9:]
		if op&0x80 != 0 { // accept a pending token (its packet authenticated)
			if len(toks) == 0 {
				continue
			}
			k := int(v % uint64(len(toks)))
			p := toks[k]
			toks = append(toks[:k], toks[k+1:]...)
			la, lb := ours.Accept(p.a), pion.Accept(p.b)
			if la != lb {
				t.Fatalf("max %d: accepting %d (passed %v): ours latest %v, pion %v", max, p.a.Seq(), p.a.Passed(), la, lb)
			}
			if p.a.Passed() {
				accepted[p.a.Seq()] = true
				if !anyAccepted || p.a.Seq() > latest {
					latest = p.a.Seq()
				}
				anyAccepted = true
			}
			continue
		}
		var seq uint64
		switch op % 6 {
		case 0: // behind the highest index, around the window
			seq = ours.latest - v%300
		case 1: // ahead of it, up to a few windows
			seq = ours.latest + v%600
		case 2: // the window's edges
			seq = ours.latest - 126 + v%4
		case 3: // the top of the index space
			seq = max - v%300
		case 4: // a far jump
			seq = ours.latest + v%(1<<40)
		default: // anything
			seq = v
		}
		a, b := ours.CheckSeq(seq), pion.CheckSeq(seq)
		if a.Passed() != b.Passed() {
			t.Fatalf("max %d: index %d (latest %d): ours passed %v, pion %v", max, seq, ours.latest, a.Passed(), b.Passed())
		}
		// RFC 3711 section 3.3.2, on replayWindow alone.
		switch {
		case accepted[seq] && a.Passed():
			t.Fatalf("max %d: index %d accepted before passes again", max, seq)
		case anyAccepted && seq+replayWindowBits <= latest && a.Passed():
			t.Fatalf("max %d: index %d, more than the window behind %d, passes", max, seq, latest)
		case seq <= max && !accepted[seq] && (!anyAccepted || seq+replayWindowBits > latest) && !a.Passed():
			t.Fatalf("max %d: index %d never accepted, within the window of %d, refused", max, seq, latest)
		}
		if len(toks) < 64 {
			toks = append(toks, pending{a, b})
		}
	}
}
