package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/strait-sbc/strait/bench/callrate"
)

// runCalls is `strait-bench calls`: sipp places calls at a fixed rate to
// the all-in-one strait's echo extension (see bench/callrate).
func runCalls(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strait-bench calls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg callrate.Config
	var out, logPath, extra, stores string
	var repeat int
	fs.IntVar(&cfg.Rate, "rate", 300, "calls started per second")
	fs.DurationVar(&cfg.Duration, "duration", 15*time.Second, "how long calls are started for (rate x duration calls)")
	fs.DurationVar(&cfg.Hold, "hold", 2*time.Second, "each call's length between ACK and BYE")
	fs.StringVar(&cfg.StraitBin, "strait-bin", "", "strait binary (default: built from this module)")
	fs.StringVar(&cfg.SippBin, "sipp-bin", "", "sipp binary (default: on $PATH)")
	fs.StringVar(&extra, "strait-args", "", "more strait flags, space-separated")
	fs.DurationVar(&cfg.Settle, "settle", 0, "after the last call, wait this long and read the heap again (default 35s: a transaction's lifetime; negative: skip)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "save a CPU profile of strait over the time calls are placed")
	fs.StringVar(&cfg.HeapProfile, "heapprofile", "", "save a heap profile of strait as the last call is placed")
	fs.StringVar(&cfg.Trace, "trace", "", "save a runtime trace of strait (go tool trace) over --trace-seconds in the middle of the calls")
	fs.IntVar(&cfg.TraceSeconds, "trace-seconds", 5, "with --trace: how long to trace")
	fs.BoolVar(&cfg.Wire, "wire", false, "capture strait's SIP port (dumpcap) and report its own answer times from the kernel's timestamps (wire_*)")
	fs.StringVar(&out, "out", "", "also write the JSON report to this file")
	fs.StringVar(&logPath, "log", "", "append strait's and sipp's own output to this file")
	fs.StringVar(&stores, "state", "", "state stores to compare, memory,embedded,redis: the run once per store (redis: a redis-server started here), then a table of setup rate and CPU per call side by side")
	fs.IntVar(&repeat, "repeat", 1, "with --state: runs per store, stores taking turns (medians are reported)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg.StraitArgs = strings.Fields(extra)
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "strait-bench:", err)
			return 2
		}
		defer f.Close()
		cfg.Log = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if stores != "" {
		list := strings.Split(stores, ",")
		if err := validStores(list); err != nil {
			fmt.Fprintln(stderr, "strait-bench:", err)
			return 2
		}
		return compareStores(ctx, cfg, list, repeat, out, stdout, stderr)
	}
	res, err := callrate.Run(ctx, cfg)
	if res != nil {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(stdout, string(b))
		if out != "" {
			os.WriteFile(out, append(b, '\n'), 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "strait-bench:", err)
		return 1
	}
	if res.Failed > 0 || res.Successful < res.Calls {
		fmt.Fprintf(stderr, "strait-bench: %d of %d calls failed\n", res.Calls-res.Successful, res.Calls)
		return 1
	}
	return 0
}

// compareStores is `strait-bench calls --state ...`: the JSON of every run
// to stdout (and --out), the table to stderr.
func compareStores(ctx context.Context, cfg callrate.Config, stores []string, repeat int, out string, stdout, stderr io.Writer) int {
	runs, err := runStores(ctx, cfg, stores, max(repeat, 1), stderr)
	b, _ := json.MarshalIndent(runs, "", "  ")
	fmt.Fprintln(stdout, string(b))
	if out != "" {
		os.WriteFile(out, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "strait-bench:", err)
		return 1
	}
	fmt.Fprint(stderr, storeTable(runs))
	for _, sr := range runs {
		for _, r := range sr.Runs {
			if r.Failed > 0 || r.Successful < r.Calls {
				fmt.Fprintf(stderr, "strait-bench: state %s: %d of %d calls failed\n", sr.Store, r.Calls-r.Successful, r.Calls)
				return 1
			}
		}
	}
	return 0
}
