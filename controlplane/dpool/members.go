package dpool

import (
	"context"
	"time"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// HeartbeatInterval is how often each node is asked for its NodeInfo: its
// load as every control plane sees it (sessions, capacity) and whether it
// drains. A node that has not answered for LossGrace counts as away, like
// one whose event stream broke: a hung process keeps its TCP connection
// and its stream open, and only a question it must answer shows it.
const HeartbeatInterval = time.Second

// heartbeatTimeout bounds one NodeInfo call.
const heartbeatTimeout = time.Second

// unhealthyAfter is how many heartbeats in a row a node may miss before
// it gets no new sessions (it keeps the ones it has).
const unhealthyAfter = 2

// health is what the heartbeats tell about a node; guarded by Pool.mu.
type health struct {
	info       *pb.NodeInfoResponse // the last answer; nil before the first
	placed     int                  // sessions the pool created on it since that answer
	missed     int                  // heartbeats missed in a row
	missSince  time.Time            // when the first of them was missed
	draining   bool                 // it said so, or refused a session as draining
	retired    bool                 // it left the membership: no new sessions, let go when empty
	running    bool                 // its watch and heartbeat goroutines run
	stop       context.CancelFunc   // ends its goroutines
	stopStream context.CancelFunc   // ends its current event stream
}

// Add makes n a member: the pool watches its events and heartbeats and
// gives it sessions. A member of the same name that was retired is taken
// back, with n's API and Close (its old connection is closed); adding a
// name that is already a member changes nothing (and calls n.Close).
func (p *Pool) Add(n *Node) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		if n.Close != nil {
			n.Close()
		}
		return
	}
	var cur *Node
	for _, m := range p.nodes {
		if m.Name == n.Name {
			cur = m
		}
	}
	if cur != nil && (!cur.retired || cur.running) {
		// A member, or one that still drains its sessions: it stays as
		// it is (a retired one rejoins with its connection).
		back := cur.retired
		cur.retired = false
		p.mu.Unlock()
		if n.Close != nil {
			n.Close()
		}
		if back {
			p.log.Info("dataplane node is back in the list", "node", n.Name)
		}
		return
	}
	var old func()
	if cur != nil { // retired and let go: same node, new connection
		old = cur.Close
		cur.API, cur.Close = n.API, n.Close
		cur.retired = false
		n = cur
	} else {
		p.nodes = append(p.nodes, n)
	}
	ctx, stop := context.WithCancel(p.ctx)
	n.running, n.stop = true, stop
	n.info, n.placed, n.missed, n.draining = nil, 0, 0, false
	p.wg.Add(2)
	p.mu.Unlock()
	if old != nil {
		old()
	}
	go p.watch(ctx, n)
	go p.heartbeat(ctx, n)
	p.log.Info("dataplane node added", "node", n.Name)
}

// Retire takes the named member out of the membership: it gets no new
// sessions, keeps its sessions until they end (or are lost with it), and
// is let go once it holds none of the pool's.
func (p *Pool) Retire(name string) {
	p.mu.Lock()
	var n *Node
	for _, m := range p.nodes {
		if m.Name == name && !m.retired {
			n = m
		}
	}
	if n != nil {
		n.retired = true
	}
	p.mu.Unlock()
	if n != nil {
		p.log.Info("dataplane node left the list; it takes no new sessions", "node", name)
		p.release(n)
	}
}

// release lets a retired node go once it holds none of the pool's
// sessions: its goroutines stop and its connection closes. It stays
// listed, stopped, while it may hold sessions the pool lost (deleted if
// it comes back); otherwise it is forgotten.
func (p *Pool) release(n *Node) {
	p.mu.Lock()
	if !n.retired || !n.running || n.sessions > 0 {
		p.mu.Unlock()
		return
	}
	n.running = false
	n.watching = false
	stop, closeFn := n.stop, n.Close
	n.Close = nil
	if len(n.lostIDs) == 0 {
		for i, m := range p.nodes {
			if m == n {
				p.nodes = append(p.nodes[:i:i], p.nodes[i+1:]...)
				break
			}
		}
	}
	p.mu.Unlock()
	stop()
	if closeFn != nil {
		closeFn()
	}
	p.log.Info("dataplane node let go", "node", n.Name)
}

