package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/strait-sbc/strait/dataplane/batchconn"
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
	// quiet is set by Abandon: sessions end without a word to the peers.
	quiet atomic.Bool

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
	if err := waitPortsFree(&cfg); err != nil {
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

// Abandon stops the engine as Close does, but tells no peer: no DTLS
// close_notify goes out, so a WebRTC peer's association stays up for the
// process that restores the sessions (RestoreSession) after this one.
func (e *Engine) Abandon() error {
	e.quiet.Store(true)
	return e.Close()
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
		w.io.Stop()
	}
	e.wg.Wait()
	for _, w := range e.workers {
		w.io.Close()
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
		w.ctr.addTo(t)
	}
	return t
}

// IOStats sums the workers' system calls and rounds.
func (e *Engine) IOStats() IOStats {
	var st IOStats
	for _, w := range e.workers {
		st.Mode = w.io.Mode()
		for i := range st.Calls {
			st.Calls[i] += w.ioStats.calls[i].Load()
		}
		st.Rounds += w.ioStats.rounds.Load()
		st.Datagrams += w.ioStats.datagrams.Load()
	}
	return st
}

// PortsInUse is the number of port pairs held by plain streams.
func (e *Engine) PortsInUse() int {
	n := 0
	for _, a := range e.rtpPorts {
		n += a.InUse()
	}
	return n
}
