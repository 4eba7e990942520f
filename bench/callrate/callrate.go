// Package callrate measures the calls per second the all-in-one strait
// carries: sipp (a third-party UAC, Debian's sip-tester) places calls at a
// fixed rate to strait's echo extension, each anchoring a dataplane
// session, holding it, and hanging up with BYE; strait runs as its own
// process, standalone, with its in-process dataplane node.
//
// What a run reports is what an operator sizes a control plane by: CPU
// time of the strait process per call (from /proc, over the whole run),
// the INVITE's and the BYE's response times as sipp saw them (p50, p99,
// max), retransmissions sipp had to make (a response later than 500 ms),
// failed calls, and strait's peak Go heap (sampled from its /metrics)
// and peak RSS. The machine's load average before and after is part of
// the report: on a shared machine it says how much the latencies mean.
package callrate

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strait-sbc/strait/bench/procstat"
)

//go:embed scenario.xml
var scenario []byte

// Config is one run.
type Config struct {
	// Rate is calls started per second; Duration how long they are
	// started for (Rate x Duration calls).
	Rate     int
	Duration time.Duration
	// Hold is each call's length between its ACK and its BYE.
	Hold time.Duration
	// StraitBin is the strait binary (default: built from this module).
	StraitBin string
	// SippBin is sipp (default: found on $PATH).
	SippBin string
	// StraitArgs are added to strait's command line.
	StraitArgs []string
	// Settle is how long after the last call the heap is read again
	// (HeapAfterMB); 0 is 35 s, a transaction's lifetime (64*T1) and
	// some; negative skips it.
	Settle time.Duration
	// Log gets strait's and sipp's own output; nil discards it.
	Log io.Writer
	// CPUProfile, when set, gets a CPU profile of strait over the time
	// calls are placed (its /debug/pprof/profile); HeapProfile a heap
	// profile taken as the last call is placed, when the heap is at its
	// largest (in-use and allocated space since start).
	CPUProfile  string
	HeapProfile string
	// Trace, when set, gets a runtime trace of strait (its
	// /debug/pprof/trace, for go tool trace) over TraceSeconds from the
	// middle of the time calls are placed (default 5 s).
	Trace        string
	TraceSeconds int
	// Wire captures strait's SIP port with dumpcap and reports strait's
	// own answer times from the kernel's timestamps (Result.Wire*).
	Wire bool
	// CompanionPID, when set, is a process that serves strait (the state
	// store's redis-server): its CPU is measured over the same window as
	// strait's (CompanionCPUPerCallMs), not over strait's start, settle
	// and drain as well.
	CompanionPID int
}

