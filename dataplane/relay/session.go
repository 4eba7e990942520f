package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/icelite"
	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
	srtp "github.com/strait-sbc/strait/third_party/pionsrtp"
)

// Session is one media relationship: two legs, or one for an echo session.
type Session struct {
	// Frozen at creation.
	ID      string
	Labels  map[string]string
	Created time.Time
	engine  *Engine
	owner   *worker // serves the session's port-per-stream sockets
	legs    []*Leg  // one or two

	// cfg is the negotiated configuration, replaced whole by a change and
	// read by the packet path with one atomic load.
	cfg atomic.Pointer[sessionConfig]

	mediaTimeout atomic.Int64 // nanoseconds
	updated      atomic.Int64 // unix nanoseconds of creation or the last update
	closed       atomic.Bool

	// mu serialises changes (create, update, delete) and guards the fields
	// below, which only the control side reads.
	mu    sync.Mutex
	specs []*pb.LegSpec
	// tables is exactly what the workers' tables hold for the session: a
	// change moves them from this to its own, and deletion removes this.
	tables tables
}

// peer returns the leg that media from l is relayed to: the other leg, or
// l itself in an echo session.
func (s *Session) peer(l *Leg) *Leg {
	if len(s.legs) == 1 {
		return l
	}
	return s.legs[1-l.index]
}

// Legs returns the session's legs (one or two).
func (s *Session) Legs() []*Leg { return s.legs }

// MediaTimeout is the session's media timeout.
func (s *Session) MediaTimeout() time.Duration { return time.Duration(s.mediaTimeout.Load()) }

// Leg is one side of a session.
type Leg struct {
	// Frozen at creation.
	sess    *Session
	index   int
	kind    pb.LegKind
	addrIdx int
	group   *group // WebRTC: the shared port the leg listens on

	// Guarded by sess.mu (control side only). streams are the leg's
	// streams, the ones the published configuration names; they grow when
	// an update adds media sections. restartedFor is the remote ufrag the
	// last ICE restart was applied for: a retry of that request issues no
	// new credentials.
	streams      []*Stream
	restartedFor *string

	// WebRTC transport state, lock-free for the packet path. ice is
	// immutable once stored: it is replaced, never changed in place.
	ice   atomic.Pointer[iceCreds]
	path  atomic.Pointer[icePath]
	dtls  dtlsState
	state atomic.Int32 // pb.LegState

	profile atomic.Pointer[string] // negotiated SRTP profile name
	// keys are what the DTLS handshake exported (nil before, and after
	// stopDTLS forgot them), kept for Session.Save.
	keys atomic.Pointer[srtpKeys]

	// What the packet path writes is laid out in two groups at least a
	// cache line apart (TestLegLayout): the receiving side (the worker the
	// leg's packets arrive at: on a shared WebRTC port, whichever the
	// kernel's SO_REUSEPORT hash picks) from here to ctr's inbound
	// counters, and the sending side (the worker its peer's packets arrive
	// at, often the other one) from ctr's outbound counters on. Sharing a
	// line, the two workers took it from each other at every packet.
	//
	// inMu guards dec (WebRTC) and every stream's dec (SDES); outMu guards
	// enc, every stream's enc and rewrite state. See the package doc.
	started atomic.Bool // MEDIA_STARTED raised
	// timedOut is set while MEDIA_TIMEOUT has been raised and no media came.
	timedOut atomic.Bool
	inMu     sync.Mutex
	dec      *srtp.Context
	// decProven: a packet authenticated with dec; until then a failing
	// packet may get a rollover guess (rocGuesses; rollover.go). Guarded
	// by inMu, reset with dec.
	decProven  bool
	rocGuesses rocGuesses
	ctr        counters // inbound counters first, outbound last
	outMu      sync.Mutex
	enc        *srtp.Context
}

// Index is the leg's position in its session.
func (l *Leg) Index() int { return l.index }

// iceCreds are a WebRTC leg's current ICE credentials, immutable once
// published. prev keeps the ones before an ICE restart valid until the peer
// uses the new ones (then a copy without prev replaces them).
type iceCreds struct {
	localUfrag, localPwd string
	remoteUfrag          string
	key                  *icelite.Key
	prev                 *iceCreds
}

// icePath is the nominated path of a WebRTC leg: where media is sent.
type icePath struct {
	addr    netip.AddrPort
	consent atomic.Int64 // unix nanoseconds of the last valid check on it
	expired atomic.Bool  // CONSENT_EXPIRED raised for this path
}

// Stream is one media section of a leg. out, written by the worker that
// sends on the stream, comes first and q, written by the one that
// receives on it, last, the frozen and read-mostly fields between them
// keeping them a cache line apart (TestLegLayout).
type Stream struct {
	// out (under leg.outMu) is the outbound rewrite state.
	out rewrite.OutStream

	// Frozen once published.
	leg       *Leg
	index     int
	localSSRC uint32

	// Plain transport: a port pair of the stream's own (rtp, rtcp; rtcp is
	// nil with rtcp-mux) or a shared pair.
	rtp, rtcp *batchconn.Socket
	rtpPort   uint16
	shared    *sharedPair
	// latch[0] is the RTP source learnt (see latch.go), latch[1] RTCP's;
	// each is valid only for the negotiation (epoch) it was learnt in.
	// Written only by the worker that serves the stream's own port (the
	// session's owner), read by any worker that sends to the stream. learn
	// is that worker's learning state, owned by it.
	latch [2]atomic.Pointer[source]
	learn learner

	// SDES: sdes tells the packet path whether the stream is RTP/SAVP (and
	// so whether to take the leg's locks); dec (under leg.inMu) and enc
	// (under leg.outMu) are its contexts, and keys what they were made
	// from (guarded by sess.mu).
	sdes     atomic.Bool
	keys     *sdesKeys
	dec, enc *srtp.Context

	// inSSRC is the last SSRC received on the stream (RTCP routing).
	inSSRC atomic.Uint32
	// q is the stream's media quality (see streamQuality for who writes
	// what).
	q streamQuality
}

// source is an address a plain stream latched to, for the negotiation
// whose streamConfig.epoch it carries: a new SDP address starts a new
// epoch, which makes every earlier latch void without anyone writing to it.
type source struct {
	addr  netip.AddrPort
	epoch uint32
}

// group is a shared port: one SO_REUSEPORT socket per worker.
type group struct {
	id      int32
	addrIdx int
	port    uint16
	socks   []*batchconn.Socket // by worker
	legs    atomic.Int64        // legs assigned (load balancing)
	rtcp    bool                // shared plain: the odd port of a pair
}

// sharedPair is a shared plain RTP/RTCP port pair.
type sharedPair struct{ rtp, rtcp *group }
