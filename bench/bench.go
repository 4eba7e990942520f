// Package bench measures a Strait dataplane node the way operators compare
// media relays: packets per second per core, CPU per packet, loss and
// latency under load, memory per session and how fast sessions come up,
// each against baselines measured in the same run on the same machine with
// the same packets, so that a figure means something on a noisy shared
// machine.
//
// Run drives a node in its own process (one it starts from
// cmd/strait-dataplane, or one already running) through the dataplane API,
// as a control plane does. Each session has a WebRTC client leg played by
// the harness (package webrtcclient: ICE, DTLS, SRTP as a browser) and a
// plain RTP leg; packets are generated and checked byte for byte by
// package rtpgen. The baselines are plain RTP <-> RTP sessions through the
// same node, and rtpengine (package rtpengine) doing the same WebRTC <->
// plain work. The CPU of each relay is read from /proc over the measured
// window and divided by the packets it forwarded.
//
// The modes are described at Config.Mode; cmd/strait-bench is the command
// line.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/bench/rtpengine"
	"github.com/strait-sbc/strait/bench/rtpgen"
	"github.com/strait-sbc/strait/bench/webrtcclient"
	"github.com/strait-sbc/strait/dataplane/batchconn"
)

// Modes.
const (
	// ModeCadence: Sessions sessions of 20 ms packets (50 packets/s each
	// way) for Duration: loss, one-way latency percentiles, jitter, CPU
	// per packet.
	ModeCadence = "cadence"
	// ModeFlood: the highest packet rate forwarded with loss under
	// FloodLoss for Sessions sessions, found by doubling the rate and then
	// bisecting; each step lasts Duration. The step above the limit shows
	// how the relay sheds load (its drops, and whether every flow is still
	// served).
	ModeFlood = "flood"
	// ModeSetup: Sessions sessions brought up Concurrency at a time, from
	// create to first media (ICE, DTLS, first SRTP packet relayed):
	// sessions per second and handshake latency percentiles; then a
	// cadence window of Duration.
	ModeSetup = "setup"
	// ModeScale: cost per packet and memory per session at 1, 100, 1 000
	// and 10 000 sessions (up to Sessions), at the same aggregate rate
	// (ScaleRate) at every step, so that only the number of sessions
	// changes.
	ModeScale = "scale"
)

// FloodLoss is the loss ratio under which a flood step passes (0.1%).
const FloodLoss = 0.001

