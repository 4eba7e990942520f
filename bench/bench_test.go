package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-sbc/strait/bench/procstat"
	"github.com/strait-sbc/strait/bench/report"
	"github.com/strait-sbc/strait/bench/rtpengine"
	"github.com/strait-sbc/strait/bench/rtpgen"
	"github.com/strait-sbc/strait/dataplane/batchconn"
)

// nodeBin is a strait-dataplane built once for the smoke runs.
var nodeBin string

func TestMain(m *testing.M) {
	// Addresses of the test's own, so that a strait-bench running on the
	// same machine (on 127.0.0.2-4) does not collide with the smoke runs.
	b := byte(10 + rand.IntN(200))
	harnessIP = netip.AddrFrom4([4]byte{127, 0, b, 2})
	rtpengineIP = netip.AddrFrom4([4]byte{127, 0, b, 3})
	nodeIP = netip.AddrFrom4([4]byte{127, 0, b, 4})
	dir, err := os.MkdirTemp("", "bench-test")
	if err != nil {
		panic(err)
	}
	nodeBin = filepath.Join(dir, "strait-dataplane")
	if out, err := exec.Command("go", "build", "-o", nodeBin, "github.com/strait-sbc/strait/cmd/strait-dataplane").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fields every result must carry in JSON, null or not.
var fields = []string{"target", "mode", "sessions", "duration_s", "offered_pps", "delivered_pps", "loss_ratio",
	"payload_mismatches", "latency_p50_us", "latency_p99_us", "node_cpu_ns_per_packet", "node_rss_bytes",
	"bytes_per_session", "allocs_per_packet", "setup_per_s", "handshake_p99_ms", "cpu_ratio_to_plain", "cpu_ratio_to_rtpengine",
	"io", "requested_pps", "generator_limited", "syscalls_per_packet", "syscalls_method", "node_syscalls_per_packet", "datagrams_per_round",
	"added_latency_p50_us", "added_latency_p99_us", "over_harness_latency_p99_us", "harness_cpu_cores", "relay_saturated"}

// smoke runs a mode with a few sessions for a moment and checks the report:
// every field present, packets through every measured target, nothing
// altered. No timing is asserted.
func smoke(t *testing.T, cfg Config) *report.Report {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a node process")
	}
	if cfg.NodeBin == "" {
		cfg.NodeBin = nodeBin
	}
	cfg.Sessions = 2
	cfg.Duration = 300 * time.Millisecond
	cfg.Warmup = 100 * time.Millisecond
	cfg.FloodSteps = 3
	cfg.Concurrency = 2
	cfg.SetupTimeout = 20 * time.Second
	cfg.SyscallWindow = 300 * time.Millisecond
	if cfg.Peer == "" {
		cfg.Peer = "none"
	}
	if cfg.IO == "" {
		cfg.IO = "auto" // one node; TestSmokeCadence runs both
	}
	var log bytes.Buffer
	cfg.Log = &log // Run serialises writes to it
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\nrelay logs:\n%s", err, log.String())
	}
	if len(rep.Failures) > 0 {
		t.Fatalf("failures: %v", rep.Failures)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) == 0 {
		t.Fatal("no results")
	}
	for i, r := range doc.Results {
		for _, f := range fields {
			if _, ok := r[f]; !ok {
				t.Errorf("result %d lacks %q", i, f)
			}
		}
		res := rep.Results[i]
		if res.Skipped != "" {
			continue
		}
		if res.DeliveredPPS <= 0 || res.PacketsForwarded == 0 || res.PayloadMismatches != 0 {
			t.Errorf("%s %s %s: delivered %.0f pps, forwarded %d, mismatches %d", res.Target, res.Legs, res.SRTP,
				res.DeliveredPPS, res.PacketsForwarded, res.PayloadMismatches)
		}
		if res.NodeCPUnsPerPacket == nil || res.NodeRSSBytes == nil || res.SetupPerS == nil {
			t.Errorf("%s: missing node figures", res.Target)
		}
		if res.Target == report.TargetHarness {
			// No relay: the harness's own latency floor.
			if res.LatencyP99us == nil || res.HarnessCPUCores == nil {
				t.Errorf("harness-only case: no latency (%v) or harness CPU (%v)", res.LatencyP99us, res.HarnessCPUCores)
			}
			continue
		}
		if cfg.Mode == ModeFlood {
			continue
		}
		if res.Target != report.TargetRtpengine && (res.NodeSyscallsPerPacket == nil || *res.NodeSyscallsPerPacket <= 0 || res.IO == "") {
			t.Errorf("%s: the node's own system call count is missing (io %q)", res.Target, res.IO)
		}
		if canCountSyscalls() && (res.SyscallsPerPacket == nil || *res.SyscallsPerPacket <= 0 || res.SyscallsMethod == "") {
			t.Errorf("%s: system calls per packet not counted", res.Target)
		}
	}
	return rep
}

