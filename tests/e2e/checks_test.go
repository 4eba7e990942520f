package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// mediaStats is what a page reports about the audio it receives and sends:
// getStats' inbound-rtp and outbound-rtp, and the level an AnalyserNode
// measures on the received audio (RMS, 0..1).
type mediaStats struct {
	PacketsReceived int     `json:"packetsReceived"`
	PacketsSent     int     `json:"packetsSent"`
	AudioEnergy     float64 `json:"audioEnergy"`
	AudioLevel      float64 `json:"audioLevel"`
	Level           float64 `json:"level"`
}

func (s mediaStats) String() string {
	return fmt.Sprintf("%d packets in, %d out, energy %.4f, audioLevel %.3f, analyser %.3f",
		s.PacketsReceived, s.PacketsSent, s.AudioEnergy, s.AudioLevel, s.Level)
}

// Thresholds for "audio arrived": 50 packets is one second of 20 ms
// frames; the tone is at -12 dBFS, so its echo is far above these even
// after a codec round trip, while silence (or comfort noise) stays below.
const (
	minPackets = 50
	minEnergy  = 0.001
	minLevel   = 0.01
)

// waitAudio polls a page's stats (expr evaluates to a mediaStats, or a
// promise of one) until at least minPackets arrived with energy and the
// AnalyserNode's level reached minLevel, and returns the last reading.
func waitAudio(ctx context.Context, p *harness.Page, expr string) (mediaStats, error) {
	var st mediaStats
	for {
		err := p.Eval(ctx, expr, &st)
		if err == nil && st.PacketsReceived >= minPackets && st.AudioEnergy >= minEnergy && st.Level >= minLevel {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, fmt.Errorf("no audio: %v (last: %s)", err, st)
			}
			return st, fmt.Errorf("no audio (last: %s)", st)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// jssipStats is the JsSIP test page's stats expression.
const jssipStats = `sip.stats()`

// baseline records what strait holds before the calls, for idle.
func baseline(e *harness.Env, s *harness.Strait) harness.Baseline {
	e.T().Helper()
	var b harness.Baseline
	e.Step("baseline (metrics, media sockets)", 5*time.Second, func(ctx context.Context) (err error) {
		b, err = s.Baseline(ctx)
		if err == nil {
			e.T().Logf("gauges checked for leaks: %s; %d media sockets bound", strings.Join(b.HeldGauges(), ", "), b.MediaSockets)
		}
		return err
	})
	return b
}

// idle checks that strait let go of everything the calls held.
func idle(e *harness.Env, s *harness.Strait, base harness.Baseline) {
	e.T().Helper()
	e.Step("nothing left behind (API and metrics)", 15*time.Second, func(ctx context.Context) error {
		return s.WaitIdle(ctx, base)
	})
}

// pbxMedia checks, by packet capture, that the PBX stand-in received at
// least min RTP packets on ports [low, high], and returns the count.
func pbxMedia(e *harness.Env, c *harness.Capture, low, high, min int) harness.PortCount {
	e.T().Helper()
	var pc harness.PortCount
	if c == nil {
		e.T().Logf("no packet capture: PBX-side media not checked")
		return pc
	}
	e.Step("PBX side receives RTP", 10*time.Second, func(ctx context.Context) error {
		for {
			pc = c.Ports(low, high)
			rtp := 0
			for _, n := range pc.RTP {
				rtp += n
			}
			if rtp >= min {
				e.T().Logf("PBX side: %d RTP packets by payload type %v", rtp, pc.RTP)
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("PBX side got %d RTP packets (payload types %v), want %d: %w", rtp, pc.RTP, min, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	return pc
}

// capture starts packet capture. Without it (no CAP_NET_RAW, not Linux)
// the PBX-side media checks cannot run: that fails the test in CI and is
// logged elsewhere.
func capture(e *harness.Env, eventPTs ...uint8) *harness.Capture {
	c, err := e.StartCapture(eventPTs...)
	if err != nil {
		if harness.CI() {
			e.T().Fatalf("%v: CI must check the PBX-side media", err)
		}
		e.T().Logf("%v: PBX-side media is checked only where sipp's exit status shows it", err)
		return nil
	}
	return c
}
