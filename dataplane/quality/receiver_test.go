package quality

import (
	"math"
	"testing"
)

// feed sends the sequence numbers seqs at 20 ms intervals with timestamps
// 160 apart (8 kHz, 20 ms) to a new receiver; jitter[i] delays packet i.
func feed(seqs []uint16, jitter func(i int) int64) *Receiver {
	var r Receiver
	now := int64(1_700_000_000e9)
	for i, s := range seqs {
		d := int64(0)
		if jitter != nil {
			d = jitter(i)
		}
		r.Update(s, uint32(s)*160, 0, 8000, now+int64(s)*20e6+d)
	}
	return &r
}

func run(from, to int) []uint16 {
	var out []uint16
	for i := from; i < to; i++ {
		out = append(out, uint16(i))
	}
	return out
}

func TestReceiver(t *testing.T) {
	without := func(s []uint16, drop ...uint16) []uint16 {
		var out []uint16
	next:
		for _, v := range s {
			for _, d := range drop {
				if v == d {
					continue next
				}
			}
			out = append(out, v)
		}
		return out
	}
	for _, tc := range []struct {
		name               string
		seqs               []uint16
		received, expected uint64
		lost               int64
		late, gaps, jumps  uint64
	}{
		// The first packet is the probation packet of RFC 3550 A.1: the
		// run starts with the second.
		{"clean", run(0, 100), 99, 99, 0, 0, 0, 0},
		{"five lost", without(run(0, 100), 10, 20, 21, 50, 90), 94, 99, 5, 0, 4, 0},
		{"reordered", append(append(run(0, 50), 51, 50), run(52, 100)...), 99, 99, 0, 1, 1, 0},
		{"duplicates", append(run(0, 50), run(40, 45)...), 54, 49, 0 - 5, 5, 0, 0},
		{"wrap", run(65500, 65636), 135, 135, 0, 0, 0, 0},
		{"restart far away", append(run(0, 50), run(30000, 30050)...), 98, 98, 0, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := feed(tc.seqs, nil).Stats()
			if s.Received != tc.received || s.Expected != tc.expected || s.Lost != tc.lost ||
				s.Late != tc.late || s.Gaps != tc.gaps || s.Jumps != tc.jumps {
				t.Fatalf("got %+v, want received %d expected %d lost %d late %d gaps %d jumps %d",
					s, tc.received, tc.expected, tc.lost, tc.late, tc.gaps, tc.jumps)
			}
			if s.Jitter != 0 {
				t.Errorf("jitter %v on a perfectly paced stream", s.Jitter)
			}
		})
	}
}

// TestReceiverJitter checks the A.8 estimate against a stream whose
// packets alternate between on time and 10 ms late: every transit
// difference is 10 ms, so the estimate converges to 10 ms.
func TestReceiverJitter(t *testing.T) {
	r := feed(run(0, 500), func(i int) int64 { return int64(i%2) * 10e6 })
	if j := r.Stats().Jitter; math.Abs(j-0.010) > 0.0005 {
		t.Fatalf("jitter %v s, want 0.010", j)
	}
	var unknown Receiver
	unknown.Update(1, 0, 0, 0, 1)
	unknown.Update(2, 160, 0, 0, 2e7)
	if j := unknown.Stats().Jitter; j != 0 {
		t.Fatalf("jitter %v with no clock rate", j)
	}
}

// TestReceiverStatsWhileUpdating reads the statistics while a writer
// updates them, across sequence wraps and a restart: every reading is a
// consistent one (never an expected count from two updates' halves).
func TestReceiverStatsWhileUpdating(t *testing.T) {
	var r Receiver
	done := make(chan struct{})
	go func() {
		defer close(done)
		now := int64(1e18)
		for i := range 200_000 {
			seq := uint16(i)
			if i >= 100_000 {
				seq = uint16(i + 30_000) // a far-end restart
			}
			now += 20e6
			r.Update(seq, uint32(i)*160, 0, 8000, now)
		}
	}()
	for {
		s := r.Stats()
		if s.Expected > 200_000 || s.Received > s.Expected+1 {
			t.Fatalf("inconsistent reading %+v", s)
		}
		select {
		case <-done:
			if s := r.Stats(); s.Expected != 199_998 || s.Jumps != 1 || s.Lost != 0 {
				t.Fatalf("final %+v", s)
			}
			return
		default:
		}
	}
}
