package relay

import (
	"net/netip"

	"google.golang.org/grpc/codes"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// allocPlain gives a plain stream its ports: port's pair when port is not
// 0 (a restored session), else one drawn from the range.
func (e *Engine) allocPlain(st *Stream, p *pb.PlainSpec, port uint16) error {
	l := st.leg
	if p.GetPortMode() == pb.PortMode_PORT_MODE_SHARED {
		pairs := e.plainPairs[l.addrIdx]
		st.shared = pairs[int(e.nextPair.Add(1))%len(pairs)]
		return nil
	}
	addr := e.cfg.Addrs[l.addrIdx]
	bind := func(port uint16) error {
		rtp, err := batchconn.Listen(netip.AddrPortFrom(addr, port), e.cfg.Socket)
		if err != nil {
			return err
		}
		rtcp, err := batchconn.Listen(netip.AddrPortFrom(addr, port+1), e.cfg.Socket)
		if err != nil {
			rtp.Close()
			return err
		}
		st.rtp, st.rtcp = rtp, rtcp
		return nil
	}
	if port != 0 {
		if err := e.rtpPorts[l.addrIdx].AcquirePort(port, bind); err != nil {
			return statusf(codes.FailedPrecondition, "RTP port pair %v:%d: %v", addr, port, err)
		}
		st.rtpPort = port
		return nil
	}
	port, err := e.rtpPorts[l.addrIdx].Acquire(bind)
	if err != nil {
		return statusf(codes.ResourceExhausted, "no free RTP port pair on %v: %v", addr, err)
	}
	st.rtpPort = port
	return nil
}

// pickGroup returns the WebRTC port of address ai with the fewest legs.
func (e *Engine) pickGroup(ai int) *group {
	best := e.webrtc[ai][0]
	for _, g := range e.webrtc[ai][1:] {
		if g.legs.Load() < best.legs.Load() {
			best = g
		}
	}
	return best
}

// releasePorts closes a stream's own port pair and returns it to the
// allocator. Workers must no longer reach its sockets (a barrier removed
// them) or never have.
func (e *Engine) releasePorts(st *Stream) {
	if st.rtp == nil {
		return
	}
	st.rtp.Close()
	st.rtcp.Close()
	e.rtpPorts[st.leg.addrIdx].Release(st.rtpPort)
	st.rtp, st.rtcp = nil, nil
}
