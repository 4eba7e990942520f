// Package report holds what strait-bench prints: one Result per measured
// target (Strait, and each baseline measured in the same run), the ratios
// between them, a live progress line, and a plot.
//
// A field that does not apply to a target (allocations of a C daemon,
// ratios without a baseline) is null in JSON, never left out, so that
// scripts can rely on every key being there.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Targets.
const (
	TargetStrait      = "strait"       // WebRTC <-> plain through a Strait node
	TargetStraitPlain = "strait-plain" // baseline 1: plain <-> plain, same node
	TargetRtpengine   = "rtpengine"    // baseline 2: WebRTC <-> plain through rtpengine
	// TargetHarness is no relay: harness socket to harness socket, the
	// latency floor of the harness itself (its CPU figures are the
	// harness's own).
	TargetHarness = "harness"
)

// Result is the measurement of one target in one configuration.
type Result struct {
	Target string `json:"target"`
	Mode   string `json:"mode"`
	// Legs is "webrtc-plain" or "plain-plain".
	Legs string `json:"legs"`
	// SRTP is the profile on the WebRTC leg (empty for plain-plain).
	SRTP string `json:"srtp"`
	// PlainPorts is the plain legs' port mode on the relay: "per-leg" or
	// "shared".
	PlainPorts string `json:"plain_ports"`
	// IO is a Strait node's packet I/O ("uring" or "mmsg"); empty for
	// rtpengine.
	IO string `json:"io"`
	// Node names the node binary (its position and file name in
	// --node-bin) when a run compares several; empty otherwise.
	Node string `json:"node,omitempty"`
	// Skipped says why the target was not measured (e.g. rtpengine not
	// installed); a skipped target is not a pass.
	Skipped string `json:"skipped,omitempty"`

	Sessions  int     `json:"sessions"`
	DurationS float64 `json:"duration_s"`

	// RequestedPPS is the rate the harness was asked to offer (cadence
	// and scale); OfferedPPS what it did.
	RequestedPPS      float64  `json:"requested_pps"`
	OfferedPPS        float64  `json:"offered_pps"`
	DeliveredPPS      float64  `json:"delivered_pps"`
	LossRatio         float64  `json:"loss_ratio"`
	PayloadMismatches uint64   `json:"payload_mismatches"`
	LatencyP50us      *float64 `json:"latency_p50_us"`
	LatencyP99us      *float64 `json:"latency_p99_us"`
	JitterUs          *float64 `json:"jitter_us"`
	// AddedLatencyP50us and AddedLatencyP99us (Strait WebRTC results and
	// rtpengine): this result's latency quantile less the plain <-> plain
	// baseline's through Strait in the same run, at the same session
	// count (same node, I/O and plain port mode; rtpengine: per-leg, the
	// first node): the latency SRTP and the WebRTC leg add, issue 12's
	// figure. Null without that baseline, or when either side was
	// generator-limited or saturated.
	AddedLatencyP50us *float64 `json:"added_latency_p50_us"`
	AddedLatencyP99us *float64 `json:"added_latency_p99_us"`
	// OverHarnessLatencyP99us (every relay result): the p99 less the
	// harness-only case's (no relay, same session count, same run): what
	// the relay adds as a whole, the harness's own scheduling taken out.
	OverHarnessLatencyP99us *float64 `json:"over_harness_latency_p99_us"`
	// HarnessCPUCores is the harness process's CPU time per second over
	// the window (generator, sink, SRTP, checks): with the relay's
	// NodeCPUCores, whether both fit in the machine.
	HarnessCPUCores *float64 `json:"harness_cpu_cores"`
	// NodeRunqWait and HarnessRunqWait: how long the relay's threads and
	// the harness's waited on a run queue, runnable but not running, per
	// second of the window (summed over threads, so it can exceed 1;
	// /proc/PID/task/*/schedstat). What the machine's contention added to
	// the latency: a wait there holds every packet the thread had or was
	// about to get.
	NodeRunqWait    *float64 `json:"node_runq_wait_s_per_s"`
	HarnessRunqWait *float64 `json:"harness_runq_wait_s_per_s"`
	// NodeSlicesPerPacket: the times the relay's threads were put on a
	// CPU (wake-ups, and returns after a preemption) in the window, per
	// packet forwarded: what wake-up batching saves, as a count.
	NodeSlicesPerPacket *float64 `json:"node_sched_slices_per_packet"`
	// NodeWorkerPreempt* (Strait, with --node-trace): from a Go execution
	// trace of the node over the window, how often the runtime preempted
	// each packet worker (per second), how long a preemption kept it from
	// running (p50, p99: a locked worker's preemption is a hand-off through
	// another thread, two wake-ups), and the share of the workers' time
	// that took. Datagrams wait in the kernel meanwhile.
	NodeWorkerPreemptPerS  *float64 `json:"node_worker_preemptions_per_s,omitempty"`
	NodeWorkerPreemptP50us *float64 `json:"node_worker_preempt_off_p50_us,omitempty"`
	NodeWorkerPreemptP99us *float64 `json:"node_worker_preempt_off_p99_us,omitempty"`
	NodeWorkerPreemptShare *float64 `json:"node_worker_preempt_share,omitempty"`
	NodeTraceFile          string   `json:"node_trace_file,omitempty"`
	// Saturated means the harness offered the rate asked for but the
	// relay lost 1% or more of it (or stopped serving flows): the relay
	// could not keep up on this machine. Such a result is not compared
	// (ratios and added latency null); SaturatedNote says what it
	// delivered and, where the relay's log tells, why.
	Saturated bool `json:"relay_saturated"`
	// SinkLimited means the same loss with a relay that counted its own
	// packets and forwarded what it was offered: they were lost or late
	// (beyond the drain wait) after it, in the harness. Not compared
	// either.
	SinkLimited   bool   `json:"sink_limited"`
	SaturatedNote string `json:"saturated_note,omitempty"`

	// PacketsForwarded is the relay's count of RTP packets sent in the
	// window (Strait: its packets_total{direction="out"}; rtpengine: what
	// the harness received).
	PacketsForwarded   uint64   `json:"packets_forwarded"`
	NodeCPUnsPerPacket *float64 `json:"node_cpu_ns_per_packet"`
	NodeCPUCores       *float64 `json:"node_cpu_cores"`
	NodeRSSBytes       *int64   `json:"node_rss_bytes"`
	BytesPerSession    *float64 `json:"bytes_per_session"`
	// BytesPerSessionBasis says what BytesPerSession measures.
	BytesPerSessionBasis string   `json:"bytes_per_session_basis"`
	AllocsPerPacket      *float64 `json:"allocs_per_packet"`

	// SyscallsPerPacket is every system call of the relay process (all
	// threads) per packet forwarded, counted from outside in a calibration
	// window right after the measured one (SyscallsMethod says how); the
	// same method for every target. SyscallsByCall itemises it per packet
	// for the calls of packet I/O and wake-ups.
	SyscallsPerPacket *float64           `json:"syscalls_per_packet"`
	SyscallsMethod    string             `json:"syscalls_method"`
	SyscallsByCall    map[string]float64 `json:"syscalls_by_call"`
	// NodeSyscallsPerPacket is Strait's own count of its packet workers'
	// I/O system calls per packet forwarded, over the measured window, by
	// call in NodeSyscallsByCall; DatagramsPerRound is what a worker
	// received per wake-up.
	NodeSyscallsPerPacket *float64           `json:"node_syscalls_per_packet"`
	NodeSyscallsByCall    map[string]float64 `json:"node_syscalls_by_call"`
	DatagramsPerRound     *float64           `json:"datagrams_per_round"`
	// NodeHoldP50us and NodeHoldP99us (Strait): quantiles of how long the
	// node's workers held a datagram, from their round's wake-up to its
	// sends going to the kernel (strait_dataplane_hold_seconds; bucket
	// upper bounds, powers of two µs): the relay's own share of the
	// latency, the rest being the wait for the worker to be scheduled and
	// the kernel's delivery.
	NodeHoldP50us *float64 `json:"node_hold_p50_us,omitempty"`
	NodeHoldP99us *float64 `json:"node_hold_p99_us,omitempty"`

	SetupPerS      *float64 `json:"setup_per_s"`
	SetupP50ms     *float64 `json:"setup_p50_ms"`
	SetupP99ms     *float64 `json:"setup_p99_ms"`
	HandshakeP50ms *float64 `json:"handshake_p50_ms"`
	HandshakeP99ms *float64 `json:"handshake_p99_ms"`
	// NodeCPUusPerSetup is the relay's CPU time per session set up.
	NodeCPUusPerSetup *float64 `json:"node_cpu_us_per_setup"`

	// Drops the relay counted in the window, by reason (Strait only).
	NodeDrops map[string]uint64 `json:"node_drops"`
	// GeneratorSendDrops are packets the harness's own sockets refused.
	GeneratorSendDrops uint64 `json:"generator_send_drops"`
	// FlowsStarved counts flows that sent in the window and got nothing
	// through (a relay that stopped serving a socket).
	FlowsStarved int `json:"flows_starved"`

	// GeneratorLimited means the harness could not offer the rate it was
	// asked for on this machine (cadence, scale: under 97% of
	// RequestedPPS; flood: it could not offer more than the reported rate,
	// the relay's limit is higher). Such a result is not compared with
	// others (its ratios are null): relays at different rates are not
	// comparable.
	GeneratorLimited bool `json:"generator_limited"`
	// Overload (flood): the first failing step's offered rate, the drops
	// the relay counted there, and flows it did not serve at all.
	OverloadOfferedPPS   *float64          `json:"overload_offered_pps"`
	OverloadDrops        map[string]uint64 `json:"overload_node_drops"`
	OverloadFlowsStarved *int              `json:"overload_flows_starved"`

	// Ratios of this result's node CPU per packet to the baselines' in the
	// same run, same packets (Strait WebRTC results only).
	CPURatioToPlain     *float64 `json:"cpu_ratio_to_plain"`
	CPURatioToRtpengine *float64 `json:"cpu_ratio_to_rtpengine"`
	// CPURatioToFirstNode and SyscallRatioToFirstNode (--node-bin A,B):
	// this result's CPU and system calls per packet over the same case's
	// on the first binary, in the same run.
	CPURatioToFirstNode     *float64 `json:"cpu_ratio_to_first_node,omitempty"`
	SyscallRatioToFirstNode *float64 `json:"syscall_ratio_to_first_node,omitempty"`

	// Steps are the flood search's or scale's individual measurements.
	Steps []Step `json:"steps,omitempty"`
	// Latency is the latency distribution (bucket upper bound in µs,
	// count), for plots.
	Latency [][2]float64 `json:"latency_histogram,omitempty"`
}

