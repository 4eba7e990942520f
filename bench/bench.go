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
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
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

// Config is one run.
type Config struct {
	// Mode is one of the Mode constants.
	Mode string
	// Sessions per case (scale: the largest step). 0: the mode's default.
	Sessions int
	// Duration of the measured window (flood: of each step). 0: default.
	Duration time.Duration
	// Codec is "pcmu" (G.711, 160-byte payloads) or "opus" (80 bytes).
	Codec string
	// SRTP is "gcm", "cm80" or "both": the profiles the client legs offer.
	SRTP string
	// PlainPorts is "per-leg", "shared" or "both": the plain legs' port
	// mode on Strait (WebRTC legs always share a few ports).
	PlainPorts string
	// Peer is "rtpengine" or "none".
	Peer string
	// Node is grpc://HOST:PORT of a running node, with NodePID (and
	// NodeMetrics, default port+1); empty starts one from NodeBin (default:
	// strait-dataplane beside this executable or on $PATH, else built).
	Node        string
	NodePID     int
	NodeMetrics string
	NodeBin     string
	// Workers of a node the harness starts (0: the node's default).
	Workers int
	// RelayCPUs, if set, pins the relays the harness starts (Strait and
	// rtpengine alike) to these CPUs (a taskset list, e.g. "1"), so that a
	// flood can overload the relay before the generator runs out of CPU.
	RelayCPUs string
	// RtpengineBin overrides where rtpengine is looked for.
	RtpengineBin string
	// Concurrency of session setup.
	Concurrency int
	// FloodSteps bounds the flood search (0: 12 steps).
	FloodSteps int
	// ScaleRate is the aggregate packet rate of every scale step.
	ScaleRate float64
	// Warmup runs media before each window.
	Warmup time.Duration
	// SetupTimeout bounds one session's setup.
	SetupTimeout time.Duration
	// CPUProfile, if set, saves a CPU profile of the node during the
	// first Strait WebRTC window to this file.
	CPUProfile string

	// Progress gets the live status line and notes (nil: quiet).
	Progress io.Writer `json:"-"`
	// Log gets the relays' own output (nil: discarded).
	Log io.Writer `json:"-"`
}

// summary is the configuration as the report records it.
func (c *Config) summary() map[string]any {
	return map[string]any{
		"mode": c.Mode, "sessions": c.Sessions, "duration": c.Duration.String(), "codec": c.Codec,
		"srtp": c.SRTP, "plain_ports": c.PlainPorts, "peer": c.Peer, "node": c.Node, "workers": c.Workers, "relay_cpus": c.RelayCPUs,
		"concurrency": c.Concurrency, "scale_rate": c.ScaleRate, "warmup": c.Warmup.String(),
	}
}

func (c *Config) setDefaults() error {
	switch c.Mode {
	case ModeCadence:
		c.Sessions = or(c.Sessions, 50)
		c.Duration = orD(c.Duration, 2*time.Second)
	case ModeFlood:
		c.Sessions = or(c.Sessions, 20)
		c.Duration = orD(c.Duration, time.Second)
	case ModeSetup:
		c.Sessions = or(c.Sessions, 100)
		c.Duration = orD(c.Duration, time.Second)
	case ModeScale:
		c.Sessions = or(c.Sessions, 1000)
		c.Duration = orD(c.Duration, 2*time.Second)
	default:
		return fmt.Errorf("unknown mode %q: want cadence, flood, setup or scale", c.Mode)
	}
	if c.ScaleRate <= 0 {
		c.ScaleRate = 10000
	}
	c.Codec = orS(c.Codec, "pcmu")
	c.SRTP = orS(c.SRTP, "both")
	c.PlainPorts = orS(c.PlainPorts, "per-leg")
	c.Peer = orS(c.Peer, "rtpengine")
	c.Concurrency = or(c.Concurrency, 16)
	c.FloodSteps = or(c.FloodSteps, 12)
	if c.Warmup == 0 {
		c.Warmup = 500 * time.Millisecond
	}
	c.SetupTimeout = orD(c.SetupTimeout, 30*time.Second)
	if c.Codec != "pcmu" && c.Codec != "opus" {
		return fmt.Errorf("--codec %q: want pcmu or opus", c.Codec)
	}
	if c.Peer != "rtpengine" && c.Peer != "none" {
		return fmt.Errorf("--peer %q: want rtpengine or none", c.Peer)
	}
	if _, err := c.profiles(); err != nil {
		return err
	}
	if _, err := c.portModes(); err != nil {
		return err
	}
	if c.Sessions < 1 {
		return errors.New("--sessions: at least 1")
	}
	return nil
}

