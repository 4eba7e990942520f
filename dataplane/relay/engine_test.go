package relay

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// TestConcurrentCreateAndInspect: the janitor, scrapes and listings run
// while sessions are being created and deleted; none of them may see a
// session that is still being set up (a nil configuration once crashed the
// janitor under the bench harness's load), and what they see is whole: two
// legs, the WebRTC leg's credentials and port, the plain stream's port pair
// (unless the session was deleted meanwhile), counters that add up.
func TestConcurrentCreateAndInspect(t *testing.T) {
	e := newTestEngine(t, 2)
	const sessions = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seen, whole int
	var problems []string
	sawWhole := make(chan struct{})
	var sawOnce sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.Sweep()
			if tot := e.Totals(); tot.PacketsIn != 0 || tot.Dropped() != 0 {
				problems = append(problems, fmt.Sprintf("totals without traffic: %v", tot))
			}
			for _, s := range e.Sessions() {
				p := s.Proto()
				seen++
				switch {
				case len(p.Legs) != 2:
					problems = append(problems, fmt.Sprintf("session %s with %d legs", p.Id, len(p.Legs)))
				case p.Legs[0].LocalUfrag == "" || p.Legs[0].LocalPwd == "" || len(p.Legs[0].Streams) != 1 || p.Legs[0].Streams[0].LocalAddr == "":
					problems = append(problems, fmt.Sprintf("session %s: WebRTC leg half set up: %v", p.Id, p.Legs[0]))
				case len(p.Legs[1].Streams) != 1 || p.Legs[1].Spec == nil:
					problems = append(problems, fmt.Sprintf("session %s: plain leg half set up: %v", p.Id, p.Legs[1]))
				case p.Legs[1].Streams[0].LocalAddr != "":
					whole++
					sawOnce.Do(func() { close(sawWhole) })
				default:
					// Only a session deleted between listing and Proto has
					// given its ports back.
					if _, live := e.Session(p.Id); live {
						problems = append(problems, fmt.Sprintf("live session %s has no plain port", p.Id))
					}
				}
			}
		}
	}()
	// Up to 4 sessions live at a time (the port pairs of the range), so the
	// inspector sees some.
	var live []string
	for i := 0; i < sessions; i++ {
		s, err := e.CreateSession(&pb.CreateSessionRequest{Id: fmt.Sprint(i), Legs: []*pb.LegSpec{
			{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{}, Streams: []*pb.StreamSpec{{Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}}}},
			{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}, Plain: &pb.PlainSpec{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:4000").String()}}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := e.Session(s.ID); !ok || got != s {
			t.Fatalf("session %s not listed once created", s.ID)
		}
		live = append(live, s.ID)
		if len(live) < 4 && i < sessions-1 {
			continue
		}
		if i == sessions-1 {
			<-sawWhole // the inspector has seen at least one whole session
		}
		for _, id := range live[:len(live)-2] {
			if _, err := e.DeleteSession(id, "test"); err != nil {
				t.Fatal(err)
			}
			if _, ok := e.Session(id); ok {
				t.Fatalf("session %s still listed once deleted", id)
			}
		}
		live = live[len(live)-2:]
	}
	for _, id := range live {
		if _, err := e.DeleteSession(id, "test"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	if e.Len() != 0 || e.PortsInUse() != 0 {
		t.Fatalf("%d sessions, %d port pairs left", e.Len(), e.PortsInUse())
	}
	t.Logf("the inspector saw %d sessions (%d whole) while %d were created and deleted", seen, whole, sessions)
}
