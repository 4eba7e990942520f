package rewrite

import (
	"encoding/binary"
	"time"
)

// Thresholds by which an OutStream tells reordering and loss from a restart
// of the far end's stream. They are compared with the distance of a
// packet's sequence number from the highest one seen so far in the stream,
// and with the time since that highest packet arrived.
const (
	// MaxMisorder is how far behind the highest sequence number a packet
	// may be and still be taken for a late (reordered) packet of the same
	// stream, mapped through the same offsets. It is the smallest SRTP
	// replay window a receiver may use (RFC 3711 section 3.3.2 sets a
	// minimum of 64; pion's default is 64, libsrtp's 128, Chrome's and
	// Firefox's 1024): a packet further behind would be dropped by such a
	// receiver anyway, so a larger backward step is better read as a
	// restart. RFC 3550 appendix A.1 uses 100 for the same purpose.
	MaxMisorder = 64

	// MaxDropout is how far ahead of the highest sequence number a packet
	// may be and still be taken for the same stream after loss. This is
	// RFC 3550 appendix A.1's MAX_DROPOUT: a minute of 20 ms audio, or a
	// few seconds of video. It is well below 32768, the distance at which
	// an SRTP receiver's rollover-counter estimate (RFC 3711 section 3.3.1
	// and appendix A) flips to the previous ROC.
	MaxDropout = 3000

	// MaxReorderDelay is how long after the highest packet arrived a packet
	// that is not ahead of it may still be a reordered one. Network
	// reordering spans milliseconds and jitter buffers hold well under two
	// seconds, so a packet that arrives at or behind the highest sequence
	// number after this much silence starts a new stream: that is what a
	// PBX does when it resumes after music on hold with a sequence number
	// just below its last one. It also bounds how long the offsets of the
	// stream before a rebase are kept for its stragglers.
	MaxReorderDelay = 2 * time.Second

	// MaxTimestampLead is how far ahead of what the wall clock explains a
	// packet's RTP timestamp may be before it is taken for a new timestamp
	// base. The allowance is the time since the highest packet arrived plus
	// this much, so that silence suppression and DTX, which advance the
	// timestamp with the sequence number +1, and bursts after a short
	// network stall, are not mistaken for a reset. A sequence delta alone
	// cannot bound the timestamp: packet durations vary by codec and ptime.
	MaxTimestampLead = 10 * time.Second

	// MaxTimestampLag is how far a packet's RTP timestamp may run backwards
	// while its sequence number goes forwards before it is taken for a new
	// timestamp base. Audio timestamps never go backwards, but a relay
	// should not second-guess small steps it does not understand.
	MaxTimestampLag = time.Second

	// DuplicateWindow is how many output sequence numbers, back from the
	// highest, an OutStream remembers having sent. A packet that would
	// reuse one of them fails with ErrDuplicate; one that would fall
	// further back fails with ErrStale. It covers MaxMisorder with room for
	// the previous epoch's stragglers.
	DuplicateWindow = 128
)

// Mapping is how an OutStream currently maps a stream: its input SSRC to
// the SSRC it sends, and input sequence numbers and timestamps to output
// ones by modular addition. [TranslateRTCP] uses it to make RTCP agree with
// the media. The zero value, with Active false, maps nothing.
type Mapping struct {
	// Active is false for an unused entry.
	Active bool
	// InSSRC is the SSRC the far end sends; OutSSRC the SSRC sent on.
	InSSRC  uint32
	OutSSRC uint32
	// SeqOffset is added (mod 2^16) to input sequence numbers.
	SeqOffset uint16
	// TSOffset is added (mod 2^32) to input RTP timestamps.
	TSOffset uint32
}

// epoch is a run of packets mapped through the same offsets.
type epoch struct {
	inSSRC   uint32
	seqOff   uint16
	tsOff    uint32
	startSeq uint16 // input sequence number of the epoch's first packet
	maxSeq   uint16 // highest input sequence number of the epoch
	maxTS    uint32 // input timestamp of the packet with maxSeq
}

