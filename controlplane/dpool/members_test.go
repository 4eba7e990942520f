package dpool

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-sbc/strait/dataplane/node"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func member(p *Pool, name string) (Member, bool) {
	for _, m := range p.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// heartbeated waits until every named node has answered a heartbeat.
func heartbeated(t *testing.T, p *Pool, names ...string) {
	t.Helper()
	waitFor(t, "heartbeats", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		ok := 0
		for _, n := range p.nodes {
			for _, name := range names {
				if n.Name == name && n.info != nil && n.placed == 0 {
					ok++
				}
			}
		}
		return ok == len(names)
	})
}

// TestLeastLoadedCountsEveryControlPlane: load is what the node reports
// (sessions of every control plane sharing it) over its capacity, so a
// node another control plane filled gets fewer new sessions from this one.
func TestLeastLoadedCountsEveryControlPlane(t *testing.T) {
	a, b := newNode(t), newNode(t) // 5 plain pairs each
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: a}, &Node{Name: "b", API: b})
	defer p.Close()
	waitWatching(t, p, 2)
	ctx := context.Background()
	// Another control plane put three sessions on a.
	for range 3 {
		if _, err := a.CreateSession(ctx, plainSession()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a heartbeat that counts them", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.nodes[0].info.GetSessions() == 3 && p.nodes[1].info != nil
	})
	placed := map[string]int{}
	for range 3 {
		s, err := p.Create(ctx, plainSession())
		if err != nil {
			t.Fatal(err)
		}
		placed[p.NodeOf(s.GetId())]++
	}
	// a: 3/5 used; b fills to 3/5 before a gets another.
	if placed["b"] != 3 || placed["a"] != 0 {
		t.Fatalf("placed %v: want all three on b, the less loaded node", placed)
	}
}

// TestDrainingNodeGetsNoSessions: a node that drains (SIGTERM) refuses new
// sessions; the pool sends them to the others at once and keeps it out
// while its heartbeats say it drains, and its sessions go on.
func TestDrainingNodeGetsNoSessions(t *testing.T) {
	a, b := newNode(t), newNode(t)
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: a}, &Node{Name: "b", API: b})
	defer p.Close()
	waitWatching(t, p, 2)
	ctx := context.Background()
	s0, err := p.Create(ctx, plainSession())
	if err != nil {
		t.Fatal(err)
	}
	drained := p.NodeOf(s0.GetId())
	nodes := map[string]*node.Node{"a": a, "b": b}
	nodes[drained].Drain()
	for range 4 {
		s, err := p.Create(ctx, plainSession())
		if err != nil {
			t.Fatal(err)
		}
		if got := p.NodeOf(s.GetId()); got == drained {
			t.Fatalf("a session went to the draining node %s", got)
		}
	}
	waitFor(t, "the heartbeat to report the drain", func() bool { m, _ := member(p, drained); return m.Draining })
	if _, err := p.Get(ctx, s0.GetId()); err != nil {
		t.Fatalf("the draining node's session: %v", err)
	}
	// With every node draining (or full), Create fails with the node's
	// refusal rather than trying forever.
	other := map[string]string{"a": "b", "b": "a"}[drained]
	nodes[other].Drain()
	if _, err := p.Create(ctx, plainSession()); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Create with every node draining: %v", err)
	}
}

// fakeResolver answers lookups from a mutable list.
type fakeResolver struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	fails int // lookups answered with err
}

func (r *fakeResolver) set(err error, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
	r.addrs = nil
	for _, a := range addrs {
		r.addrs = append(r.addrs, netip.MustParseAddr(a))
	}
}

func (r *fakeResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		r.fails++
	}
	return append([]netip.Addr(nil), r.addrs...), r.err
}

// failed reports how many lookups have failed so far.
func (r *fakeResolver) failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fails
}