// Result is one run's figures.
type Result struct {
	Rate       int     `json:"rate"`
	Calls      int     `json:"calls"`
	Successful int     `json:"successful"`
	Failed     int     `json:"failed"`
	Retrans    int     `json:"retransmissions"`
	HoldS      float64 `json:"hold_s"`
	ElapsedS   float64 `json:"elapsed_s"`
	// CPUS is strait's user+system CPU time over the run; CPUPerCallMs
	// that divided by the calls placed.
	CPUS         float64 `json:"cpu_s"`
	CPUPerCallMs float64 `json:"cpu_per_call_ms"`
	// SippCPUPerCallMs is sipp's own CPU time per call: sipp shares the
	// machine with strait, and the two together must fit in its CPUs for
	// the response times to be strait's and not a queue for a CPU.
	SippCPUPerCallMs float64 `json:"sipp_cpu_per_call_ms"`
	// CompanionCPUPerCallMs is Config.CompanionPID's CPU time per call,
	// over the same window as CPUPerCallMs.
	CompanionCPUPerCallMs float64 `json:"companion_cpu_per_call_ms,omitempty"`
	// MachineBusy is the share of all the machine's CPUs busy while the
	// calls were placed (/proc/stat), and OthersCPUS the CPU time of
	// everything but strait and sipp in that time (other engineers'
	// builds on a shared machine): near 1 and large, the latencies say
	// more about the machine than about strait.
	MachineBusy float64 `json:"machine_busy"`
	OthersCPUS  float64 `json:"others_cpu_s"`
	// SyscallsPerCall is strait's system calls (every thread, perf's
	// raw_syscalls:sys_enter) while the calls were placed, per call, and
	// SyscallsByCall the datagram, file-write and wake-up ones among them
	// per call: counts a shared machine hardly moves. Absent where perf
	// cannot count (SyscallsNote says why).
	SyscallsPerCall float64            `json:"syscalls_per_call,omitempty"`
	SyscallsByCall  map[string]float64 `json:"syscalls_by_call,omitempty"`
	SyscallsNote    string             `json:"syscalls_note,omitempty"`
	// GCCycles is how many GC cycles strait ran while the calls were
	// placed (go_gc_duration_seconds_count).
	GCCycles float64 `json:"gc_cycles"`
	// Response times in milliseconds, as sipp measured them.
	InviteP50Ms float64 `json:"invite_p50_ms"`
	InviteP99Ms float64 `json:"invite_p99_ms"`
	InviteMaxMs float64 `json:"invite_max_ms"`
	ByeP50Ms    float64 `json:"bye_p50_ms"`
	ByeP99Ms    float64 `json:"bye_p99_ms"`
	// WireInvite* and WireBye* are strait's own times from a request to
	// its 200 (WireFirstP99Ms: to its first response to the INVITE), in
	// milliseconds, from a capture of its SIP port with the kernel's
	// timestamps (--wire): no sipp loop, no millisecond clock in them.
	// WireNote says why they are missing.
	WireInviteP50Ms float64 `json:"wire_invite_p50_ms,omitempty"`
	WireInviteP99Ms float64 `json:"wire_invite_p99_ms,omitempty"`
	WireInviteMaxMs float64 `json:"wire_invite_max_ms,omitempty"`
	WireFirstP99Ms  float64 `json:"wire_first_response_p99_ms,omitempty"`
	WireByeP99Ms    float64 `json:"wire_bye_p99_ms,omitempty"`
	WireRequests    int     `json:"wire_requests,omitempty"`
	WireNote        string  `json:"wire_note,omitempty"`
	// PeakHeapMB is the largest go_memstats_heap_inuse_bytes sampled
	// every 500 ms; PeakRSSMB the process's VmHWM.
	PeakHeapMB float64 `json:"peak_heap_mb"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	// HeapAfterMB is the heap in use once every call has ended and a
	// transaction lifetime (32 s) passed, read after a forced GC: what
	// finished calls leave.
	HeapAfterMB float64 `json:"heap_after_mb"`
	// HeapAfterNote says why no GC could be forced before HeapAfterMB was
	// read (an older strait without pprof): the figure then includes
	// garbage.
	HeapAfterNote string `json:"heap_after_note,omitempty"`
	// LoadBefore and LoadAfter are /proc/loadavg's first three fields.
	LoadBefore string   `json:"load_before"`
	LoadAfter  string   `json:"load_after"`
	Command    []string `json:"strait_command"`
	Sipp       []string `json:"sipp_command"`
}

// Run places the calls and measures them.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("callrate: rate and duration must be positive")
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 2 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	sipp := cfg.SippBin
	if sipp == "" {
		p, err := exec.LookPath("sipp")
		if err != nil {
			return nil, fmt.Errorf("callrate: sipp not found (apt install sip-tester): %w", err)
		}
		sipp = p
	}
	dir, err := os.MkdirTemp("", "strait-callrate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := cfg.StraitBin
	if bin == "" {
		bin = filepath.Join(dir, "strait")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/strait-sbc/strait/cmd/strait")
		build.Stdout, build.Stderr = log, log
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("callrate: building strait: %w", err)
		}
	}
	sipPort, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	// Enough RTP port pairs for every call up at once, twice over.
	up := int(float64(cfg.Rate)*(cfg.Hold.Seconds()+1)) * 2
	rtpCount := 2*max(up, 500) + 2
	rtpFirst, err := freeRange(rtpCount)
	if err != nil {
		return nil, err
	}
	webrtcFirst, err := freeRange(4)
	if err != nil {
		return nil, err
	}
	if webrtcFirst+4 > rtpFirst && webrtcFirst < rtpFirst+rtpCount {
		webrtcFirst = rtpFirst + rtpCount // overlapping draws: take the ports just above
	}
	args := []string{
		"--sip", fmt.Sprintf("127.0.0.1:%d", sipPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--rtp-ports", fmt.Sprintf("%d-%d", rtpFirst, rtpFirst+rtpCount-1),
		"--webrtc-ports", fmt.Sprintf("%d-%d", webrtcFirst, webrtcFirst+3),
		"--cdr-file", filepath.Join(dir, "cdr.jsonl"), "--options-interval", "0",
	}
	// Settings an older strait does not know are left out, so that a
	// build of an earlier commit can be measured the same way.
	help, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	for _, o := range [][]string{
		// One sipp user places every call: the per-user limits that stop
		// toll fraud would refuse the load.
		{"--max-calls-per-user", "0"}, {"--max-call-rate-per-user", "0"},
		// sipp sends from one address faster than a source may (the
		// flood bounds, --sip-rate), and holds more transactions than
		// the overload bound allows at a thousand calls a second.
		{"--sip-rate", "0"}, {"--max-sip-transactions", "0"},
		{"--data-dir", filepath.Join(dir, "data")},
	} {
		if strings.Contains(string(help), "-"+o[0][2:]+" ") {
			args = append(args, o...)
		}
	}
	args = append(args, cfg.StraitArgs...)
	res := &Result{Rate: cfg.Rate, HoldS: cfg.Hold.Seconds(), Command: append([]string{bin}, args...), LoadBefore: loadavg()}
	strait := exec.Command(bin, args...)
	strait.Stdout, strait.Stderr = log, log
	if err := strait.Start(); err != nil {
		return nil, fmt.Errorf("callrate: starting strait: %w", err)
	}
	defer func() {
		strait.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { strait.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			strait.Process.Kill()
			<-done
		}
	}()
	metrics := fmt.Sprintf("127.0.0.1:%d", httpPort)
	if err := waitListening(ctx, metrics, 30*time.Second); err != nil {
		return nil, fmt.Errorf("callrate: strait did not start: %w", err)
	}
	pid := strait.Process.Pid

	scen := filepath.Join(dir, "calls.xml")
	if err := os.WriteFile(scen, scenario, 0o644); err != nil {
		return nil, err
	}
	calls := int(float64(cfg.Rate) * cfg.Duration.Seconds())
	res.Calls = calls
	stat := filepath.Join(dir, "stat.csv")
	sargs := []string{fmt.Sprintf("127.0.0.1:%d", sipPort), "-sf", scen, "-s", "echo", "-i", "127.0.0.1",
		"-r", strconv.Itoa(cfg.Rate), "-rp", "1000", "-m", strconv.Itoa(calls),
		"-d", strconv.Itoa(int(cfg.Hold / time.Millisecond)), "-l", strconv.Itoa(up + cfg.Rate),
		"-trace_stat", "-stf", stat, "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
		"-timeout", strconv.Itoa(int(cfg.Duration.Seconds()+cfg.Hold.Seconds())+120) + "s", "-timeout_error",
		"-nostdin", "-max_socket", "1000"}
	res.Sipp = append([]string{sipp}, sargs...)
	sc := exec.CommandContext(ctx, sipp, sargs...)
	sc.Dir = dir
	sc.Stdout, sc.Stderr = io.Discard, log

	var peak float64
	var mu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := scrape(metrics); err == nil {
				mu.Lock()
				peak = math.Max(peak, m.Sum("go_memstats_heap_inuse_bytes"))
				mu.Unlock()
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	gc0 := gcCycles(metrics)
	mach0, machErr := readMachineCPU()
	cpu0, err := procstat.CPU(pid)
	if err != nil {
		return nil, err
	}
	comp0 := companionCPU(cfg.CompanionPID)
	counter, cerr := procstat.StartPerfSyscalls(pid)
	if cerr != nil {
		res.SyscallsNote = cerr.Error()
	}
	var wire *wireCapture
	if cfg.Wire {
		if wire, err = startCapture(ctx, dir, sipPort, log); err != nil {
			res.WireNote = err.Error()
		}
	}
	began := time.Now()
	profiled := startProfiles(ctx, metrics, cfg, log)
	sippErr := sc.Run()
	if wire != nil {
		if w, err := wire.stop(sipPort); err != nil {
			res.WireNote = err.Error()
		} else {
			res.WireInviteP50Ms, res.WireInviteP99Ms = quantile(w.invite, 0.5), quantile(w.invite, 0.99)
			res.WireInviteMaxMs, res.WireByeP99Ms = quantile(w.invite, 1), quantile(w.bye, 0.99)
			res.WireFirstP99Ms = quantile(w.firstInvite, 0.99)
			res.WireRequests = len(w.invite) + len(w.bye)
		}
	}
	if counter != nil {
		if n, err := counter.Stop(); err != nil {
			res.SyscallsNote = err.Error()
		} else if calls > 0 {
			res.SyscallsPerCall = float64(n.Total) / float64(calls)
			res.SyscallsByCall = map[string]float64{}
			for k, v := range n.ByCall {
				if v > 0 {
					res.SyscallsByCall[k] = float64(v) / float64(calls)
				}
			}
		}
	}
	res.ElapsedS = time.Since(began).Seconds()
	cpu1, err := procstat.CPU(pid)
	if err != nil {
		return nil, err
	}
	comp1 := companionCPU(cfg.CompanionPID)
	mach1, err := readMachineCPU()
	if machErr == nil && err == nil {
		res.MachineBusy = mach0.share(mach1)
	}
	res.GCCycles = gcCycles(metrics) - gc0
	var sippCPU time.Duration
	if ps := sc.ProcessState; ps != nil {
		sippCPU = ps.UserTime() + ps.SystemTime()
	}
	close(stopSampling)
	<-sampled
	<-profiled
	res.LoadAfter = loadavg()
	res.CPUS = (cpu1 - cpu0).Seconds()
	if calls > 0 {
		res.CPUPerCallMs = 1000 * res.CPUS / float64(calls)
		res.SippCPUPerCallMs = 1000 * sippCPU.Seconds() / float64(calls)
		res.CompanionCPUPerCallMs = 1000 * (comp1 - comp0).Seconds() / float64(calls)
	}
	res.OthersCPUS = max(0, res.MachineBusy*float64(runtime.NumCPU())*res.ElapsedS-res.CPUS-sippCPU.Seconds())
	mu.Lock()
	res.PeakHeapMB = peak / (1 << 20)
	mu.Unlock()
	if rss, err := peakRSS(pid); err == nil {
		res.PeakRSSMB = float64(rss) / (1 << 20)
	}
	if err := readStats(stat, res); err != nil {
		return res, fmt.Errorf("callrate: sipp statistics: %w (sipp: %v)", err, sippErr)
	}
	rtts, err := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	if err == nil && len(rtts) > 0 {
		if err := readRTT(rtts[0], res); err != nil {
			return res, err
		}
	}
	// What finished calls leave behind: wait out the transactions'
	// lifetime (Timer J, 64*T1) and look at the heap again.
	if cfg.Settle == 0 {
		cfg.Settle = 35 * time.Second
	}
	if cfg.Settle > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Settle):
		}
		// Nothing allocates once the calls are over, so no GC would run
		// by itself: ask for one (pprof's heap profile with gc=1), else
		// the heap read is the peak's garbage, not what is kept.
		if err := collectGarbage(metrics); err != nil {
			res.HeapAfterNote = err.Error()
		}
		if m, err := scrape(metrics); err == nil {
			res.HeapAfterMB = m.Sum("go_memstats_heap_inuse_bytes") / (1 << 20)
		}
	}
	if sippErr != nil && res.Failed == 0 {
		return res, fmt.Errorf("callrate: sipp: %w", sippErr)
	}
	return res, nil
}
