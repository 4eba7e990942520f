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
// media. When such a node comes back, the lost sessions it still holds (a
// partition, not a restart) are deleted, and it takes new sessions again.
//
// Membership is dynamic: nodes are given at start, added and retired
// ([Pool.Add], [Pool.Retire]), or discovered by watching a DNS name whose
// addresses are the nodes ([Pool.Discover]; in Kubernetes, a headless
// Service over the dataplane DaemonSet). Each node is polled for its
// NodeInfo every [HeartbeatInterval]: its session count (of every control
// plane), capacity and draining flag. New sessions go to the healthy node
// with the lowest sessions/capacity; a draining, retired or silent node
// gets none, but keeps its sessions until they end.
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
//
// LabelInstance names the control plane that created the session (its
// instance id, see package cluster), so that a control plane starting
// beside live peers on the same nodes deletes only its own orphans and a
// dead peer's, never a live peer's sessions.
const (
	LabelOwner    = "owner"
	LabelCall     = "call"
	LabelInstance = "instance"
	ownerValue    = "strait"
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

// Node is one dataplane node in the pool. Name and API are set by its
// creator and frozen once the node is in a pool (Add replaces a returning
// node's API under Pool.mu before it is watched again).
type Node struct {
	// Name identifies the node in logs and metrics ("local" or its address).
	Name string
	// API is the node.
	API pb.Node
	// Close, when set, is called when the pool lets the node go (retired
	// and empty, or the pool closed): it closes the node's connection.
	Close func()

	sessions  int             // guarded by Pool.mu
	down      bool            // guarded by Pool.mu: its event stream broke
	watching  bool            // guarded by Pool.mu: its event stream is up
	downSince time.Time       // guarded by Pool.mu: when the event stream broke; zero when up
	lostAll   bool            // guarded by Pool.mu: its sessions were declared lost while it was away
	lostIDs   map[string]bool // guarded by Pool.mu: sessions declared lost that it may still hold

	health // guarded by Pool.mu
}

// Pool is a set of nodes. It is safe for concurrent use.
type Pool struct {
	log *slog.Logger
	ctx context.Context // ends with Close; parent of every node's goroutines

	mu       sync.Mutex                   // guards the fields below and every Node's counters
	nodes    []*Node                      // members, retired ones included until they empty
	owner    map[string]*Node             // session id -> node
	labels   map[string]map[string]string // session id -> its labels
	handlers []func(*pb.Event)
	onLost   []func(LostSession)
	onChange func(node string, sessions int)
	closed   bool
	instance string // LabelInstance of the sessions Create makes ("": none)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a pool of nodes and starts watching their events and
// heartbeats.
func New(log *slog.Logger, nodes ...*Node) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{log: log, ctx: ctx, owner: map[string]*Node{}, labels: map[string]map[string]string{}, cancel: cancel}
	for _, n := range nodes {
		p.Add(n)
	}
	p.wg.Add(1)
	go p.lossClock(ctx)
	return p
}

// list returns the members (a copy: membership changes under p.mu).
func (p *Pool) list() []*Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Node(nil), p.nodes...)
}

// running returns the members the pool watches (not those let go and kept
// only for the lost sessions they may hold).
func (p *Pool) running() []*Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Node
	for _, n := range p.nodes {
		if n.running {
			out = append(out, n)
		}
	}
	return out
}

// api returns n's API (replaced under p.mu when a let-go node returns).
func (p *Pool) api(n *Node) pb.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return n.API
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
			for _, n := range p.list() {
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

// Close stops watching and calls every member's Close.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	nodes := p.nodes
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	for _, n := range nodes {
		if n.Close != nil {
			n.Close()
		}
	}
}

