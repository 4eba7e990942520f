package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/strait-sbc/strait/bench/gotrace"
	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
)

// cadencePPS is each flow's rate in cadence: one packet per 20 ms.
const cadencePPS = 50

// saturatedLoss is the loss from which a relay offered the rate it was
// asked for is reported as saturated (not compared).
const saturatedLoss = 0.01

// drainWait lets packets in flight arrive after a window closes.
const drainWait = 300 * time.Millisecond

// runCase measures one target in one configuration.
type runCase struct {
	h     *harness
	r     relay
	k     kind
	n     int // sessions (scale: the largest step)
	label string
	rep   *report.Report

	profile, metrics string // CPU profile file and the node's metrics address
	trace            string // Go execution trace file (--node-trace)
	mis0             uint64
	seq              int
}

func (c *runCase) result() *report.Result {
	res := &report.Result{Target: c.r.target(c.k), Mode: c.h.cfg.Mode, Legs: c.k.legs, SRTP: c.srtpName(),
		PlainPorts: c.k.portMode(), IO: c.k.io, Node: c.k.node, Sessions: c.n, NodeDrops: map[string]uint64{}}
	if res.Target == report.TargetHarness {
		res.PlainPorts = "direct"
	}
	return res
}

func (c *runCase) srtpName() string {
	if c.k.legs == legsPlain {
		return ""
	}
	return c.k.profile.Name
}

func (c *runCase) run(ctx context.Context) (*report.Result, error) {
	c.mis0 = c.h.engine.Mismatches()
	c.r.saturation() // what earlier cases left in the relay's log
	switch c.h.cfg.Mode {
	case ModeFlood:
		return c.flood(ctx)
	case ModeScale:
		return c.scale(ctx)
	}
	return c.cadence(ctx)
}

// prefix names a case's sessions uniquely within the run.
func (c *runCase) prefix() string {
	c.seq++
	return fmt.Sprintf("bench-%d-%d", len(c.rep.Results), c.seq)
}

// bringUp opens sessions [from, to) and fails if any did not come up.
func (c *runCase) bringUp(ctx context.Context, prefix string, from, to int) ([]*session, setupStats, error) {
	ss, st, err := c.h.openMany(ctx, c.r, c.k, prefix, from, to, c.label)
	if err != nil {
		return ss, st, err
	}
	failed := 0
	var first error
	for _, s := range ss {
		if s.err != nil {
			failed++
			if first == nil {
				first = s.err
			}
		}
	}
	if failed > 0 {
		// What the relay counted says where the packets went.
		counted := ""
		if smp, err := c.r.sample(); err == nil && len(smp.drops) > 0 {
			counted = fmt.Sprintf(" (the relay's drop counters: %v)", smp.drops)
		}
		return ss, st, fmt.Errorf("%d of %d sessions did not come up%s; first: %w", failed, len(ss), counted, first)
	}
	return ss, st, nil
}

func (c *runCase) fillSetup(res *report.Result, st setupStats) {
	if st.n == 0 {
		return
	}
	res.SetupPerS = report.F(float64(st.n) / st.wall.Seconds())
	res.SetupP50ms = ms(percentile(st.latency, 0.5))
	res.SetupP99ms = ms(percentile(st.latency, 0.99))
	if len(st.handshake) > 0 {
		res.HandshakeP50ms = ms(percentile(st.handshake, 0.5))
		res.HandshakeP99ms = ms(percentile(st.handshake, 0.99))
	}
	res.NodeCPUusPerSetup = report.F(float64(st.cpu) / 1e3 / float64(st.n))
}

