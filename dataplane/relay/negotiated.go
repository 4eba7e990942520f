package relay

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-sbc/strait/dataplane/quality"
	"github.com/strait-sbc/strait/dataplane/rewrite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// sessionConfig is an immutable snapshot of what was negotiated: the
// packet path reads it with one atomic load (Session.cfg), and a change
// replaces it whole.
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
	// emodel is the E-model's figures for the stream's first codec, clock0
	// that codec's clock rate (the unit of the jitter the peer reports) and
	// pt0 its payload type (clocks[0], kept here too: see clock).
	emodel quality.Codec
	clock0 uint32
	pt0    uint8
	// rewriteSSRC: media sent on this stream carries Stream.localSSRC.
	rewriteSSRC bool
	// Plain streams: the SDP addresses, and whether only they are accepted.
	remote, remoteRTCP netip.AddrPort
	strict, mux        bool
	// sigIP is the signalling peer's IP (PlainSpec.signalling_ip), whose
	// media is learnt at once; invalid when unknown. natted: the SDP
	// address is one a peer behind NAT writes (see natted).
	sigIP  netip.Addr
	natted bool
	// epoch numbers the stream's source negotiations: it stays while the
	// addresses above stay, and grows when an update changes them, so that
	// what was latched under the old addresses no longer counts. since is
	// when the epoch began (unix nanoseconds), retired the addresses of
	// earlier epochs (SDP and learnt), which are never learnt again: stale
	// packets after a media move must not win the stream back (see latch.go).
	epoch   uint32
	since   int64
	retired []netip.AddrPort
}

// maxRetired bounds the addresses a stream remembers from earlier
// negotiations (a few re-INVITEs' worth).
const maxRetired = 8

func statusf(c codes.Code, format string, args ...any) error {
	return status.Errorf(c, format, args...)
}

// compile builds the configuration snapshot for specs, whose streams are
// streams (by leg); old is the snapshot it replaces (nil at creation), now
// the time of the change. It validates what the packet path relies on and
// changes nothing.
func compile(legs []*Leg, streams [][]*Stream, specs []*pb.LegSpec, old *sessionConfig, now int64) (*sessionConfig, error) {
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
			sc.s = streams[i][j]
			sc.recv, sc.send = direction(ss.GetDirection())
			sc.rewriteSSRC = ss.GetRewriteSsrc() || len(legs) == 1
			for _, c := range ss.GetCodecs() {
				if c.GetPayloadType() > 127 {
					return nil, statusf(codes.InvalidArgument, "leg %d stream %d: payload type %d out of range", i, j, c.GetPayloadType())
				}
				pt := uint8(c.GetPayloadType())
				sc.clocks = append(sc.clocks, ptClock{pt, c.GetClockRate()})
				if len(sc.clocks) == 1 {
					sc.emodel, sc.clock0, sc.pt0 = quality.CodecByName(c.GetName()), c.GetClockRate(), pt
				}
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
				if sc.sigIP, err = signallingIP(p); err != nil {
					return nil, statusf(codes.InvalidArgument, "leg %d stream %d: %v", i, j, err)
				}
				sc.natted = sc.remote.IsValid() && natted(sc.remote.Addr())
			}
			sc.epoch, sc.since = 1, now
			if old != nil && j < len(old.legs[i].streams) {
				oc := &old.legs[i].streams[j]
				sc.epoch, sc.since, sc.retired = oc.epoch, oc.since, oc.retired
				if !sc.sameSources(oc) {
					sc.epoch, sc.since = oc.epoch+1, now
					sc.retired = retire(oc, sc)
				}
			}
		}
	}
	return cfg, nil
}

// sameSources reports whether two negotiations of a stream accept and
// learn sources alike, so that what was latched under one holds under the
// other.
func (sc *streamConfig) sameSources(o *streamConfig) bool {
	return sc.remote == o.remote && sc.remoteRTCP == o.remoteRTCP && sc.mux == o.mux && sc.sigIP == o.sigIP && sc.strict == o.strict
}

// retire lists the addresses the negotiation old gives up for next: its
// SDP addresses and what its stream learnt (read once, here), with what
// it had retired itself, newest first, never one next names.
func retire(old, next *streamConfig) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(a netip.AddrPort) {
		if a.IsValid() && a != next.remote && a != next.remoteRTCP && !slices.Contains(out, a) && len(out) < maxRetired {
			out = append(out, a)
		}
	}
	add(old.remote)
	add(old.remoteRTCP)
	for i := range old.s.latch {
		if a := old.s.latched(i, old); a != nil {
			add(a.addr)
		}
	}
	for _, a := range old.retired {
		add(a)
	}
	return out
}

// isRetired reports whether a is an address of an earlier negotiation.
func (sc *streamConfig) isRetired(a netip.AddrPort) bool {
	for _, r := range sc.retired {
		if r == a {
			return true
		}
	}
	return false
}

// natted reports whether an SDP address is one a peer behind NAT writes: a
// private (RFC 1918, RFC 4193), shared (RFC 6598, carrier-grade NAT) or
// link-local address, which nobody outside its network sends from. It is
// the test Kamailio's nathelper applies (nat_uac_test, "RFC 1918 address in
// SDP") before it lets media be learnt from elsewhere.
func natted(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLinkLocalUnicast() || sharedSpace.Contains(a)
}

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598

// signallingIP parses PlainSpec.signalling_ip.
func signallingIP(p *pb.PlainSpec) (netip.Addr, error) {
	s := p.GetSignallingIp()
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("signalling_ip %q: not an IP address", s)
	}
	return a.Unmap(), nil
}

// ptClock is a payload type's RTP clock rate.
type ptClock struct {
	pt    uint8
	clock uint32
}

// clock returns the clock rate of payload type pt sent on the stream, or 0
// (unknown) if it has none.
func (sc *streamConfig) clock(pt uint8) uint32 {
	// The first codec's, nearly every packet's, is answered from the
	// cache line the table's header is on: reading the table was one more
	// cache miss per packet (15% of worker.relay's samples at 500 sessions).
	if len(sc.clocks) > 0 && pt == sc.pt0 {
		return sc.clock0
	}
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
