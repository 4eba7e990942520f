package relay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/icelite"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// Engine is a running packet engine: workers, shared sockets, sessions.
// Its methods are safe for concurrent use.
type Engine struct {
	// Frozen after New.
	cfg        Config
	log        *slog.Logger
	ctx        context.Context
	cancel     context.CancelFunc
	workers    []*worker
	groups     []*group               // by id
	webrtc     [][]*group             // by address index
	plainPairs [][]*sharedPair        // by address index
	rtpPorts   []*portalloc.Allocator // by address index
	nextOwner  atomic.Uint32
	nextPair   atomic.Uint32

	mu sync.Mutex // guards the fields below
	// sessions holds the published sessions: fully set up and known to
	// the workers. Everything that lists or looks up sessions sees only
	// these; reserved holds the ids of sessions being created (counted
	// against MaxSessions, refused as duplicates).
	sessions map[string]*Session
	reserved map[string]struct{}
	totals   pb.LegCounters // of deleted legs
	closed   bool

	wg sync.WaitGroup // workers, handshakes, janitor
}

// New binds the shared ports and starts the workers.
func New(cfg Config) (*Engine, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, sessions: make(map[string]*Session), reserved: make(map[string]struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			e.shutdown()
		}
	}()
	for i := 0; i < cfg.Workers; i++ {
		w, err := newWorker(e, i)
		if err != nil {
			return nil, err
		}
		e.workers = append(e.workers, w)
	}
	reuse := cfg.Socket
	reuse.ReusePort = true
	for ai, addr := range cfg.Addrs {
		var webrtc []*group
		for port := int(cfg.WebRTCPorts.First); port <= int(cfg.WebRTCPorts.Last); port++ {
			g, err := e.newGroup(ai, addr, uint16(port), reuse, sockWebRTC, false)
			if err != nil {
				return nil, err
			}
			webrtc = append(webrtc, g)
		}
		e.webrtc = append(e.webrtc, webrtc)
		var pairs []*sharedPair
		if r := cfg.PlainSharedPorts; r.Pairs() > 0 {
			for port := int(r.First + r.First%2); port+1 <= int(r.Last); port += 2 {
				rtp, err := e.newGroup(ai, addr, uint16(port), reuse, sockPlainShared, false)
				if err != nil {
					return nil, err
				}
				rtcp, err := e.newGroup(ai, addr, uint16(port+1), reuse, sockPlainShared, true)
				if err != nil {
					return nil, err
				}
				pairs = append(pairs, &sharedPair{rtp: rtp, rtcp: rtcp})
			}
		}
		e.plainPairs = append(e.plainPairs, pairs)
		e.rtpPorts = append(e.rtpPorts, portalloc.New(cfg.RTPPorts))
	}
	for _, w := range e.workers {
		e.wg.Add(1)
		go w.run()
	}
	e.wg.Add(1)
	go e.janitor()
	ok = true
	return e, nil
}

// newGroup binds one shared port on every worker.
func (e *Engine) newGroup(ai int, addr netip.Addr, port uint16, opt batchconn.Options, kind sockKind, rtcp bool) (*group, error) {
	g := &group{id: int32(len(e.groups)), addrIdx: ai, port: port, rtcp: rtcp}
	e.groups = append(e.groups, g)
	for _, w := range e.workers {
		sock, err := batchconn.Listen(netip.AddrPortFrom(addr, port), opt)
		if err != nil {
			return nil, fmt.Errorf("relay: binding shared port %v: %w", netip.AddrPortFrom(addr, port), err)
		}
		g.socks = append(g.socks, sock)
		w.groupSocks = append(w.groupSocks, sock)
		if err := w.addSlot(slot{sock: sock, kind: kind, group: g, rtcp: rtcp}); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Close deletes every session, stops the workers and releases the ports.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ids := make([]string, 0, len(e.sessions))
	for id := range e.sessions {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	for _, id := range ids {
		e.DeleteSession(id, "node stopped")
	}
	e.shutdown()
	return nil
}

func (e *Engine) shutdown() {
	e.cancel()
	for _, w := range e.workers {
		w.poller.Close()
	}
	e.wg.Wait()
	for _, w := range e.workers {
		w.waker.Close()
	}
	for _, g := range e.groups {
		for _, s := range g.socks {
			s.Close()
		}
	}
}

// event passes an event to the observer.
func (e *Engine) event(l *Leg, typ pb.EventType, detail string) {
	if e.cfg.Observer != nil {
		e.cfg.Observer.Event(l.sess, l.index, typ, detail)
	}
}

// Config returns the engine's configuration (after defaults).
func (e *Engine) Config() Config { return e.cfg }

// Sessions returns the current sessions.
func (e *Engine) Sessions() []*Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Session, 0, len(e.sessions))
	for _, s := range e.sessions {
		out = append(out, s)
	}
	return out
}

