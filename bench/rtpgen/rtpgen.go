// Package rtpgen is the bench harness's traffic engine: the media
// generator and sink at both ends of every session the harness drives.
//
// An Engine owns the harness's UDP sockets (Endpoints) and two goroutines.
// The generator sends RTP for every active Flow at a paced aggregate rate,
// round-robin over the flows, with sendmmsg batches (batchconn.Sender). The
// sink waits on all sockets at once with an epoll set parked in the Go
// netpoller (batchconn.Poller), reads with recvmmsg (batchconn.Batch),
// decrypts SRTP where the Endpoint has keys, and checks every payload byte
// for byte (package payload). Datagrams that are not RTP or RTCP (ICE and
// DTLS) go to the Endpoint's control callback, so a WebRTC client leg runs
// its handshake on the same socket its media later uses.
//
// Loss and latency are measured over a window: a packet belongs to the
// window if the send time written in its payload falls inside it, on the
// generator's side and on the sink's alike, so packets in flight when the
// window closes are neither lost nor counted twice.
//
// # Concurrency
//
// Engine methods are safe for concurrent use. The generator's state (each
// flow's sequence numbers and encryption context) is guarded by genMu,
// which the generator holds while it sends one batch; the sink's (each
// flow's receive counters, the latency histogram, decryption contexts) by
// sinkMu, which the sink holds while it handles one poller round. Neither
// is taken per packet.
package rtpgen

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/bench/payload"
	"github.com/strait-sbc/strait/bench/stats"
	"github.com/strait-sbc/strait/dataplane/batchconn"
)

// Limits of one Engine.
const (
	// MaxEndpoints bounds the sockets one Engine serves (tokens index a
	// table allocated once). 10 000 sessions with a socket per WebRTC
	// client leg and per shared-mode plain leg need 20 000.
	MaxEndpoints = 1 << 16
	// MaxFlows bounds flows over the Engine's life (two per session).
	MaxFlows = 1 << 18
	// batchSize is datagrams per send batch, as the node's default.
	batchSize = 64
	// sinkBatch is the most datagrams the sink takes per round, and
	// sinkBuffers the receive buffers an io_uring sink gives the kernel:
	// the sink serves every client leg's socket, thousands at scale.
	sinkBatch   = 256
	sinkBuffers = 4096
	// bufSize holds any RTP packet the harness sends plus SRTP's tag.
	bufSize = 2048
	// maxBurst caps how far the generator catches up after it was
	// descheduled: at most this much time's worth of packets is sent at
	// once, and the rest is not sent (offered rate is measured, not
	// assumed, so this shows as a lower offered rate, not as loss).
	maxBurst = 20 * time.Millisecond
	// tick is how long the generator sleeps between batches when it is
	// ahead of its schedule.
	tick = 500 * time.Microsecond
)

// Codec is what a flow sends: payload type, payload size and RTP
// timestamp increment per packet.
type Codec struct {
	PT        uint8
	Size      int
	TSPerPkt  uint32
	ClockRate uint32
	Name      string
}

// PCMU is G.711 µ-law at 20 ms packets (RFC 3551).
var PCMU = Codec{PT: 0, Size: payload.PCMUSize, TSPerPkt: 160, ClockRate: 8000, Name: "PCMU"}

// Opus is an Opus voice stream at 20 ms packets (RFC 7587: 48 kHz clock).
var Opus = Codec{PT: 111, Size: payload.OpusSize, TSPerPkt: 960, ClockRate: 48000, Name: "opus"}

// Endpoint is one harness UDP socket.
type Endpoint struct {
	// Sock is the socket; the Engine closes it.
	Sock *batchconn.Socket

	idx     int
	control atomic.Pointer[func(pkt []byte, from netip.AddrPort)]
	dec     *srtp.Context // guarded by Engine.sinkMu
	hdr     rtp.Header
}

// Addr is the socket's local address.
func (ep *Endpoint) Addr() netip.AddrPort { return ep.Sock.Local }

// SetControl installs the function that gets the socket's ICE (STUN) and
// DTLS datagrams. It is called on the sink goroutine with a buffer valid
// only during the call, and must not block.
func (ep *Endpoint) SetControl(f func(pkt []byte, from netip.AddrPort)) { ep.control.Store(&f) }