// OutStream normalises one RTP stream as it is sent on a leg, in the manner
// of Janus's janus_rtp_switching_context and rtpengine's SSRC handling. It
// writes the mapped payload type and, if configured, the leg's own SSRC,
// and renumbers sequence numbers and timestamps so that what is sent is one
// continuous stream however the far end restarts, reorders or switches its
// own.
//
// Why: the browser's SRTP receiver (libsrtp) reconstructs each packet's
// 48-bit index from its 16-bit sequence number by guessing the rollover
// counter from the highest index seen (RFC 3711 section 3.3.1 and appendix
// A), and rejects any index that is more than its replay window (64 to 1024
// packets) behind the highest or already seen (section 3.3.2). A PBX that
// restarts its stream with a new sequence base, as many do after fifteen
// minutes of music on hold, sends numbers that are thousands behind the
// last ones: every packet is rejected as a replay, or decrypted under the
// wrong ROC and rejected as forged, and media never resumes. An SRTP
// receiver has no way back from that short of new keys.
//
// What it does, per packet. The packet continues the current epoch, and is
// mapped through its offsets, if it has the epoch's input SSRC and its
// sequence number is at most [MaxDropout] ahead of the highest seen, or
// less than [MaxMisorder] behind it and within [MaxReorderDelay] of it:
// reordered packets thus keep a consistent mapping, and losses stay visible
// as gaps. Otherwise the stream is rebased, which starts a new epoch: the
// packet's output sequence number is the highest sent + 1, its output
// timestamp is the highest sent's advanced by the wall-clock time since
// that packet arrived times clockRate (at least one tick), and it gets the
// marker bit, which for audio marks the start of a talkspurt (RFC 3551
// section 4.1) and makes the receiver's jitter buffer resynchronise. The
// rebase is immediate after [MaxReorderDelay] of silence or on a change of
// input SSRC (whether or not the SSRC is rewritten, so that the output
// sequence numbers stay one series even if an SSRC comes back). A jump with
// no pause before it is put on probation, as in RFC 3550 appendix A.1: the
// packet is refused with [ErrJump] and the stream rebases at the next one
// only if that follows on from it, so a single very late packet cannot
// rebase the stream. A far end that restarts fewer than [MaxMisorder]
// numbers back with no pause is indistinguishable from reordering: its
// packets that reuse numbers already sent are refused with [ErrDuplicate]
// until it passes the old highest.
//
// A timestamp that jumps while the sequence number continues, more than
// [MaxTimestampLead] ahead of what the wall clock explains or more than
// [MaxTimestampLag] behind (a PBX that resets its clock after music on
// hold), rebases the timestamp alone, with the marker bit; the sequence
// numbering is kept.
//
// Stragglers of the epoch before a rebase that arrive within
// [MaxReorderDelay] of it are mapped through its offsets; their numbers lie
// below the new epoch's, so they cannot collide with it. Whatever the
// input, no output sequence number is sent twice within [DuplicateWindow]:
// a packet that would reuse one is refused with [ErrDuplicate], one too old
// to check with [ErrStale]. Output numbers move forward by at most
// [MaxDropout] at a time.
//
// The first packet is sent with its own sequence number and timestamp, so a
// continuous stream passes through unchanged apart from its payload type
// and SSRC.
//
// The zero value is ready to use and does not rewrite the SSRC. The caller
// sets the exported fields before the first packet; the rest is internal
// state. An OutStream is not safe for concurrent use: the caller serialises
// all calls for one stream. It holds no pointers, does not allocate and
// starts no goroutines.
type OutStream struct {
	// RewriteSSRC, if set, makes every packet carry SSRC instead of the
	// far end's SSRC. Caller-set configuration. Changing either field
	// mid-stream starts, as far as the receiver can tell, a new stream;
	// its sequence numbers still continue the old ones.
	RewriteSSRC bool
	// SSRC is the leg's own SSRC for this stream, used if RewriteSSRC is
	// set. Caller-set configuration.
	SSRC uint32

	// Internal state from here on.
	started   bool
	cur       epoch
	prev      epoch // the epoch before the last rebase, if prevValid
	prevValid bool
	prevSince int64  // nowNanos of the last rebase
	jumpValid bool   // a jump awaits confirmation
	jumpSeq   uint16 // input sequence number of that jump
	maxOut    uint16 // highest output sequence number sent
	maxNanos  int64  // nowNanos when the packet with maxOut arrived
	sent      window // output sequence numbers sent, back from maxOut
	rebases   uint64
	// resumed: the stream was resumed from a Resumption and its position
	// is learnt from the next packet (see Resume).
	resumed bool
}

// verdict is how classify says a packet is to be mapped.
type verdict uint8

const (
	useCurrent verdict = iota
	usePrevious
	rebaseAll // new sequence and timestamp offsets
	rebaseTS  // new timestamp offset, same sequence offset
	dropStale
	dropJump // a jump without silence before it, on probation
)

