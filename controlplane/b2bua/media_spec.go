package b2bua

import (
	"net/netip"

	"github.com/strait-sbc/strait/controlplane/sdp"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func pbDir(d sdp.Direction) pb.Direction {
	switch d {
	case sdp.SendOnly:
		return pb.Direction_DIRECTION_SENDONLY
	case sdp.RecvOnly:
		return pb.Direction_DIRECTION_RECVONLY
	case sdp.Inactive:
		return pb.Direction_DIRECTION_INACTIVE
	}
	return pb.Direction_DIRECTION_SENDRECV
}

func pbRole(r sdp.DTLSRole) pb.DTLSRole {
	switch r {
	case sdp.RoleClient:
		return pb.DTLSRole_DTLS_ROLE_CLIENT
	case sdp.RoleServer:
		return pb.DTLSRole_DTLS_ROLE_SERVER
	}
	return pb.DTLSRole_DTLS_ROLE_UNKNOWN
}

func pbCodecs(cs []sdp.Codec) []*pb.Codec {
	out := make([]*pb.Codec, len(cs))
	for i, c := range cs {
		out[i] = &pb.Codec{PayloadType: uint32(c.PayloadType), Name: c.Name, ClockRate: c.ClockRate, Channels: uint32(c.Channels)}
	}
	return out
}

// spec is leg i's LegSpec from what is negotiated so far.
func (m *media) spec(i int) *pb.LegSpec {
	l := m.legs[i]
	ls := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN}
	if l.kind == kindWebRTC {
		ls.Kind = pb.LegKind_LEG_KIND_WEBRTC
		ws := &pb.WebRTCSpec{DtlsRole: pbRole(l.role)}
		if l.remote != nil {
			if r, err := l.remote.RemoteWebRTC(); err == nil {
				ws.RemoteUfrag, ws.RemotePwd = r.ICE.Ufrag, r.ICE.Pwd
				ws.RemoteFingerprint = &pb.Fingerprint{Algorithm: r.Fingerprint.Algorithm, Value: r.Fingerprint.Value}
			}
		}
		ls.Webrtc = ws
	}
	for j := range l.codecs {
		media := "audio"
		if l.remote != nil && j < len(l.remote.Media) {
			media = l.remote.Media[j].Kind.String()
		}
		ss := &pb.StreamSpec{Media: media, Direction: pbDir(l.dirs[j]), Codecs: pbCodecs(l.codecs[j]),
			RewriteSsrc: l.kind == kindWebRTC}
		if len(l.codecs[j]) == 0 {
			ss.Direction = pb.Direction_DIRECTION_INACTIVE
		}
		if l.kind == kindPlain {
			ps := &pb.PlainSpec{PortMode: pb.PortMode_PORT_MODE_PER_LEG}
			if l.shared {
				ps.PortMode = pb.PortMode_PORT_MODE_SHARED
			}
			if l.sigIP.IsValid() {
				ps.SignallingIp = l.sigIP.String() // media from it is learnt at once (NAT)
			}
			if l.remote != nil && j < len(l.remote.Media) {
				rm := &l.remote.Media[j]
				if a, ok := rm.RemoteRTP(); ok && !rm.Rejected() {
					ps.RemoteAddr = a.String()
					// Strait never takes rtcp-mux on a plain leg, so
					// RTCP goes to a=rtcp or the next port.
					if rm.RTCPPort > 0 && rm.RTCPPort < 65536 && rm.RTCPPort != rm.Port {
						ip := a.Addr()
						if rm.RTCPAddress != "" {
							if x, err := netip.ParseAddr(rm.RTCPAddress); err == nil && !x.IsUnspecified() {
								ip = x
							}
						}
						ps.RemoteRtcpAddr = netip.AddrPortFrom(ip, uint16(rm.RTCPPort)).String()
					}
				}
			}
			if l.sdesRemote[j] != nil {
				ps.Sdes = &pb.SDESCrypto{Suite: l.sdesSuite[j], RemoteKey: l.sdesRemote[j], LocalKey: l.sdesLocal[j]}
			}
			ss.Plain = ps
		}
		ls.Streams = append(ls.Streams, ss)
	}
	return ls
}

func (m *media) specs() []*pb.LegSpec {
	out := make([]*pb.LegSpec, len(m.legs))
	for i := range m.legs {
		out[i] = m.spec(i)
	}
	return out
}