// cadence (and setup): bring sessions up while media already flows at the
// cadence rate, then measure a window.
func (c *runCase) cadence(ctx context.Context) (*report.Result, error) {
	h, n := c.h, c.n
	res := c.result()
	if h.cfg.QuietSetup {
		// Only the first packets that prove each session while they come
		// up; the cadence starts once they are all up.
		h.engine.SetRate(0)
	} else {
		h.engine.SetRate(cadencePPS)
	}
	mem0, basis, err := c.r.memory()
	if err != nil {
		return nil, err
	}
	ss, st, err := c.bringUp(ctx, c.prefix(), 0, n)
	defer h.closeAll(context.WithoutCancel(ctx), c.r, ss)
	if err != nil {
		return nil, err
	}
	c.fillSetup(res, st)
	h.engine.SetRate(cadencePPS)
	if err := sleep(ctx, h.cfg.Warmup); err != nil {
		return nil, err
	}
	m, err := c.measure(ctx, h.cfg.Duration, n)
	if err != nil {
		return nil, err
	}
	m.requested, m.flows = float64(2*n)*cadencePPS, 2*n
	if err := c.countSyscalls(ctx, &m); err != nil {
		return nil, err
	}
	// Memory in steady state: after the window, when the handshakes'
	// state has been released (the harness starts the node with a 1 s
	// DTLS linger).
	mem1, _, err := c.r.memory()
	if err != nil {
		return nil, err
	}
	res.BytesPerSession, res.BytesPerSessionBasis = report.F((mem1-mem0)/float64(n)), basis
	c.fill(res, m)
	return res, nil
}

// flood searches for the highest rate with loss under FloodLoss: doubling
// from the cadence rate until a step fails, then bisecting.
func (c *runCase) flood(ctx context.Context) (*report.Result, error) {
	h, n := c.h, c.n
	res := c.result()
	h.engine.SetRate(cadencePPS)
	ss, st, err := c.bringUp(ctx, c.prefix(), 0, n)
	defer h.closeAll(context.WithoutCancel(ctx), c.r, ss)
	if err != nil {
		return nil, err
	}
	c.fillSetup(res, st)
	flows := float64(2 * n)
	lo, hi := 0.0, 0.0
	rate := float64(cadencePPS)
	var best, over *measurement
	for step := 0; step < h.cfg.FloodSteps; step++ {
		h.engine.SetRate(rate)
		if err := sleep(ctx, h.cfg.Warmup); err != nil {
			return nil, err
		}
		m, err := c.measure(ctx, h.cfg.Duration, n)
		if err != nil {
			return nil, err
		}
		requested := rate * flows
		offered := float64(m.w.Sent) / m.w.Duration().Seconds()
		loss := m.loss()
		limited := offered < 0.9*requested
		pass := loss < FloodLoss && m.w.Starved == 0 && !limited
		res.Steps = append(res.Steps, c.step(n, m, pass))
		switch {
		case pass:
			best, lo = &m, rate
		case limited && loss < FloodLoss:
			// The generator cannot offer more: the relay's limit is
			// beyond what this machine's harness can send.
			res.GeneratorLimited = true
			if best == nil || offered > best.offered() {
				best = &m
			}
		default:
			over, hi = &m, rate
		}
		if res.GeneratorLimited || (hi > 0 && (hi-lo)/hi < 0.08) {
			break
		}
		if hi == 0 {
			rate *= 2
		} else {
			rate = (lo + hi) / 2
		}
	}
	h.engine.SetRate(cadencePPS)
	if best == nil {
		return nil, fmt.Errorf("no rate passed, not even %d packets/s per flow", cadencePPS)
	}
	c.fill(res, *best)
	if over != nil {
		// What overload did: drops the relay counted, and flows it
		// stopped serving altogether.
		res.OverloadDrops = over.drops()
		res.OverloadFlowsStarved = report.Int(over.w.Starved)
		res.OverloadOfferedPPS = report.F(over.offered())
	}
	return res, nil
}

// scaleSteps are the session counts scale measures, up to max.
func scaleSteps(max int) []int {
	var out []int
	for _, n := range []int{1, 100, 1000, 10000} {
		if n < max {
			out = append(out, n)
		}
	}
	return append(out, max)
}

