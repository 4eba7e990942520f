package bench

import (
	"context"
	"os"

	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
)

// directRelay is no relay at all: each session's two plain flows go from
// one harness socket straight to the other over loopback. It measures what
// the harness itself (generator, kernel, sink) adds to every latency, at
// the same rate and with as many sockets as a relayed case, so that a
// relay's own share of a tail can be told from the harness's
// (Result.OverHarnessLatencyP99us). Its CPU figures are the harness
// process's own.
type directRelay struct {
	h *harness
}

func (r *directRelay) target(kind) string { return report.TargetHarness }

// pid is 0: the harness's own system calls are not counted (its calibration
// window would count the harness counting).
func (r *directRelay) pid() int { return 0 }

func (r *directRelay) sample() (sample, error) {
	cpu, err := procstat.CPU(os.Getpid())
	if err != nil {
		return sample{}, err
	}
	rss, _ := procstat.RSS(os.Getpid())
	sched, _ := procstat.SchedStat(os.Getpid())
	_, recv := r.h.engine.Totals()
	return sample{cpu: cpu, sched: sched, rss: rss, received: recv}, nil
}

func (r *directRelay) memory() (float64, string, error) {
	return 0, "none: no relay", nil
}

// open gives each leg a harness socket of its own (as a plain baseline's
// leg 0 and a WebRTC client leg have) and points the flows at each other.
func (r *directRelay) open(_ context.Context, _ kind, s *session) error {
	a, err := r.h.endpoint(s)
	if err != nil {
		return err
	}
	b, err := r.h.endpoint(s)
	if err != nil {
		return err
	}
	s.created = r.h.engine.Now()
	if err := s.addFlows(r.h, a, b.Addr(), b, a.Addr()); err != nil {
		return err
	}
	s.activate(r.h, nil, nil)
	return nil
}

func (r *directRelay) saturation() string { return "" }

func (r *directRelay) close(context.Context, *session) error { return nil }
