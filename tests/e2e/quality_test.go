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

// impairProxy sits on the media path between the browser and strait: strait
// advertises the proxy's address (--public-ip), the proxy forwards what the
// browser sends to strait's real port and what strait sends back to the
// browser. RTP from the browser is dropped with probability loss and
// delayed by up to jitter; STUN, DTLS and RTCP pass untouched, so that the
// call's setup and reports are not what is impaired. (tc netem would do the
// same in the test's network namespace where the kernel has sch_netem; the
// kernel of this project's CI machine has no netem or prio qdisc.)
type impairProxy struct {
	conn   *net.UDPConn
	strait netip.AddrPort

	mu      sync.Mutex
	browser netip.AddrPort
	loss    float64
	jitter  time.Duration
	rng     *rand.Rand
	dropped int
}

func startImpairProxy(t *testing.T, listen, strait netip.AddrPort) *impairProxy {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatalf("impairment proxy on %v: %v", listen, err)
	}
	p := &impairProxy{conn: c, strait: strait, rng: rand.New(rand.NewPCG(7, 13))}
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
		if from == p.strait {
			to := p.browser
			p.mu.Unlock()
			if to.IsValid() {
				p.conn.WriteToUDPAddrPort(pkt, to)
			}
			continue
		}
		p.browser = from
		// RTP: version 2, not an RTCP packet type (RFC 5761 section 4).
		isRTP := n >= 12 && pkt[0]>>6 == 2 && (pkt[1] < 192 || pkt[1] > 223)
		var delay time.Duration
		drop := false
		if isRTP {
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
		case drop:
		case delay > 0:
			time.AfterFunc(delay, func() { p.conn.WriteToUDPAddrPort(pkt, p.strait) })
		default:
			p.conn.WriteToUDPAddrPort(pkt, p.strait)
		}
	}
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
	proxy := startImpairProxy(t, proxyAddr, netip.AddrPortFrom(netip.MustParseAddr(harness.LoopbackIP), port))
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
		e.Step(run.name+": eight seconds of media", 15*time.Second, func(ctx context.Context) error {
			select { // the point is the duration: two quality intervals
			case <-time.After(8 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		hangUp(e, alice)
		e.Step(run.name+": the CDR has the browser leg's quality", 10*time.Second, func(ctx context.Context) error {
			for {
				var out struct {
					CDRs []cdr.Record `json:"cdrs"`
				}
				if _, err := s.Do(ctx, "GET", "/v1/cdrs", nil, &out); err != nil {
					return err
				}
				if n := len(out.CDRs); n > 0 && len(out.CDRs[n-1].Media) > 0 && len(results) == n-1 {
					q := out.CDRs[n-1].Media[0].Quality
					if q == nil || q.In == nil {
						return fmt.Errorf("CDR media %+v has no quality", out.CDRs[n-1].Media[0])
					}
					results[run.name] = q
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
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
	if bad.In.JitterMs.Avg < clean.In.JitterMs.Avg+3 {
		t.Errorf("jitter: clean %.1f ms, impaired %.1f ms: want at least 3 ms more", clean.In.JitterMs.Avg, bad.In.JitterMs.Avg)
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