// Run performs one run and returns its report. The report's Failures say
// whether it passed; an error means it could not run at all.
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	raiseFileLimit()
	prog := &report.Progress{W: cfg.Progress}
	var logw io.Writer = io.Discard
	if cfg.Log != nil {
		// The node's and rtpengine's output are copied by goroutines of
		// their own.
		logw = &syncWriter{w: cfg.Log}
	}
	rep := &report.Report{Mode: cfg.Mode, Date: time.Now().UTC(), Machine: machine(), Config: cfg.summary(), Failures: []string{},
		LoadAvgStart: loadAvg()}
	defer func() { rep.LoadAvgEnd = loadAvg() }()

	codec := rtpgen.PCMU
	if cfg.Codec == "opus" {
		codec = rtpgen.Opus
	}
	engine, err := rtpgen.New(rtpgen.Options{Socket: batchconn.Options{RecvBuffer: 4 << 20, SendBuffer: 4 << 20}, IO: batchconn.Mode(cfg.HarnessIO)})
	if err != nil {
		return nil, err
	}
	defer engine.Close()
	rep.HarnessIO = string(engine.IO())
	ident, err := webrtcclient.NewIdentity()
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: &cfg, engine: engine, ident: ident, codec: codec, progress: prog, legs: map[*webrtcclient.Leg]bool{}}
	cctx, stopConsent := context.WithCancel(ctx)
	defer stopConsent()
	go h.consent(cctx)

	// One node per I/O mode, each on an address of its own, so that the
	// cases of both can interleave in one run.
	ioModes, uringRefused := cfg.startableIOModes()
	if uringRefused != nil && cfg.Node == "" {
		prog.Log("io_uring node skipped: %v", uringRefused)
		for _, n := range cfg.counts() {
			rep.Results = append(rep.Results, &report.Result{Target: report.TargetStrait, Mode: cfg.Mode, Legs: legsWebRTC,
				IO: "uring", Sessions: n, Skipped: "io_uring refused by this host: " + uringRefused.Error(), NodeDrops: map[string]uint64{}})
		}
	}
	var straits []*straitRelay
	if cfg.Node != "" {
		node, err := attachNode(ctx, cfg.Node, cfg.NodePID, cfg.NodeMetrics)
		if err != nil {
			return nil, err
		}
		defer node.close()
		straits = append(straits, &straitRelay{n: node, h: h, io: "attached"})
	} else {
		// --node-bin A,B: a node of each binary (and I/O mode), their
		// cases interleaved, for an A/B comparison within one run.
		bins := cfg.nodeBins()
		for b, path := range bins {
			bin, cleanup, berr := nodeBinary(path, orW(cfg.Progress))
			if berr != nil {
				return nil, berr
			}
			defer cleanup()
			label := ""
			if len(bins) > 1 {
				label = nodeLabel(b, path)
			}
			for i, m := range ioModes {
				node, err := startNode(ctx, bin, nodeOptions{ip: nthAddr(nodeIP, b*len(ioModes)+i), workers: cfg.Workers, cpus: cfg.RelayCPUs,
					io: m, coalesce: cfg.Coalesce}, logw)
				if err != nil {
					return nil, err
				}
				defer node.close()
				straits = append(straits, &straitRelay{n: node, h: h, io: node.ioMode(m), node: label})
			}
		}
	}

	profiles, _ := cfg.profiles()
	modes, _ := cfg.portModes()
	type job struct {
		r relay
		k kind
		n int
	}
	var rtpe *rtpengineRelay
	var rtpeErr error
	if cfg.Peer == "rtpengine" {
		bin, err := rtpengine.Binary(cfg.RtpengineBin)
		var d *rtpengine.Daemon
		if err == nil {
			d, err = rtpengine.Start(ctx, rtpengine.Options{Binary: bin, Interface: rtpengineIP, PortMin: 10000, PortMax: 60000,
				Threads: runtime.NumCPU(), CPUs: cfg.RelayCPUs, Log: logw})
		}
		if err != nil {
			prog.Log("rtpengine baseline skipped: %v", err)
			rtpeErr = err
		} else {
			defer d.Close()
			rtpe = &rtpengineRelay{d: d, h: h}
		}
	}
	var jobs []job
	direct := &directRelay{h: h}
	for _, n := range cfg.counts() {
		if !cfg.NoHarnessBaseline && (cfg.Mode == ModeCadence || cfg.Mode == ModeSetup) {
			// The harness alone first: the latency floor of this count.
			jobs = append(jobs, job{direct, kind{legs: legsPlain}, n})
		}
		// Each case runs on every node in turn (I/O modes, binaries), so
		// that drift in the machine's load hits them alike.
		for _, shared := range modes {
			for i, p := range profiles {
				for _, strait := range straits {
					jobs = append(jobs, job{strait, kind{legs: legsWebRTC, profile: p, shared: shared, io: strait.io, node: strait.node}, n})
				}
				if i == 0 {
					// The plain baseline runs between the profiles, for
					// the same reason.
					for _, strait := range straits {
						jobs = append(jobs, job{strait, kind{legs: legsPlain, shared: shared, io: strait.io, node: strait.node}, n})
					}
				}
			}
		}
		for _, p := range profiles {
			switch {
			case rtpe != nil:
				jobs = append(jobs, job{rtpe, kind{legs: legsWebRTC, profile: p}, n})
			case rtpeErr != nil:
				rep.Results = append(rep.Results, &report.Result{Target: report.TargetRtpengine, Mode: cfg.Mode, Legs: legsWebRTC,
					SRTP: p.Name, PlainPorts: "per-leg", Sessions: n, Skipped: rtpeErr.Error(), NodeDrops: map[string]uint64{}})
			}
		}
	}

	profiled := cfg.CPUProfile == ""
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		label := fmt.Sprintf("%s %s %d", j.r.target(j.k), j.k, j.n)
		c := &runCase{h: h, r: j.r, k: j.k, n: j.n, label: label, rep: rep}
		sr, isStrait := j.r.(*straitRelay)
		if !profiled && isStrait && j.k.legs == legsWebRTC {
			c.profile = cfg.CPUProfile
			c.metrics = sr.n.metrics
			profiled = true
		}
		if cfg.NodeTrace != "" && isStrait {
			c.trace = fmt.Sprintf("%s-%d.trace", cfg.NodeTrace, len(rep.Results))
			c.metrics = sr.n.metrics
		}
		if need, limit := fdsNeeded(j.k, j.n), fileLimit(); isStrait && j.k.legs == legsPlain && need > limit {
			// A baseline this machine cannot hold is skipped, and says why:
			// the run's other figures stand on their own.
			prog.Done()
			reason := fmt.Sprintf("needs about %d file descriptors for %d sessions, RLIMIT_NOFILE is %d here", need, j.n, limit)
			prog.Log("%s skipped: %s", label, reason)
			rep.Results = append(rep.Results, &report.Result{Target: j.r.target(j.k), Mode: cfg.Mode, Legs: j.k.legs, PlainPorts: j.k.portMode(),
				IO: j.k.io, Sessions: j.n, Skipped: reason, NodeDrops: map[string]uint64{}})
			continue
		}
		res, err := c.run(ctx)
		prog.Done()
		if err != nil {
			if !isStrait {
				// The incumbent could not do this case (e.g. a profile it
				// does not negotiate, or more sessions than it holds), or
				// the harness alone could not: skipped, said so, not a pass.
				prog.Log("%s skipped: %v", label, err)
				res = c.result()
				res.Skipped = err.Error()
			} else if ctx.Err() != nil {
				return rep, fmt.Errorf("%s: %w", label, err)
			} else {
				// The node failed this case (sessions that did not come
				// up): the run fails, but its other cases are still
				// measured, so that one overloaded size does not lose
				// the rest of a long run.
				prog.Log("%s FAILED: %v", label, err)
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", label, err))
				res = c.result()
				res.Skipped = "failed: " + err.Error()
			}
		}
		rep.Results = append(rep.Results, res)
		prog.Log("%s", summary(res))
	}
	ratios(rep)
	latencies(rep)
	prog.Log("\n%s", report.Table(rep))
	for _, r := range rep.Results {
		if r.PayloadMismatches > 0 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s %s %s: %d payloads arrived altered", r.Target, r.Legs, r.SRTP, r.PayloadMismatches))
		}
	}
	return rep, nil
}

