package relay

import (
	"sync/atomic"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// counters are a leg's traffic counters. Workers add to them with atomic
// operations on the packet path (a leg's flows are served by one worker in
// steady state, so the cache lines do not bounce); readers sum them on
// demand.
type counters struct {
	packetsIn, bytesIn, packetsOut, bytesOut atomic.Uint64
	rtcpIn, rtcpOut, stunIn, dtlsIn          atomic.Uint64

	dropUnknownSource, dropSRTPAuth, dropReplay, dropUnknownPT atomic.Uint64
	dropMalformed, dropDirection, dropNoConsent, dropSend      atomic.Uint64
	dropNotReady, dropSTUNAuth                                 atomic.Uint64

	lastIn atomic.Int64 // unix nanoseconds
}

// proto returns the counters as the API reports them.
func (c *counters) proto() *pb.LegCounters {
	return &pb.LegCounters{
		PacketsIn:         c.packetsIn.Load(),
		BytesIn:           c.bytesIn.Load(),
		PacketsOut:        c.packetsOut.Load(),
		BytesOut:          c.bytesOut.Load(),
		RtcpIn:            c.rtcpIn.Load(),
		RtcpOut:           c.rtcpOut.Load(),
		StunIn:            c.stunIn.Load(),
		DtlsIn:            c.dtlsIn.Load(),
		DropUnknownSource: c.dropUnknownSource.Load(),
		DropSrtpAuth:      c.dropSRTPAuth.Load(),
		DropReplay:        c.dropReplay.Load(),
		DropUnknownPt:     c.dropUnknownPT.Load(),
		DropMalformed:     c.dropMalformed.Load(),
		DropDirection:     c.dropDirection.Load(),
		DropNoConsent:     c.dropNoConsent.Load(),
		DropSend:          c.dropSend.Load(),
		DropNotReady:      c.dropNotReady.Load(),
		DropStunAuth:      c.dropSTUNAuth.Load(),
		LastInUnixNano:    c.lastIn.Load(),
	}
}

// AddCounters adds b's counts to a (last_in_unix_nano takes the later).
func AddCounters(a, b *pb.LegCounters) {
	a.PacketsIn += b.GetPacketsIn()
	a.BytesIn += b.GetBytesIn()
	a.PacketsOut += b.GetPacketsOut()
	a.BytesOut += b.GetBytesOut()
	a.RtcpIn += b.GetRtcpIn()
	a.RtcpOut += b.GetRtcpOut()
	a.StunIn += b.GetStunIn()
	a.DtlsIn += b.GetDtlsIn()
	a.DropUnknownSource += b.GetDropUnknownSource()
	a.DropSrtpAuth += b.GetDropSrtpAuth()
	a.DropReplay += b.GetDropReplay()
	a.DropUnknownPt += b.GetDropUnknownPt()
	a.DropMalformed += b.GetDropMalformed()
	a.DropDirection += b.GetDropDirection()
	a.DropNoConsent += b.GetDropNoConsent()
	a.DropSend += b.GetDropSend()
	a.DropNotReady += b.GetDropNotReady()
	a.DropStunAuth += b.GetDropStunAuth()
	if b.GetLastInUnixNano() > a.LastInUnixNano {
		a.LastInUnixNano = b.GetLastInUnixNano()
	}
}

// nodeCounters count what cannot be charged to a leg: datagrams from
// nobody the node knows, or too broken to tell. One per worker, written by
// that worker only.
type nodeCounters struct {
	unknownSource, malformed, stunUnknownUfrag atomic.Uint64
}
