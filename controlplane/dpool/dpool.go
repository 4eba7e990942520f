// Package dpool is the control plane's view of its dataplane nodes: one in
// process, or several remote ones reached over gRPC. It picks the node for
// a new session, remembers which node holds which session, and turns the
// nodes' event streams into one callback.
//
// After a control-plane restart the nodes still hold the sessions of calls
// nobody remembers; [Pool.Reap] deletes those (the calls' SIP dialogs died
// with the old process).
//
// A node whose event stream breaks and that does not answer again within
// [LossGrace], or that answers without sessions the pool placed on it (it
// restarted), has lost them: the pool forgets them and tells [Pool.OnLost]
// handlers, so that their calls end at once instead of lingering without
// media. When such a node comes back, sessions of Strait's it still holds
// (a partition, not a restart) are deleted.
package dpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// LabelOwner marks sessions created by a Strait control plane; LabelCall
// carries the call id.
const (
	LabelOwner = "owner"
	LabelCall  = "call"
	ownerValue = "strait"
)

// rewatchDelay is how long the pool waits before watching a node's events
// again after the stream broke (a restarting remote node).
const rewatchDelay = time.Second

// LossGrace is how long a node may stay unreachable after its event stream
// broke before its sessions count as lost: long enough for a dropped
// connection to be made again, short enough that a caller hears the call
// end within seconds rather than sitting in silence (before, 36 s until
// the media timeout).
const LossGrace = 3 * time.Second

// ErrNoNode is returned when no node can take a session.
var ErrNoNode = status.Error(codes.Unavailable, "dpool: no dataplane node available")

// Node is one dataplane node in the pool.
type Node struct {
	// Name identifies the node in logs and metrics ("local" or its address).
	Name string
	// API is the node.
	API pb.Node

	sessions  int       // guarded by Pool.mu
	down      bool      // guarded by Pool.mu: its event stream broke
	watching  bool      // guarded by Pool.mu: its event stream is up
	downSince time.Time // guarded by Pool.mu: when the event stream broke; zero when up
	lostAll   bool      // guarded by Pool.mu: its sessions were declared lost while it was away
}

// Pool is a set of nodes. It is safe for concurrent use.
type Pool struct {
	log *slog.Logger

	mu       sync.Mutex // guards the fields below and every Node's counters
	nodes    []*Node
	owner    map[string]*Node             // session id -> node
	labels   map[string]map[string]string // session id -> its labels
	handlers []func(*pb.Event)
	onLost   []func(LostSession)
	onChange func(node string, sessions int)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a pool of nodes and starts watching their events.
func New(log *slog.Logger, nodes ...*Node) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{log: log, nodes: nodes, owner: map[string]*Node{}, labels: map[string]map[string]string{}, cancel: cancel}
	for _, n := range nodes {
		p.wg.Add(1)
		go p.watch(ctx, n)
	}
	p.wg.Add(1)
	go p.lossClock(ctx)
	return p
}

// lossClock checks every node's absence twice a second: a reconnection
// attempt may block (a host that drops packets) longer than LossGrace.
func (p *Pool) lossClock(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(LossGrace / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, n := range p.nodes {
				p.checkLoss(n)
			}
		}
	}
}

// OnEvent registers f for every event of every node (called from the
// pool's watcher goroutines; f must not block for long).
func (p *Pool) OnEvent(f func(*pb.Event)) {
	p.mu.Lock()
	p.handlers = append(p.handlers, f)
	p.mu.Unlock()
}

// LostSession is a session whose node went away with it.
type LostSession struct {
	// ID is the session id; Node names the node.
	ID, Node string
	// Labels are the session's labels (LabelCall names its call).
	Labels map[string]string
}

// OnLost registers f, called (from a pool goroutine; f must not block for
// long) for each session lost with its node. The pool has forgotten the
// session already: Delete of it returns NotFound at once.
func (p *Pool) OnLost(f func(LostSession)) {
	p.mu.Lock()
	p.onLost = append(p.onLost, f)
	p.mu.Unlock()
}

// OnChange registers f, called with a node's session count after each
// session the pool creates or deletes on it (for a gauge).
func (p *Pool) OnChange(f func(node string, sessions int)) {
	p.mu.Lock()
	p.onChange = f
	p.mu.Unlock()
}

// changed reports n's count. p.mu held.
func (p *Pool) changed(n *Node) {
	if p.onChange != nil {
		p.onChange(n.Name, n.sessions)
	}
}

