// Command strait-bench measures a Strait dataplane node against baselines
// measured in the same run: plain RTP through the same node, and rtpengine
// doing the same WebRTC <-> plain work.
//
//	strait-bench --version
//	strait-bench calls [--rate 1000] [--duration 15s] [--hold 2s] [--strait-bin BIN]
//	strait-bench cadence|flood|setup|scale [--sessions N] [--duration 10s]
//	    [--codec pcmu|opus] [--srtp gcm|cm80|both] [--plain-ports per-leg|shared|both]
//	    [--peer rtpengine|none] [--node grpc://HOST:PORT --node-pid PID]
//	    [--out FILE.json] [--plot FILE.svg]
//
// The JSON report goes to stdout (and --out), a live progress line to
// stderr. The exit status is 1 when the run failed (an altered payload, a
// session that did not come up), 2 for a usage error. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strait-sbc/strait/bench"
	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/internal/buildinfo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, buildinfo.Read().String("strait-bench"))
		return 0
	}
	if len(args) > 0 && args[0] == "calls" {
		return runCalls(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("strait-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: strait-bench cadence|flood|setup|scale [flags], or strait-bench calls [flags] (see -h after it)")
		fs.PrintDefaults()
	}
	var cfg bench.Config
	var out, plot, relayLog, sessions string
	var quiet bool
	fs.StringVar(&sessions, "sessions", "", "sessions per case; scale: the largest step (default: cadence 50, flood 20, setup 100, scale 1000); cadence and setup take a list, 200,500,1000, and measure every case at each")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measured window; flood: each step (default: cadence 2s, flood 1s, setup 1s, scale 2s per step)")
	fs.StringVar(&cfg.Codec, "codec", "pcmu", "pcmu (160-byte payloads) or opus (80 bytes)")
	fs.StringVar(&cfg.SRTP, "srtp", "both", "SRTP profile of the WebRTC legs: gcm, cm80 or both")
	fs.StringVar(&cfg.PlainPorts, "plain-ports", "per-leg", "Strait's plain legs: per-leg, shared or both")
	fs.StringVar(&cfg.Peer, "peer", "rtpengine", "incumbent baseline: rtpengine (skipped when not installed) or none")
	fs.StringVar(&cfg.Node, "node", "", "use a running node, grpc://HOST:PORT (with --node-pid); default: start one")
	fs.IntVar(&cfg.NodePID, "node-pid", 0, "process id of --node (its CPU time is read from /proc)")
	fs.StringVar(&cfg.NodeMetrics, "node-metrics", "", "metrics address of --node (default: its gRPC port + 1)")
	fs.StringVar(&cfg.NodeBin, "node-bin", "", "strait-dataplane binary to start (default: beside strait-bench, on $PATH, or built); A,B starts a node of each and measures every case on both in turn (cpu_ratio_to_first_node)")
	fs.IntVar(&cfg.Workers, "workers", 0, "packet workers of the node it starts (default: one per CPU)")
	fs.StringVar(&cfg.IO, "io", "both", "the node's packet I/O: uring, mmsg, auto, or both (a node of each, in the same run)")
	fs.DurationVar(&cfg.Coalesce, "coalesce", 0, "the node's --coalesce (default: the node's)")
	fs.StringVar(&cfg.HarnessIO, "harness-io", "auto", "the harness's own packet I/O: uring, mmsg or auto")
	fs.DurationVar(&cfg.SyscallWindow, "syscall-window", 2*time.Second, "window after each measurement in which the relays' system calls are counted with perf or strace (negative: skip)")
	fs.StringVar(&cfg.RelayCPUs, "relay-cpus", "", "pin the relays it starts to these CPUs (taskset list, e.g. 1) so that flood can overload them")
	fs.StringVar(&cfg.RtpengineBin, "rtpengine-bin", "", "rtpengine binary (default: found on $PATH)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "sessions set up at once")
	fs.Float64Var(&cfg.ScaleRate, "scale-rate", 10000, "scale: aggregate packets/s at every step")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "media before each window (default 500ms)")
	fs.StringVar(&cfg.NodeTrace, "node-trace", "", "take a Go execution trace of the node in every Strait window (PREFIX-N.trace) and report how often the runtime preempted its packet workers and how long each preemption kept them off (tracing costs the node CPU)")
	fs.BoolVar(&cfg.QuietSetup, "quiet-setup", false, "cadence, setup: bring sessions up with only their first packets and start the cadence once all are up (the relays' steady state without the setup's transient load, which makes rtpengine abandon sockets)")
	fs.BoolVar(&cfg.NoHarnessBaseline, "no-harness-baseline", false, "cadence, setup: leave out the harness-only case (no relay: the latency floor relayed figures are compared with)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "save a CPU profile of the node during the first Strait WebRTC window")
	fs.StringVar(&relayLog, "relay-log", "", "append the relays' own output (node and rtpengine logs, crashes) to this file")
	fs.StringVar(&out, "out", "", "also write the JSON report to this file")
	fs.StringVar(&plot, "plot", "", "draw throughput, CPU per packet and latency to this .svg or .png")
	fs.BoolVar(&quiet, "quiet", false, "no progress line")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return 0
		}
		fs.Usage()
		return 2
	}
	cfg.Mode = args[0]
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	for _, f := range strings.Split(sessions, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fmt.Fprintf(stderr, "strait-bench: --sessions %q: %v\n", sessions, err)
			return 2
		}
		cfg.SessionCounts = append(cfg.SessionCounts, n)
	}
	if len(cfg.SessionCounts) == 1 {
		cfg.Sessions, cfg.SessionCounts = cfg.SessionCounts[0], nil
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "strait-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if !quiet {
		cfg.Progress = stderr
	}
	if relayLog != "" {
		f, err := os.OpenFile(relayLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "strait-bench:", err)
			return 2
		}
		defer f.Close()
		cfg.Log = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if rep == nil {
		fmt.Fprintln(stderr, "strait-bench:", err)
		return 2
	}
	rep.Commit = bench.Commit()
	rep.Command = "strait-bench " + strings.Join(args, " ")
	if err != nil {
		rep.Failures = append(rep.Failures, err.Error())
	}
	rep.WriteJSON(stdout)
	if out != "" {
		if err := rep.WriteFile(out); err != nil {
			fmt.Fprintln(stderr, "strait-bench:", err)
			return 1
		}
	}
	if plot != "" {
		if err := report.Plot(rep, plot); err != nil {
			fmt.Fprintln(stderr, "strait-bench: plot:", err)
			return 1
		}
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintln(stderr, "strait-bench: FAILED:", strings.Join(rep.Failures, "; "))
		return 1
	}
	return 0
}