func or(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func orD(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func orS(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func (c *Config) profiles() ([]webrtcclient.Profile, error) {
	switch c.SRTP {
	case "gcm":
		return []webrtcclient.Profile{webrtcclient.GCM}, nil
	case "cm80":
		return []webrtcclient.Profile{webrtcclient.CM80}, nil
	case "both":
		return []webrtcclient.Profile{webrtcclient.GCM, webrtcclient.CM80}, nil
	}
	return nil, fmt.Errorf("--srtp %q: want gcm, cm80 or both", c.SRTP)
}

func (c *Config) portModes() ([]bool, error) {
	switch c.PlainPorts {
	case "per-leg":
		return []bool{false}, nil
	case "shared":
		return []bool{true}, nil
	case "both":
		return []bool{false, true}, nil
	}
	return nil, fmt.Errorf("--plain-ports %q: want per-leg, shared or both", c.PlainPorts)
}

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
	rep := &report.Report{Mode: cfg.Mode, Date: time.Now().UTC(), Machine: machine(), Config: cfg.summary(), Failures: []string{}}

	codec := rtpgen.PCMU
	if cfg.Codec == "opus" {
		codec = rtpgen.Opus
	}
	engine, err := rtpgen.New(rtpgen.Options{Socket: batchconn.Options{RecvBuffer: 4 << 20, SendBuffer: 4 << 20}})
	if err != nil {
		return nil, err
	}
	defer engine.Close()
	ident, err := webrtcclient.NewIdentity()
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: &cfg, engine: engine, ident: ident, codec: codec, progress: prog, legs: map[*webrtcclient.Leg]bool{}}
	cctx, stopConsent := context.WithCancel(ctx)
	defer stopConsent()
	go h.consent(cctx)

	var node *straitNode
	if cfg.Node != "" {
		node, err = attachNode(ctx, cfg.Node, cfg.NodePID, cfg.NodeMetrics)
	} else {
		bin, cleanup, berr := nodeBinary(cfg.NodeBin, orW(cfg.Progress))
		if berr != nil {
			return nil, berr
		}
		defer cleanup()
		node, err = startNode(ctx, bin, cfg.Workers, cfg.RelayCPUs, logw)
	}
	if err != nil {
		return nil, err
	}
	defer node.close()
	strait := &straitRelay{n: node, h: h}

	profiles, _ := cfg.profiles()
	modes, _ := cfg.portModes()
	type job struct {
		r relay
		k kind
	}
	var jobs []job
	for _, shared := range modes {
		for i, p := range profiles {
			jobs = append(jobs, job{strait, kind{legs: legsWebRTC, profile: p, shared: shared}})
			if i == 0 {
				// The plain baseline runs between the profiles, so that
				// drift in the machine's load hits both alike.
				jobs = append(jobs, job{strait, kind{legs: legsPlain, shared: shared}})
			}
		}
	}
	var rtpe *rtpengineRelay
	if cfg.Peer == "rtpengine" {
		bin, err := rtpengine.Binary(cfg.RtpengineBin)
		var d *rtpengine.Daemon
		if err == nil {
			d, err = rtpengine.Start(ctx, rtpengine.Options{Binary: bin, Interface: rtpengineIP, PortMin: 10000, PortMax: 60000,
				Threads: runtime.NumCPU(), CPUs: cfg.RelayCPUs, Log: logw})
		}
		if err != nil {
			prog.Log("rtpengine baseline skipped: %v", err)
			for _, p := range profiles {
				rep.Results = append(rep.Results, &report.Result{Target: report.TargetRtpengine, Mode: cfg.Mode, Legs: legsWebRTC,
					SRTP: p.Name, PlainPorts: "per-leg", Sessions: cfg.Sessions, Skipped: err.Error(), NodeDrops: map[string]uint64{}})
			}
		} else {
			defer d.Close()
			rtpe = &rtpengineRelay{d: d, h: h}
			for _, p := range profiles {
				jobs = append(jobs, job{rtpe, kind{legs: legsWebRTC, profile: p}})
			}
		}
	}

	profiled := cfg.CPUProfile == ""
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		label := fmt.Sprintf("%s %s", j.r.target(j.k), j.k)
		c := &runCase{h: h, r: j.r, k: j.k, label: label, rep: rep}
		if !profiled && j.r == relay(strait) && j.k.legs == legsWebRTC {
			c.profile = cfg.CPUProfile
			c.metrics = node.metrics
			profiled = true
		}
		if need, limit := fdsNeeded(j.k, cfg.Sessions), fileLimit(); j.r == relay(strait) && j.k.legs == legsPlain && need > limit {
			// A baseline this machine cannot hold is skipped, and says why:
			// the run's other figures stand on their own.
			prog.Done()
			reason := fmt.Sprintf("needs about %d file descriptors for %d sessions, RLIMIT_NOFILE is %d here", need, cfg.Sessions, limit)
			prog.Log("%s skipped: %s", label, reason)
			rep.Results = append(rep.Results, &report.Result{Target: j.r.target(j.k), Mode: cfg.Mode, Legs: j.k.legs, PlainPorts: j.k.portMode(),
				Sessions: cfg.Sessions, Skipped: reason, NodeDrops: map[string]uint64{}})
			continue
		}
		res, err := c.run(ctx)
		prog.Done()
		if err != nil {
			if j.r == relay(rtpe) {
				// The incumbent could not do this case (e.g. a profile it
				// does not negotiate): skipped, said so, not a pass.
				prog.Log("%s skipped: %v", label, err)
				res = &report.Result{Target: report.TargetRtpengine, Mode: cfg.Mode, Legs: j.k.legs, SRTP: j.k.profile.Name,
					PlainPorts: j.k.portMode(), Sessions: cfg.Sessions, Skipped: err.Error(), NodeDrops: map[string]uint64{}}
			} else {
				return rep, fmt.Errorf("%s: %w", label, err)
			}
		}
		rep.Results = append(rep.Results, res)
		prog.Log("%s", summary(res))
	}
	ratios(rep)
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
// of the same run: plain <-> plain with the same plain port mode, and
// rtpengine with the same SRTP profile.
func ratios(rep *report.Report) {
	for _, r := range rep.Results {
		if r.Target != report.TargetStrait || r.Skipped != "" {
			continue
		}
		for _, b := range rep.Results {
			if b.Skipped != "" {
				continue
			}
			switch {
			case b.Target == report.TargetStraitPlain && b.PlainPorts == r.PlainPorts:
				r.CPURatioToPlain = report.Ratio(r.NodeCPUnsPerPacket, b.NodeCPUnsPerPacket)
			case b.Target == report.TargetRtpengine && b.SRTP == r.SRTP:
				r.CPURatioToRtpengine = report.Ratio(r.NodeCPUnsPerPacket, b.NodeCPUnsPerPacket)
			}
		}
	}
}

func summary(r *report.Result) string {
	f := func(p *float64, format string) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf(format, *p)
	}
	return fmt.Sprintf("  %-12s %-12s %-24s %-7s sessions %-5d delivered %8.0f pps  loss %.4f%%  p99 %s us  cpu %s ns/pkt  allocs/pkt %s  setup %s/s",
		r.Target, r.Legs, r.SRTP, r.PlainPorts, r.Sessions, r.DeliveredPPS, 100*r.LossRatio,
		f(r.LatencyP99us, "%.0f"), f(r.NodeCPUnsPerPacket, "%.0f"), f(r.AllocsPerPacket, "%.4f"), f(r.SetupPerS, "%.0f"))
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