// Session returns a session by id.
func (e *Engine) Session(id string) (*Session, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sessions[id]
	return s, ok
}

// Len is the number of sessions.
func (e *Engine) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

// Totals returns the counters of every leg, current and deleted, plus what
// the workers could not charge to a leg (as unknown-source and malformed
// drops).
func (e *Engine) Totals() *pb.LegCounters {
	e.mu.Lock()
	t := proto.Clone(&e.totals).(*pb.LegCounters)
	live := make([]*Session, 0, len(e.sessions))
	for _, s := range e.sessions {
		live = append(live, s)
	}
	e.mu.Unlock()
	for _, s := range live {
		for _, l := range s.legs {
			l.ctr.addTo(t)
		}
	}
	for _, w := range e.workers {
		t.DropUnknownSource += w.ctr.unknownSource.Load() + w.ctr.stunUnknownUfrag.Load()
		t.DropMalformed += w.ctr.malformed.Load()
		t.DropRcvbuf += w.ctr.rcvbuf.Load()
	}
	return t
}

// PortsInUse is the number of port pairs held by plain streams.
func (e *Engine) PortsInUse() int {
	n := 0
	for _, a := range e.rtpPorts {
		n += a.InUse()
	}
	return n
}

// maxStreams bounds media sections per leg (one SDP rarely has more than
// audio, video and a screen share).
const maxStreams = 8

// CreateSession allocates and starts a session. Errors carry gRPC codes.
func (e *Engine) CreateSession(req *pb.CreateSessionRequest) (*Session, error) {
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
	timeout := time.Duration(req.GetMediaTimeoutS()) * time.Second
	if timeout <= 0 {
		timeout = DefaultMediaTimeout
	}
	s.mediaTimeout.Store(int64(timeout))
	s.updated.Store(s.Created.UnixNano())

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

	// Nobody else can reach s until it is published below, so its mutex
	// is not needed while it is set up.
	err := func() error {
		for i, spec := range specs {
			l := &Leg{sess: s, index: i, kind: spec.GetKind(), addrIdx: int(spec.GetAddressIndex())}
			l.state.Store(int32(pb.LegState_LEG_STATE_NEW))
			s.legs = append(s.legs, l)
			if err := e.setupLeg(l, spec, false); err != nil {
				return err
			}
		}
		cfg, err := compile(s.legs, specs)
		if err != nil {
			return err
		}
		s.cfg.Store(cfg)
		s.specs = cloneSpecs(specs)
		return nil
	}()
	if err != nil {
		e.release(s)
		e.mu.Lock()
		delete(e.reserved, id)
		e.mu.Unlock()
		return nil, err
	}
	e.publish(s)
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

// setupLeg allocates what a leg's spec needs: credentials and a port for a
// WebRTC leg, ports and keys for plain streams. With update, the leg exists
// and only new streams and changed parameters are applied.
func (e *Engine) setupLeg(l *Leg, spec *pb.LegSpec, update bool) error {
	if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
		if !update {
			l.group = e.pickGroup(l.addrIdx)
			l.group.legs.Add(1)
			creds, err := newCreds(spec.GetWebrtc(), nil)
			if err != nil {
				return err
			}
			l.ice.Store(creds)
			l.dtls.params.Store(paramsOf(spec.GetWebrtc()))
		}
		for j := len(l.streams); j < len(spec.GetStreams()); j++ {
			l.streams = append(l.streams, &Stream{leg: l, index: j, localSSRC: randomSSRC()})
		}
		return nil
	}
	for j, ss := range spec.GetStreams() {
		var st *Stream
		if j < len(l.streams) {
			st = l.streams[j]
		} else {
			st = &Stream{leg: l, index: j, localSSRC: randomSSRC()}
			if err := e.allocPlain(st, ss.GetPlain()); err != nil {
				return err
			}
			l.streams = append(l.streams, st)
		}
		if err := setSDES(st, ss.GetPlain().GetSdes()); err != nil {
			return err
		}
	}
	return nil
}

