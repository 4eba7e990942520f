package relay

import (
	"google.golang.org/grpc/codes"

	"github.com/strait-sbc/strait/dataplane/icelite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// validateLeg checks a leg's spec for what the engine needs before it
// plans anything: the rest (payload types, SDES keys) is checked while the
// change is built.
func (e *Engine) validateLeg(i int, spec *pb.LegSpec) error {
	if spec == nil {
		return statusf(codes.InvalidArgument, "leg %d: missing", i)
	}
	if int(spec.GetAddressIndex()) >= len(e.cfg.Addrs) {
		return statusf(codes.InvalidArgument, "leg %d: address_index %d, the node has %d media addresses", i, spec.GetAddressIndex(), len(e.cfg.Addrs))
	}
	n := len(spec.GetStreams())
	if n < 1 || n > maxStreams {
		return statusf(codes.InvalidArgument, "leg %d: %d streams, want 1 to %d", i, n, maxStreams)
	}
	switch spec.GetKind() {
	case pb.LegKind_LEG_KIND_WEBRTC:
		w := spec.GetWebrtc()
		if u := w.GetLocalUfrag(); u != "" && !icelite.ValidUfrag(u) {
			return statusf(codes.InvalidArgument, "leg %d: local ufrag must be 4 to 256 ice-chars", i)
		}
		if p := w.GetLocalPwd(); p != "" {
			if _, err := icelite.NewKey([]byte(p)); err != nil {
				return statusf(codes.InvalidArgument, "leg %d: local ICE password: %v", i, err)
			}
		}
		if fp := w.GetRemoteFingerprint(); fp.GetValue() != "" && fp.GetAlgorithm() == "" {
			return statusf(codes.InvalidArgument, "leg %d: fingerprint without algorithm", i)
		}
	case pb.LegKind_LEG_KIND_PLAIN:
		for j, st := range spec.GetStreams() {
			p := st.GetPlain()
			if _, _, err := plainRemotes(p); err != nil {
				return statusf(codes.InvalidArgument, "leg %d stream %d: %v", i, j, err)
			}
			if _, err := signallingIP(p); err != nil {
				return statusf(codes.InvalidArgument, "leg %d stream %d: %v", i, j, err)
			}
			if p.GetPortMode() == pb.PortMode_PORT_MODE_SHARED && len(e.plainPairs[spec.GetAddressIndex()]) == 0 {
				return statusf(codes.FailedPrecondition, "leg %d stream %d: the node has no shared plain ports", i, j)
			}
			if sd := p.GetSdes(); sd != nil {
				if _, err := sdesProfile(sd.GetSuite()); err != nil {
					return statusf(codes.InvalidArgument, "leg %d stream %d: %v", i, j, err)
				}
			}
		}
	default:
		return statusf(codes.InvalidArgument, "leg %d: unknown kind %v", i, spec.GetKind())
	}
	return nil
}

// validateUpdate checks that specs keep what an update cannot change: the
// number of legs, their kind and address, their streams (which can be added
// but not removed) and those streams' port modes. Called with s.mu held.
func (e *Engine) validateUpdate(s *Session, specs []*pb.LegSpec) error {
	if len(specs) != len(s.legs) {
		return statusf(codes.InvalidArgument, "session has %d legs, update has %d", len(s.legs), len(specs))
	}
	for i, spec := range specs {
		if err := e.validateLeg(i, spec); err != nil {
			return err
		}
		l, old := s.legs[i], s.specs[i]
		if spec.GetKind() != l.kind || int(spec.GetAddressIndex()) != l.addrIdx {
			return statusf(codes.InvalidArgument, "leg %d: kind and address cannot change", i)
		}
		if len(spec.GetStreams()) < len(old.GetStreams()) {
			return statusf(codes.InvalidArgument, "leg %d: streams cannot be removed (reject them with direction INACTIVE)", i)
		}
		for j, os := range old.GetStreams() {
			if l.kind == pb.LegKind_LEG_KIND_PLAIN && portMode(os.GetPlain()) != portMode(spec.GetStreams()[j].GetPlain()) {
				return statusf(codes.InvalidArgument, "leg %d stream %d: port mode cannot change", i, j)
			}
		}
	}
	return nil
}

func portMode(p *pb.PlainSpec) pb.PortMode {
	if p.GetPortMode() == pb.PortMode_PORT_MODE_SHARED {
		return pb.PortMode_PORT_MODE_SHARED
	}
	return pb.PortMode_PORT_MODE_PER_LEG
}
