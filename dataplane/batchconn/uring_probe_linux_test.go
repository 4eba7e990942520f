package batchconn

import (
	"errors"
	"fmt"
	"testing"
)

// A kernel or sandbox that refuses io_uring (here: the probe's verdict,
// overridden) leaves ModeAuto on mmsg and makes ModeUring fail with
// errNoUring, which callers and tests read as "not here", never a crash.
func TestUringRefusedFallsBackToMmsg(t *testing.T) {
	if err := UringUnavailable(); err != nil {
		t.Logf("io_uring refused by this host: %v", err)
	}
	saved := probeErr // the probe has run (above): its verdict stays put
	probeErr = fmt.Errorf("%w: refused by the test", errNoUring)
	t.Cleanup(func() { probeErr = saved })

	l, err := NewLoop(LoopConfig[int]{Mode: ModeAuto, BatchSize: 1, BufSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode() != ModeMmsg {
		t.Errorf("auto picked %s with io_uring refused", l.Mode())
	}
	l.Close()
	if _, err := NewLoop(LoopConfig[int]{Mode: ModeUring, BatchSize: 1, BufSize: 2048}); !errors.Is(err, errNoUring) {
		t.Errorf("uring with io_uring refused: %v", err)
	}
}

// Where io_uring works, the probe says so and auto picks it.
func TestUringProbeAgreesWithAuto(t *testing.T) {
	l, err := NewLoop(LoopConfig[int]{Mode: ModeAuto, BatchSize: 1, BufSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if probe := UringUnavailable(); (probe == nil) != (l.Mode() == ModeUring) {
		t.Errorf("probe %v, auto picked %s", probe, l.Mode())
	}
}