// Rewrite maps the RTP packet b, whose header h was returned by ParseRTP(b),
// onto the stream and rewrites b's header in place: payload type pt
// (already mapped by the caller, for example with [PTMap]) with the marker
// bit kept or set, sequence number, timestamp and, if RewriteSSRC is set,
// SSRC. It returns the header as sent. clockRate is the RTP clock rate of
// pt's codec in Hz, used to turn elapsed time into timestamp ticks; 0 means
// unknown, which disables the timestamp plausibility check. nowNanos is a
// monotonic clock reading in nanoseconds, such as int64(time.Since(t0)) for
// a fixed t0 taken from time.Now; only differences between readings matter.
//
// On error b is unchanged and the caller drops the packet: [ErrDuplicate] if
// its output sequence number was already sent, [ErrStale] if it came too
// late to be given a safe one, [ErrJump] if it jumps away from the stream
// and awaits confirmation by the next packet (the only error that changes
// the stream's state: it remembers the jump), [ErrTooShort] if b is shorter
// than an RTP header, [ErrPayloadType] if pt is above 127.
//
// Rewrite touches only the first 12 bytes of b, never allocates and does
// not retain b.
func (s *OutStream) Rewrite(b []byte, h Header, pt uint8, clockRate uint32, nowNanos int64) (Header, error) {
	if len(b) < rtpHeaderLen {
		return h, ErrTooShort
	}
	if pt > maxPT {
		return h, ErrPayloadType
	}

	if s.resumed {
		s.resumeAt(&h, nowNanos)
	}
	v := rebaseAll
	if s.started {
		v = s.classify(&h, clockRate, nowNanos)
	}

	// Work out the mapping without touching any state.
	var seqOff uint16
	var tsOff uint32
	switch v {
	case useCurrent:
		seqOff, tsOff = s.cur.seqOff, s.cur.tsOff
	case usePrevious:
		seqOff, tsOff = s.prev.seqOff, s.prev.tsOff
	case rebaseAll, rebaseTS:
		if !s.started {
			break // the first packet keeps its own numbering
		}
		seqOff = s.cur.seqOff
		if v == rebaseAll {
			seqOff = s.maxOut + 1 - h.Sequence
		}
		adv := uint32(ticks(nowNanos-s.maxNanos, clockRate))
		if adv == 0 {
			adv = 1
		}
		tsOff = s.cur.maxTS + s.cur.tsOff + adv - h.Timestamp
	case dropStale:
		return h, ErrStale
	case dropJump:
		s.jumpValid, s.jumpSeq = true, h.Sequence
		return h, ErrJump
	}
	out := h.Sequence + seqOff
	ahead := int16(out - s.maxOut)
	if s.started {
		if ahead <= 0 {
			if err := s.sent.check(uint16(-int32(ahead))); err != nil {
				return h, err
			}
		} else if v == usePrevious {
			return h, ErrStale // cannot happen; never let the old epoch advance
		}
	}

	// Commit.
	switch {
	case !s.started:
		s.started = true
		s.cur = epoch{inSSRC: h.SSRC, startSeq: h.Sequence, maxSeq: h.Sequence, maxTS: h.Timestamp}
		s.maxOut, s.maxNanos = out, nowNanos
		s.sent = window{1, 0}
		ahead = 0
	case v == rebaseAll || v == rebaseTS:
		s.prev, s.prevValid, s.prevSince = s.cur, true, nowNanos
		s.cur = epoch{inSSRC: h.SSRC, seqOff: seqOff, tsOff: tsOff, startSeq: h.Sequence, maxSeq: h.Sequence, maxTS: h.Timestamp}
		s.rebases++
		h.Marker = true
	}
	if ahead > 0 {
		s.jumpValid = false
		s.sent.advance(uint16(ahead))
		s.maxOut, s.maxNanos = out, nowNanos
		s.cur.maxSeq, s.cur.maxTS = h.Sequence, h.Timestamp
	} else {
		s.sent.set(uint16(-int32(ahead)))
	}

	h.PayloadType = pt
	h.Sequence = out
	h.Timestamp += tsOff
	if s.RewriteSSRC {
		h.SSRC = s.SSRC
	}
	b[1] = pt
	if h.Marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], h.Sequence)
	binary.BigEndian.PutUint32(b[4:], h.Timestamp)
	binary.BigEndian.PutUint32(b[8:], h.SSRC)
	return h, nil
}

