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
	dropNotReady, dropSTUNAuth, dropRcvbuf                     atomic.Uint64

	lastIn atomic.Int64 // unix nanoseconds
}

// proto returns the counters as the API reports them.
func (c *counters) proto() *pb.LegCounters {
	t := &pb.LegCounters{}
	c.addTo(t)
	return t
}

// addTo adds the counters to t without allocating (a scrape sums every
// leg of the node).
func (c *counters) addTo(t *pb.LegCounters) {
	t.PacketsIn += c.packetsIn.Load()
	t.BytesIn += c.bytesIn.Load()
	t.PacketsOut += c.packetsOut.Load()
	t.BytesOut += c.bytesOut.Load()
	t.RtcpIn += c.rtcpIn.Load()
	t.RtcpOut += c.rtcpOut.Load()
	t.StunIn += c.stunIn.Load()
	t.DtlsIn += c.dtlsIn.Load()
	t.DropUnknownSource += c.dropUnknownSource.Load()
	t.DropSrtpAuth += c.dropSRTPAuth.Load()
	t.DropReplay += c.dropReplay.Load()
	t.DropUnknownPt += c.dropUnknownPT.Load()
	t.DropMalformed += c.dropMalformed.Load()
	t.DropDirection += c.dropDirection.Load()
	t.DropNoConsent += c.dropNoConsent.Load()
	t.DropSend += c.dropSend.Load()
	t.DropNotReady += c.dropNotReady.Load()
	t.DropStunAuth += c.dropSTUNAuth.Load()
	t.DropRcvbuf += c.dropRcvbuf.Load()
	t.LastInUnixNano = max(t.LastInUnixNano, c.lastIn.Load())
}

// nodeCounters count what cannot be charged to a leg: datagrams from
// nobody the node knows, or too broken to tell. One per worker, written by
// that worker only.
type nodeCounters struct {
	unknownSource, malformed, stunUnknownUfrag atomic.Uint64
	// rcvbuf counts kernel drops on shared ports (SO_RXQ_OVFL).
	rcvbuf atomic.Uint64
}
