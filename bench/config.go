package bench

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/strait-sbc/strait/bench/webrtcclient"
	"github.com/strait-sbc/strait/dataplane/batchconn"
)

// Config is one run.
type Config struct {
	// Mode is one of the Mode constants.
	Mode string
	// Sessions per case (scale: the largest step). 0: the mode's default.
	Sessions int
	// SessionCounts, for cadence and setup, measures every case at each of
	// these session counts in turn (one run for a curve); it overrides
	// Sessions.
	SessionCounts []int
	// IO is the node's packet I/O: "uring", "mmsg", "auto" (the node's
	// choice) or "both" (a node of each, measured in the same run).
	IO string
	// Coalesce, if set, is the node's --coalesce.
	Coalesce time.Duration
	// HarnessIO is the harness's own packet I/O: "uring", "mmsg" or
	// "auto" (io_uring where the kernel allows it).
	HarnessIO string
	// SyscallWindow is the calibration window after each measurement in
	// which the relay's system calls are counted from outside (perf, or
	// strace): 0 means 2 s, negative skips it.
	SyscallWindow time.Duration
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
	// NodeBin may list several binaries, comma-separated: a node of each,
	// every case measured on each in turn (an A/B comparison in one run).
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
	// QuietSetup (cadence, setup) brings each case's sessions up with
	// only the packets that prove them (first media), and starts the
	// cadence once they are all up, instead of sending at the cadence rate
	// while later sessions come up. The window then measures the relays'
	// steady state without the setup's transient load: rtpengine abandons
	// a socket for good once it falls a second behind on it (see
	// rtpengine.Daemon.Strikes), which on 2 CPUs happens while 1 000
	// sessions come up at full media rate.
	QuietSetup bool
	// NodeTrace, if set, takes a Go execution trace of the node during
	// every Strait window (NodeTrace-N.trace, N the result's index) and
	// reports what the runtime's preemptions of its packet workers cost
	// (Result.NodeWorkerPreempt*). Tracing costs the node CPU: its CPU
	// figures are then not comparable with an untraced run's.
	NodeTrace string
	// NoHarnessBaseline leaves out the harness-only case (cadence and
	// setup): flows from harness socket to harness socket with no relay,
	// the latency floor every relayed figure is compared with.
	NoHarnessBaseline bool

	// Progress gets the live status line and notes (nil: quiet).
	Progress io.Writer `json:"-"`
	// Log gets the relays' own output (nil: discarded).
	Log io.Writer `json:"-"`
}

// summary is the configuration as the report records it.
// nodeBins are the node binaries to start: NodeBin split at commas, or
// one default.
func (c *Config) nodeBins() []string {
	if c.NodeBin == "" {
		return []string{""}
	}
	return strings.Split(c.NodeBin, ",")
}

func (c *Config) summary() map[string]any {
	return map[string]any{
		"mode": c.Mode, "sessions": c.Sessions, "session_counts": c.SessionCounts, "io": c.IO, "coalesce": c.Coalesce.String(), "harness_io": c.HarnessIO,
		"syscall_window": c.SyscallWindow.String(), "duration": c.Duration.String(), "codec": c.Codec,
		"srtp": c.SRTP, "plain_ports": c.PlainPorts, "peer": c.Peer, "node": c.Node, "node_bin": c.NodeBin, "workers": c.Workers, "relay_cpus": c.RelayCPUs,
		"concurrency": c.Concurrency, "scale_rate": c.ScaleRate, "warmup": c.Warmup.String(),
		"harness_baseline": !c.NoHarnessBaseline, "node_trace": c.NodeTrace, "quiet_setup": c.QuietSetup,
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
	if len(c.SessionCounts) > 0 {
		if c.Mode != ModeCadence && c.Mode != ModeSetup {
			return errors.New("several session counts: cadence and setup only")
		}
		for _, n := range c.SessionCounts {
			if n < 1 {
				return errors.New("--sessions: at least 1")
			}
		}
		c.Sessions = c.SessionCounts[0]
	}
	c.IO = orS(c.IO, "both")
	c.HarnessIO = orS(c.HarnessIO, "auto")
	if _, err := batchconn.ParseMode(c.HarnessIO); err != nil {
		return fmt.Errorf("--harness-io: %v", err)
	}
	if _, err := c.ioModes(); err != nil {
		return err
	}
	if c.SyscallWindow == 0 {
		c.SyscallWindow = 2 * time.Second
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

// counts are the session counts to measure each case at.
func (c *Config) counts() []int {
	if len(c.SessionCounts) > 0 {
		return c.SessionCounts
	}
	return []int{c.Sessions}
}

// uringUnavailable says why this host refuses io_uring (nil: it allows it);
// a variable for tests.
var uringUnavailable = batchconn.UringUnavailable

// ioModes are the nodes to start, by --io value.
func (c *Config) ioModes() ([]string, error) {
	switch c.IO {
	case "uring", "mmsg", "auto":
		return []string{c.IO}, nil
	case "both":
		return []string{"uring", "mmsg"}, nil
	}
	return nil, fmt.Errorf("--io %q: want uring, mmsg, auto or both", c.IO)
}

// startableIOModes are ioModes less io_uring where --io both meets a host
// that refuses it (a kernel setting or a container's seccomp profile): the
// run then measures mmsg and says why uring is missing, instead of failing.
// An explicit --io uring still fails there.
func (c *Config) startableIOModes() (modes []string, refused error) {
	modes, _ = c.ioModes()
	if c.IO != "both" {
		return modes, nil
	}
	if err := uringUnavailable(); err != nil {
		return []string{"mmsg"}, err
	}
	return modes, nil
}