// classify decides which offsets a packet of a started stream maps through.
func (s *OutStream) classify(h *Header, clockRate uint32, now int64) verdict {
	c := &s.cur
	idle := now - s.maxNanos
	d := int16(h.Sequence - c.maxSeq)
	recent := d <= 0 && d > -MaxMisorder && idle <= int64(MaxReorderDelay)
	if h.SSRC == c.inSSRC {
		switch {
		case d > 0 && d <= MaxDropout:
			if !plausibleTS(h.Timestamp-c.maxTS, idle, clockRate) {
				return rebaseTS
			}
			return useCurrent
		case recent && int16(h.Sequence-c.startSeq) >= 0:
			return useCurrent
		}
	}
	if s.fromPrevious(h, now) {
		return usePrevious
	}
	if h.SSRC != c.inSSRC || idle > int64(MaxReorderDelay) {
		return rebaseAll
	}
	if recent {
		// Reordered from before this epoch began; its number went to
		// the previous epoch.
		return dropStale
	}
	// A jump with no silence before it is either a packet so late that no
	// receiver would take it or a restart; as in RFC 3550 appendix A.1,
	// only the packet after it tells which.
	if j := int16(h.Sequence - s.jumpSeq); s.jumpValid && j > 0 && j < MaxMisorder {
		return rebaseAll
	}
	return dropJump
}

// fromPrevious reports whether h is a straggler of the epoch before the
// last rebase.
func (s *OutStream) fromPrevious(h *Header, now int64) bool {
	p := &s.prev
	if !s.prevValid || h.SSRC != p.inSSRC || now-s.prevSince > int64(MaxReorderDelay) {
		return false
	}
	d := int16(h.Sequence - p.maxSeq)
	return d <= 0 && d > -MaxMisorder && int16(h.Sequence-p.startSeq) >= 0
}

// plausibleTS reports whether a timestamp step dt (mod 2^32) from the
// highest packet, idle nanoseconds after it arrived, is believable.
func plausibleTS(dt uint32, idle int64, clockRate uint32) bool {
	if clockRate == 0 {
		return true
	}
	if int32(dt) >= 0 {
		return uint64(dt) <= ticks(idle, clockRate)+ticks(int64(MaxTimestampLead), clockRate)
	}
	return uint64(-dt) <= ticks(int64(MaxTimestampLag), clockRate)
}

// ticks converts nanoseconds to RTP timestamp ticks at clockRate Hz,
// rounding down. Negative durations are 0; durations beyond 68 years
// saturate, so the result never overflows.
func ticks(nanos int64, clockRate uint32) uint64 {
	if nanos <= 0 {
		return 0
	}
	sec, frac := uint64(nanos)/1e9, uint64(nanos)%1e9
	sec = min(sec, 1<<31)
	return sec*uint64(clockRate) + frac*uint64(clockRate)/1e9
}

// Mapping returns the offsets the stream currently applies, for
// [TranslateRTCP]. Before the first packet it returns a Mapping with Active
// false. Refresh it after Rewrite reports a rebase (see Rebases); a stale
// Mapping only makes RTCP statistics less exact.
func (s *OutStream) Mapping() Mapping {
	if !s.started {
		return Mapping{}
	}
	out := s.cur.inSSRC
	if s.RewriteSSRC {
		out = s.SSRC
	}
	return Mapping{Active: true, InSSRC: s.cur.inSSRC, OutSSRC: out, SeqOffset: s.cur.seqOff, TSOffset: s.cur.tsOff}
}

// Rebases returns how many times the stream has been rebased: each is a
// restart, jump or SSRC change of the input. It is a counter for metrics and
// a cheap way to tell when Mapping changed.
func (s *OutStream) Rebases() uint64 { return s.rebases }

// window is a bitmap of the DuplicateWindow output sequence numbers up to
// and including the highest sent: bit i of the 128 is maxOut-i.
type window [2]uint64

// check returns ErrStale if the number age behind the highest is outside the
// window and ErrDuplicate if it was sent.
func (w *window) check(age uint16) error {
	switch {
	case age >= DuplicateWindow:
		return ErrStale
	case age < 64 && w[0]>>age&1 != 0, age >= 64 && w[1]>>(age-64)&1 != 0:
		return ErrDuplicate
	}
	return nil
}

