package relay

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/srtp/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/icelite"
	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
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

	// cfg is the negotiated configuration, replaced whole on update and
	// read by the packet path with one atomic load.
	cfg atomic.Pointer[sessionConfig]

	mediaTimeout atomic.Int64 // nanoseconds
	updated      atomic.Int64 // unix nanoseconds of creation or the last update
	closed       atomic.Bool

	// mu guards specs and serialises updates and deletion of this session.
	mu    sync.Mutex
	specs []*pb.LegSpec
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

// sessionConfig is an immutable snapshot of what was negotiated.
type sessionConfig struct {
	legs [2]legConfig
}

type legConfig struct {
	streams []streamConfig
	// ptStream maps an inbound payload type to its stream on WebRTC legs,
	// whose streams share one transport (BUNDLE); -1 is unknown.
	ptStream [128]int8
}

// streamConfig is one stream's negotiated state. "in" is media received on
// this stream, "out" media sent on it.
type streamConfig struct {
	s *Stream
	// recv: media from the peer on this stream is relayed; send: media is
	// sent to the peer on this stream (direction, from Strait's side).
	recv, send bool
	// toPeer maps this stream's inbound payload types to the peer stream's.
	toPeer rewrite.PTMap
	// clocks are the clock rates of the payload types sent on this stream
	// (a handful: a table indexed by payload type would cost 512 bytes per
	// stream for the same answer).
	clocks []ptClock
	// rewriteSSRC: media sent on this stream carries Stream.localSSRC.
	rewriteSSRC bool
	// Plain streams: the SDP addresses, and whether only they are accepted.
	remote, remoteRTCP netip.AddrPort
	strict, mux        bool
}

// Leg is one side of a session.
type Leg struct {
	// Frozen at creation.
	sess    *Session
	index   int
	kind    pb.LegKind
	addrIdx int
	group   *group // WebRTC: the shared port the leg listens on

	// streams grow when an update adds media sections; guarded by sess.mu,
	// published to the packet path through sess.cfg.
	streams []*Stream
	// oldUfrags are local ufrags of earlier ICE restarts still registered
	// with the workers (removed with the session); guarded by sess.mu.
	oldUfrags []string

	// WebRTC transport state, lock-free for the packet path.
	ice   atomic.Pointer[iceCreds]
	path  atomic.Pointer[icePath]
	dtls  dtlsState
	state atomic.Int32 // pb.LegState

	// inMu guards dec (WebRTC) and every stream's dec (SDES); outMu guards
	// enc, every stream's enc and rewrite state. See the package doc.
	inMu  sync.Mutex
	dec   *srtp.Context
	outMu sync.Mutex
	enc   *srtp.Context

	profile atomic.Pointer[string] // negotiated SRTP profile name

	ctr     counters
	started atomic.Bool // MEDIA_STARTED raised
	// timedOut is set while MEDIA_TIMEOUT has been raised and no media came.
	timedOut atomic.Bool
}

// Index is the leg's position in its session.
func (l *Leg) Index() int { return l.index }

// iceCreds are a WebRTC leg's current ICE credentials. prev keeps the ones
// before an ICE restart valid until the peer uses the new ones.
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

