// Package dpool is the control plane's view of its dataplane nodes: one in
// process, or several remote ones reached over gRPC. It picks the node for
// a new session, remembers which node holds which session, and turns the
// nodes' event streams into one callback.
//
// After a control-plane restart the nodes still hold the sessions of calls
// nobody remembers; [Pool.Reap] deletes those (the calls' SIP dialogs died
// with the old process).
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

// ErrNoNode is returned when no node can take a session.
var ErrNoNode = status.Error(codes.Unavailable, "dpool: no dataplane node available")

// Node is one dataplane node in the pool.
type Node struct {
	// Name identifies the node in logs and metrics ("local" or its address).
	Name string
	// API is the node.
	API pb.Node

	sessions int  // guarded by Pool.mu
	down     bool // guarded by Pool.mu: its event stream broke
	watching bool // guarded by Pool.mu: its event stream is up
}

// Pool is a set of nodes. It is safe for concurrent use.
type Pool struct {
	log *slog.Logger

	mu       sync.Mutex // guards the fields below and every Node's counters
	nodes    []*Node
	owner    map[string]*Node // session id -> node
	handlers []func(*pb.Event)
	onChange func(node string, sessions int)

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a pool of nodes and starts watching their events.
func New(log *slog.Logger, nodes ...*Node) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{log: log, nodes: nodes, owner: map[string]*Node{}, cancel: cancel}
	for _, n := range nodes {
		p.wg.Add(1)
		go p.watch(ctx, n)
	}
	return p
}

// OnEvent registers f for every event of every node (called from the
// pool's watcher goroutines; f must not block for long).
func (p *Pool) OnEvent(f func(*pb.Event)) {
	p.mu.Lock()
	p.handlers = append(p.handlers, f)
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
			p.setDown(n, false)
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
		p.log.Warn("dataplane event stream lost; retrying", "node", n.Name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(rewatchDelay):
		}
	}
}

func (p *Pool) setDown(n *Node, down bool) {
	p.mu.Lock()
	n.down = down
	n.watching = !down
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
		n.sessions--
		p.changed(n)
	}
	p.mu.Unlock()
	return s, nil
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
// claim: after a restart, sessions of calls whose dialogs are gone.
func (p *Pool) Reap(ctx context.Context, keep func(id string) bool) (int, error) {
	var errs []error
	n := 0
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
			if _, err := node.API.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: s.GetId(), Reason: "orphaned"}); err == nil {
				n++
			}
		}
	}
	return n, errors.Join(errs...)
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