// scale adds sessions step by step and measures each step at the same
// aggregate rate.
func (c *runCase) scale(ctx context.Context) (*report.Result, error) {
	h := c.h
	res := c.result()
	mem0, basis, err := c.r.memory()
	if err != nil {
		return nil, err
	}
	res.BytesPerSessionBasis = basis
	var all []*session
	defer func() { h.closeAll(context.WithoutCancel(ctx), c.r, all) }()
	prefix := c.prefix()
	for _, n := range scaleSteps(c.n) {
		// Media flows while sessions come up (first media proves each),
		// but never above the step's aggregate rate.
		h.engine.SetRate(min(cadencePPS, h.cfg.ScaleRate/float64(2*n)))
		ss, st, err := c.bringUp(ctx, prefix, len(all), n)
		all = append(all, ss...)
		if err != nil {
			return nil, err
		}
		c.fillSetup(res, st)
		h.engine.SetRate(h.cfg.ScaleRate / float64(2*n))
		if err := sleep(ctx, h.cfg.Warmup); err != nil {
			return nil, err
		}
		m, err := c.measure(ctx, h.cfg.Duration, n)
		if err != nil {
			return nil, err
		}
		m.requested, m.flows = h.cfg.ScaleRate, 2*n
		if err := c.countSyscalls(ctx, &m); err != nil {
			return nil, err
		}
		mem, _, err := c.r.memory() // steady state, as in cadence
		if err != nil {
			return nil, err
		}
		s := c.step(n, m, m.loss() < FloodLoss && !m.limited())
		s.BytesPerSession = report.F((mem - mem0) / float64(n))
		res.Steps = append(res.Steps, s)
		c.fill(res, m)
		res.Sessions = n
		res.BytesPerSession = s.BytesPerSession
	}
	return res, nil
}

func (c *runCase) step(n int, m measurement, pass bool) report.Step {
	var drops uint64
	for _, v := range m.drops() {
		drops += v
	}
	d := m.w.Duration().Seconds()
	own, _ := m.nodeSyscalls()
	return report.Step{Sessions: n, RequestedPPS: m.requested, GeneratorLimited: m.limited(), OfferedPPS: m.offered(),
		DeliveredPPS: float64(m.w.Received) / d, LossRatio: m.loss(),
		NodeCPUnsPerPacket: m.cpuPerPacket(), AllocsPerPacket: m.allocsPerPacket(), NodeRSSBytes: report.I(m.s1.rss),
		SyscallsPerPacket: m.syscallsPerPacket(), NodeSyscallsPerPkt: own,
		LatencyP99us: report.F(float64(m.w.Latency.Quantile(0.99)) / 1e3), FlowsStarved: m.w.Starved, NodeDrops: drops, Pass: pass}
}

// measure runs one window of dur with n sessions up.
func (c *runCase) measure(ctx context.Context, dur time.Duration, n int) (measurement, error) {
	var m measurement
	var err error
	if m.s0, err = c.r.sample(); err != nil {
		return m, err
	}
	e := c.h.engine
	hcpu0, _ := procstat.CPU(os.Getpid())
	hs0, _ := procstat.SchedStat(os.Getpid())
	e.StartWindow()
	stop := c.h.progressLoop(c.label, func() string { return fmt.Sprintf("sessions up %d", n) }, dur)
	profDone := make(chan error, 1)
	if c.profile != "" {
		path := c.profile
		c.profile = ""
		go func() {
			f, err := os.Create(path)
			if err == nil {
				err = procstat.Profile(c.metrics, max(1, int(dur.Seconds())), f)
				f.Close()
			}
			profDone <- err
		}()
	} else {
		profDone <- nil
	}
	traceDone := make(chan error, 1)
	if c.trace != "" && c.metrics != "" {
		path := c.trace
		go func() { traceDone <- c.takeTrace(path, dur, &m) }()
	} else {
		traceDone <- nil
	}
	err = sleep(ctx, dur)
	e.EndWindow()
	hcpu1, _ := procstat.CPU(os.Getpid())
	hs1, _ := procstat.SchedStat(os.Getpid())
	m.harnessCPU, m.harnessDelay = hcpu1-hcpu0, hs1.RunDelay-hs0.RunDelay
	s1, serr := c.r.sample()
	stop()
	if perr := <-profDone; perr != nil {
		c.h.progress.Log("CPU profile: %v", perr)
	}
	if terr := <-traceDone; terr != nil {
		c.h.progress.Log("node trace: %v", terr)
	}
	if err != nil {
		return m, err
	}
	if serr != nil {
		return m, serr
	}
	m.s1 = s1
	if err := sleep(ctx, drainWait); err != nil {
		return m, err
	}
	m.w = e.Collect()
	return m, nil
}

