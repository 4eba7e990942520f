package dpool

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// A restarted control plane adopts the sessions a previous one left on
// the nodes: found on the node named (or, when the name is unknown, on
// whichever holds it), counted as the pool's own (Get, Update, Delete,
// the node's count), and ErrSessionGone when no node holds it.
func TestPoolAdopt(t *testing.T) {
	a, b := newNode(t), newNode(t)
	ctx := context.Background()
	left := func(n interface {
		CreateSession(context.Context, *pb.CreateSessionRequest) (*pb.Session, error)
	}) string {
		s, err := n.CreateSession(ctx, &pb.CreateSessionRequest{Legs: plainSession().Legs, Labels: map[string]string{LabelOwner: ownerValue}})
		if err != nil {
			t.Fatal(err)
		}
		return s.GetId()
	}
	onA, onB := left(a), left(b)
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: a}, &Node{Name: "b", API: b})
	defer p.Close()
	waitWatching(t, p, 2)

	for _, tc := range []struct {
		name, id, node, want string
	}{
		{"on the node named", onA, "a", "a"},
		{"on a node of another name", onB, "gone-node:7000", "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := p.Adopt(ctx, tc.id, tc.node, map[string]string{LabelCall: "c-" + tc.id})
			if err != nil || s.GetId() != tc.id {
				t.Fatalf("Adopt = %v, %v", s, err)
			}
			if got := p.NodeOf(tc.id); got != tc.want {
				t.Fatalf("adopted on %q, want %q", got, tc.want)
			}
			if _, err := p.Get(ctx, tc.id); err != nil {
				t.Fatalf("Get after Adopt: %v", err)
			}
		})
	}
	if got := p.Sessions(); got["a"] != 1 || got["b"] != 1 {
		t.Fatalf("node counts after adoption: %v", got)
	}
	// Adopting twice counts once.
	if _, err := p.Adopt(ctx, onA, "a", nil); err != nil {
		t.Fatal(err)
	}
	if got := p.Sessions(); got["a"] != 1 {
		t.Fatalf("adopted twice, counted %d", got["a"])
	}
	if _, err := p.Adopt(ctx, "no-such-session", "a", nil); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("Adopt of a session no node holds: %v, want ErrSessionGone", err)
	}
	// Adopted sessions are kept by Reap and deleted like the pool's own.
	reaped, err := p.Reap(ctx, func(id string) bool { return id == onA || id == onB })
	if err != nil || len(reaped) != 0 {
		t.Fatalf("Reap took %d adopted sessions (%v)", len(reaped), err)
	}
	for _, id := range []string{onA, onB} {
		if _, err := p.Delete(ctx, id, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Sessions(); got["a"] != 0 || got["b"] != 0 {
		t.Fatalf("node counts after deleting the adopted sessions: %v", got)
	}
	if ss, _ := a.ListSessions(ctx); len(ss) != 0 {
		t.Fatalf("node a still holds %d sessions", len(ss))
	}
}