// heartbeat asks n for its NodeInfo every HeartbeatInterval until ctx
// ends.
func (p *Pool) heartbeat(ctx context.Context, n *Node) {
	defer p.wg.Done()
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		hctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
		info, err := p.api(n).NodeInfo(hctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		p.beat(n, info, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// beat records one heartbeat's outcome. A node silent for LossGrace has
// its event stream ended, which starts the loss clock (from the first
// missed heartbeat).
func (p *Pool) beat(n *Node, info *pb.NodeInfoResponse, err error) {
	p.mu.Lock()
	if err == nil {
		if n.missed >= unhealthyAfter {
			p.log.Info("dataplane node answers again", "node", n.Name)
		}
		n.info, n.placed, n.missed, n.missSince = info, 0, 0, time.Time{}
		if n.draining != info.GetDraining() {
			p.log.Info("dataplane node drain state", "node", n.Name, "draining", info.GetDraining())
		}
		n.draining = info.GetDraining()
		p.mu.Unlock()
		return
	}
	if n.missed == 0 {
		n.missSince = time.Now()
	}
	n.missed++
	if n.missed == unhealthyAfter {
		p.log.Warn("dataplane node does not answer; no new sessions for it", "node", n.Name, "err", err)
	}
	var stop context.CancelFunc
	if time.Since(n.missSince) >= LossGrace && n.watching {
		// Treat it as gone: the stream ends, the node is down since the
		// first silence, and checkLoss declares its sessions lost.
		stop = n.stopStream
		n.down, n.watching, n.downSince = true, false, n.missSince
	}
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	p.checkLoss(n)
}

// eligible reports whether n may take a new session. p.mu held.
func (n *Node) eligible() bool {
	return n.running && !n.down && !n.retired && !n.draining && n.missed < unhealthyAfter
}

// load is n's share of its capacity in use, as every control plane has
// filled it (the node's own count at the last heartbeat, plus what this
// pool placed since). p.mu held.
func (n *Node) load() float64 {
	used, capacity := n.sessions, 0
	if n.info != nil {
		used = max(int(n.info.GetSessions())+n.placed, n.sessions)
		capacity = int(n.info.GetMaxSessions())
	}
	if capacity <= 0 {
		capacity = 1 << 20
	}
	return float64(used) / float64(capacity)
}

// pick returns the eligible node with the lowest load that is not in
// skip, nil when there is none.
func (p *Pool) pick(skip map[*Node]bool) *Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *Node
	var bestLoad float64
	for _, n := range p.nodes {
		if skip[n] || !n.eligible() {
			continue
		}
		if l := n.load(); best == nil || l < bestLoad {
			best, bestLoad = n, l
		}
	}
	return best
}

// Member is one node's state as the pool sees it (for /readyz, metrics
// and the API).
type Member struct {
	// Name is the node's name.
	Name string
	// Sessions is how many of the pool's sessions it holds.
	Sessions int
	// Up: its event stream is up and it answers heartbeats.
	Up bool
	// Draining: it takes no new sessions until its calls end.
	Draining bool
	// Retired: it left the list (DNS) and is let go once empty.
	Retired bool
	// Load is its sessions (of every control plane) over its capacity, at
	// the last heartbeat.
	Load float64
}

// Members returns every node's state.
func (p *Pool) Members() []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Member, 0, len(p.nodes))
	for _, n := range p.nodes {
		if !n.running {
			continue
		}
		out = append(out, Member{Name: n.Name, Sessions: n.sessions, Up: n.watching && n.missed < unhealthyAfter,
			Draining: n.draining, Retired: n.retired, Load: n.load()})
	}
	return out
}