// allocPlain gives a plain stream its ports.
func (e *Engine) allocPlain(st *Stream, p *pb.PlainSpec) error {
	l := st.leg
	if p.GetPortMode() == pb.PortMode_PORT_MODE_SHARED {
		pairs := e.plainPairs[l.addrIdx]
		st.shared = pairs[int(e.nextPair.Add(1))%len(pairs)]
		return nil
	}
	addr := e.cfg.Addrs[l.addrIdx]
	port, err := e.rtpPorts[l.addrIdx].Acquire(func(port uint16) error {
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
	})
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

// publish makes a session reachable by packets: the workers learn its
// ufrags and shared-port peers, its owner its port-per-stream sockets. It
// returns once every worker applied the change.
func (e *Engine) publish(s *Session) {
	cmds := make([][]command, len(e.workers))
	for _, l := range s.legs {
		if c := l.ice.Load(); c != nil {
			for i := range e.workers {
				cmds[i] = append(cmds[i], command{op: cmdAddUfrag, leg: l, ufrag: c.localUfrag})
			}
		}
		for _, st := range l.streams {
			cmds[s.owner.id] = append(cmds[s.owner.id], e.socketCmds(st, cmdAddSocket)...)
		}
	}
	cfg := s.cfg.Load()
	for _, l := range s.legs {
		for j, st := range l.streams {
			if st.shared == nil || j >= len(cfg.legs[l.index].streams) {
				continue
			}
			for _, k := range sharedKeys(st, &cfg.legs[l.index].streams[j]) {
				for i := range e.workers {
					cmds[i] = append(cmds[i], command{op: cmdAddShared, stream: st, key: k})
				}
			}
		}
	}
	// Wait until every worker knows the session: a check that arrives
	// as soon as the caller has the answer must find its leg.
	e.barrier(cmds)
}

func (e *Engine) socketCmds(st *Stream, op cmdOp) []command {
	if st.rtp == nil {
		return nil
	}
	return []command{
		{op: op, stream: st, sock: st.rtp},
		{op: op, stream: st, sock: st.rtcp, rtcp: true},
	}
}

// sharedKeys are the (shared port, peer address) pairs that identify a
// shared plain stream: its RTP peer on the RTP port, and its RTCP peer on
// the RTCP port (or the RTP port with rtcp-mux).
func sharedKeys(st *Stream, sc *streamConfig) []latchKey {
	var keys []latchKey
	if sc.remote.IsValid() {
		keys = append(keys, latchKey{st.shared.rtp.id, sc.remote})
	}
	if sc.remoteRTCP.IsValid() && !sc.mux {
		keys = append(keys, latchKey{st.shared.rtcp.id, sc.remoteRTCP})
	}
	return keys
}

// barrier runs cmds on every worker (cmds[i] on worker i) and waits until
// all were applied: after it returns, no worker holds what was removed.
func (e *Engine) barrier(cmds [][]command) {
	var wg sync.WaitGroup
	for i, w := range e.workers {
		wg.Add(1)
		cs := append(cmds[i], command{op: cmdBarrier, done: &wg})
		w.post(cs...)
	}
	wg.Wait()
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
	cmds := make([][]command, len(e.workers))
	cfg := s.cfg.Load()
	for _, l := range s.legs {
		for i := range e.workers {
			for c := l.ice.Load(); c != nil; c = c.prev {
				cmds[i] = append(cmds[i], command{op: cmdRemoveUfrag, leg: l, ufrag: c.localUfrag})
			}
			for _, u := range l.oldUfrags {
				cmds[i] = append(cmds[i], command{op: cmdRemoveUfrag, leg: l, ufrag: u})
			}
			cmds[i] = append(cmds[i], command{op: cmdForgetLeg, leg: l})
		}
		for j, st := range l.streams {
			cmds[s.owner.id] = append(cmds[s.owner.id], e.socketCmds(st, cmdRemoveSocket)...)
			if st.shared != nil && j < len(cfg.legs[l.index].streams) {
				for _, k := range sharedKeys(st, &cfg.legs[l.index].streams[j]) {
					for i := range e.workers {
						cmds[i] = append(cmds[i], command{op: cmdRemoveShared, stream: st, key: k})
					}
				}
			}
		}
	}
	e.barrier(cmds)
	e.release(s)
	e.mu.Lock()
	for _, l := range s.legs {
		l.ctr.addTo(&e.totals)
	}
	e.mu.Unlock()
	for _, l := range s.legs {
		e.event(l, pb.EventType_EVENT_TYPE_SESSION_ENDED, reason)
		break // one SESSION_ENDED per session
	}
	return s, nil
}

// release frees what setupLeg allocated. Workers must no longer reach the
// session's sockets (barrier) or never have (failed creation).
func (e *Engine) release(s *Session) {
	for _, l := range s.legs {
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			e.stopDTLS(l, true)
			if l.group != nil {
				l.group.legs.Add(-1)
			}
		}
		for _, st := range l.streams {
			if st.rtp != nil {
				st.rtp.Close()
				st.rtcp.Close()
				e.rtpPorts[l.addrIdx].Release(st.rtpPort)
				st.rtp, st.rtcp = nil, nil
			}
		}
	}
}

