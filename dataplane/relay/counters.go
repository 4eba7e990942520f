package relay

import (
	"sync/atomic"

	"github.com/strait-sbc/strait/dataplane/batchconn"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// counters are a leg's traffic counters. Workers add to them with atomic
// operations on the packet path; readers sum them on demand. The inbound
// ones are written by the worker the leg's packets arrive at, the outbound
// ones by the worker its peer's arrive at, often another (a WebRTC leg's
// worker is the SO_REUSEPORT hash's pick, its plain peer's the session
// owner): the drop counters, rarely written, keep the two groups a cache
// line apart (TestLegLayout). The drop reasons are the proto's
// (pb.DropReason, generated from LegCounters), so this list cannot drift
// from what the API reports.
type counters struct {
	packetsIn, bytesIn, rtcpIn, stunIn, dtlsIn atomic.Uint64
	lastIn                                     atomic.Int64 // unix nanoseconds

	drop [pb.NumDropReasons]atomic.Uint64

	packetsOut, bytesOut, rtcpOut atomic.Uint64
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
	for r := range pb.NumDropReasons {
		t.AddDrop(r, c.drop[r].Load())
	}
	t.LastInUnixNano = max(t.LastInUnixNano, c.lastIn.Load())
}

// nodeCounters count what cannot be charged to a leg: datagrams from
// nobody the node knows (unknown source, including ICE checks for a ufrag
// no leg has), too broken to tell (malformed), or dropped by the kernel on
// a shared port (rcvbuf). One per worker, written by that worker only.
type nodeCounters struct {
	drop [pb.NumDropReasons]atomic.Uint64
}

// addTo adds the counters to t.
func (c *nodeCounters) addTo(t *pb.LegCounters) {
	for r := range pb.NumDropReasons {
		t.AddDrop(r, c.drop[r].Load())
	}
}

// ioCounters are a worker's system call and round counts, copied from its
// Loop once per round (the Loop's own counts are plain fields only the
// worker may touch). Padded so that two workers' copies never share a
// cache line.
type ioCounters struct {
	_         [64]byte
	calls     [batchconn.NumCalls]atomic.Uint64
	rounds    atomic.Uint64
	datagrams atomic.Uint64
	_         [64]byte
}

func (c *ioCounters) publish(from *batchconn.Calls) {
	for i := range c.calls {
		c.calls[i].Store(from.N[i])
	}
	c.rounds.Store(from.Rounds)
	c.datagrams.Store(from.Datagrams)
}

// IOStats are the workers' I/O figures, summed.
type IOStats struct {
	// Mode is the workers' I/O implementation.
	Mode batchconn.Mode
	// Calls counts system calls by kind (indexed by batchconn.Call).
	Calls [batchconn.NumCalls]uint64
	// Rounds counts the workers' wake-ups; Datagrams what they received.
	Rounds, Datagrams uint64
}