// syncWriter serialises writes from several processes' output copiers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func orW(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// ratios fills in the Strait WebRTC results' CPU ratios to the baselines
// of the same run, at the same session count: plain <-> plain through the
// same node (same I/O mode) with the same plain port mode, and rtpengine
// with the same SRTP profile. A result the harness could not offer the
// asked rate for is compared with nothing: relays measured at different
// rates are not comparable.
func ratios(rep *report.Report) {
	for _, r := range rep.Results {
		if r.Target != report.TargetStrait || !comparable(r) {
			continue
		}
		for _, b := range rep.Results {
			if !comparable(b) || b.Sessions != r.Sessions {
				continue
			}
			switch {
			case b.Target == report.TargetStraitPlain && b.PlainPorts == r.PlainPorts && b.IO == r.IO && b.Node == r.Node:
				r.CPURatioToPlain = report.Ratio(r.NodeCPUnsPerPacket, b.NodeCPUnsPerPacket)
			case b.Target == report.TargetRtpengine && b.SRTP == r.SRTP:
				r.CPURatioToRtpengine = report.Ratio(r.NodeCPUnsPerPacket, b.NodeCPUnsPerPacket)
			}
		}
	}
	// With several node binaries: each case against the same case on the
	// first one (--node-bin A,B: B's figures over A's).
	var first string
	for _, r := range rep.Results {
		if r.Node != "" {
			first = r.Node
			break
		}
	}
	for _, r := range rep.Results {
		if r.Node == "" || r.Node == first || !comparable(r) {
			continue
		}
		for _, b := range rep.Results {
			if b.Node == first && comparable(b) && b.Target == r.Target && b.Legs == r.Legs &&
				b.SRTP == r.SRTP && b.PlainPorts == r.PlainPorts && b.IO == r.IO && b.Sessions == r.Sessions {
				r.CPURatioToFirstNode = report.Ratio(r.NodeCPUnsPerPacket, b.NodeCPUnsPerPacket)
				r.SyscallRatioToFirstNode = report.Ratio(r.SyscallsPerPacket, b.SyscallsPerPacket)
			}
		}
	}
}

