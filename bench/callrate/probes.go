// What strait-bench calls reads around a run: the companion processes' CPU and
// memory, strait's metrics and profiles, and sipp's statistics files.

package callrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strait-sbc/strait/bench/procstat"
)

// companionCPU is the CPU time of Config.CompanionPID (0 without one, or
// when it cannot be read).
func companionCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, _ := procstat.CPU(pid)
	return d
}

// scrape reads strait's /metrics uncompressed (the client's gzip would be
// strait's CPU, counted as the calls').
func scrape(addr string) (procstat.Metrics, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	return procstat.ParseMetrics(resp.Body)
}

// gcCycles is strait's count of GC cycles so far (0 when unread).
func gcCycles(addr string) float64 {
	m, err := scrape(addr)
	if err != nil {
		return 0
	}
	return m.Sum("go_gc_duration_seconds_count")
}

// startProfiles fetches the profiles cfg asks for while sipp places the
// calls; the channel closes when they are written (errors go to log: a
// profile is an aid, not a figure).
func startProfiles(ctx context.Context, addr string, cfg Config, log io.Writer) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	fetch := func(url, path string, after time.Duration) {
		defer wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(after):
		}
		if err := saveURL(ctx, "http://"+addr+url, path); err != nil {
			fmt.Fprintf(log, "callrate: profile %s: %v\n", url, err)
		}
	}
	if cfg.CPUProfile != "" {
		wg.Add(1)
		go fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(cfg.Duration.Seconds()))), cfg.CPUProfile, 0)
	}
	if cfg.HeapProfile != "" {
		wg.Add(1)
		go fetch("/debug/pprof/heap", cfg.HeapProfile, cfg.Duration)
	}
	if cfg.Trace != "" {
		secs := cfg.TraceSeconds
		if secs <= 0 {
			secs = 5
		}
		secs = min(secs, max(1, int(cfg.Duration.Seconds())))
		wg.Add(1)
		go fetch(fmt.Sprintf("/debug/pprof/trace?seconds=%d", secs), cfg.Trace, (cfg.Duration-time.Duration(secs)*time.Second)/2)
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func saveURL(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// collectGarbage makes strait run a GC: its pprof heap endpoint with gc=1
// collects before it profiles (the profile itself is discarded).
func collectGarbage(addr string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return fmt.Errorf("no GC forced: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("no GC forced: /debug/pprof/heap: %s", resp.Status)
	}
	return nil
}

// readStats takes the last line of sipp's statistics file.
func readStats(path string, res *Result) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return errors.New("no statistics")
	}
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	get := func(name string) int {
		i := slices.Index(head, name)
		if i < 0 || i >= len(last) {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(last[i]))
		return n
	}
	res.Successful = get("SuccessfulCall(C)")
	res.Failed = get("FailedCall(C)")
	res.Retrans = get("Retransmissions(C)")
	return nil
}

// readRTT reads sipp's response times: "date_ms;response_time_ms;rtd".
func readRTT(path string, res *Result) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	by := map[string][]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ";")
		if len(parts) < 3 {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
		if err != nil {
			continue // the header
		}
		by[strings.TrimSpace(parts[2])] = append(by[strings.TrimSpace(parts[2])], ms)
	}
	inv, bye := by["invite"], by["bye"]
	res.InviteP50Ms, res.InviteP99Ms, res.InviteMaxMs = quantile(inv, 0.5), quantile(inv, 0.99), quantile(inv, 1)
	res.ByeP50Ms, res.ByeP99Ms = quantile(bye, 0.5), quantile(bye, 0.99)
	return sc.Err()
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// peakRSS is a process's VmHWM in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func freePort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(ctx context.Context, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
