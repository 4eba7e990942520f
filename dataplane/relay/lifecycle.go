package relay

import (
	"maps"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// maxStreams bounds media sections per leg (one SDP rarely has more than
// audio, video and a screen share).
const maxStreams = 8

// CreateSession allocates and starts a session. Errors carry gRPC codes;
// a refused creation leaves nothing behind.
func (e *Engine) CreateSession(req *pb.CreateSessionRequest) (*Session, error) {
	return e.createSession(req, nil)
}

// createSession creates a session, or with r re-creates a saved one
// (RestoreSession).
func (e *Engine) createSession(req *pb.CreateSessionRequest, r *restoring) (*Session, error) {
	specs := req.GetLegs()
	if len(specs) < 1 || len(specs) > 2 {
		return nil, statusf(codes.InvalidArgument, "a session has one or two legs, got %d", len(specs))
	}
	for i, spec := range specs {
		if err := e.validateLeg(i, spec); err != nil {
			return nil, err
		}
	}
	id := req.GetId()
	if id == "" {
		id = randomString(idAlphabet, 16)
	} else if len(id) > 128 {
		return nil, statusf(codes.InvalidArgument, "session id longer than 128 bytes")
	}
	s := &Session{
		ID:      id,
		Labels:  maps.Clone(req.GetLabels()), // events share it: never the caller's map
		Created: e.cfg.Now(),
		engine:  e,
		owner:   e.workers[int(e.nextOwner.Add(1))%len(e.workers)],
	}
	for i, spec := range specs {
		l := &Leg{sess: s, index: i, kind: spec.GetKind(), addrIdx: int(spec.GetAddressIndex())}
		l.state.Store(int32(pb.LegState_LEG_STATE_NEW))
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			l.group = e.pickGroup(l.addrIdx)
			if r != nil {
				if l.group = e.groupAt(l.addrIdx, r.sv.Legs[i].Port); l.group == nil {
					return nil, statusf(codes.FailedPrecondition, "leg %d: the node has no WebRTC port %d any more", i, r.sv.Legs[i].Port)
				}
			}
		}
		s.legs = append(s.legs, l)
	}
	timeout := time.Duration(req.GetMediaTimeoutS()) * time.Second
	if timeout <= 0 {
		timeout = DefaultMediaTimeout
	}
	s.mediaTimeout.Store(int64(timeout))

	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return nil, statusf(codes.Unavailable, "node is stopping")
	case e.sessions[id] != nil:
		e.mu.Unlock()
		return nil, statusf(codes.AlreadyExists, "session %q exists", id)
	case hasKey(e.reserved, id):
		e.mu.Unlock()
		return nil, statusf(codes.AlreadyExists, "session %q is being created", id)
	case e.cfg.MaxSessions > 0 && len(e.sessions)+len(e.reserved) >= e.cfg.MaxSessions:
		e.mu.Unlock()
		return nil, statusf(codes.ResourceExhausted, "node is full (%d sessions)", e.cfg.MaxSessions)
	}
	e.reserved[id] = struct{}{}
	e.mu.Unlock()

	// Nobody else can reach s until it is published below; its mutex is
	// taken only because plan and commit document it.
	s.mu.Lock()
	c, err := e.plan(s, specs, nil, r)
	if err == nil && r != nil {
		if err = e.prepareRestore(s, c, r); err != nil {
			e.abort(c)
		}
	}
	if err != nil {
		s.mu.Unlock()
		e.mu.Lock()
		delete(e.reserved, id)
		e.mu.Unlock()
		return nil, err
	}
	for _, l := range s.legs {
		if l.group != nil {
			l.group.legs.Add(1)
		}
	}
	e.commit(c)
	if r != nil {
		e.latchRestored(s)
	}
	s.mu.Unlock()

	e.mu.Lock()
	delete(e.reserved, id)
	e.sessions[id] = s
	closed := e.closed
	e.mu.Unlock()
	if closed { // Close ran while this session was being set up
		e.DeleteSession(id, "node stopped")
		return nil, statusf(codes.Unavailable, "node is stopping")
	}
	return s, nil
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// UpdateSession applies a re-negotiation: the request describes the whole
// new state. Errors carry gRPC codes; a refused update leaves the session
// exactly as it was. Applying the same request twice changes nothing the
// second time (see nextCreds for ICE restarts).
func (e *Engine) UpdateSession(req *pb.UpdateSessionRequest) (*Session, error) {
	s, ok := e.Session(req.GetId())
	if !ok {
		return nil, statusf(codes.NotFound, "no session %q", req.GetId())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, statusf(codes.NotFound, "no session %q", req.GetId())
	}
	if err := e.validateUpdate(s, req.GetLegs()); err != nil {
		return nil, err
	}
	c, err := e.plan(s, req.GetLegs(), req.GetIceRestart(), nil)
	if err != nil {
		return nil, err
	}
	c.timeout = time.Duration(req.GetMediaTimeoutS()) * time.Second
	e.commit(c)
	return s, nil
}

// DeleteSession stops a session, frees its ports and returns it.
func (e *Engine) DeleteSession(id, reason string) (*Session, error) {
	e.mu.Lock()
	s := e.sessions[id]
	if s == nil {
		e.mu.Unlock()
		return nil, statusf(codes.NotFound, "no session %q", id)
	}
	delete(e.sessions, id)
	e.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed.Store(true)
	cmds := e.tableCommands(s.owner, s.tables, tables{})
	for i := range cmds {
		for _, l := range s.legs {
			cmds[i] = append(cmds[i], command{op: cmdForgetLeg, leg: l})
		}
	}
	e.barrier(cmds)
	s.tables = tables{}
	s.sampleQuality(e.cfg.Now().UnixNano(), true) // the last interval, however short
	e.release(s)
	e.mu.Lock()
	for _, l := range s.legs {
		l.ctr.addTo(&e.totals)
	}
	e.mu.Unlock()
	e.event(s.legs[0], pb.EventType_EVENT_TYPE_SESSION_ENDED, reason) // one per session
	return s, nil
}

// release frees what a session holds: handshakes, keys, ports. Workers no
// longer reach its sockets (DeleteSession's barrier).
func (e *Engine) release(s *Session) {
	for _, l := range s.legs {
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			e.stopDTLS(l, true)
			l.group.legs.Add(-1)
		}
		for _, st := range l.streams {
			e.releasePorts(st)
		}
	}
}

func cloneSpecs(specs []*pb.LegSpec) []*pb.LegSpec {
	out := make([]*pb.LegSpec, len(specs))
	for i, s := range specs {
		out[i] = proto.Clone(s).(*pb.LegSpec)
	}
	return out
}
