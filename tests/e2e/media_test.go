package e2e

import (
	"context"
	"fmt"
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
	return fmt.Sprintf("%d packets in, %d out, energy %.4f, level %.3f, analyser %.3f",
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
