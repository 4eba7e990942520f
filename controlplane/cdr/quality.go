package cdr

import (
	"time"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Quality is one leg's media quality, as the dataplane measured it on the
// leg's first stream (the audio of a SIP leg; a browser's first m-line).
// In is what Strait received from the leg's peer (the node's own count of
// sequence gaps and its RFC 3550 jitter estimate); Out is what the peer
// received from Strait, from the peer's RTCP receiver reports (absent when
// the peer sends none, as sipp does). Both carry the round trip between
// Strait and the peer when the peer answers sender reports.
type Quality struct {
	In  *DirectionQuality `json:"in,omitempty"`
	Out *DirectionQuality `json:"out,omitempty"`
	// Received details In: packets expected from the sequence numbers and
	// received, late (reordered or duplicated) packets, holes in the
	// sequence, and restarts of the far end's sequence.
	Expected      uint64 `json:"expected"`
	Received      uint64 `json:"received"`
	Late          uint64 `json:"late"`
	Gaps          uint64 `json:"gaps"`
	SequenceJumps uint64 `json:"sequence_jumps"`
}

// DirectionQuality sums up one direction of a leg over the call's
// measurement intervals (5 s each, the last one shorter).
type DirectionQuality struct {
	// Intervals is how many intervals were measured.
	Intervals int `json:"intervals"`
	// PacketsLost is cumulative: counted by Strait (in) or as the peer
	// last reported it (out).
	PacketsLost int64 `json:"packets_lost"`
	// Loss is the fraction of packets lost per interval (0..1), JitterMs
	// the interarrival jitter, RTTMs the round trip (intervals without a
	// known RTT left out; absent when none was), MOS the estimated mean
	// opinion score (1..4.5; simplified ITU-T G.107 E-model, see the
	// README).
	Loss     Stat  `json:"loss"`
	JitterMs Stat  `json:"jitter_ms"`
	RTTMs    *Stat `json:"rtt_ms,omitempty"`
	MOS      Stat  `json:"mos"`
	// Last is the latest interval.
	Last *Point `json:"last,omitempty"`
	// Series are the intervals, oldest first: at most 64 points spread over
	// the whole call (older points merge two by two as it goes on).
	Series []Point `json:"series,omitempty"`
}

// Stat is a figure's minimum, mean and maximum over the intervals.
type Stat struct {
	Min float64 `json:"min"`
	Avg float64 `json:"avg"`
	Max float64 `json:"max"`
}

// Point is one interval (or a merged run of them).
type Point struct {
	// End is when the interval ended; Seconds its length.
	End      time.Time `json:"end"`
	Seconds  float64   `json:"seconds"`
	Loss     float64   `json:"loss"`
	JitterMs float64   `json:"jitter_ms"`
	RTTMs    float64   `json:"rtt_ms,omitempty"`
	MOS      float64   `json:"mos"`
}

// QualityOf returns a leg's quality from the dataplane's state of it, nil
// when nothing was measured.
func QualityOf(l *pb.Leg) *Quality {
	if len(l.GetStreams()) == 0 {
		return nil
	}
	sq := l.GetStreams()[0].GetQuality()
	in, out := directionOf(sq.GetIn()), directionOf(sq.GetOut())
	if in == nil && out == nil {
		return nil
	}
	r := sq.GetReceived()
	return &Quality{In: in, Out: out, Expected: r.GetExpected(), Received: r.GetReceived(),
		Late: r.GetLate(), Gaps: r.GetGaps(), SequenceJumps: r.GetSequenceJumps()}
}

func directionOf(d *pb.DirectionQuality) *DirectionQuality {
	if d.GetSamples() == 0 {
		return nil
	}
	out := &DirectionQuality{Intervals: int(d.GetSamples()), PacketsLost: d.GetPacketsLost(),
		Loss: statOf(d.GetLoss()), JitterMs: statOf(d.GetJitterMs()), MOS: statOf(d.GetMos())}
	if d.GetRttMs() != nil {
		s := statOf(d.GetRttMs())
		out.RTTMs = &s
	}
	if d.GetLast() != nil {
		p := pointOf(d.GetLast())
		out.Last = &p
	}
	for _, p := range d.GetSeries() {
		out.Series = append(out.Series, pointOf(p))
	}
	return out
}

func pointOf(p *pb.QualitySample) Point {
	return Point{End: time.Unix(0, p.GetUnixNano()).UTC(), Seconds: p.GetSeconds(),
		Loss: p.GetLoss(), JitterMs: p.GetJitterMs(), RTTMs: p.GetRttMs(), MOS: p.GetMos()}
}

func statOf(s *pb.QualityStat) Stat {
	return Stat{Min: s.GetMin(), Avg: s.GetAvg(), Max: s.GetMax()}
}

// Latest is q without the series (Last says how the latest interval
// went): what a live quality event carries.
func (q *Quality) Latest() *Quality {
	if q == nil {
		return nil
	}
	c := *q
	for _, d := range []**DirectionQuality{&c.In, &c.Out} {
		if *d != nil {
			x := **d
			x.Series = nil
			*d = &x
		}
	}
	return &c
}