// Close stops watching. It does not close the nodes.
func (p *Pool) Close() {
	p.cancel()
	p.wg.Wait()
}

func (p *Pool) watch(ctx context.Context, n *Node) {
	defer p.wg.Done()
	for ctx.Err() == nil {
		ch, err := n.API.WatchEvents(ctx, "")
		if err == nil {
			p.reconnected(ctx, n)
			for ev := range ch {
				p.mu.Lock()
				hs := append([]func(*pb.Event){}, p.handlers...)
				p.mu.Unlock()
				for _, h := range hs {
					h(ev)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		p.setDown(n, true)
		p.checkLoss(n)
		p.log.Warn("dataplane event stream lost; retrying", "node", n.Name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(rewatchDelay):
		}
	}
}

// setDown marks n down (from the first failure on) or up.
func (p *Pool) setDown(n *Node, down bool) {
	p.mu.Lock()
	if down && !n.down {
		n.downSince = time.Now()
	}
	n.down = down
	n.watching = !down
	if !down {
		n.downSince = time.Time{}
	}
	p.mu.Unlock()
}

// watching reports how many nodes' event streams are up.
func (p *Pool) watching() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, node := range p.nodes {
		if node.watching {
			n++
		}
	}
	return n
}

// checkLoss declares n's sessions lost once it has been away LossGrace.
func (p *Pool) checkLoss(n *Node) {
	p.mu.Lock()
	due := n.down && !n.lostAll && time.Since(n.downSince) >= LossGrace
	if due {
		n.lostAll = true
	}
	p.mu.Unlock()
	if due {
		p.lose(n, func(string) bool { return true }, "unreachable")
	}
}

// reconnected runs when n's event stream is up again (or for the first
// time): sessions the pool placed on n that n no longer holds are lost (n
// restarted); if n's sessions were declared lost while it was away, those
// it still holds are deleted (nobody carries their calls any more).
func (p *Pool) reconnected(ctx context.Context, n *Node) {
	p.mu.Lock()
	wasLost, wasDown := n.lostAll, n.down
	n.lostAll = false
	p.mu.Unlock()
	p.setDown(n, false)
	if !wasDown {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ss, err := n.API.ListSessions(lctx)
	if err != nil {
		return // the next break or reconnection will tell
	}
	held := map[string]bool{}
	for _, s := range ss {
		held[s.GetId()] = true
	}
	p.lose(n, func(id string) bool { return !held[id] }, "restarted")
	if !wasLost {
		return
	}
	for _, s := range ss {
		if s.GetLabels()[LabelOwner] != ownerValue || p.owns(s.GetId()) {
			continue
		}
		if _, err := n.API.DeleteSession(lctx, &pb.DeleteSessionRequest{Id: s.GetId(), Reason: "node lost"}); err == nil {
			p.log.Info("deleted a session of a call ended while its node was away", "node", n.Name, "session", s.GetId())
		}
	}
}

func (p *Pool) owns(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.owner[id]
	return ok
}

// lose forgets the sessions on n that gone says are gone and tells the
// OnLost handlers.
func (p *Pool) lose(n *Node, gone func(id string) bool, why string) {
	var lost []LostSession
	p.mu.Lock()
	for id, on := range p.owner {
		if on != n || !gone(id) {
			continue
		}
		lost = append(lost, LostSession{ID: id, Node: n.Name, Labels: p.labels[id]})
		delete(p.owner, id)
		delete(p.labels, id)
		n.sessions--
	}
	if len(lost) > 0 {
		p.changed(n)
	}
	hs := append([]func(LostSession){}, p.onLost...)
	p.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	p.log.Warn("dataplane node lost its sessions", "node", n.Name, "why", why, "sessions", len(lost))
	for _, s := range lost {
		for _, h := range hs {
			h(s)
		}
	}
}

// pick returns the live node with the fewest sessions.
func (p *Pool) pick() *Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *Node
	for _, n := range p.nodes {
		if n.down {
			continue
		}
		if best == nil || n.sessions < best.sessions {
			best = n
		}
	}
	return best
}

// Create creates a session on the least loaded node, trying the next one
// when a node is full or unreachable. The session gets the owner label.
func (p *Pool) Create(ctx context.Context, req *pb.CreateSessionRequest) (*pb.Session, error) {
	if req.Labels == nil {
		req.Labels = map[string]string{}
	}
	req.Labels[LabelOwner] = ownerValue
	tried := map[*Node]bool{}
	var lastErr error = ErrNoNode
	for range len(p.nodes) {
		n := p.pick()
		if n == nil || tried[n] {
			break
		}
		tried[n] = true
		s, err := n.API.CreateSession(ctx, req)
		if err == nil {
			p.mu.Lock()
			p.owner[s.GetId()] = n
			p.labels[s.GetId()] = req.Labels
			n.sessions++
			p.changed(n)
			p.mu.Unlock()
			return s, nil
		}
		lastErr = err
		switch status.Code(err) {
		case codes.ResourceExhausted, codes.FailedPrecondition, codes.Unavailable, codes.DeadlineExceeded:
			p.log.Warn("dataplane node refused a session", "node", n.Name, "err", err)
			continue
		}
		return nil, err
	}
	return nil, lastErr
}

func (p *Pool) nodeOf(id string) (*Node, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.owner[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "dpool: no session %q", id)
	}
	return n, nil
}

// Update updates a session on the node that holds it.
func (p *Pool) Update(ctx context.Context, req *pb.UpdateSessionRequest) (*pb.Session, error) {
	n, err := p.nodeOf(req.GetId())
	if err != nil {
		return nil, err
	}
	return n.API.UpdateSession(ctx, req)
}

// Get returns a session's live state.
func (p *Pool) Get(ctx context.Context, id string) (*pb.Session, error) {
	n, err := p.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return n.API.GetSession(ctx, id)
}

// Delete deletes a session and returns its final state. A session the node
// no longer has is forgotten without error (the node restarted).
func (p *Pool) Delete(ctx context.Context, id, reason string) (*pb.Session, error) {
	n, err := p.nodeOf(id)
	if err != nil {
		return nil, err
	}
	s, err := n.API.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: id, Reason: reason})
	if err != nil && status.Code(err) != codes.NotFound {
		return nil, err
	}
	p.mu.Lock()
	if _, ok := p.owner[id]; ok {
		delete(p.owner, id)
		delete(p.labels, id)
		n.sessions--
		p.changed(n)
	}
	p.mu.Unlock()
	return s, nil
}

