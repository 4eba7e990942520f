package quality

import "sync/atomic"

// Sequence thresholds of RFC 3550 appendix A.1: a packet more than
// maxDropout ahead of the highest sequence number, or more than
// maxMisorder behind it, is not a gap or a straggler but a jump (a far end
// that restarted its stream); minSequential packets in a row confirm a new
// source or a jump.
const (
	maxDropout    = 3000
	maxMisorder   = 100
	minSequential = 2
	seqMod        = 1 << 16
)

// Receiver keeps the node's own statistics of one RTP stream it receives,
// as an RTP receiver would for its reports (RFC 3550 appendix A.1 and A.8).
//
// Update has one caller at a time (the caller serialises it; the packet
// path uses a try-flag, see relay). The counters read by [Receiver.Stats]
// are atomics written only by Update, so Stats may run concurrently with
// it. The zero value is a receiver that has seen nothing.
type Receiver struct {
	// Owned by the caller of Update.
	maxSeq     uint16 // highest sequence number seen
	cycles     uint32 // shifted count of sequence number wraps
	baseSeq    uint32 // first sequence number of the current run
	badSeq     uint32 // last "jump" sequence + 1, seqMod+1 when none
	probation  int    // packets still to see before the source is valid
	started    bool
	lastPT     uint8
	haveTrans  bool
	lastTrans  int64 // transit of the previous packet, timestamp units
	arrivalRef int64 // arrival time origin (unix nanoseconds)
	jitter16   uint32
	prior      uint64 // packets expected in earlier runs (before jumps)

	// Written by Update, read by Stats. expected is the total the
	// sequence numbers say were sent, stored whole after each packet so
	// that a reader never combines parts of two updates.
	received atomic.Uint64
	expected atomic.Uint64
	jitter   atomic.Uint32 // jitter in timestamp units, times 16 (A.8)
	late     atomic.Uint64
	gaps     atomic.Uint64
	jumps    atomic.Uint64
	clock    atomic.Uint32 // clock rate of the last packet timed
}

// ReceiverStats are a receiver's counters at one moment.
type ReceiverStats struct {
	// Received counts the packets accepted; Expected the packets the
	// sequence numbers say were sent (RFC 3550 appendix A.3). Lost is
	// Expected - Received, negative when duplicates outnumber losses.
	Received, Expected uint64
	Lost               int64
	// Jitter is the interarrival jitter (A.8) in seconds, 0 when the
	// clock rate is unknown.
	Jitter float64
	// Late counts packets that arrived behind the highest sequence number
	// already seen (reordered or duplicated); Gaps counts the holes in
	// the sequence when a packet came more than one ahead; Jumps counts
	// sequence discontinuities too large to be loss (a far-end restart).
	Late, Gaps, Jumps uint64
}

// Update accounts for one RTP packet with sequence number seq, timestamp
// ts and payload type pt, received at now (unix nanoseconds); clock is the
// payload type's clock rate (0 when unknown: no jitter is computed). It
// never allocates.
func (r *Receiver) Update(seq uint16, ts uint32, pt uint8, clock uint32, now int64) {
	if !r.started {
		r.started = true
		r.initSeq(seq)
		r.maxSeq = seq - 1
		r.probation = minSequential
		r.arrivalRef = now
	}
	if !r.updateSeq(seq) {
		return
	}
	r.expected.Store(r.prior + uint64(r.cycles+uint32(r.maxSeq)-r.baseSeq) + 1)
	r.received.Add(1)
	if clock == 0 {
		return
	}
	// Interarrival jitter, RFC 3550 appendix A.8: transit is the arrival
	// time in timestamp units minus the timestamp; a change of payload type
	// (e.g. telephone-event) or clock restarts the estimate's reference.
	d := now - r.arrivalRef
	arrival := d/1e9*int64(clock) + d%1e9*int64(clock)/1e9
	transit := arrival - int64(ts)
	if r.haveTrans && pt == r.lastPT && clock == r.clock.Load() {
		delta := transit - r.lastTrans
		// Timestamps wrap at 2^32: a difference beyond half of that is a wrap.
		delta = int64(int32(delta))
		if delta < 0 {
			delta = -delta
		}
		if delta < 1<<24 { // beyond minutes of skew: a jump, not jitter
			r.jitter16 += uint32(delta) - ((r.jitter16 + 8) >> 4)
			r.jitter.Store(r.jitter16)
		}
	}
	r.haveTrans, r.lastTrans, r.lastPT = true, transit, pt
	r.clock.Store(clock)
}

func (r *Receiver) initSeq(seq uint16) {
	r.baseSeq = uint32(seq)
	r.maxSeq = seq
	r.badSeq = seqMod + 1
	r.cycles = 0
}

// updateSeq is update_seq of RFC 3550 appendix A.1; it reports whether the
// packet counts as received.
func (r *Receiver) updateSeq(seq uint16) bool {
	udelta := seq - r.maxSeq
	if r.probation > 0 {
		if seq == r.maxSeq+1 {
			r.probation--
			r.maxSeq = seq
			if r.probation == 0 {
				r.initSeq(seq)
				return true
			}
		} else {
			r.probation = minSequential - 1
			r.maxSeq = seq
		}
		return false
	}
	switch {
	case udelta < maxDropout:
		if seq < r.maxSeq {
			r.cycles += seqMod // wrapped
		}
		if udelta > 1 {
			r.gaps.Add(1)
		}
		r.maxSeq = seq
	case udelta <= seqMod-maxMisorder:
		// A very large jump. Two sequential packets after it mean the
		// other side restarted without telling us: start a new run.
		if uint32(seq) == r.badSeq {
			r.jumps.Add(1)
			r.prior += uint64(r.cycles+uint32(r.maxSeq)-r.baseSeq) + 1
			r.initSeq(seq)
			r.haveTrans = false
		} else {
			r.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return false
		}
	default:
		r.late.Add(1) // duplicate or reordered
	}
	return true
}

// Stats returns the receiver's counters. It may run concurrently with
// Update; the figures are each exact but may be from consecutive packets.
func (r *Receiver) Stats() ReceiverStats {
	s := ReceiverStats{
		Received: r.received.Load(),
		Late:     r.late.Load(),
		Gaps:     r.gaps.Load(),
		Jumps:    r.jumps.Load(),
	}
	s.Expected = r.expected.Load()
	s.Lost = int64(s.Expected) - int64(s.Received)
	if c := r.clock.Load(); c > 0 {
		s.Jitter = float64(r.jitter.Load()) / 16 / float64(c)
	}
	return s
}
