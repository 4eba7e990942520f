package relay

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-sbc/strait/dataplane/quality"
	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// QualityInterval is how often, by default, the janitor samples each
// stream's quality into its call-long figures (Config.QualityInterval):
// short enough that a bad stretch of a call
// shows, as long as a typical RTCP report interval (5 s, RFC 3550 section
// 6.2) so that most intervals carry a fresh receiver report.
const QualityInterval = 5 * time.Second

// streamQuality is a stream's quality state.
//
// The packet path writes the first group. rx has one writer at a time:
// the worker that wins rxBusy (a compare-and-swap, uncontended in steady
// state because one worker serves a flow). During a path change, when two
// workers may receive the stream's packets at once, the loser leaves that
// packet out of the statistics rather than wait. The receiver-report
// figures and the SR log are single atomic words, written by whichever
// worker relays the RTCP.
//
// The control side (the janitor's sampling, the API's snapshots) owns the
// second group under mu.
type streamQuality struct {
	rxBusy atomic.Bool
	rx     quality.Receiver

	// From the peer's report blocks about what the node sends on the
	// stream. rrBusy makes one worker at a time the writer of rrPrevSeq
	// and rrPrevLost (the previous block's extended highest sequence and
	// cumulative loss, for the deltas; rrSeen once there is one); the
	// rest are atomics the control side reads. rrExpected and rrLostSum add
	// up, block after block, how many packets each report interval
	// expected and lost, so that the sampler's interval loss is exact
	// however many reports fell in it.
	rrBusy     atomic.Bool
	rrSeen     bool
	rrPrevSeq  uint32
	rrPrevLost int32
	rrFraction atomic.Uint32 // latest fraction lost, 1/256
	rrLost     atomic.Int64  // latest cumulative lost
	rrJitter   atomic.Uint32 // latest jitter, RTP timestamp units
	rrExpected atomic.Uint64
	rrLostSum  atomic.Uint64
	rrCount    atomic.Uint64 // report blocks taken
	rtt        atomic.Int64  // nanoseconds, node <-> peer; 0 unknown
	// srs are the sender reports forwarded to the peer on the stream.
	srs quality.SRLog

	mu       sync.Mutex // guards the fields below
	lastAt   int64      // unix nanoseconds of the last sample; 0 none yet
	prevExp  uint64
	prevRecv uint64
	prevRR   uint64
	prevRRx  uint64 // rrExpected at the last sample
	prevRRl  uint64 // rrLostSum at the last sample
	in, out  quality.Log
}

// receive accounts for an RTP packet (at least a fixed header, decrypted)
// received on the stream. It never allocates or waits.
func (q *streamQuality) receive(pkt []byte, pt uint8, clock uint32, now int64) {
	if !q.rxBusy.CompareAndSwap(false, true) {
		return // another worker is updating it: see streamQuality
	}
	q.rx.Update(binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), pt, clock, now)
	q.rxBusy.Store(false)
}

// report takes a report block the stream's peer sent about what the node
// sends it.
func (q *streamQuality) report(b *quality.Block, now int64) {
	if !q.rrBusy.CompareAndSwap(false, true) {
		return // another worker is taking a report of this stream
	}
	defer q.rrBusy.Store(false)
	if q.rrSeen {
		// RFC 3550 appendix A.3: expected and lost over the report
		// interval; a sequence that went backwards (a restart) or far
		// forward (a forged report) is a new baseline, not a count.
		exp := b.HighestSeq - q.rrPrevSeq
		if exp > 0 && exp < 1<<16 {
			q.rrExpected.Add(uint64(exp))
			if lost := b.CumulativeLost - q.rrPrevLost; lost > 0 {
				q.rrLostSum.Add(uint64(min(uint32(lost), exp)))
			}
		}
	}
	q.rrSeen, q.rrPrevSeq, q.rrPrevLost = true, b.HighestSeq, b.CumulativeLost
	q.rrFraction.Store(uint32(b.FractionLost))
	q.rrLost.Store(int64(b.CumulativeLost))
	q.rrJitter.Store(b.Jitter)
	if rtt, ok := q.srs.RTT(b.LSR, b.DLSR, now); ok {
		q.rtt.Store(max(int64(rtt*1e9), 1))
	}
	q.rrCount.Add(1)
}

// rtcpQuality reads the sender and receiver reports of the RTCP packet pkt
// that leg src's peer sent (decrypted, not yet translated) on its way to
// the peer leg, whose stream dsc it is relayed on. lc and dlc are the
// legs' configurations and received how src's streams were rewritten
// toward it. A malformed packet is left to TranslateRTCP to count.
func (w *worker) rtcpQuality(lc, dlc *legConfig, dsc *streamConfig, received *rewrite.StreamTable, pkt []byte) {
	r := &w.reports
	if quality.ParseReports(pkt, r) != nil {
		return
	}
	if r.HasSR {
		dsc.s.q.srs.Record(r.LSR(), w.now)
	}
	for i := range r.N {
		b := &r.Blocks[i]
		if sc := sentAs(lc, dlc, received, b.SSRC); sc != nil {
			sc.s.q.report(b, w.now)
		}
	}
}