// Live returns the current state (counters included) of the sessions the
// pool placed, by session id, asking each reachable node once. Nodes that
// do not answer are left out.
func (p *Pool) Live(ctx context.Context) map[string]*pb.Session {
	out := map[string]*pb.Session{}
	for _, n := range p.nodes {
		p.mu.Lock()
		down := n.down
		p.mu.Unlock()
		if down {
			continue
		}
		ss, err := n.API.ListSessions(ctx)
		if err != nil {
			continue
		}
		for _, s := range ss {
			if p.owns(s.GetId()) {
				out[s.GetId()] = s
			}
		}
	}
	return out
}

// NodeOf names the node that holds a session ("" when none).
func (p *Pool) NodeOf(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.owner[id]; ok {
		return n.Name
	}
	return ""
}

// Sessions returns how many sessions the pool created that are not yet
// deleted, per node name.
func (p *Pool) Sessions() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, n := range p.nodes {
		out[n.Name] = n.sessions
	}
	return out
}

// Reap deletes the sessions Strait owns on every node that keep does not
// claim: after a restart, sessions of calls whose dialogs are gone. It
// returns their final states (counters for the calls' records).
func (p *Pool) Reap(ctx context.Context, keep func(id string) bool) ([]*pb.Session, error) {
	var errs []error
	var out []*pb.Session
	for _, node := range p.nodes {
		ss, err := node.API.ListSessions(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node.Name, err))
			continue
		}
		for _, s := range ss {
			if s.GetLabels()[LabelOwner] != ownerValue || keep(s.GetId()) {
				continue
			}
			final, err := node.API.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: s.GetId(), Reason: "orphaned"})
			if err == nil {
				if final == nil {
					final = s
				}
				out = append(out, final)
			}
		}
	}
	return out, errors.Join(errs...)
}

// NodeInfo returns each node's info (for /readyz and metrics).
func (p *Pool) NodeInfo(ctx context.Context) (map[string]*pb.NodeInfoResponse, error) {
	out := map[string]*pb.NodeInfoResponse{}
	var errs []error
	for _, n := range p.nodes {
		info, err := n.API.NodeInfo(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			continue
		}
		out[n.Name] = info
	}
	return out, errors.Join(errs...)
}