// set marks the number age behind the highest as sent; age < DuplicateWindow.
func (w *window) set(age uint16) {
	if age < 64 {
		w[0] |= 1 << age
	} else {
		w[1] |= 1 << (age - 64)
	}
}

// advance moves the window n > 0 numbers forward and marks the new highest.
func (w *window) advance(n uint16) {
	switch {
	case n >= DuplicateWindow:
		w[0], w[1] = 0, 0
	case n >= 64:
		w[1], w[0] = w[0]<<(n-64), 0
	default:
		w[1] = w[1]<<n | w[0]>>(64-n)
		w[0] <<= n
	}
	w[0] |= 1
}

// ResumeStep is the granularity of Resumption.OutCeiling: the ceiling only
// moves when the highest output sequence number crosses a multiple of it,
// so a record of it changes once per ResumeStep packets (80 s of 20 ms
// audio), not per packet.
const ResumeStep = 4096

// Resumption is what an OutStream carries over a restart of the process
// that runs it (an all-in-one restart keeping its calls): the mapping
// (input SSRC and offsets) and a ceiling above every output sequence
// number sent. A continuous input resumes through the same offsets, so
// the receiver sees one stream with a gap; anything else rebases above
// the ceiling, never onto a number the receiver may already have (which
// its SRTP replay check would drop).
type Resumption struct {
	InSSRC     uint32 `json:"in_ssrc"`
	SeqOffset  uint16 `json:"seq_off,omitempty"`
	TSOffset   uint32 `json:"ts_off,omitempty"`
	OutCeiling uint16 `json:"out_ceiling"`
}

// Save returns the stream's Resumption; ok is false before the first
// packet (nothing to resume: a new stream is as good). It changes only on
// a rebase and every ResumeStep output packets. Same concurrency as
// Rewrite.
func (s *OutStream) Save() (r Resumption, ok bool) {
	if !s.started {
		return Resumption{}, false
	}
	if s.resumed { // nothing sent since Resume: the same ceiling
		return Resumption{InSSRC: s.cur.inSSRC, SeqOffset: s.cur.seqOff, TSOffset: s.cur.tsOff, OutCeiling: s.maxOut + 1}, true
	}
	return Resumption{InSSRC: s.cur.inSSRC, SeqOffset: s.cur.seqOff, TSOffset: s.cur.tsOff,
		OutCeiling: s.maxOut&^(ResumeStep-1) + ResumeStep}, true
}

// Resume makes a new OutStream carry on the stream r was saved from, at
// nowNanos (the clock Rewrite is given). The next packet decides: one of
// r's input SSRC continues the old epoch through its offsets (the far end
// went on sending while the process restarted: its sequence numbers are
// simply ahead), moved up to OutCeiling if they would fall below it; one
// of another SSRC rebases onto OutCeiling. No output sequence number is
// ever below OutCeiling. Call it before the first Rewrite.
func (s *OutStream) Resume(r Resumption, nowNanos int64) {
	s.started, s.resumed = true, true
	s.cur = epoch{inSSRC: r.InSSRC, seqOff: r.SeqOffset, tsOff: r.TSOffset}
	s.prevValid, s.jumpValid = false, false
	s.maxOut, s.maxNanos = r.OutCeiling-1, nowNanos
	s.sent = window{}
}

// resumeAt places a resumed stream at its first packet h when h continues
// the saved epoch: that packet is the epoch's highest so far, sent through
// the saved offsets, or at the ceiling if that would put it below.
// Otherwise classify rebases it (another SSRC) above the ceiling.
func (s *OutStream) resumeAt(h *Header, nowNanos int64) {
	s.resumed = false
	if h.SSRC != s.cur.inSSRC {
		return
	}
	// Never below the ceiling: the far end's numbers may have gone back
	// (a restart of its own, a straggler first, or a forged plain packet),
	// and below it lie numbers that may have been sent already: an SRTP
	// receiver would drop them as replays, and an SRTP context would
	// encrypt them at an index it used before (RFC 3711 section 9.2). The
	// stream then carries on from the ceiling: a forward jump.
	if ceiling := s.maxOut + 1; int16(h.Sequence+s.cur.seqOff-ceiling) < 0 {
		s.cur.seqOff = ceiling - h.Sequence
	}
	s.cur.startSeq, s.cur.maxSeq, s.cur.maxTS = h.Sequence, h.Sequence, h.Timestamp
	s.maxOut, s.maxNanos = h.Sequence+s.cur.seqOff, nowNanos
	s.sent = window{}
}