func TestSmokeCadence(t *testing.T) {
	// A node of each I/O mode in the same run, where io_uring works.
	io, modes := "both", []string{"uring", "mmsg"}
	if err := batchconn.UringUnavailable(); err != nil {
		// A host may refuse io_uring: reported, not failed, in CI too.
		t.Logf("io_uring not measured: %v", err)
		io, modes = "mmsg", []string{"mmsg"}
	}
	rep := smoke(t, Config{Mode: ModeCadence, SRTP: "both", IO: io})
	targets := map[string]int{}
	for _, r := range rep.Results {
		targets[r.Target+" "+r.IO]++
		if r.Target == report.TargetStrait && r.CPURatioToPlain == nil && !r.GeneratorLimited && baselineCPU(rep, r.PlainPorts, r.IO) > 0 {
			// A smoke run is short: the kernel's 10 ms CPU accounting tick
			// may give the baseline no CPU time at all, and then no ratio;
			// on a loaded machine either side may be generator-limited,
			// and then relays are not compared at different rates.
			t.Errorf("%s %s: no ratio to plain", r.SRTP, r.IO)
		}
		if r.Target == report.TargetStrait && r.HandshakeP99ms == nil {
			t.Errorf("%s: no handshake latency", r.SRTP)
		}
	}
	if targets[report.TargetHarness+" "] != 1 {
		t.Errorf("targets %v: want one harness-only case", targets)
	}
	for _, m := range modes {
		if targets[report.TargetStrait+" "+m] != 2 || targets[report.TargetStraitPlain+" "+m] != 1 {
			t.Fatalf("targets %v, want Strait with both SRTP profiles and the plain baseline, with each I/O mode %v", targets, modes)
		}
	}
}

// TestSmokeTwoNodeBins: --node-bin A,B starts a node of each, measures
// every case on both, labels the results and compares B's with A's.
func TestSmokeTwoNodeBins(t *testing.T) {
	rep := smoke(t, Config{Mode: ModeCadence, SRTP: "gcm", IO: "mmsg", NodeBin: nodeBin + "," + nodeBin})
	nodes := map[string]int{}
	for _, r := range rep.Results {
		if r.Target == report.TargetHarness {
			continue // no node
		}
		nodes[r.Node]++
		if strings.HasPrefix(r.Node, "1:") && !r.GeneratorLimited && r.NodeCPUnsPerPacket != nil && *r.NodeCPUnsPerPacket > 0 &&
			r.CPURatioToFirstNode == nil && firstNodeCPU(rep, r) > 0 {
			t.Errorf("%s %s on the second node: no ratio to the first", r.Target, r.SRTP)
		}
	}
	if len(nodes) != 2 || nodes["0:strait-dataplane"] != 2 || nodes["1:strait-dataplane"] != 2 {
		t.Fatalf("results per node %v, want the WebRTC case and the plain baseline on each of 2", nodes)
	}
}