// UpdateSession applies a re-negotiation. Errors carry gRPC codes.
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
	specs := req.GetLegs()
	if len(specs) != len(s.legs) {
		return nil, statusf(codes.InvalidArgument, "session has %d legs, update has %d", len(s.legs), len(specs))
	}
	for i, spec := range specs {
		if err := e.validateLeg(i, spec); err != nil {
			return nil, err
		}
		l, old := s.legs[i], s.specs[i]
		if spec.GetKind() != l.kind || int(spec.GetAddressIndex()) != l.addrIdx {
			return nil, statusf(codes.InvalidArgument, "leg %d: kind and address cannot change", i)
		}
		if len(spec.GetStreams()) < len(old.GetStreams()) {
			return nil, statusf(codes.InvalidArgument, "leg %d: streams cannot be removed (reject them with direction INACTIVE)", i)
		}
		for j, os := range old.GetStreams() {
			if l.kind == pb.LegKind_LEG_KIND_PLAIN && portMode(os.GetPlain()) != portMode(spec.GetStreams()[j].GetPlain()) {
				return nil, statusf(codes.InvalidArgument, "leg %d stream %d: port mode cannot change", i, j)
			}
		}
	}
	oldCfg := s.cfg.Load()
	newWorkerCmds := make([][]command, len(e.workers))
	var restart []bool
	for i, spec := range specs {
		l := s.legs[i]
		n := len(l.streams)
		if err := e.setupLeg(l, spec, true); err != nil {
			return nil, err
		}
		for _, st := range l.streams[n:] {
			newWorkerCmds[s.owner.id] = append(newWorkerCmds[s.owner.id], e.socketCmds(st, cmdAddSocket)...)
		}
		if l.kind == pb.LegKind_LEG_KIND_WEBRTC {
			r := i < len(req.GetIceRestart()) && req.GetIceRestart()[i]
			cmds, err := e.updateICE(l, spec.GetWebrtc(), r)
			if err != nil {
				return nil, err
			}
			for w := range newWorkerCmds {
				newWorkerCmds[w] = append(newWorkerCmds[w], cmds...)
			}
			restart = append(restart, e.dtlsChanged(l, s.specs[i].GetWebrtc(), spec.GetWebrtc()))
		} else {
			restart = append(restart, false)
		}
	}
	cfg, err := compile(s.legs, specs)
	if err != nil {
		return nil, err
	}
	// Plain streams whose SDP address changed latch afresh; shared ones
	// move their keys.
	var removeShared []command
	for i, l := range s.legs {
		if l.kind != pb.LegKind_LEG_KIND_PLAIN {
			continue
		}
		for j, st := range l.streams {
			nc := &cfg.legs[i].streams[j]
			var oc *streamConfig
			if j < len(oldCfg.legs[i].streams) {
				oc = &oldCfg.legs[i].streams[j]
			}
			if oc != nil && oc.remote == nc.remote && oc.remoteRTCP == nc.remoteRTCP && oc.mux == nc.mux {
				continue
			}
			st.latch[0].Store(nil)
			st.latch[1].Store(nil)
			if st.shared == nil {
				continue
			}
			if oc != nil {
				for _, k := range sharedKeys(st, oc) {
					removeShared = append(removeShared, command{op: cmdRemoveShared, stream: st, key: k})
				}
			}
			for _, k := range sharedKeys(st, nc) {
				for w := range newWorkerCmds {
					newWorkerCmds[w] = append(newWorkerCmds[w], command{op: cmdAddShared, stream: st, key: k})
				}
			}
		}
	}
	if len(removeShared) > 0 {
		for w := range newWorkerCmds {
			newWorkerCmds[w] = append(removeShared, newWorkerCmds[w]...)
		}
	}
	if t := req.GetMediaTimeoutS(); t > 0 {
		s.mediaTimeout.Store(int64(time.Duration(t) * time.Second))
	}
	s.cfg.Store(cfg)
	s.specs = cloneSpecs(specs)
	s.updated.Store(e.cfg.Now().UnixNano())
	e.barrier(newWorkerCmds)
	for i, l := range s.legs {
		if l.kind != pb.LegKind_LEG_KIND_WEBRTC {
			continue
		}
		if restart[i] {
			e.stopDTLS(l, true)
			l.state.Store(int32(pb.LegState_LEG_STATE_CONNECTING))
		}
		e.startDTLS(l) // no-op unless ready and not running
	}
	return s, nil
}

