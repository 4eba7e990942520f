package b2bua

import (
	"testing"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestLegMediaCountsEveryDrop: a CDR's dropped count is the sum of every
// drop counter the node reports (it once left out drop_stun_auth and
// drop_rcvbuf).
func TestLegMediaCountsEveryDrop(t *testing.T) {
	lc := &pb.LegCounters{PacketsIn: 50}
	var want uint64
	for r := range pb.NumDropReasons {
		lc.AddDrop(r, 1<<uint(r))
		want += 1 << uint(r)
	}
	got := legMedia(&pb.Session{Legs: []*pb.Leg{{Counters: lc}}})
	if len(got) != 1 || got[0].Dropped != want || got[0].PacketsIn != 50 {
		t.Fatalf("legMedia = %+v, want dropped %d", got, want)
	}
}