// firstNodeCPU is the CPU per packet of r's case on the first node (0 if
// unmeasured or generator-limited).
func firstNodeCPU(rep *report.Report, r *report.Result) float64 {
	for _, b := range rep.Results {
		if strings.HasPrefix(b.Node, "0:") && b.Target == r.Target && b.SRTP == r.SRTP && b.NodeCPUnsPerPacket != nil && !b.GeneratorLimited {
			return *b.NodeCPUnsPerPacket
		}
	}
	return 0
}

// TestSmokeNodeTrace: --node-trace saves a trace of the node per Strait
// case and reports its packet workers' preemptions.
func TestSmokeNodeTrace(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "node")
	rep := smoke(t, Config{Mode: ModeCadence, SRTP: "gcm", NoHarnessBaseline: true, NodeTrace: prefix})
	for _, r := range rep.Results {
		if r.NodeWorkerPreemptPerS == nil || r.NodeWorkerPreemptShare == nil || r.NodeTraceFile == "" {
			t.Errorf("%s: no worker preemption figures from %q", r.Target, r.NodeTraceFile)
			continue
		}
		if _, err := os.Stat(r.NodeTraceFile); err != nil {
			t.Error(err)
		}
	}
}

// TestSmokeQuietSetup: sessions come up with their first packets only,
// and the window still sees the cadence through every target.
func TestSmokeQuietSetup(t *testing.T) {
	rep := smoke(t, Config{Mode: ModeCadence, SRTP: "gcm", QuietSetup: true})
	for _, r := range rep.Results {
		if r.RequestedPPS != 2*2*cadencePPS {
			t.Errorf("%s: asked %v packets/s", r.Target, r.RequestedPPS)
		}
	}
}

// TestFailedCaseDoesNotEndTheRun: a case whose sessions the node refuses
// fails the run, and the run's other cases are still measured.
func TestFailedCaseDoesNotEndTheRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process")
	}
	wrapper := filepath.Join(t.TempDir(), "node-one-session")
	script := "#!/bin/sh\nexec " + nodeBin + " --max-sessions 1 \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Mode: ModeCadence, SRTP: "gcm", IO: "auto", Peer: "none", NodeBin: wrapper, SessionCounts: []int{1, 2},
		Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Concurrency: 2, SetupTimeout: 20 * time.Second,
		SyscallWindow: -1, NoHarnessBaseline: true})
	if err != nil {
		t.Fatalf("the run ended: %v", err)
	}
	measured, failed := 0, 0
	for _, r := range rep.Results {
		switch {
		case r.Sessions == 1 && r.Skipped == "" && r.DeliveredPPS > 0:
			measured++
		case r.Sessions == 2 && strings.HasPrefix(r.Skipped, "failed: "):
			failed++
		}
	}
	if measured != 2 || failed != 2 || len(rep.Failures) != 2 {
		t.Fatalf("%d cases measured at 1 session, %d failed at 2, failures %q: want 2, 2 and 2", measured, failed, rep.Failures)
	}
}

func TestSmokeSharedPlainPorts(t *testing.T) {
	smoke(t, Config{Mode: ModeCadence, SRTP: "gcm", PlainPorts: "shared", Codec: "opus"})
}

func TestSmokeFlood(t *testing.T) {
	rep := smoke(t, Config{Mode: ModeFlood, SRTP: "gcm"})
	for _, r := range rep.Results {
		if len(r.Steps) == 0 {
			t.Errorf("%s: no flood steps", r.Target)
		}
	}
}

func TestSmokeSetup(t *testing.T) {
	smoke(t, Config{Mode: ModeSetup, SRTP: "cm80"})
}

func TestSmokeScale(t *testing.T) {
	rep := smoke(t, Config{Mode: ModeScale, SRTP: "gcm"})
	for _, r := range rep.Results {
		if len(r.Steps) != 2 { // 1 and 2 sessions
			t.Errorf("%s: %d scale steps, want 2", r.Target, len(r.Steps))
		}
	}
}