func portMode(p *pb.PlainSpec) pb.PortMode {
	if p.GetPortMode() == pb.PortMode_PORT_MODE_SHARED {
		return pb.PortMode_PORT_MODE_SHARED
	}
	return pb.PortMode_PORT_MODE_PER_LEG
}

// updateICE applies new remote credentials and, on an ICE restart, new
// local ones; it returns the commands that teach the workers a new ufrag.
func (e *Engine) updateICE(l *Leg, spec *pb.WebRTCSpec, restart bool) ([]command, error) {
	cur := l.ice.Load()
	if !restart {
		if lu := spec.GetLocalUfrag(); lu != "" && lu != cur.localUfrag {
			restart = true // new local credentials given: a restart in all but name
		}
	}
	if !restart {
		if cur.remoteUfrag != spec.GetRemoteUfrag() {
			next := *cur
			next.remoteUfrag = spec.GetRemoteUfrag()
			l.ice.Store(&next)
		}
		return nil, nil
	}
	next, err := newCreds(spec, cur)
	if err != nil {
		return nil, err
	}
	if cur.prev != nil {
		l.oldUfrags = append(l.oldUfrags, cur.prev.localUfrag)
		cur.prev = nil
	}
	l.ice.Store(next)
	return []command{{op: cmdAddUfrag, leg: l, ufrag: next.localUfrag}}, nil
}

// dtlsChanged stores new DTLS parameters and reports whether a running
// handshake must be redone (new fingerprint or role: the peer has a new
// DTLS association, RFC 5763 section 5).
func (e *Engine) dtlsChanged(l *Leg, old, spec *pb.WebRTCSpec) bool {
	np := paramsOf(spec)
	op := l.dtls.params.Load()
	l.dtls.params.Store(np)
	if op == nil || !op.ready() {
		return false
	}
	return np.role != op.role || !strings.EqualFold(np.value, op.value) || !strings.EqualFold(np.algorithm, op.algorithm)
}

// newCreds makes a leg's ICE credentials from the spec, generating what it
// leaves empty (RFC 8445 section 5.3: ufrag at least 24 bits, password at
// least 128 bits of randomness).
func newCreds(spec *pb.WebRTCSpec, prev *iceCreds) (*iceCreds, error) {
	c := &iceCreds{
		localUfrag:  spec.GetLocalUfrag(),
		localPwd:    spec.GetLocalPwd(),
		remoteUfrag: spec.GetRemoteUfrag(),
		prev:        prev,
	}
	if c.localUfrag == "" || (prev != nil && c.localUfrag == prev.localUfrag) {
		c.localUfrag = randomString(iceAlphabet, 8)
	}
	if c.localPwd == "" || (prev != nil && c.localPwd == prev.localPwd) {
		c.localPwd = randomString(iceAlphabet, 24)
	}
	key, err := icelite.NewKey([]byte(c.localPwd))
	if err != nil {
		return nil, statusf(codes.InvalidArgument, "local ICE password: %v", err)
	}
	c.key = key
	return c, nil
}

const (
	iceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	idAlphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomSSRC() uint32 {
	var b [4]byte
	rand.Read(b[:])
	if v := binary.BigEndian.Uint32(b[:]); v != 0 {
		return v
	}
	return 1
}

func cloneSpecs(specs []*pb.LegSpec) []*pb.LegSpec {
	out := make([]*pb.LegSpec, len(specs))
	for i, s := range specs {
		out[i] = proto.Clone(s).(*pb.LegSpec)
	}
	return out
}
