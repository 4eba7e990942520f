package relay

import (
	"net/netip"

	"google.golang.org/protobuf/proto"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Proto returns the session's state as the API reports it.
func (s *Session) Proto() *pb.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.engine
	out := &pb.Session{
		Id:              s.ID,
		Labels:          s.Labels,
		CreatedUnixNano: s.Created.UnixNano(),
		MediaTimeoutS:   uint32(s.MediaTimeout().Seconds()),
	}
	for i, l := range s.legs {
		leg := &pb.Leg{
			State:    pb.LegState(l.state.Load()),
			Counters: l.ctr.proto(),
		}
		if i < len(s.specs) {
			leg.Spec = proto.Clone(s.specs[i]).(*pb.LegSpec)
		}
		adv := e.cfg.advertised(l.addrIdx)
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			if c := l.ice.Load(); c != nil {
				leg.LocalUfrag, leg.LocalPwd = c.localUfrag, c.localPwd
			}
			leg.LocalFingerprint = &pb.Fingerprint{Algorithm: "sha-256", Value: e.cfg.Fingerprint}
			if p := l.path.Load(); p != nil {
				leg.RemoteAddr = p.addr.String()
			}
			if n := l.profile.Load(); n != nil {
				leg.SrtpProfile = *n
			}
		}
		for _, st := range l.streams {
			ps := &pb.Stream{LocalSsrc: st.localSSRC, Quality: st.q.proto()}
			switch {
			case l.kind == pb.LegKind_LEG_KIND_WEBRTC:
				ps.LocalAddr = netip.AddrPortFrom(adv, l.group.port).String()
				ps.LocalRtcpAddr = ps.LocalAddr
			case st.shared != nil:
				ps.LocalAddr = netip.AddrPortFrom(adv, st.shared.rtp.port).String()
				ps.LocalRtcpAddr = netip.AddrPortFrom(adv, st.shared.rtcp.port).String()
			case st.rtp != nil:
				ps.LocalAddr = netip.AddrPortFrom(adv, st.rtpPort).String()
				ps.LocalRtcpAddr = netip.AddrPortFrom(adv, st.rtpPort+1).String()
			}
			if l.kind == pb.LegKind_LEG_KIND_PLAIN {
				if i < len(s.specs) && st.index < len(s.specs[i].GetStreams()) && s.specs[i].GetStreams()[st.index].GetPlain().GetRtcpMux() {
					ps.LocalRtcpAddr = ps.LocalAddr
				}
				if k := st.keys; k != nil {
					ps.SdesLocalKey = k.local
					leg.SrtpProfile = k.suite
				}
				if cfg := s.cfg.Load(); st.index < len(cfg.legs[i].streams) {
					sc := &cfg.legs[i].streams[st.index]
					if a := st.latched(0, sc); a != nil {
						ps.RemoteAddr = a.addr.String()
					} else if sc.remote.IsValid() {
						ps.RemoteAddr = sc.remote.String()
					}
				}
			}
			leg.Streams = append(leg.Streams, ps)
		}
		if l.kind == pb.LegKind_LEG_KIND_PLAIN && leg.State == pb.LegState_LEG_STATE_NEW {
			leg.State = pb.LegState_LEG_STATE_CONNECTED // nothing to negotiate
		}
		out.Legs = append(out.Legs, leg)
	}
	return out
}
