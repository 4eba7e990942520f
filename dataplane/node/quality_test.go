package node

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-sbc/strait/dataplane/mediatest"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// impairment shapes what the PBX stand-in sends: every dropEvery-th packet
// never leaves (0: none), and each packet leaves up to jitter late.
type impairment struct {
	dropEvery int
	jitter    time.Duration
}

// qualityCall runs a three-second call between a pion browser (which sends
// RTCP sender and receiver reports as Chrome does) and a PBX stand-in that
// sends impaired RTP, a sender report every second and receiver reports
// answering the sender reports the node forwards to it (LSR/DLSR, as RFC
// 3550 section 6.4.1 asks). It returns the session's final state.
func qualityCall(t *testing.T, n *Node, imp impairment) *pb.Session {
	c := mediatest.NewCall(t, n, mediatest.CallOptions{})
	const packets = 150 // 3 s of 20 ms packets
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the browser: clean, paced media
		defer wg.Done()
		start := time.Now()
		for i := range packets {
			time.Sleep(time.Until(start.Add(time.Duration(i) * 20 * time.Millisecond)))
			if err := c.Browser.Send(0, uint16(1000+i), uint32(160*i), false, mediatest.Payload("b", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // the PBX: RTP with the impairment, RTCP every second
		defer wg.Done()
		pbxRTCP(t, c, stop)
	}()
	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range packets {
		at := start.Add(time.Duration(i)*20*time.Millisecond + time.Duration(rng.Int64N(int64(imp.jitter)+1)))
		time.Sleep(time.Until(at))
		if imp.dropEvery > 0 && i%imp.dropEvery == imp.dropEvery/2 {
			continue
		}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(5000 + i), Timestamp: uint32(160 * i), SSRC: 0x5eed},
			Payload: mediatest.Payload("p", i)}
		if err := c.Plain.SendRTP(c.PlainLocal(), pkt); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // one more round of reports from each side
	close(stop)
	wg.Wait()
	s, err := n.DeleteSession(context.Background(), &pb.DeleteSessionRequest{Id: c.Sess.Id})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pbxRTCP is the PBX stand-in's RTCP: every second an SR for its stream and
// an RR on the browser's stream answering the latest SR it received.
func pbxRTCP(t *testing.T, c *mediatest.Call, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lsr uint32
	var lsrAt time.Time
	for {
		select {
		case <-stop:
			return
		case pk := <-c.Plain.Received:
			for _, p := range pk.RTCP {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					lsr, lsrAt = uint32(sr.NTPTime>>16), time.Now()
				}
			}
		case now := <-tick.C:
			sr := &rtcp.SenderReport{SSRC: 0x5eed, NTPTime: ntp64(now), RTPTime: 0}
			rr := &rtcp.ReceiverReport{SSRC: 0x5eed}
			if lsr != 0 {
				rr.Reports = []rtcp.ReceptionReport{{SSRC: c.Browser.SSRC(), LastSenderReport: lsr,
					Delay: uint32(time.Since(lsrAt).Seconds() * 65536)}}
			}
			if err := c.Plain.SendRTCP(c.PlainLocalRTCP(), false, sr, rr); err != nil {
				t.Error(err)
				return
			}
		}
	}
}

func ntp64(t time.Time) uint64 {
	sec := uint64(t.Unix()) + 2208988800
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// TestQualityCleanVersusImpaired: the same call twice, once clean and once
// with 5% of the PBX's packets lost and up to 40 ms of jitter; what the
// node reports moves the right way on the right leg and direction, and
// the quality histograms count the samples.
func TestQualityCleanVersusImpaired(t *testing.T) {
	n := newTestNode(t, nil)
	var clean, bad *pb.Session
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); clean = qualityCall(t, n, impairment{}) }()
	go func() {
		defer wg.Done()
		bad = qualityCall(t, n, impairment{dropEvery: 20, jitter: 40 * time.Millisecond})
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	q := func(s *pb.Session, leg int) *pb.StreamQuality { return s.Legs[leg].Streams[0].Quality }
	for name, s := range map[string]*pb.Session{"clean": clean, "impaired": bad} {
		for leg, side := range []string{"webrtc", "sip"} {
			sq := q(s, leg)
			t.Logf("%s %s leg: in loss %.3f jitter %.1f ms MOS %.2f lost %d | out loss %.3f jitter %.1f ms rtt %.2f ms MOS %.2f lost %d | received %v",
				name, side, sq.In.GetLoss().GetAvg(), sq.In.GetJitterMs().GetAvg(), sq.In.GetMos().GetAvg(), sq.In.GetPacketsLost(),
				sq.Out.GetLoss().GetAvg(), sq.Out.GetJitterMs().GetAvg(), sq.Out.GetRttMs().GetAvg(), sq.Out.GetMos().GetAvg(), sq.Out.GetPacketsLost(),
				sq.Received)
		}
	}
	// The browser's media is clean in both calls.
	for _, s := range []*pb.Session{clean, bad} {
		if in := q(s, 0).In; in.GetSamples() == 0 || in.GetPacketsLost() != 0 || in.GetLoss().GetMax() != 0 {
			t.Errorf("browser -> node: %v", in)
		}
	}
	// PBX -> node, measured by the node: 5% lost (7 of 150; the first
	// packet is RFC 3550's probation packet), and the injected jitter.
	cin, bin := q(clean, 1).In, q(bad, 1).In
	if cin.GetPacketsLost() != 0 || cin.GetLoss().GetAvg() != 0 {
		t.Errorf("clean PBX -> node lost %d", cin.GetPacketsLost())
	}
	if lost := bin.GetPacketsLost(); lost < 6 || lost > 8 {
		t.Errorf("impaired PBX -> node lost %d, want 7", lost)
	}
	if l := bin.GetLoss().GetAvg(); l < 0.04 || l > 0.06 {
		t.Errorf("impaired PBX -> node loss %.3f, want 0.05 +- 0.01", l)
	}
	// Each impaired packet leaves up to 40 ms late, uniformly: the mean
	// difference of two such delays is 40/3 ms, to which RFC 3550's
	// estimator (section 6.4.1) converges. The bound is absolute, not
	// relative to the clean call: a busy machine raises the clean call's
	// jitter by as much as the impairment's (seen: 18.8 ms clean against
	// 16.6 ms impaired at load 20), and load never lowers it.
	if cj, bj := cin.GetJitterMs().GetAvg(), bin.GetJitterMs().GetAvg(); bj < 8 {
		t.Errorf("jitter clean %.2f ms, impaired %.2f ms: want impaired above 8 ms (about 13 ms injected)", cj, bj)
	}
	if cm, bm := cin.GetMos().GetAvg(), bin.GetMos().GetAvg(); bm >= cm || cm < 4.2 {
		t.Errorf("MOS PBX -> node clean %.2f, impaired %.2f", cm, bm)
	}
	// Node -> browser, from pion's receiver reports: the loss went through.
	cout, bout := q(clean, 0).Out, q(bad, 0).Out
	if cout.GetSamples() == 0 || bout.GetSamples() == 0 {
		t.Fatalf("no browser receiver reports taken: clean %v impaired %v", cout, bout)
	}
	if cout.GetPacketsLost() != 0 {
		t.Errorf("clean node -> browser: browser reports %d lost", cout.GetPacketsLost())
	}
	if lost := bout.GetPacketsLost(); lost < 5 || lost > 8 {
		t.Errorf("impaired node -> browser: browser reports %d lost, want about 7", lost)
	}
	if l := bout.GetLoss().GetAvg(); l < 0.02 || l > 0.08 {
		t.Errorf("impaired node -> browser: loss %.3f from the browser's reports, want 0.05 +- 0.03", l)
	}
	if bout.GetMos().GetMin() >= cout.GetMos().GetMin() {
		t.Errorf("browser's view: MOS clean %.2f, impaired %.2f", cout.GetMos().GetMin(), bout.GetMos().GetMin())
	}
	// Round trips, node <-> PBX from the PBX's answers to the browser's
	// SRs, node <-> browser from pion's answers to the PBX's: loopback.
	for name, d := range map[string]*pb.DirectionQuality{"pbx": q(clean, 1).Out, "browser": cout} {
		if r := d.GetRttMs(); r == nil || r.GetAvg() <= 0 || r.GetMax() > 100 {
			t.Errorf("RTT node <-> %s: %v", name, r)
		}
	}
	// Every final sample went to the histograms: 2 calls x (web in, web
	// out, sip in, sip out).
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	samples, series := uint64(0), 0
	for _, mf := range mfs {
		if mf.GetName() == "strait_media_mos" {
			for _, m := range mf.GetMetric() {
				samples += m.GetHistogram().GetSampleCount()
				series++
			}
		}
	}
	if series != 4 {
		t.Errorf("strait_media_mos has %d series, want 4 (leg x direction)", series)
	}
	if samples < 6 { // the PBX's out needs its SR answered in time
		t.Errorf("strait_media_mos counted %d samples", samples)
	}
}