// Flow is one direction of one session's media: RTP sent from an Endpoint
// to a relay address, expected at another Endpoint.
type Flow struct {
	// Frozen at creation.
	ID    uint32
	From  *Endpoint
	To    netip.AddrPort
	Sink  *Endpoint
	SSRC  uint32
	Codec Codec

	// Generator state, guarded by genMu.
	enc     *srtp.Context
	active  bool
	seq     uint64
	rtpSeq  uint16
	ts      uint32
	hdr     rtp.Header
	sentWin uint64
	sent    uint64

	// Sink state, guarded by sinkMu.
	removed    bool
	recvWin    uint64
	recv       uint64
	dups       uint64
	mismatches uint64
	highest    uint64
	seen       [4]uint64 // bitmap of the 256 sequence numbers below highest
	jitter     stats.Jitter

	firstArrival atomic.Int64 // engine nanos of the first packet; 0 before
}

// FirstArrival is when the flow's first packet arrived (engine clock), or
// 0 if none has.
func (f *Flow) FirstArrival() int64 { return f.firstArrival.Load() }

// Engine is the generator and sink; see the package doc.
type Engine struct {
	start time.Time
	// recv is the sink's Loop and send the generator's, each owned by its
	// goroutine (an io_uring Loop is single-issuer): endpoints are added
	// to and removed from recv by the sink, on request (sinkCmds).
	recv   batchconn.Loop[int]
	send   batchconn.Loop[sendTag]
	eps    []atomic.Pointer[Endpoint]
	nextEp atomic.Int32
	flows  []atomic.Pointer[Flow]
	nextID atomic.Uint32
	closed atomic.Bool
	wg     sync.WaitGroup
	opt    batchconn.Options

	winStart, winEnd atomic.Int64 // engine nanos; winEnd 0 while open

	// Totals for the progress line.
	totalSent, totalRecv atomic.Uint64

	genMu       sync.Mutex // guards the generator state below and in Flows
	active      []*Flow
	kick        []*Flow
	perFlowPPS  float64
	rr          int
	credit      float64
	last        int64
	sendDrops   uint64
	sendDropWin uint64

	cmdMu     sync.Mutex // guards sinkCmds and sinkGone
	sinkCmds  []sinkCmd
	cmdsReady atomic.Bool // sinkCmds is not empty
	sinkGone  bool        // the sink returned: requests fail at once

	sinkMu       sync.Mutex // guards the sink state below and in Flows and Endpoints
	hist         stats.Histogram
	strays       uint64 // payloads naming no flow, or arriving at the wrong socket
	late         uint64 // packets of removed flows, still in flight
	srtpFail     uint64
	rtcp, others uint64
}

// Options tune an Engine's sockets.
type Options struct {
	// Socket buffers of every harness socket (the node's default is 4 MiB).
	Socket batchconn.Options
	// IO is the harness's own packet I/O (batchconn.ModeAuto if empty):
	// with io_uring, one io_uring_enter serves a round of every client
	// leg's socket, so the harness's system calls do not compete with the
	// relay's for the machine's cores.
	IO batchconn.Mode
}

// New starts an Engine's generator and sink.
func New(opt Options) (*Engine, error) {
	// The sink waits hot, as the node's workers do: a wake-up then costs
	// no thread hand-off, so the harness keeps more of the machine for the
	// relay it measures (and sees arrivals sooner).
	recv, err := batchconn.NewLoop(batchconn.LoopConfig[int]{Mode: opt.IO, BatchSize: sinkBatch, BufSize: bufSize, Buffers: sinkBuffers,
		HotWait: time.Millisecond})
	if err != nil {
		return nil, err
	}
	e := &Engine{
		start: time.Now(),
		recv:  recv,
		eps:   make([]atomic.Pointer[Endpoint], MaxEndpoints),
		flows: make([]atomic.Pointer[Flow], MaxFlows),
		opt:   opt.Socket,
	}
	// The generator only sends: a receive buffer is all it needs.
	e.send, err = batchconn.NewLoop(batchconn.LoopConfig[sendTag]{Mode: recv.Mode(), BatchSize: batchSize, BufSize: bufSize,
		Buffers: 1, Dropped: e.sendDropped})
	if err != nil {
		recv.Close()
		return nil, err
	}
	e.nextEp.Store(1)
	e.wg.Add(2)
	go e.sink()
	go e.generate()
	return e, nil
}

// IO is the harness's packet I/O implementation.
func (e *Engine) IO() batchconn.Mode { return e.recv.Mode() }

// Now is the Engine's clock: nanoseconds since it started (monotonic). Send
// times in payloads and arrival times use it.
func (e *Engine) Now() int64 { return int64(time.Since(e.start)) }
