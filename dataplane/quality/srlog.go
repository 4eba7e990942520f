package quality

import "sync/atomic"

// srSlots is how many forwarded sender reports an SRLog remembers. Reports
// are sent every few seconds and answered in the next receiver report, so
// the last four cover any delay a live call has.
const srSlots = 4

// SRLog remembers when the node forwarded the last few sender reports of a
// stream to an endpoint, on the node's own clock, so that the endpoint's
// receiver reports (whose LSR names the SR and DLSR says how long the
// endpoint held it) give the round-trip time between node and endpoint
// (RFC 3550 section 6.4.1). The SR's NTP time comes from the far end's
// clock and is only used as a name.
//
// An SRLog is written and read concurrently without locks: each slot is one
// atomic word (the SR's LSR and the node's 32-bit NTP time of forwarding).
// The zero value is empty.
type SRLog struct {
	slots [srSlots]atomic.Uint64
	next  atomic.Uint32
}

// NTP32 is the middle 32 bits of the NTP timestamp of unix time now
// (nanoseconds): seconds since 1900 in the high 16 bits, 1/65536 second
// units in the low 16, the format of LSR and DLSR.
func NTP32(now int64) uint32 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	sec := uint64(now/1e9) + ntpEpochOffset
	frac := uint64(now%1e9) << 16 / 1e9
	return uint32(sec<<16 | frac)
}

// Record notes that an SR whose LSR value is lsr was forwarded at now (unix
// nanoseconds).
func (l *SRLog) Record(lsr uint32, now int64) {
	i := (l.next.Add(1) - 1) % srSlots
	l.slots[i].Store(uint64(lsr)<<32 | uint64(NTP32(now)))
}

// maxRTT bounds the round-trip times RTT reports; anything longer comes
// from a forged or confused report.
const maxRTT = 10 << 16 // 10 s in 1/65536 s

// RTT returns the round-trip time, in seconds, that a report block with
// lsr and dlsr received at now gives, and false when lsr names no SR this
// log remembers (or none: lsr 0) or the result is implausible.
func (l *SRLog) RTT(lsr, dlsr uint32, now int64) (float64, bool) {
	if lsr == 0 {
		return 0, false
	}
	for i := range l.slots {
		v := l.slots[i].Load()
		if v == 0 || uint32(v>>32) != lsr {
			continue
		}
		rtt := NTP32(now) - uint32(v) - dlsr // modulo 2^32, as the RFC's example
		if rtt > maxRTT {
			return 0, false
		}
		return float64(rtt) / 65536, true
	}
	return 0, false
}