// takeTrace saves a Go execution trace of the node over the window (less
// its last half second, so that it is done when the window ends) to path
// and reads what the runtime's preemptions cost the packet workers.
func (c *runCase) takeTrace(path string, dur time.Duration, m *measurement) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	secs := max(1, int((dur - 500*time.Millisecond).Seconds()))
	if err := procstat.Trace(c.metrics, secs, f); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return err
	}
	s, err := gotrace.Read(bufio.NewReader(f), workerFunc)
	f.Close()
	if err != nil {
		return err
	}
	m.stalls, m.traceFile = s, path
	return nil
}

// workerFunc names the node's packet worker goroutines in a trace.
const workerFunc = "relay.(*worker).run"

// fill writes a window's figures into res.
func (c *runCase) fill(res *report.Result, m measurement) {
	w := &m.w
	d := w.Duration().Seconds()
	res.DurationS = d
	res.OfferedPPS = m.offered()
	res.DeliveredPPS = float64(w.Received) / d
	res.LossRatio = m.loss()
	res.PayloadMismatches = w.Mismatches - c.mis0
	if w.Latency.Count() > 0 {
		res.LatencyP50us = report.F(float64(w.Latency.Quantile(0.5)) / 1e3)
		res.LatencyP99us = report.F(float64(w.Latency.Quantile(0.99)) / 1e3)
		res.JitterUs = report.F(w.JitterNanos / 1e3)
	}
	res.PacketsForwarded = m.forwarded()
	res.NodeCPUnsPerPacket = m.cpuPerPacket()
	res.NodeCPUCores = report.F(float64(m.s1.cpu-m.s0.cpu) / 1e9 / d)
	res.NodeRSSBytes = report.I(m.s1.rss)
	res.AllocsPerPacket = m.allocsPerPacket()
	res.NodeDrops = m.drops()
	res.GeneratorSendDrops = w.SendDrops
	res.FlowsStarved = w.Starved
	res.RequestedPPS = m.requested
	if m.requested > 0 {
		res.GeneratorLimited = m.limited()
	}
	if d > 0 && m.harnessCPU > 0 {
		res.HarnessCPUCores = report.F(m.harnessCPU.Seconds() / d)
	}
	res.NodeRunqWait, res.HarnessRunqWait = nil, nil
	if d > 0 && m.s1.sched.RunDelay > 0 {
		res.NodeRunqWait = report.F((m.s1.sched.RunDelay - m.s0.sched.RunDelay).Seconds() / d)
	}
	res.NodeSlicesPerPacket = m.schedPerPacket()
	if s := m.stalls; s != nil && s.Goroutines > 0 {
		res.NodeTraceFile = m.traceFile
		res.NodeWorkerPreemptPerS = report.F(s.PerSecond())
		res.NodeWorkerPreemptShare = report.F(s.Share())
		if s.Preemptions > 0 {
			res.NodeWorkerPreemptP50us = report.F(float64(s.Quantile(0.5)) / 1e3)
			res.NodeWorkerPreemptP99us = report.F(float64(s.Quantile(0.99)) / 1e3)
		}
	}
	if d > 0 && m.harnessDelay > 0 {
		res.HarnessRunqWait = report.F(m.harnessDelay.Seconds() / d)
	}
	res.Saturated, res.SinkLimited, res.SaturatedNote = false, false, ""
	if m.requested > 0 && (res.LossRatio >= saturatedLoss || w.Starved > 0) {
		res.SaturatedNote = fmt.Sprintf("%.0f of the %.0f packets/s offered arrived within %v (loss %.1f%%, %d of %d flows got nothing)",
			res.DeliveredPPS, res.OfferedPPS, drainWait, 100*res.LossRatio, w.Starved, m.flows)
		fwd := float64(m.forwarded()) / d
		if m.s1.hasNodeCounters && fwd >= (1-saturatedLoss)*res.OfferedPPS && w.Starved == 0 {
			// The relay sent on what it got: the packets were late or
			// lost after it, in the harness's sockets or its sink.
			res.SinkLimited = true
			res.SaturatedNote += fmt.Sprintf("; the relay forwarded %.0f packets/s: the harness fell behind", fwd)
		} else {
			res.Saturated = true
			if m.s1.hasNodeCounters {
				res.SaturatedNote += fmt.Sprintf("; the relay forwarded %.0f packets/s", fwd)
			}
			if why := c.r.saturation(); why != "" {
				res.SaturatedNote += "; " + why
			}
		}
	}
	res.SyscallsPerPacket = m.syscallsPerPacket()
	res.SyscallsByCall = nil
	res.SyscallsMethod = ""
	if m.sys != nil && m.sysPackets > 0 {
		res.SyscallsMethod = m.sys.Method
		res.SyscallsByCall = map[string]float64{}
		for k, v := range m.sys.ByCall {
			res.SyscallsByCall[k] = float64(v) / float64(m.sysPackets)
		}
	}
	res.NodeSyscallsPerPacket, res.NodeSyscallsByCall = m.nodeSyscalls()
	res.DatagramsPerRound = nil
	if r := m.s1.rounds - m.s0.rounds; m.s1.hasNodeCounters && r > 0 {
		res.DatagramsPerRound = report.F(float64(m.forwarded()) / float64(r))
	}
	res.NodeHoldP50us, res.NodeHoldP99us = holdQuantile(m.s0.hold, m.s1.hold, 0.5), holdQuantile(m.s0.hold, m.s1.hold, 0.99)
	res.Latency = res.Latency[:0]
	for _, p := range w.Latency.Points() {
		res.Latency = append(res.Latency, [2]float64{float64(p.Upper) / 1e3, float64(p.Count)})
	}
}

