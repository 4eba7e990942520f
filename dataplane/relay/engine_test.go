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
// janitor under the bench harness's load).
func TestConcurrentCreateAndInspect(t *testing.T) {
	e := newTestEngine(t, 2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
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
			e.Totals()
			for _, s := range e.Sessions() {
				s.Proto()
			}
		}
	}()
	for i := 0; i < 200; i++ {
		s, err := e.CreateSession(&pb.CreateSessionRequest{Id: fmt.Sprint(i), Legs: []*pb.LegSpec{
			{Kind: pb.LegKind_LEG_KIND_WEBRTC, Webrtc: &pb.WebRTCSpec{}, Streams: []*pb.StreamSpec{{Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}}}},
			{Kind: pb.LegKind_LEG_KIND_PLAIN, Streams: []*pb.StreamSpec{{Codecs: []*pb.Codec{{PayloadType: 0, Name: "PCMU", ClockRate: 8000}}, Plain: &pb.PlainSpec{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:4000").String()}}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.DeleteSession(s.ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