// comparable reports whether r may be compared with other results: it was
// measured, at the rate asked for, by a relay that kept up.
func comparable(r *report.Result) bool {
	return r.Skipped == "" && !r.GeneratorLimited && !r.Saturated && !r.SinkLimited
}

// latencies fills in what each relay adds to the latency: the WebRTC
// results' (Strait's and rtpengine's) quantiles over the plain <-> plain
// baseline through Strait at the same session count (same node, I/O and
// plain port mode; rtpengine, per-leg only, against the first such
// baseline), and every relay's p99 over the harness-only case's.
func latencies(rep *report.Report) {
	sub := func(a, b *float64) *float64 {
		if a == nil || b == nil {
			return nil
		}
		return report.F(*a - *b)
	}
	for _, r := range rep.Results {
		if !comparable(r) || r.Target == report.TargetHarness {
			continue
		}
		for _, b := range rep.Results {
			if !comparable(b) || b.Sessions != r.Sessions {
				continue
			}
			if b.Target == report.TargetHarness && r.OverHarnessLatencyP99us == nil {
				r.OverHarnessLatencyP99us = sub(r.LatencyP99us, b.LatencyP99us)
			}
			if b.Target != report.TargetStraitPlain || b.PlainPorts != r.PlainPorts || r.AddedLatencyP99us != nil {
				continue
			}
			if r.Target == report.TargetRtpengine || (r.Target == report.TargetStrait && b.IO == r.IO && b.Node == r.Node) {
				r.AddedLatencyP50us = sub(r.LatencyP50us, b.LatencyP50us)
				r.AddedLatencyP99us = sub(r.LatencyP99us, b.LatencyP99us)
			}
		}
	}
}

// nodeLabel names the node binary path, the b-th of --node-bin, in
// results: its file name, and its position when names repeat.
func nodeLabel(b int, path string) string {
	return fmt.Sprintf("%d:%s", b, filepath.Base(path))
}

func summary(r *report.Result) string {
	f := func(p *float64, format string) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf(format, *p)
	}
	limited := ""
	if r.GeneratorLimited {
		limited = fmt.Sprintf(" GENERATOR-LIMITED (asked %.0f)", r.RequestedPPS)
	}
	target := r.Target
	if r.Node != "" {
		target += " " + r.Node
	}
	return fmt.Sprintf("  %-12s %-5s %-12s %-24s %-7s sessions %-5d delivered %8.0f pps%s  loss %.4f%%  p99 %s us  cpu %s ns/pkt  syscalls/pkt %s (own count %s)  allocs/pkt %s  setup %s/s",
		target, r.IO, r.Legs, r.SRTP, r.PlainPorts, r.Sessions, r.DeliveredPPS, limited, 100*r.LossRatio,
		f(r.LatencyP99us, "%.0f"), f(r.NodeCPUnsPerPacket, "%.0f"), f(r.SyscallsPerPacket, "%.3f"), f(r.NodeSyscallsPerPacket, "%.3f"),
		f(r.AllocsPerPacket, "%.4f"), f(r.SetupPerS, "%.0f"))
}

// raiseFileLimit lifts RLIMIT_NOFILE as far as allowed: 10 000 sessions
// take a socket per client leg here, and the node (a child, which inherits
// the limit) two per plain leg.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	want := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if want.Max < l.Max {
		want = syscall.Rlimit{Cur: l.Max, Max: l.Max}
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// fdsNeeded estimates the node's file descriptors for a case: a plain leg
// with ports of its own holds an RTP and an RTCP socket.
func fdsNeeded(k kind, sessions int) int {
	perSession := 0
	if k.portMode() == "per-leg" {
		perSession = 2
		if k.legs == legsPlain {
			perSession = 4
		}
	}
	return perSession*sessions + 1000 // shared ports, gRPC, metrics, slack
}

// fileLimit is the soft RLIMIT_NOFILE the node inherits.
func fileLimit() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 1024
	}
	return int(l.Cur)
}

// loadAvg is the machine's 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func machine() report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// Commit returns the git commit of the working tree, if any, marked
// "-dirty" when it has uncommitted changes.
func Commit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}