// sentAs returns the stream of lc on which the node sends SSRC ssrc to the
// leg's peer: the SSRC a stream's outbound rewrite gives it, or, where
// nothing is rewritten, the SSRC the peer leg's stream receives.
func sentAs(lc, dlc *legConfig, received *rewrite.StreamTable, ssrc uint32) *streamConfig {
	for j := range lc.streams {
		if j < len(received) && received[j].Active {
			if received[j].OutSSRC == ssrc {
				return &lc.streams[j]
			}
		} else if j < len(dlc.streams) && dlc.streams[j].s.inSSRC.Load() == ssrc {
			return &lc.streams[j]
		}
	}
	return nil
}

// sample adds the interval since the last sample to the stream's figures
// when it is interval old, or, with final, whatever is new. since is
// when the first interval began. sc is the stream's configuration (codec
// for the E-model, clock rate of the peer's reports).
func (q *streamQuality) sample(sc *streamConfig, since, now, interval int64, final bool, report func(out bool, s quality.Sample)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lastAt == 0 {
		q.lastAt = since
	}
	span := now - q.lastAt
	if span <= 0 || (!final && span < interval) {
		return
	}
	if final && span < int64(time.Second) && q.in.MOS.N+q.out.MOS.N > 0 {
		return // a last sliver would weigh as much as a whole interval
	}
	q.lastAt = now
	var rtt float64
	rttNanos := q.rtt.Load()
	if rttNanos > 0 {
		rtt = float64(rttNanos) / 1e9
	}
	s := quality.Sample{UnixNano: now, Seconds: float64(span) / 1e9, RTT: rtt, HasRTT: rttNanos > 0}

	rs := q.rx.Stats()
	dRecv := rs.Received - q.prevRecv
	dExp := uint64(0)
	if rs.Expected > q.prevExp {
		dExp = rs.Expected - q.prevExp
	}
	q.prevExp, q.prevRecv = rs.Expected, rs.Received
	if dRecv > 0 {
		in := s
		if dExp > dRecv {
			in.Loss = float64(dExp-dRecv) / float64(dExp)
		}
		in.Jitter = rs.Jitter
		in.MOS = quality.EstimateMOS(sc.emodel, in.Loss, rtt, in.Jitter)
		q.in.Add(in)
		if report != nil {
			report(false, in)
		}
	}

	if n := q.rrCount.Load(); n != q.prevRR {
		x, l := q.rrExpected.Load(), q.rrLostSum.Load()
		dx, dl := x-q.prevRRx, l-q.prevRRl
		first := q.prevRR == 0
		q.prevRR, q.prevRRx, q.prevRRl = n, x, l
		out := s
		switch {
		case dx > 0:
			out.Loss = float64(dl) / float64(dx)
		case first:
			// One report so far: its own fraction is all there is.
			out.Loss = float64(q.rrFraction.Load()) / 256
		default:
			return // reports, but nothing was sent to the peer (hold)
		}
		if sc.clock0 > 0 {
			out.Jitter = float64(q.rrJitter.Load()) / float64(sc.clock0)
		}
		out.MOS = quality.EstimateMOS(sc.emodel, out.Loss, rtt, out.Jitter)
		q.out.Add(out)
		if report != nil {
			report(true, out)
		}
	}
}

// proto returns the stream's quality as the API reports it.
func (q *streamQuality) proto() *pb.StreamQuality {
	rs := q.rx.Stats()
	q.mu.Lock()
	defer q.mu.Unlock()
	out := &pb.StreamQuality{
		In:  directionProto(&q.in, rs.Lost),
		Out: directionProto(&q.out, q.rrLost.Load()),
		Received: &pb.ReceiveCounters{Expected: rs.Expected, Received: rs.Received,
			Late: rs.Late, Gaps: rs.Gaps, SequenceJumps: rs.Jumps},
	}
	return out
}

func directionProto(l *quality.Log, lost int64) *pb.DirectionQuality {
	d := &pb.DirectionQuality{Samples: uint32(l.MOS.N), PacketsLost: lost}
	if l.MOS.N == 0 {
		return d
	}
	d.Last = sampleProto(&l.Last)
	d.Loss = statProto(&l.Loss, 1)
	d.JitterMs = statProto(&l.Jitter, 1000)
	d.RttMs = statProto(&l.RTT, 1000)
	d.Mos = statProto(&l.MOS, 1)
	for i := range l.Series {
		d.Series = append(d.Series, sampleProto(&l.Series[i]))
	}
	return d
}

func statProto(s *quality.Stat, scale float64) *pb.QualityStat {
	if s.N == 0 {
		return nil
	}
	return &pb.QualityStat{Min: s.Min * scale, Avg: s.Avg() * scale, Max: s.Max * scale}
}

func sampleProto(s *quality.Sample) *pb.QualitySample {
	p := &pb.QualitySample{UnixNano: s.UnixNano, Seconds: s.Seconds, Loss: s.Loss,
		JitterMs: s.Jitter * 1000, Mos: s.MOS}
	if s.HasRTT {
		p.RttMs = s.RTT * 1000
	}
	return p
}

// sampleQuality samples every stream of the session (see
// streamQuality.sample).
func (s *Session) sampleQuality(now int64, final bool) {
	cfg := s.cfg.Load()
	if cfg == nil {
		return
	}
	since := s.Created.UnixNano()
	observe := s.engine.cfg.QualitySample
	for i, l := range s.legs {
		var report func(bool, quality.Sample)
		if observe != nil {
			report = func(out bool, q quality.Sample) { observe(l.kind, out, q) }
		}
		for j := range cfg.legs[i].streams {
			sc := &cfg.legs[i].streams[j]
			sc.s.q.sample(sc, since, now, int64(s.engine.cfg.QualityInterval), final, report)
		}
	}
}
