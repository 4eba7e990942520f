package node

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestNode starts a node on loopback with port ranges of its own (tests
// of several packages run at once, so fixed ports would collide).
// testPortBase is an even port to start a test node's ranges at, below the
// kernel's ephemeral range (32768 and up): sockets opened without a port
// never land in a test's media range.
func testPortBase() uint16 { return uint16(10000 + 2*rand.IntN(11000)) }

func newTestNode(t testing.TB, mutate func(*Config)) *Node {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		base := testPortBase()
		cfg := Config{
			ID:          "test",
			MediaAddrs:  []netip.Addr{loopback},
			WebRTCPorts: portalloc.Range{First: base, Last: base + 1},
			RTPPorts:    portalloc.Range{First: base + 2, Last: base + 41},
			Workers:     2,
		}
		if mutate != nil {
			mutate(&cfg)
		}
		n, err := New(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	t.Fatalf("no node: %v", lastErr)
	return nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestWebRTCToPlainMediaBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    mediatest.CallOptions
	}{
		{"dtls-client/port-per-leg", mediatest.CallOptions{Role: pb.DTLSRole_DTLS_ROLE_CLIENT, Mode: pb.PortMode_PORT_MODE_PER_LEG}},
		{"dtls-server/port-per-leg", mediatest.CallOptions{Role: pb.DTLSRole_DTLS_ROLE_SERVER, Mode: pb.PortMode_PORT_MODE_PER_LEG}},
		{"dtls-client/port-per-leg/rtcp-mux", mediatest.CallOptions{Role: pb.DTLSRole_DTLS_ROLE_CLIENT, Mode: pb.PortMode_PORT_MODE_PER_LEG, Mux: true}},
	} {
		for _, io := range ioModes(t) {
			t.Run(tc.name+"/"+string(io), func(t *testing.T) {
				n := newTestNode(t, func(c *Config) { c.IO = io })
				if got := n.Engine().IOStats().Mode; got != io {
					t.Fatalf("I/O mode %s, asked for %s", got, io)
				}
				c := mediatest.NewCall(t, n, tc.o)
				c.BrowserToPlain("b2p", 20)
				c.PlainToBrowser("p2b", 100, 20)

				// RTCP both ways: a receiver report from the PBX reaches the
				// browser, and the browser's own reports reach the PBX.
				rr := &rtcp.ReceiverReport{SSRC: 0x5eed, Reports: []rtcp.ReceptionReport{{SSRC: c.Browser.SSRC(), LastSequenceNumber: 1019}}}
				to := c.PlainLocalRTCP()
				if err := c.Plain.SendRTCP(to, tc.o.Mux, rr); err != nil {
					t.Fatal(err)
				}
				deadline := time.After(5 * time.Second)
			waitRR:
				for {
					select {
					case p := <-c.Browser.RTCP:
						if r, ok := p.(*rtcp.ReceiverReport); ok && r.SSRC == 0x5eed {
							break waitRR
						}
					case <-deadline:
						t.Fatal("the PBX's receiver report never reached the browser")
					}
				}
				pk, err := c.Plain.Next(10*time.Second, func(p mediatest.Packet) bool { return p.RTCP != nil })
				if err != nil {
					t.Fatalf("no RTCP from the browser reached the PBX: %v", err)
				}
				if !tc.o.Mux && pk.From != c.PlainLocalRTCP() {
					t.Fatalf("RTCP came from %v, want the RTCP port %v", pk.From, c.PlainLocalRTCP())
				}
				s, err := n.GetSession(ctx(t), c.Sess.Id)
				if err != nil {
					t.Fatal(err)
				}
				l0 := s.Legs[0]
				if l0.State != pb.LegState_LEG_STATE_CONNECTED || l0.SrtpProfile != "AEAD_AES_128_GCM" {
					t.Errorf("WebRTC leg state %v profile %q", l0.State, l0.SrtpProfile)
				}
				if l0.Counters.PacketsIn < 21 || s.Legs[1].Counters.PacketsIn < 20 || l0.Counters.RtcpIn == 0 {
					t.Errorf("counters: %v / %v", l0.Counters, s.Legs[1].Counters)
				}
			})
		}
	}
}

// ioModes are the packet I/O implementations to test: mmsg always, io_uring
// where the kernel allows it.
func ioModes(t *testing.T) []batchconn.Mode {
	modes := []batchconn.Mode{batchconn.ModeMmsg}
	l, err := batchconn.NewLoop(batchconn.LoopConfig[int]{Mode: batchconn.ModeUring, BatchSize: 1, BufSize: 2048})
	if err != nil {
		// A kernel (or a container's seccomp profile) may refuse io_uring;
		// that is the host's choice, so it is reported, not failed.
		t.Logf("io_uring not tested: %v", err)
		return modes
	}
	l.Close()
	return append(modes, batchconn.ModeUring)
}
