package bench

import (
	"sort"
	"time"

	"github.com/strait-sbc/strait/bench/gotrace"
	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/bench/rtpgen"
)

// measurement is one window and the relay's counters around it.
type measurement struct {
	w      rtpgen.Window
	s0, s1 sample
	// requested is the rate the harness was asked to offer (0: flood,
	// which finds out), by flows flows.
	requested float64
	flows     int
	// sys is the relay's system calls in the calibration window after
	// it, and sysPackets what the relay forwarded meanwhile (nil: not
	// counted).
	sys        *procstat.Syscalls
	sysPackets uint64
	// stalls is what the runtime's preemptions cost the node's workers in
	// the window (--node-trace; nil otherwise).
	stalls    *gotrace.Stalls
	traceFile string
	// harnessCPU and harnessDelay are the harness process's CPU time
	// and its threads' run-queue wait over the window.
	harnessCPU, harnessDelay time.Duration
}

// schedPerPacket is the relay's threads' scheduler time slices over the
// window per packet forwarded (nil: not known).
func (m *measurement) schedPerPacket() *float64 {
	f := m.forwarded()
	if f == 0 || m.s1.sched.Slices == 0 {
		return nil
	}
	return report.F(float64(m.s1.sched.Slices-m.s0.sched.Slices) / float64(f))
}

// limited reports whether the harness offered less than asked: under 97%
// of the rate, less one packet per flow of slack for a window's edges (the
// generator paces in 500 µs ticks and drops what it could not send within
// 20 ms, so a machine that keeps up loses well under 1%).
func (m *measurement) limited() bool {
	if m.requested <= 0 {
		return false
	}
	slack := float64(m.flows) / m.w.Duration().Seconds()
	return m.offered() < 0.97*m.requested-slack
}

// syscallsPerPacket is the calibration window's system calls per packet
// forwarded.
func (m *measurement) syscallsPerPacket() *float64 {
	if m.sys == nil || m.sysPackets == 0 {
		return nil
	}
	return report.F(float64(m.sys.Total) / float64(m.sysPackets))
}

// nodeSyscalls is the node's own count of its workers' system calls in
// the window, in total and by call, per packet forwarded.
func (m *measurement) nodeSyscalls() (*float64, map[string]float64) {
	f := m.forwarded()
	if !m.s1.hasNodeCounters || f == 0 || len(m.s1.syscalls) == 0 {
		return nil, nil
	}
	var total uint64
	by := map[string]float64{}
	for k, v := range m.s1.syscalls {
		d := v - m.s0.syscalls[k]
		total += d
		if d > 0 {
			by[k] = float64(d) / float64(f)
		}
	}
	return report.F(float64(total) / float64(f)), by
}

func (m *measurement) loss() float64 {
	if m.w.Sent == 0 {
		return 1
	}
	return max(0, 1-float64(m.w.Received)/float64(m.w.Sent))
}

func (m *measurement) offered() float64 { return float64(m.w.Sent) / m.w.Duration().Seconds() }

// forwarded is the packets the relay sent in the window: its own counter
// when it has one, else what reached the harness.
func (m *measurement) forwarded() uint64 {
	if m.s1.hasNodeCounters {
		return m.s1.forwarded - m.s0.forwarded
	}
	return m.w.Received
}

func (m *measurement) cpuPerPacket() *float64 {
	f := m.forwarded()
	if f == 0 {
		return nil
	}
	return report.F(float64(m.s1.cpu-m.s0.cpu) / float64(f))
}

func (m *measurement) allocsPerPacket() *float64 {
	f := m.forwarded()
	if !m.s1.hasNodeCounters || f == 0 {
		return nil
	}
	return report.F(max(0, m.s1.mallocs-m.s0.mallocs-m.s1.scrapeAllocs) / float64(f))
}

func (m *measurement) drops() map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m.s1.drops {
		if d := v - m.s0.drops[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// holdQuantile is the q-quantile of the node's hold histogram
// (strait_dataplane_hold_seconds, cumulative counts by upper bound in
// seconds) over the window from a to b, in µs: the upper bound of the
// bucket it falls in. Nil without the histogram (rtpengine, an older node)
// or without datagrams.
func holdQuantile(a, b map[float64]float64, q float64) *float64 {
	if len(b) == 0 {
		return nil
	}
	bounds := make([]float64, 0, len(b))
	for le := range b {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	total := b[bounds[len(bounds)-1]] - a[bounds[len(bounds)-1]]
	if total <= 0 {
		return nil
	}
	for _, le := range bounds {
		if b[le]-a[le] >= q*total {
			return report.F(le * 1e6)
		}
	}
	return nil
}
