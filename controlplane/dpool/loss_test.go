package dpool

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// flaky is a node that can be cut off (every call fails Unavailable and
// its event stream ends), as a dead process or a partition looks from
// the control plane.
type flaky struct {
	pb.Node
	off atomic.Bool

	mu     sync.Mutex
	cancel context.CancelFunc // the event stream in progress
}

var errGone = status.Error(codes.Unavailable, "node unreachable")

func (f *flaky) cut() {
	f.off.Store(true)
	f.mu.Lock()
	if f.cancel != nil {
		f.cancel()
	}
	f.mu.Unlock()
}

func (f *flaky) WatchEvents(ctx context.Context, id string) (<-chan *pb.Event, error) {
	if f.off.Load() {
		return nil, errGone
	}
	ctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.cancel = cancel
	f.mu.Unlock()
	return f.Node.WatchEvents(ctx, id)
}

func (f *flaky) ListSessions(ctx context.Context) ([]*pb.Session, error) {
	if f.off.Load() {
		return nil, errGone
	}
	return f.Node.ListSessions(ctx)
}

func (f *flaky) DeleteSession(ctx context.Context, req *pb.DeleteSessionRequest) (*pb.Session, error) {
	if f.off.Load() {
		return nil, errGone
	}
	return f.Node.DeleteSession(ctx, req)
}

// A node away longer than LossGrace loses its sessions (OnLost, with
// their labels; the pool forgets them); when it comes back still holding
// them, they are deleted, and it takes new sessions again.
func TestNodeLost(t *testing.T) {
	inner := newNode(t)
	f := &flaky{Node: inner}
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: f})
	defer p.Close()
	lost := make(chan LostSession, 4)
	p.OnLost(func(s LostSession) { lost <- s })
	waitWatching(t, p, 1)
	ctx := context.Background()
	req := plainSession()
	req.Labels = map[string]string{LabelCall: "call-1"}
	s, err := p.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if live := p.Live(ctx); live[s.GetId()] == nil || p.NodeOf(s.GetId()) != "a" {
		t.Fatalf("Live %v, NodeOf %q", live, p.NodeOf(s.GetId()))
	}

	cut := time.Now()
	f.cut()
	select {
	case ls := <-lost:
		if ls.ID != s.GetId() || ls.Node != "a" || ls.Labels[LabelCall] != "call-1" {
			t.Fatalf("lost %+v", ls)
		}
		if d := time.Since(cut); d < LossGrace || d > LossGrace+2*time.Second {
			t.Fatalf("declared lost after %v, want about %v", d, LossGrace)
		}
	case <-time.After(LossGrace + 5*time.Second):
		t.Fatal("the session was never declared lost")
	}
	if got := p.Sessions()["a"]; got != 0 {
		t.Fatalf("the pool still counts %d sessions", got)
	}
	if _, err := p.Delete(ctx, s.GetId(), "x"); status.Code(err) != codes.NotFound {
		t.Fatalf("delete of a lost session: %v", err)
	}
	if _, err := p.Create(ctx, plainSession()); err == nil {
		t.Fatal("a session was placed on an unreachable node")
	}

	// It comes back (a partition, not a restart): the orphan goes.
	f.off.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ss, _ := inner.ListSessions(ctx)
		if len(ss) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node still holds %d sessions after coming back", len(ss))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := p.Create(ctx, plainSession()); err != nil {
		t.Fatalf("the node is not used again: %v", err)
	}
	select {
	case ls := <-lost:
		t.Fatalf("lost again: %+v", ls)
	default:
	}
}

// A node back within the grace but without the sessions it had (it
// restarted) has lost them.
func TestNodeRestartedLosesSessions(t *testing.T) {
	inner := newNode(t)
	f := &flaky{Node: inner}
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: f})
	defer p.Close()
	lost := make(chan LostSession, 4)
	p.OnLost(func(s LostSession) { lost <- s })
	waitWatching(t, p, 1)
	ctx := context.Background()
	s, err := p.Create(ctx, plainSession())
	if err != nil {
		t.Fatal(err)
	}
	f.cut()
	if _, err := inner.DeleteSession(ctx, &pb.DeleteSessionRequest{Id: s.GetId()}); err != nil { // the restart
		t.Fatal(err)
	}
	f.off.Store(false)
	select {
	case ls := <-lost:
		if ls.ID != s.GetId() {
			t.Fatalf("lost %+v", ls)
		}
	case <-time.After(LossGrace + 5*time.Second):
		t.Fatal("the session was never declared lost")
	}
}
