package relay

import (
	"time"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// A change is a session's next state, built whole before any of it is
// published, the way validCheck replaces ICE credentials (build, then
// swap) and tailscale's udprelay inserts an endpoint only once complete.
// Building it (plan) may fail at any point and then leaves the session
// exactly as it was: abort releases the ports it took, and nothing else
// was touched. commit publishes it: keys and credentials first, then the
// configuration snapshot, then one barrier that brings every worker's
// tables from what the session had to what it has now.
//
// Creation, updates and deletion all go through here: creation is a change
// from a session with no configuration and no tables, deletion removes the
// tables the session has (Engine.tableCommands in both).
type change struct {
	s       *Session
	specs   []*pb.LegSpec // cloned: never the caller's messages
	cfg     *sessionConfig
	legs    []legChange // by leg
	tables  tables
	timeout time.Duration // 0 keeps the current media timeout
}

// legChange is what a change does to one leg.
type legChange struct {
	// streams are the leg's streams afterwards: the current ones, then
	// the new ones this change created (with their ports).
	streams []*Stream
	// WebRTC: the credentials to publish (nil keeps the current; restarted
	// when an ICE restart made them), the DTLS parameters, and whether the
	// handshake must be redone with them.
	ice       *iceCreds
	restarted bool
	dtls      *dtlsParams
	redoDTLS  bool
	// sdes: per stream of a plain leg, what happens to its SDES keys.
	sdes []sdesChange
}

// plan builds the change that applies specs (already validated against the
// session's shape) to s; restart asks for an ICE restart per leg; r, when
// the change re-creates a saved session, gives its streams' SSRCs and
// ports. Called with s.mu held, or before s is published.
func (e *Engine) plan(s *Session, specs []*pb.LegSpec, restart []bool, r *restoring) (*change, error) {
	c := &change{s: s, specs: cloneSpecs(specs), legs: make([]legChange, len(s.legs))}
	streams := make([][]*Stream, len(s.legs))
	for i, l := range s.legs {
		lc := &c.legs[i]
		lc.streams = append([]*Stream(nil), l.streams...)
		for j := len(l.streams); j < len(specs[i].GetStreams()); j++ {
			st := &Stream{leg: l, index: j, localSSRC: randomSSRC()}
			if ss := r.streamFor(i, j); ss != nil {
				st.localSSRC = ss.LocalSSRC
			}
			lc.streams = append(lc.streams, st)
		}
		streams[i] = lc.streams
	}
	cfg, err := compile(s.legs, streams, c.specs, s.cfg.Load(), e.cfg.Now().UnixNano())
	if err != nil {
		return nil, err
	}
	c.cfg = cfg
	creds := make([]*iceCreds, len(s.legs))
	for i, l := range s.legs {
		lc := &c.legs[i]
		spec := c.specs[i]
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			r := i < len(restart) && restart[i]
			if lc.ice, lc.restarted, err = nextCreds(l, spec.GetWebrtc(), r); err != nil {
				return nil, err
			}
			creds[i] = lc.ice
			if creds[i] == nil {
				creds[i] = l.ice.Load()
			}
			np, cur := paramsOf(spec.GetWebrtc()), l.dtls.params.Load()
			if cur == nil || *np != *cur {
				lc.dtls = np
				lc.redoDTLS = cur.redo(np)
			}
			continue
		}
		lc.sdes = make([]sdesChange, len(lc.streams))
		for j, st := range lc.streams {
			if lc.sdes[j], err = planSDES(st.keys, spec.GetStreams()[j].GetPlain().GetSdes()); err != nil {
				return nil, err
			}
		}
	}
	// Ports last: the one step with an effect outside the change, which
	// abort undoes.
	for i, l := range s.legs {
		if l.kind != pb.LegKind_LEG_KIND_PLAIN {
			continue
		}
		for _, st := range c.legs[i].streams[len(l.streams):] {
			var port uint16
			if ss := r.streamFor(i, st.index); ss != nil {
				port = ss.Port
			}
			if err := e.allocPlain(st, c.specs[i].GetStreams()[st.index].GetPlain(), port); err != nil {
				e.abort(c)
				return nil, err
			}
		}
	}
	c.tables = tablesOf(s.legs, creds, cfg)
	return c, nil
}

// abort releases what plan allocated for a change that is not committed.
func (e *Engine) abort(c *change) {
	for i, l := range c.s.legs {
		for _, st := range c.legs[i].streams[len(l.streams):] {
			e.releasePorts(st)
		}
	}
}

// commit publishes a change and returns once every worker applied it.
// Called with s.mu held (or before s is published).
func (e *Engine) commit(c *change) {
	s := c.s
	for i, l := range s.legs {
		lc := &c.legs[i]
		for j, sc := range lc.sdes {
			sc.install(lc.streams[j])
		}
		if lc.ice != nil {
			l.ice.Store(lc.ice)
		}
		if lc.restarted {
			r := lc.ice.remoteUfrag
			l.restartedFor = &r
		}
		if lc.dtls != nil {
			l.dtls.params.Store(lc.dtls)
		}
		l.streams = lc.streams
	}
	if c.timeout > 0 {
		s.mediaTimeout.Store(int64(c.timeout))
	}
	from := s.tables
	s.cfg.Store(c.cfg)
	s.specs = c.specs
	s.tables = c.tables
	s.updated.Store(e.cfg.Now().UnixNano())
	// Wait until every worker knows the session: a check that arrives as
	// soon as the caller has the answer must find its leg.
	e.barrier(e.tableCommands(s.owner, from, c.tables))
	for i, l := range s.legs {
		if l.kind != pb.LegKind_LEG_KIND_WEBRTC {
			continue
		}
		if c.legs[i].redoDTLS {
			e.stopDTLS(l, true)
			l.state.Store(int32(pb.LegState_LEG_STATE_CONNECTING))
		}
		e.startDTLS(l) // no-op unless ready and not running
	}
}