// Step is one rate (flood) or session count (scale) of a search.
type Step struct {
	Sessions           int      `json:"sessions"`
	RequestedPPS       float64  `json:"requested_pps"`
	GeneratorLimited   bool     `json:"generator_limited"`
	OfferedPPS         float64  `json:"offered_pps"`
	DeliveredPPS       float64  `json:"delivered_pps"`
	LossRatio          float64  `json:"loss_ratio"`
	NodeCPUnsPerPacket *float64 `json:"node_cpu_ns_per_packet"`
	AllocsPerPacket    *float64 `json:"allocs_per_packet"`
	SyscallsPerPacket  *float64 `json:"syscalls_per_packet"`
	NodeSyscallsPerPkt *float64 `json:"node_syscalls_per_packet"`
	BytesPerSession    *float64 `json:"bytes_per_session"`
	NodeRSSBytes       *int64   `json:"node_rss_bytes"`
	LatencyP99us       *float64 `json:"latency_p99_us"`
	FlowsStarved       int      `json:"flows_starved"`
	NodeDrops          uint64   `json:"node_drops"`
	Pass               bool     `json:"pass"`
}

// Report is strait-bench's output.
type Report struct {
	Mode    string    `json:"mode"`
	Date    time.Time `json:"date"`
	Commit  string    `json:"commit"`
	Command string    `json:"command"`
	Machine Machine   `json:"machine"`
	Config  any       `json:"config"`
	// HarnessIO is the packet I/O the harness itself used.
	HarnessIO string `json:"harness_io"`
	// LoadAvg is the machine's load average (1 min) when the run began
	// and ended: what else was running.
	LoadAvgStart float64   `json:"load_avg_start"`
	LoadAvgEnd   float64   `json:"load_avg_end"`
	Results      []*Result `json:"results"`
	// Failures lists what makes the run fail (payload mismatches,
	// sessions that never came up); empty on success.
	Failures []string `json:"failures"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
}

// F returns a pointer to v (for optional fields).
func F(v float64) *float64 { return &v }

// Int returns a pointer to v.
func Int(v int) *int { return &v }

// I returns a pointer to v.
func I(v int64) *int64 { return &v }

// Ratio returns a/b, or nil when either is missing or b is zero.
func Ratio(a, b *float64) *float64 {
	if a == nil || b == nil || *b == 0 {
		return nil
	}
	return F(*a / *b)
}

// WriteJSON writes r indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Progress writes a live status line to a terminal (carriage return, no
// newline until Done), at most every period.
type Progress struct {
	W io.Writer

	mu   sync.Mutex
	last string
}

// Update replaces the line.
func (p *Progress) Update(format string, args ...any) {
	if p == nil || p.W == nil {
		return
	}
	line := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	pad := ""
	if n := len(p.last) - len(line); n > 0 {
		pad = fmt.Sprintf("%*s", n, "")
	}
	fmt.Fprintf(p.W, "\r%s%s", line, pad)
	p.last = line
}

// Done ends the line, leaving it visible.
func (p *Progress) Done() {
	if p == nil || p.W == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != "" {
		fmt.Fprintln(p.W)
	}
	p.last = ""
}

// Log prints a line of its own above the progress line.
func (p *Progress) Log(format string, args ...any) {
	if p == nil || p.W == nil {
		return
	}
	p.Done()
	fmt.Fprintf(p.W, format+"\n", args...)
}

// WriteFile writes the report as JSON to path.
func (r *Report) WriteFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
