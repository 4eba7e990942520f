package dpool

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

func newNode(t *testing.T) *node.Node {
	t.Helper()
	for range 20 {
		base := uint16(20000 + 2*rand.IntN(20000))
		n, err := node.New(node.Config{ID: "t", MediaAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			WebRTCPorts: portalloc.Range{First: base, Last: base}, RTPPorts: portalloc.Range{First: base + 2, Last: base + 11},
			Workers: 1, Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Cleanup(func() { n.Close() })
			return n
		}
	}
	t.Fatal("no node")
	return nil
}

func plainSession() *pb.CreateSessionRequest {
	leg := &pb.LegSpec{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Media: "audio",
		Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}, Plain: &pb.PlainSpec{}}}}
	return &pb.CreateSessionRequest{Legs: []*pb.LegSpec{leg}}
}

func TestPoolCreateDeleteReapEvents(t *testing.T) {
	a, b := newNode(t), newNode(t)
	p := New(slog.New(slog.DiscardHandler), &Node{Name: "a", API: a}, &Node{Name: "b", API: b})
	defer p.Close()
	events := make(chan *pb.Event, 16)
	p.OnEvent(func(ev *pb.Event) { events <- ev })
	changes := map[string]int{}
	p.OnChange(func(n string, c int) { changes[n] = c })
	waitWatching(t, p, 2)
	ctx := context.Background()
	s1, err := p.Create(ctx, plainSession())
	if err != nil {
		t.Fatal(err)
	}
	s2, err := p.Create(ctx, plainSession())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Sessions(); got["a"] != 1 || got["b"] != 1 {
		t.Fatalf("sessions not spread over the nodes: %v", got)
	}
	if s1.GetLabels()[LabelOwner] != ownerValue {
		t.Fatalf("labels %v", s1.GetLabels())
	}
	if _, err := p.Get(ctx, s1.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Delete(ctx, s1.GetId(), "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.GetType() != pb.EventType_EVENT_TYPE_SESSION_ENDED {
			t.Fatalf("event %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	// A session of a previous control plane is reaped; a foreign one stays.
	if _, err := a.CreateSession(ctx, &pb.CreateSessionRequest{Legs: plainSession().Legs, Labels: map[string]string{LabelOwner: ownerValue}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSession(ctx, plainSession()); err != nil {
		t.Fatal(err)
	}
	reaped, err := p.Reap(ctx, func(id string) bool { return id == s2.GetId() })
	if err != nil || len(reaped) != 1 {
		t.Fatalf("reaped %d: %v", len(reaped), err)
	}
	left, _ := a.ListSessions(ctx)
	if len(left) != 1 || left[0].GetLabels()[LabelOwner] == ownerValue {
		t.Fatalf("left on a: %v", left)
	}
	if _, err := p.Delete(ctx, "nope", ""); err == nil {
		t.Fatal("deleting an unknown session succeeded")
	}
	if changes["a"] != 0 || changes["b"] != 1 {
		t.Fatalf("gauge updates %v", changes)
	}
}

// waitWatching waits until n nodes' event streams are up.
func waitWatching(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.watching() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d event streams up, want %d", p.watching(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