// countSyscalls counts the relay's system calls from outside over the
// calibration window that follows a measurement (the same traffic, right
// after it), and what it forwarded meanwhile. A machine where neither perf
// nor strace can count leaves it out, and says so once.
func (c *runCase) countSyscalls(ctx context.Context, m *measurement) error {
	h := c.h
	if h.cfg.SyscallWindow < 0 || h.noSyscalls || c.r.pid() == 0 {
		return nil
	}
	counter, err := procstat.StartSyscalls(c.r.pid())
	if err != nil {
		h.noSyscalls = true
		h.progress.Log("system calls not counted: %v", err)
		return nil
	}
	// The packets are counted inside the counted span (the scrapes' own
	// few system calls are a rounding error against seconds of media).
	s0, err := c.r.sample()
	var s1 sample
	if err == nil {
		stop := h.progressLoop(c.label+" (counting system calls)", func() string { return "" }, h.cfg.SyscallWindow)
		err = sleep(ctx, h.cfg.SyscallWindow)
		stop()
	}
	if err == nil {
		s1, err = c.r.sample()
	}
	sys, serr := counter.Stop()
	if err != nil {
		return err
	}
	if serr != nil {
		h.progress.Log("system calls not counted: %v", serr)
		return nil
	}
	m.sys = &sys
	if s1.hasNodeCounters {
		m.sysPackets = s1.forwarded - s0.forwarded
	} else {
		m.sysPackets = s1.received - s0.received
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
