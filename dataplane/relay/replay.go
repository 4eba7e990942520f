package relay

import (
	"github.com/pion/transport/v5/replaydetector"

	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// replayWindow is the replay list of one inbound SSRC (RFC 3711 section
// 3.3.2), given to pion/srtp through its detector factory options: the
// same sliding window as pion's own (replaydetector.New), held in two
// words inside the detector instead of a general big integer behind a
// pointer, so that checking and advancing it per packet is a few
// instructions and touches one cache line (pion's shift of its 128-bit
// mask was 2-3% of the node's CPU at 500 sessions). It keeps pion's
// semantics exactly (TestReplayWindowMatchesPion): index 0 is accepted
// once before anything else, a packet more than ReplayWindow behind the
// highest index accepted is refused, and an index is recorded only by
// Accept, after the packet authenticated.
//
// Owned by the SRTP context that created it (under the leg's inMu).
type replayWindow struct {
	latest uint64
	max    uint64    // highest index the protocol allows
	mask   [2]uint64 // bit i (mask[i/64] bit i%64): latest-i was accepted
}

// replayWindowBits is replayWindow's size: ReplayWindow must equal it.
const replayWindowBits = 128

// Highest SRTP index (48 bits: ROC and sequence number) and SRTCP index
// (31 bits, RFC 3711 section 3.4), as pion bounds them.
const (
	maxSRTPIndex  = 1<<48 - 1
	maxSRTCPIndex = 1<<31 - 1
)

// replayOptions are the inbound contexts' replay protection options.
func replayOptions() []srtp.ContextOption {
	return []srtp.ContextOption{
		srtp.SRTPReplayDetectorFactory(func() replaydetector.ReplayDetector { return &replayWindow{max: maxSRTPIndex} }),
		srtp.SRTCPReplayDetectorFactory(func() replaydetector.ReplayDetector { return &replayWindow{max: maxSRTCPIndex} }),
	}
}

func (d *replayWindow) bit(i uint64) bool { return d.mask[i>>6]&(1<<(i&63)) != 0 }

// CheckSeq reports whether index seq may be new; nothing is recorded.
func (d *replayWindow) CheckSeq(seq uint64) replaydetector.Token {
	if seq > d.max {
		return replaydetector.Rejected(seq)
	}
	if seq <= d.latest {
		if diff := d.latest - seq; diff >= replayWindowBits || d.bit(diff) {
			return replaydetector.Rejected(seq)
		}
	}
	return replaydetector.Passed(seq)
}

// Accept records the index of a token CheckSeq passed, once its packet
// authenticated, and reports whether it is the highest so far. Tokens may
// be accepted in any order (FuzzReplayWindow).
func (d *replayWindow) Accept(tok replaydetector.Token) bool {
	if !tok.Passed() {
		return false
	}
	seq := tok.Seq()
	latest := seq == 0 && d.latest == 0 && !d.bit(0)
	if seq > d.latest {
		d.shift(seq - d.latest)
		d.latest = seq
		latest = true
	}
	// A token accepted after a later one moved the window past it (pion's
	// interface allows accepts in any order; pion/srtp itself checks and
	// accepts one packet at a time) is out of the window: nothing to
	// record, as in pion (whose mask ignores a bit beyond its size).
	if diff := d.latest - seq; diff < replayWindowBits {
		d.mask[diff>>6] |= 1 << (diff & 63)
	}
	return latest
}

// shift moves the window up by n indexes.
func (d *replayWindow) shift(n uint64) {
	switch {
	case n >= replayWindowBits:
		d.mask = [2]uint64{}
	case n >= 64:
		d.mask = [2]uint64{0, d.mask[0] << (n - 64)}
	default:
		d.mask = [2]uint64{d.mask[0] << n, d.mask[1]<<n | d.mask[0]>>(64-n)}
	}
}

// Check is the closure form of CheckSeq and Accept (pion's older
// interface; pion uses CheckSeq and Accept when a detector has them).
func (d *replayWindow) Check(seq uint64) (func() bool, bool) {
	tok := d.CheckSeq(seq)
	if !tok.Passed() {
		return func() bool { return false }, false
	}
	return func() bool { return d.Accept(tok) }, true
}