// TestSmokeRtpengine runs the incumbent baseline when rtpengine is
// installed; the test suite installs nothing.
func TestSmokeRtpengine(t *testing.T) {
	if _, err := rtpengine.Binary(""); err != nil {
		t.Skip(err)
	}
	rep := smoke(t, Config{Mode: ModeCadence, SRTP: "gcm", Peer: "rtpengine"})
	for _, r := range rep.Results {
		if r.Target == report.TargetRtpengine {
			if r.Skipped != "" {
				t.Fatalf("rtpengine installed but skipped: %s", r.Skipped)
			}
			return
		}
	}
	t.Fatal("no rtpengine result")
}

func TestRtpengineMissingIsSkipped(t *testing.T) {
	rep := smoke(t, Config{Mode: ModeCadence, SRTP: "gcm", Peer: "rtpengine", RtpengineBin: "/nonexistent/rtpengine"})
	for _, r := range rep.Results {
		if r.Target == report.TargetRtpengine {
			if r.Skipped == "" {
				t.Fatal("a missing rtpengine was not reported as skipped")
			}
			return
		}
	}
	t.Fatal("no rtpengine result")
}

func TestScaleSteps(t *testing.T) {
	for _, tc := range []struct {
		max  int
		want []int
	}{{1, []int{1}}, {2, []int{1, 2}}, {1000, []int{1, 100, 1000}}, {10000, []int{1, 100, 1000, 10000}}, {5000, []int{1, 100, 1000, 5000}}} {
		got := scaleSteps(tc.max)
		if len(got) != len(tc.want) {
			t.Errorf("scaleSteps(%d) = %v", tc.max, got)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("scaleSteps(%d) = %v", tc.max, got)
			}
		}
	}
}

