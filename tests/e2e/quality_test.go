package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// impairProxy sits on a media path between a side whose address the test
// knows (fixed: strait's WebRTC port, or the PBX's media port) and one it
// learns from the first packet (the browser, or strait's plain leg): the
// learned side is told the proxy's address (strait's --public-ip, the PBX's
// SDP), and the proxy forwards each side's packets to the other. RTP
// toward the fixed side (or, with fromFixed, from it) is dropped with
// probability loss and delayed by up to jitter; STUN, DTLS and RTCP pass
// untouched, so that the call's setup and reports are not what is
// impaired. (tc netem would do the same in the test's network namespace
// where the kernel has sch_netem; the kernel of this project's CI machine
// has no netem or prio qdisc.)
type impairProxy struct {
	conn      *net.UDPConn
	fixed     netip.AddrPort
	fromFixed bool // frozen: impair what the fixed side sends

	mu      sync.Mutex
	learned netip.AddrPort
	loss    float64
	jitter  time.Duration
	rng     *rand.Rand
	dropped int
}

func startImpairProxy(t *testing.T, listen, fixed netip.AddrPort, fromFixed bool) *impairProxy {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatalf("impairment proxy on %v: %v", listen, err)
	}
	p := &impairProxy{conn: c, fixed: fixed, fromFixed: fromFixed, rng: rand.New(rand.NewPCG(7, 13))}
	t.Cleanup(func() { c.Close() })
	go p.run()
	return p
}

func (p *impairProxy) set(loss float64, jitter time.Duration) {
	p.mu.Lock()
	p.loss, p.jitter, p.dropped = loss, jitter, 0
	p.mu.Unlock()
}

func (p *impairProxy) run() {
	buf := make([]byte, 2048)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		p.mu.Lock()
		to := p.fixed
		if from == p.fixed {
			to = p.learned
		} else {
			p.learned = from
		}
		// RTP: version 2, not an RTCP packet type (RFC 5761 section 4).
		isRTP := n >= 12 && pkt[0]>>6 == 2 && (pkt[1] < 192 || pkt[1] > 223)
		var delay time.Duration
		drop := false
		if isRTP && (from == p.fixed) == p.fromFixed {
			drop = p.rng.Float64() < p.loss
			if p.jitter > 0 {
				delay = time.Duration(p.rng.Int64N(int64(p.jitter)))
			}
			if drop {
				p.dropped++
			}
		}
		p.mu.Unlock()
		switch {
		case !to.IsValid() || drop:
		case delay > 0:
			time.AfterFunc(delay, func() { p.conn.WriteToUDPAddrPort(pkt, to) })
		default:
			p.conn.WriteToUDPAddrPort(pkt, to)
		}
	}
}