// TestDiscovery: the pool follows a DNS name. A node that appears takes
// sessions; one that leaves the list takes no new ones, keeps its call
// until it ends, and is then let go (its connection closed); a failed
// lookup drops nothing; a node that comes back is used again.
func TestDiscovery(t *testing.T) {
	nodes := map[string]*node.Node{"127.0.0.2:9090": newNode(t), "127.0.0.3:9090": newNode(t)}
	var closed sync.Map
	var dials atomic.Int32
	dial := func(ap netip.AddrPort) (*Node, error) {
		dials.Add(1)
		n, ok := nodes[ap.String()]
		if !ok {
			return nil, errors.New("no such node")
		}
		name := ap.String()
		return &Node{Name: name, API: n, Close: func() { closed.Store(name, true) }}, nil
	}
	r := &fakeResolver{}
	r.set(nil, "127.0.0.2")
	p := New(slog.New(slog.DiscardHandler))
	defer p.Close()
	p.Discover(Discovery{Name: "nodes.test", Port: 9090, Interval: 20 * time.Millisecond, Resolver: r, Dial: dial})
	if ms := p.Members(); len(ms) != 1 || ms[0].Name != "127.0.0.2:9090" {
		t.Fatalf("members after the first lookup: %+v", ms)
	}
	waitWatching(t, p, 1)
	ctx := context.Background()
	s1, err := p.Create(ctx, plainSession())
	if err != nil || p.NodeOf(s1.GetId()) != "127.0.0.2:9090" {
		t.Fatalf("Create: %v on %q", err, p.NodeOf(s1.GetId()))
	}

	// A second node appears; the first leaves the list with its call.
	r.set(nil, "127.0.0.3")
	waitFor(t, "the first node to retire", func() bool { m, ok := member(p, "127.0.0.2:9090"); return ok && m.Retired })
	waitWatching(t, p, 2)
	for range 3 {
		s, err := p.Create(ctx, plainSession())
		if err != nil {
			t.Fatal(err)
		}
		if got := p.NodeOf(s.GetId()); got != "127.0.0.3:9090" {
			t.Fatalf("new session on %s, a retired node", got)
		}
	}
	if _, err := p.Get(ctx, s1.GetId()); err != nil {
		t.Fatalf("the retired node's call: %v", err)
	}
	if _, ok := closed.Load("127.0.0.2:9090"); ok {
		t.Fatal("the retired node was let go with a call on it")
	}
	if _, err := p.Delete(ctx, s1.GetId(), "hangup"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the empty retired node to be let go", func() bool {
		_, ok := member(p, "127.0.0.2:9090")
		_, gone := closed.Load("127.0.0.2:9090")
		return !ok && gone
	})

	// DNS fails: nobody is dropped.
	r.set(errors.New("SERVFAIL"))
	before := dials.Load()
	waitFor(t, "several lookups to fail", func() bool { return r.failed() >= 3 })
	if m, ok := member(p, "127.0.0.3:9090"); !ok || m.Retired {
		t.Fatalf("a failed lookup retired the node: %+v", m)
	}

	// The first node comes back and takes sessions again.
	r.set(nil, "127.0.0.2", "127.0.0.3")
	waitFor(t, "the node to come back", func() bool { m, ok := member(p, "127.0.0.2:9090"); return ok && m.Up && !m.Retired })
	if dials.Load() == before {
		t.Fatal("the returning node was not dialled again")
	}
	s, err := p.Create(ctx, plainSession())
	if err != nil || p.NodeOf(s.GetId()) != "127.0.0.2:9090" {
		t.Fatalf("the returning (empty) node did not get the next session: %v on %q", err, p.NodeOf(s.GetId()))
	}
}

// hangable wraps a node; while hung, every call blocks until its context
// ends and event streams stay open and silent (a stopped process whose
// TCP connection lives on).
type hangable struct {
	pb.Node
	hung atomic.Bool
}

func (h *hangable) wait(ctx context.Context) error {
	for h.hung.Load() {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (h *hangable) NodeInfo(ctx context.Context) (*pb.NodeInfoResponse, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.Node.NodeInfo(ctx)
}

func (h *hangable) ListSessions(ctx context.Context) ([]*pb.Session, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.Node.ListSessions(ctx)
}

func (h *hangable) CreateSession(ctx context.Context, req *pb.CreateSessionRequest) (*pb.Session, error) {
	if err := h.wait(ctx); err != nil {
		return nil, err
	}
	return h.Node.CreateSession(ctx, req)
}

// TestHungNodeLosesItsSessions: a node that stops answering while its
// connection and event stream stay open (SIGSTOP, a wedged process) is
// noticed by its heartbeats: its sessions are declared lost after
// LossGrace, only its; when it answers again, the lost sessions it still
// holds are deleted and it takes new sessions again.
func TestHungNodeLosesItsSessions(t *testing.T) {
	ha := &hangable{Node: newNode(t)}
	b := newNode(t)
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: ha}, &Node{Name: "b", API: b})
	defer p.Close()
	var lost sync.Map
	p.OnLost(func(s LostSession) { lost.Store(s.ID, s.Node) })
	waitWatching(t, p, 2)
	ctx := context.Background()
	byNode := map[string][]string{}
	for range 4 {
		s, err := p.Create(ctx, plainSession())
		if err != nil {
			t.Fatal(err)
		}
		byNode[p.NodeOf(s.GetId())] = append(byNode[p.NodeOf(s.GetId())], s.GetId())
	}
	if len(byNode["a"]) == 0 || len(byNode["b"]) == 0 {
		t.Fatalf("sessions %v: want some on each node", byNode)
	}
	hungAt := time.Now()
	ha.hung.Store(true)
	waitFor(t, "the hung node's sessions to be lost", func() bool {
		for _, id := range byNode["a"] {
			if _, ok := lost.Load(id); !ok {
				return false
			}
		}
		return true
	})
	if d := time.Since(hungAt); d < LossGrace {
		t.Fatalf("lost after %v, before LossGrace", d)
	}
	for _, id := range byNode["b"] {
		if _, ok := lost.Load(id); ok {
			t.Fatalf("session %s of the healthy node lost", id)
		}
	}
	// Meanwhile new sessions go to b.
	s, err := p.Create(ctx, plainSession())
	if err != nil || p.NodeOf(s.GetId()) != "b" {
		t.Fatalf("Create while a is hung: %v on %q", err, p.NodeOf(s.GetId()))
	}
	// a answers again: the sessions of the ended calls are deleted, and a
	// is used again.
	ha.hung.Store(false)
	waitFor(t, "a's leftover sessions to be deleted", func() bool {
		ss, _ := ha.Node.ListSessions(ctx)
		return len(ss) == 0
	})
	waitFor(t, "a to be healthy", func() bool { m, _ := member(p, "a"); return m.Up })
	heartbeated(t, p, "a", "b")
	s, err = p.Create(ctx, plainSession())
	if err != nil || p.NodeOf(s.GetId()) != "a" {
		t.Fatalf("Create after a came back: %v on %q, want a (empty)", err, p.NodeOf(s.GetId()))
	}
}