func TestParseSDP(t *testing.T) {
	s := "v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nt=0 0\r\nm=audio 30000 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.3\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=fingerprint:sha-256 AA:BB\r\na=setup:active\r\n" +
		"a=candidate:x 1 UDP 2130706431 127.0.0.3 30002 typ host\r\n"
	got, err := parseSDP(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.addr.String() != "127.0.0.3:30002" || got.ufrag != "abcd" || got.fingerprint != "AA:BB" || got.setup != "active" {
		t.Fatalf("%+v", got)
	}
}

func TestRatios(t *testing.T) {
	rep := &report.Report{Results: []*report.Result{
		{Target: report.TargetStrait, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(1200)},
		{Target: report.TargetStraitPlain, PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(1000)},
		{Target: report.TargetRtpengine, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(2000)},
		{Target: report.TargetRtpengine, SRTP: "AES_CM_128_HMAC_SHA1_80", Skipped: "not installed"},
	}}
	ratios(rep)
	r := rep.Results[0]
	if r.CPURatioToPlain == nil || *r.CPURatioToPlain != 1.2 || r.CPURatioToRtpengine == nil || *r.CPURatioToRtpengine != 0.6 {
		t.Fatalf("ratios %v %v", r.CPURatioToPlain, r.CPURatioToRtpengine)
	}
	// Other session counts, other I/O modes and generator-limited
	// baselines are not compared.
	rep = &report.Report{Results: []*report.Result{
		{Target: report.TargetStrait, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", IO: "uring", Sessions: 500, NodeCPUnsPerPacket: report.F(1200)},
		{Target: report.TargetStraitPlain, PlainPorts: "per-leg", IO: "mmsg", Sessions: 500, NodeCPUnsPerPacket: report.F(1000)},
		{Target: report.TargetStraitPlain, PlainPorts: "per-leg", IO: "uring", Sessions: 1000, NodeCPUnsPerPacket: report.F(1000)},
		{Target: report.TargetRtpengine, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", Sessions: 500, GeneratorLimited: true, NodeCPUnsPerPacket: report.F(2000)},
	}}
	ratios(rep)
	if r := rep.Results[0]; r.CPURatioToPlain != nil || r.CPURatioToRtpengine != nil {
		t.Fatalf("compared across modes, session counts or with a generator-limited baseline: %v %v", r.CPURatioToPlain, r.CPURatioToRtpengine)
	}
	// Two node binaries: each compared with its own plain baseline, and
	// the second's cases with the first's.
	rep = &report.Report{Results: []*report.Result{
		{Target: report.TargetStrait, Node: "0:a", SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(1200), SyscallsPerPacket: report.F(0.2)},
		{Target: report.TargetStrait, Node: "1:b", SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(900), SyscallsPerPacket: report.F(0.1)},
		{Target: report.TargetStraitPlain, Node: "0:a", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(1000)},
		{Target: report.TargetStraitPlain, Node: "1:b", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(750)},
	}}
	ratios(rep)
	a, b := rep.Results[0], rep.Results[1]
	if *a.CPURatioToPlain != 1.2 || *b.CPURatioToPlain != 1.2 || a.CPURatioToFirstNode != nil ||
		b.CPURatioToFirstNode == nil || *b.CPURatioToFirstNode != 0.75 || *b.SyscallRatioToFirstNode != 0.5 {
		t.Fatalf("ratios with two nodes: %v %v %v %v", *a.CPURatioToPlain, *b.CPURatioToPlain, a.CPURatioToFirstNode, b.CPURatioToFirstNode)
	}
}

// canCountSyscalls: perf or strace can count a process's system calls here.
var canCountSyscalls = sync.OnceValue(func() bool {
	c, err := procstat.StartSyscalls(os.Getpid())
	if err != nil {
		return false
	}
	_, err = c.Stop()
	return err == nil
})

// baselineCPU is the plain baseline's CPU per packet (0 if unmeasured).
func baselineCPU(rep *report.Report, ports, io string) float64 {
	for _, b := range rep.Results {
		if b.Target == report.TargetStraitPlain && b.PlainPorts == ports && b.IO == io && b.NodeCPUnsPerPacket != nil && !b.GeneratorLimited {
			return *b.NodeCPUnsPerPacket
		}
	}
	return 0
}

func TestHoldQuantile(t *testing.T) {
	a := map[float64]float64{1e-6: 10, 2e-6: 10, 4e-6: 10, math.Inf(1): 10}
	b := map[float64]float64{1e-6: 10, 2e-6: 60, 4e-6: 109, math.Inf(1): 110}
	if p := holdQuantile(a, b, 0.5); p == nil || *p != 2 {
		t.Fatalf("p50 %v, want 2 µs", p)
	}
	if p := holdQuantile(a, b, 0.99); p == nil || *p != 4 {
		t.Fatalf("p99 %v, want 4 µs", p)
	}
	if p := holdQuantile(a, a, 0.99); p != nil {
		t.Fatalf("no datagrams: %v", *p)
	}
	if p := holdQuantile(nil, nil, 0.99); p != nil {
		t.Fatalf("no histogram: %v", *p)
	}
}

// TestLatencies: added latency is over the plain baseline of the same
// node, I/O mode, port mode and session count (rtpengine: per-leg), and
// over the harness-only case's; nothing is compared with a limited or
// saturated side.
func TestLatencies(t *testing.T) {
	us := report.F
	rep := &report.Report{Results: []*report.Result{
		{Target: report.TargetHarness, PlainPorts: "direct", Sessions: 500, LatencyP50us: us(50), LatencyP99us: us(400)},
		{Target: report.TargetStrait, IO: "uring", PlainPorts: "per-leg", Sessions: 500, LatencyP50us: us(200), LatencyP99us: us(1500)},
		{Target: report.TargetStraitPlain, IO: "mmsg", PlainPorts: "per-leg", Sessions: 500, LatencyP50us: us(10), LatencyP99us: us(10)},
		{Target: report.TargetStraitPlain, IO: "uring", PlainPorts: "per-leg", Sessions: 1000, LatencyP50us: us(10), LatencyP99us: us(10)},
		{Target: report.TargetStraitPlain, IO: "uring", PlainPorts: "per-leg", Sessions: 500, LatencyP50us: us(150), LatencyP99us: us(1000)},
		{Target: report.TargetRtpengine, PlainPorts: "per-leg", Sessions: 500, LatencyP50us: us(400), LatencyP99us: us(4000)},
		{Target: report.TargetRtpengine, PlainPorts: "per-leg", Sessions: 500, LatencyP99us: us(9000), Saturated: true},
		{Target: report.TargetStrait, IO: "uring", PlainPorts: "per-leg", Sessions: 500, LatencyP99us: us(9000), GeneratorLimited: true},
	}}
	latencies(rep)
	want := []struct{ added50, added99, overHarness *float64 }{
		{nil, nil, nil},
		{us(50), us(500), us(1100)},
		{nil, nil, us(-390)},
		{nil, nil, nil}, // no harness case at 1 000
		{nil, nil, us(600)},
		{us(390), us(3990), us(3600)}, // the first per-leg baseline at 500

		{nil, nil, nil},
		{nil, nil, nil},
	}
	eq := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	for i, w := range want {
		r := rep.Results[i]
		if !eq(r.AddedLatencyP50us, w.added50) || !eq(r.AddedLatencyP99us, w.added99) || !eq(r.OverHarnessLatencyP99us, w.overHarness) {
			t.Errorf("result %d (%s %s %d): added p50 %v p99 %v, over harness %v", i, r.Target, r.IO, r.Sessions,
				r.AddedLatencyP50us, r.AddedLatencyP99us, r.OverHarnessLatencyP99us)
		}
	}
	// Saturated sides are not compared for CPU either.
	rep = &report.Report{Results: []*report.Result{
		{Target: report.TargetStrait, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(1200)},
		{Target: report.TargetRtpengine, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", NodeCPUnsPerPacket: report.F(2000), Saturated: true},
	}}
	ratios(rep)
	if r := rep.Results[0]; r.CPURatioToRtpengine != nil {
		t.Fatalf("compared with a saturated rtpengine: %v", *r.CPURatioToRtpengine)
	}
	if tab := report.Table(rep); !strings.Contains(tab, "**saturated**") {
		t.Fatalf("the table does not say rtpengine saturated:\n%s", tab)
	}
}

// stubRelay says why it saturated, as rtpengine's log does.
type stubRelay struct{ directRelay }

func (*stubRelay) saturation() string { return "abandoned sockets" }

// TestSaturation: a relay that lost 1% or more of what it was offered is
// saturated; one that counted its own packets and forwarded them all made
// the loss the harness's (sink-limited); neither is compared.
func TestSaturation(t *testing.T) {
	h := &harness{cfg: &Config{Mode: ModeCadence}}
	window := func(sent, recv uint64) rtpgen.Window {
		return rtpgen.Window{Start: 0, End: int64(time.Second), Sent: sent, Received: recv}
	}
	for _, tc := range []struct {
		name                 string
		m                    measurement
		saturated, sinkLimit bool
		note                 string
	}{
		{"kept up", measurement{w: window(100000, 99950), requested: 100000, flows: 2000}, false, false, ""},
		{"rtpengine lost 94%", measurement{w: window(100000, 6000), requested: 100000, flows: 2000}, true, false, "abandoned sockets"},
		{"relay forwarded it all", measurement{w: window(100000, 90000), requested: 100000, flows: 2000,
			s0: sample{hasNodeCounters: true}, s1: sample{hasNodeCounters: true, forwarded: 99900}}, false, true, "the harness fell behind"},
		{"relay dropped", measurement{w: window(100000, 90000), requested: 100000, flows: 2000,
			s0: sample{hasNodeCounters: true}, s1: sample{hasNodeCounters: true, forwarded: 90000}}, true, false, "forwarded 90000"},
	} {
		c := &runCase{h: h, r: &stubRelay{}}
		res := &report.Result{}
		c.fill(res, tc.m)
		if res.Saturated != tc.saturated || res.SinkLimited != tc.sinkLimit || !strings.Contains(res.SaturatedNote, tc.note) {
			t.Errorf("%s: saturated %v, sink-limited %v, note %q", tc.name, res.Saturated, res.SinkLimited, res.SaturatedNote)
		}
		if comparable(res) == (tc.saturated || tc.sinkLimit) {
			t.Errorf("%s: comparable %v", tc.name, comparable(res))
		}
	}
}