// Stream is one media section of a leg.
type Stream struct {
	// Frozen at creation.
	leg       *Leg
	index     int
	localSSRC uint32

	// Plain transport: a port pair of the stream's own (rtp, rtcp; rtcp is
	// nil with rtcp-mux) or a shared pair.
	rtp, rtcp *batchconn.Socket
	rtpPort   uint16
	shared    *sharedPair
	// latch[0] is the RTP source latched by symmetric RTP, latch[1] RTCP's.
	latch [2]atomic.Pointer[netip.AddrPort]
	// inSSRC is the last SSRC received on the stream (RTCP routing).
	inSSRC atomic.Uint32

	// SDES keys and contexts; dec guarded by leg.inMu, enc and out by
	// leg.outMu. sdes tells the packet path whether to take those locks.
	sdes         atomic.Bool
	sdesSuite    string
	sdesLocalKey []byte
	sdesRemote   []byte
	dec, enc     *srtp.Context
	out          rewrite.OutStream
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

func statusf(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}

// compile builds the configuration snapshot for specs. It validates what the
// packet path relies on; allocation-time checks happen in the engine.
func compile(legs []*Leg, specs []*pb.LegSpec) (*sessionConfig, error) {
	cfg := &sessionConfig{}
	for i, l := range legs {
		spec := specs[i]
		lc := &cfg.legs[i]
		for j := range lc.ptStream {
			lc.ptStream[j] = -1
		}
		peerIdx := 1 - i
		if len(legs) == 1 {
			peerIdx = i
		}
		peerSpec := specs[peerIdx]
		lc.streams = make([]streamConfig, len(spec.GetStreams()))
		for j, ss := range spec.GetStreams() {
			sc := &lc.streams[j]
			sc.s = l.streams[j]
			sc.recv, sc.send = direction(ss.GetDirection())
			sc.rewriteSSRC = ss.GetRewriteSsrc() || len(legs) == 1
			for _, c := range ss.GetCodecs() {
				if c.GetPayloadType() > 127 {
					return nil, statusf(codes.InvalidArgument, "leg %d stream %d: payload type %d out of range", i, j, c.GetPayloadType())
				}
				pt := uint8(c.GetPayloadType())
				sc.clocks = append(sc.clocks, ptClock{pt, c.GetClockRate()})
				if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
					if prev := lc.ptStream[pt]; prev >= 0 && int(prev) != j {
						return nil, statusf(codes.InvalidArgument, "leg %d: payload type %d used by streams %d and %d of one WebRTC transport", i, pt, prev, j)
					}
					lc.ptStream[pt] = int8(j)
				}
				if j >= len(peerSpec.GetStreams()) {
					continue // no peer stream: nothing to relay to
				}
				if out, ok := matchCodec(c, peerSpec.GetStreams()[j].GetCodecs()); ok {
					sc.toPeer.Set(pt, out)
				}
			}
			if p := ss.GetPlain(); l.kind == pb.LegKind_LEG_KIND_PLAIN && p != nil {
				var err error
				if sc.remote, sc.remoteRTCP, err = plainRemotes(p); err != nil {
					return nil, statusf(codes.InvalidArgument, "leg %d stream %d: %v", i, j, err)
				}
				sc.mux = p.GetRtcpMux()
				sc.strict = p.GetStrictSource() || p.GetPortMode() == pb.PortMode_PORT_MODE_SHARED
			}
		}
	}
	return cfg, nil
}

// ptClock is a payload type's RTP clock rate.
type ptClock struct {
	pt    uint8
	clock uint32
}

// clock returns the clock rate of payload type pt sent on the stream, or 0
// (unknown) if it has none.
func (sc *streamConfig) clock(pt uint8) uint32 {
	for _, c := range sc.clocks {
		if c.pt == pt {
			return c.clock
		}
	}
	return 0
}

// matchCodec finds c's counterpart (same name, case-insensitive, and clock
// rate) among codecs and returns its payload type.
func matchCodec(c *pb.Codec, codecs []*pb.Codec) (uint8, bool) {
	for _, d := range codecs {
		if strings.EqualFold(c.GetName(), d.GetName()) && c.GetClockRate() == d.GetClockRate() && d.GetPayloadType() <= 127 {
			return uint8(d.GetPayloadType()), true
		}
	}
	return 0, false
}

// direction returns whether Strait relays media received on a stream, and
// whether it sends on it, for the direction Strait wrote in its SDP.
func direction(d pb.Direction) (recv, send bool) {
	switch d {
	case pb.Direction_DIRECTION_SENDONLY:
		return false, true
	case pb.Direction_DIRECTION_RECVONLY:
		return true, false
	case pb.Direction_DIRECTION_INACTIVE:
		return false, false
	}
	return true, true
}

// plainRemotes parses a plain stream's SDP addresses.
func plainRemotes(p *pb.PlainSpec) (rtp, rtcp netip.AddrPort, err error) {
	if s := p.GetRemoteAddr(); s != "" {
		if rtp, err = netip.ParseAddrPort(s); err != nil {
			return rtp, rtcp, fmt.Errorf("remote_addr %q: %v", s, err)
		}
		rtp = netip.AddrPortFrom(rtp.Addr().Unmap(), rtp.Port())
		if rtp.Addr().IsUnspecified() || rtp.Port() == 0 {
			// Old-style hold (c=0.0.0.0, RFC 3264 section 8.4) or a
			// rejected stream: nowhere to send.
			rtp = netip.AddrPort{}
		}
	}
	switch s := p.GetRemoteRtcpAddr(); {
	case s != "":
		if rtcp, err = netip.ParseAddrPort(s); err != nil {
			return rtp, rtcp, fmt.Errorf("remote_rtcp_addr %q: %v", s, err)
		}
		rtcp = netip.AddrPortFrom(rtcp.Addr().Unmap(), rtcp.Port())
		if rtcp.Addr().IsUnspecified() || rtcp.Port() == 0 {
			rtcp = netip.AddrPort{}
		}
	case !rtp.IsValid():
	case p.GetRtcpMux():
		rtcp = rtp
	default:
		rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
	}
	return rtp, rtcp, nil
}