// watch follows n's event stream until ctx ends, watching again after a
// break. The stream counts as up once the node has also answered
// ListSessions (a hung node can accept a stream and never speak).
func (p *Pool) watch(ctx context.Context, n *Node) {
	defer p.wg.Done()
	for ctx.Err() == nil {
		sctx, stop := context.WithCancel(ctx)
		p.mu.Lock()
		n.stopStream = stop
		api := n.API
		p.mu.Unlock()
		ch, err := api.WatchEvents(sctx, "")
		if err == nil {
			err = p.reconnected(sctx, n, api)
		}
		if err == nil {
			for ev := range ch {
				p.mu.Lock()
				hs := append([]func(*pb.Event){}, p.handlers...)
				p.mu.Unlock()
				for _, h := range hs {
					h(ev)
				}
			}
		}
		stop()
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

// reconnected runs when n's event stream is open again (or for the first
// time) and marks n up once it answers ListSessions: sessions the pool
// placed on n that n no longer holds are lost (n restarted); sessions
// declared lost while it was away that it still holds are deleted (nobody
// carries their calls any more). Only the pool's own lost sessions are
// deleted: other control planes' sessions on the node are theirs.
func (p *Pool) reconnected(ctx context.Context, n *Node, api pb.Node) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ss, err := api.ListSessions(lctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	wasDown := n.down
	n.lostAll = false
	stale := n.lostIDs
	n.lostIDs = nil
	p.mu.Unlock()
	p.setDown(n, false)
	if !wasDown {
		return nil
	}
	held := map[string]bool{}
	for _, s := range ss {
		held[s.GetId()] = true
	}
	p.lose(n, func(id string) bool { return !held[id] }, "restarted")
	for id := range stale {
		if !held[id] {
			continue
		}
		if _, err := api.DeleteSession(lctx, &pb.DeleteSessionRequest{Id: id, Reason: "node lost"}); err == nil {
			p.log.Info("deleted a session of a call ended while its node was away", "node", n.Name, "session", id)
		}
	}
	return nil
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
		if n.lostIDs == nil {
			n.lostIDs = map[string]bool{}
		}
		n.lostIDs[id] = true
		delete(p.owner, id)
		delete(p.labels, id)
		n.sessions--
	}
	if len(lost) > 0 {
		p.changed(n)
	}
	hs := append([]func(LostSession){}, p.onLost...)
	p.mu.Unlock()
	p.release(n)
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

// Create creates a session on the least loaded healthy node, trying the
// next one when a node is full, draining or unreachable. The session gets
// the owner label.
func (p *Pool) Create(ctx context.Context, req *pb.CreateSessionRequest) (*pb.Session, error) {
	if req.Labels == nil {
		req.Labels = map[string]string{}
	}
	req.Labels[LabelOwner] = ownerValue
	p.mu.Lock()
	if p.instance != "" {
		req.Labels[LabelInstance] = p.instance
	}
	p.mu.Unlock()
	tried := map[*Node]bool{}
	var lastErr error = ErrNoNode
	for {
		n := p.pick(tried)
		if n == nil {
			return nil, lastErr
		}
		tried[n] = true
		s, err := p.api(n).CreateSession(ctx, req)
		if err == nil {
			p.mu.Lock()
			p.owner[s.GetId()] = n
			p.labels[s.GetId()] = req.Labels
			n.sessions++
			n.placed++
			p.changed(n)
			p.mu.Unlock()
			return s, nil
		}
		lastErr = err
		switch status.Code(err) {
		case codes.FailedPrecondition: // draining: no more until a heartbeat says otherwise
			p.mu.Lock()
			n.draining = true
			p.mu.Unlock()
			p.log.Info("dataplane node is draining", "node", n.Name)
			continue
		case codes.ResourceExhausted, codes.Unavailable, codes.DeadlineExceeded:
			p.log.Warn("dataplane node refused a session", "node", n.Name, "err", err)
			continue
		}
		return nil, err
	}
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
	return p.api(n).UpdateSession(ctx, req)
}

// Get returns a session's live state.
func (p *Pool) Get(ctx context.Context, id string) (*pb.Session, error) {
	n, err := p.nodeOf(id)
	if err != nil {
		return nil, err
	}
	return p.api(n).GetSession(ctx, id)
}

// Delete deletes a session and returns its final state. A session the node
// no longer has is forgotten without error (the node restarted).
func (p *Pool) Delete(ctx context.Context, id, reason string) (*pb.Session, error) {
	n, err := p.nodeOf(id)
	if err != nil {
		return nil, err
	}
	s, err := p.api(n).DeleteSession(ctx, &pb.DeleteSessionRequest{Id: id, Reason: reason})
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
	p.release(n)
	return s, nil
}

// Live returns the current state (counters included) of the sessions the
// pool placed, by session id, asking each reachable node once. Nodes that
// do not answer are left out.
func (p *Pool) Live(ctx context.Context) map[string]*pb.Session {
	out := map[string]*pb.Session{}
	for _, n := range p.list() {
		p.mu.Lock()
		down, api := n.down || !n.running, n.API
		p.mu.Unlock()
		if down {
			continue
		}
		ss, err := api.ListSessions(ctx)
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
	return p.ReapSessions(ctx, func(s *pb.Session) bool { return keep(s.GetId()) })
}

// SetInstance labels the sessions Create makes from now on with the
// control plane's instance id (LabelInstance).
func (p *Pool) SetInstance(id string) {
	p.mu.Lock()
	p.instance = id
	p.mu.Unlock()
}

// ReapSessions is Reap with the whole session (its labels) given to keep.
func (p *Pool) ReapSessions(ctx context.Context, keep func(s *pb.Session) bool) ([]*pb.Session, error) {
	var errs []error
	var out []*pb.Session
	for _, node := range p.running() {
		api := p.api(node)
		ss, err := api.ListSessions(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node.Name, err))
			continue
		}
		for _, s := range ss {
			if s.GetLabels()[LabelOwner] != ownerValue || keep(s) {
				continue
			}
			final, err := api.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: s.GetId(), Reason: "orphaned"})
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

// NodeInfo asks each member for its info (for /readyz and metrics).
func (p *Pool) NodeInfo(ctx context.Context) (map[string]*pb.NodeInfoResponse, error) {
	out := map[string]*pb.NodeInfoResponse{}
	var errs []error
	for _, n := range p.running() {
		info, err := p.api(n).NodeInfo(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			continue
		}
		out[n.Name] = info
	}
	return out, errors.Join(errs...)
}