// lastCDR waits for the n-th CDR (counting from 1) with media and returns it.
func lastCDR(e *harness.Env, s *harness.Strait, n int, what string) cdr.Record {
	e.T().Helper()
	var rec cdr.Record
	e.Step(what, 10*time.Second, func(ctx context.Context) error {
		for {
			var out struct {
				CDRs []cdr.Record `json:"cdrs"`
			}
			if _, err := s.Do(ctx, "GET", "/v1/cdrs", nil, &out); err != nil {
				return err
			}
			if len(out.CDRs) == n && len(out.CDRs[n-1].Media) > 0 {
				rec = out.CDRs[n-1]
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%d CDRs: %w", len(out.CDRs), ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return rec
}

// mediaFor waits through d of media (two quality intervals at least).
func mediaFor(e *harness.Env, what string, d time.Duration) {
	e.T().Helper()
	e.Step(what, d+7*time.Second, func(ctx context.Context) error {
		select { // the point is the duration
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// TestCallQualityImpaired: JsSIP in Chromium (which sends real RTCP
// reports) calls echo twice through an impairment proxy on its media path,
// once clean and once losing 5% of its RTP with up to 40 ms of jitter. The
// CDR's quality of the browser leg moves the right way: the loss strait
// counted itself is close to what was injected, the browser's own reports
// on the echoed stream show the loss too, jitter rises and MOS falls.
func TestCallQualityImpaired(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP)
	ports := harness.PortRange(t, 1)
	var port uint16
	fmt.Sscanf(ports, "%d-", &port)
	proxyAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	proxy := startImpairProxy(t, proxyAddr, netip.AddrPortFrom(netip.MustParseAddr(harness.LoopbackIP), port), false)
	s := e.StartStrait(harness.StraitConfig{Users: []string{"alice:secret"}, WebRTCPorts: ports, PublicIP: "127.0.0.2"})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})

	results := map[string]*cdr.Quality{}
	for _, run := range []struct {
		name   string
		loss   float64
		jitter time.Duration
	}{{"clean", 0, 0}, {"impaired", 0.05, 40 * time.Millisecond}} {
		proxy.set(run.loss, run.jitter)
		callConfirmed(e, alice, "sip:echo@127.0.0.1")
		audioArrives(e, alice, "its echo ("+run.name+")")
		mediaFor(e, run.name+": eight seconds of media", 8*time.Second)
		hangUp(e, alice)
		rec := lastCDR(e, s, len(results)+1, run.name+": the CDR has the browser leg's quality")
		q := rec.Media[0].Quality
		if q == nil || q.In == nil {
			t.Fatalf("CDR media %+v has no quality", rec.Media[0])
		}
		results[run.name] = q
		proxy.mu.Lock()
		t.Logf("%s: the proxy dropped %d RTP packets", run.name, proxy.dropped)
		proxy.mu.Unlock()
	}
	clean, bad := results["clean"], results["impaired"]
	for name, q := range results {
		out := "none"
		if q.Out != nil {
			out = fmt.Sprintf("loss %.3f jitter %.1f ms rtt %v MOS %.2f lost %d", q.Out.Loss.Avg, q.Out.JitterMs.Avg, q.Out.RTTMs, q.Out.MOS.Avg, q.Out.PacketsLost)
		}
		t.Logf("%s: in loss %.3f (max %.3f) jitter %.1f ms MOS %.2f lost %d of %d | out %s", name, q.In.Loss.Avg, q.In.Loss.Max,
			q.In.JitterMs.Avg, q.In.MOS.Avg, q.In.PacketsLost, q.Expected, out)
	}
	// Strait's own count: 5% injected; tolerance +-2.5 points over the
	// call (a few hundred packets: the binomial spread is about 1 point).
	if clean.In.Loss.Max > 0.005 {
		t.Errorf("clean call: loss %.3f", clean.In.Loss.Max)
	}
	if l := float64(bad.In.PacketsLost) / float64(bad.Expected); l < 0.025 || l > 0.075 {
		t.Errorf("impaired call: strait counted %d of %d lost (%.3f), want 0.05 +- 0.025", bad.In.PacketsLost, bad.Expected, l)
	}
	// The proxy delays each packet by up to 40 ms, uniformly: RFC 3550's
	// estimator (section 6.4.1) converges to the mean difference of two
	// such delays, 40/3 ms. The bound is absolute, not relative to the
	// clean call: under load Chromium's own sending jitter rises by as much
	// (seen in CI at load 20: clean 18.8 ms, impaired 16.6 ms).
	if bad.In.JitterMs.Avg < 8 {
		t.Errorf("jitter: clean %.1f ms, impaired %.1f ms: want above 8 ms (about 13 ms injected)", clean.In.JitterMs.Avg, bad.In.JitterMs.Avg)
	}
	if bad.In.MOS.Avg >= clean.In.MOS.Avg {
		t.Errorf("MOS: clean %.2f, impaired %.2f", clean.In.MOS.Avg, bad.In.MOS.Avg)
	}
	// Chromium's receiver reports on the echo: what it lost is what the
	// proxy dropped before strait echoed it.
	if bad.Out == nil || clean.Out == nil {
		t.Fatalf("no receiver reports from Chromium taken: clean %+v impaired %+v", clean.Out, bad.Out)
	}
	if bad.Out.PacketsLost <= clean.Out.PacketsLost || bad.Out.MOS.Avg >= clean.Out.MOS.Avg {
		t.Errorf("Chromium's reports: lost clean %d impaired %d, MOS clean %.2f impaired %.2f",
			clean.Out.PacketsLost, bad.Out.PacketsLost, clean.Out.MOS.Avg, bad.Out.MOS.Avg)
	}
}

// TestCallQualityImpairedTowardPBX: the impairment is between strait and
// the PBX. JsSIP in Chromium calls through strait (trunk mode) to sipp,
// which echoes; the PBX's SDP names the impairment proxy, which drops 5%
// of the RTP the PBX sends strait and delays it by up to 40 ms. The CDR
// says which side is bad: the sip leg's received stream shows the loss
// (strait's own count, within 2.5 points of what the proxy dropped) and
// the jitter, the webrtc leg's received stream (the browser's) stays
// clean, and the sip leg's MOS is the lower.
func TestCallQualityImpairedTowardPBX(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	ports := harness.PortRange(t, 2)
	var port uint16
	fmt.Sscanf(ports, "%d-", &port)
	relay := netip.MustParseAddr("127.0.0.3")
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_echo_relayed.xml", RTPEcho: true,
		Keys: map[string]string{"media_addr": relay.String(), "media_relay_port": fmt.Sprint(port)}})
	pbxMedia := netip.AddrPortFrom(netip.MustParseAddr(harness.LoopbackIP), uint16(pbx.MediaPort))
	proxy := startImpairProxy(t, netip.AddrPortFrom(relay, port), pbxMedia, true)
	// RTCP (the next port, RFC 3550 section 11) passes a proxy that
	// impairs nothing.
	startImpairProxy(t, netip.AddrPortFrom(relay, port+1), netip.AddrPortFrom(pbxMedia.Addr(), pbxMedia.Port()+1), true)
	proxy.set(0.05, 40*time.Millisecond)
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice"})
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's echo through the impairment")
	mediaFor(e, "eight seconds of media", 8*time.Second)
	hangUp(e, alice)
	e.Step("the PBX got the BYE", 10*time.Second, pbx.Wait)
	rec := lastCDR(e, s, 1, "the CDR has both legs' quality")
	legs := map[string]*cdr.Quality{}
	for _, m := range rec.Media {
		legs[m.Kind] = m.Quality
	}
	web, sipLeg := legs["webrtc"], legs["sip"]
	if web == nil || web.In == nil || sipLeg == nil || sipLeg.In == nil {
		t.Fatalf("CDR media without quality on both legs: %+v", rec.Media)
	}
	proxy.mu.Lock()
	dropped := proxy.dropped
	proxy.mu.Unlock()
	for name, q := range legs {
		t.Logf("%s leg: in loss %.3f (max %.3f) jitter %.1f ms MOS %.2f lost %d of %d", name, q.In.Loss.Avg, q.In.Loss.Max,
			q.In.JitterMs.Avg, q.In.MOS.Avg, q.In.PacketsLost, q.Expected)
	}
	t.Logf("the proxy dropped %d RTP packets from the PBX", dropped)
	// The bad side: 5% injected, +-2.5 points over the call (a few
	// hundred packets: the binomial spread is about 1 point); jitter up to
	// 40 ms uniform is about 13 ms by RFC 3550's estimator, so at least 3
	// ms above the clean side's.
	if sipLeg.Expected == 0 {
		t.Fatal("the sip leg expected no packets")
	}
	if l := float64(sipLeg.In.PacketsLost) / float64(sipLeg.Expected); l < 0.025 || l > 0.075 {
		t.Errorf("sip leg: strait counted %d of %d lost (%.3f), want 0.05 +- 0.025", sipLeg.In.PacketsLost, sipLeg.Expected, l)
	}
	// The clean side: what the browser sent strait arrived whole.
	if web.In.Loss.Max > 0.005 {
		t.Errorf("webrtc leg: loss %.3f on a clean path", web.In.Loss.Max)
	}
	if sipLeg.In.JitterMs.Avg < web.In.JitterMs.Avg+3 {
		t.Errorf("jitter: webrtc leg %.1f ms, sip leg %.1f ms: want the sip leg at least 3 ms higher", web.In.JitterMs.Avg, sipLeg.In.JitterMs.Avg)
	}
	if sipLeg.In.MOS.Avg >= web.In.MOS.Avg {
		t.Errorf("MOS: webrtc leg %.2f, sip leg %.2f: want the sip leg lower", web.In.MOS.Avg, sipLeg.In.MOS.Avg)
	}
}
