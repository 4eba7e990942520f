package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Load bounds: 200 calls at 20 calls/s, each streaming a tone for 2 s (so
// about 40 at once), echoed by strait. About 12 s of traffic.
const (
	loadCalls    = 200
	loadRate     = 20
	loadCallTime = 2 * time.Second
)

// Scenario 7: sipp in UDP load mode against standalone strait, every call
// to echo: every call completes, its media comes back, nothing leaks.
func TestSippLoad(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedSipp)
	c := capture(e)
	// Every call comes from one sipp user: lift the per-user limits.
	s := e.StartStrait(harness.StraitConfig{Args: []string{"--max-calls-per-user", "0", "--max-call-rate-per-user", "0"}})
	base := baseline(e, s)
	uac := e.StartSipp(harness.SippConfig{
		Scenario: "uac_rtpstream.xml", Remote: s.SIPAddr, Service: "echo",
		Calls: loadCalls, Rate: loadRate, Limit: 3 * loadRate * int(loadCallTime.Seconds()), Pause: loadCallTime,
		Timeout: 90 * time.Second,
	})
	e.Step(fmt.Sprintf("%d calls at %d/s complete", loadCalls, loadRate), 100*time.Second, func(ctx context.Context) error {
		if err := uac.Wait(ctx); err != nil {
			return err
		}
		st := uac.Stats()
		ok, _ := strconv.Atoi(st["SuccessfulCall(C)"])
		failed, _ := strconv.Atoi(st["FailedCall(C)"])
		t.Logf("sipp: %d successful, %d failed calls", ok, failed)
		if ok != loadCalls || failed != 0 {
			return fmt.Errorf("sipp: %d successful and %d failed calls, want %d and 0", ok, failed, loadCalls)
		}
		return nil
	})
	// Each call streams 50 packets/s for loadCallTime; insist on most of
	// them echoed back to sipp's rtp_stream ports.
	want := loadCalls * int(loadCallTime.Seconds()) * 50 * 8 / 10
	pbxMedia(e, c, uac.MediaPort, uac.MediaPort+4*loadCalls, want)
	idle(e, s, base)
}
