package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/strait-sbc/strait/bench/callrate"
)

// What `strait-bench calls --state memory,embedded,redis` adds: the same
// run once per state store, in turns (--repeat times), and a table of call
// setup rate and CPU per call side by side, each store's cost the extra
// CPU per call over memory's (issue 11: under 10%). Redis is a
// redis-server this command starts on a free loopback port (no
// persistence, as a cache node would run), whose own CPU per call is
// reported beside strait's, over the same window (the calls being
// placed): it is the store's cost too, on another process.

// storeRun is one store's runs.
type storeRun struct {
	Store string             `json:"store"`
	Runs  []*callrate.Result `json:"runs"`
	// RedisCPUPerCallMs is redis-server's CPU per call (median of runs).
	RedisCPUPerCallMs float64 `json:"redis_cpu_per_call_ms,omitempty"`
	// CPUPerCallMs and the rates are medians of the runs.
	CPUPerCallMs float64 `json:"cpu_per_call_ms"`
	SetupPerS    float64 `json:"setup_per_s"`
	InviteP99Ms  float64 `json:"invite_p99_ms"`
	// CostVsMemory is (CPUPerCallMs - memory's) / memory's.
	CostVsMemory float64 `json:"cost_vs_memory"`
}

// runStores runs cfg once per store, repeat times, stores taking turns
// (so that the machine's load drifts over all of them alike).
func runStores(ctx context.Context, cfg callrate.Config, stores []string, repeat int, stderr io.Writer) ([]*storeRun, error) {
	out := make([]*storeRun, len(stores))
	redisCPU := make([][]float64, len(stores))
	for i, s := range stores {
		out[i] = &storeRun{Store: s}
	}
	base := cfg.StraitArgs
	for r := 0; r < repeat; r++ {
		for i, s := range stores {
			c := cfg
			c.StraitArgs = slices.Clone(base)
			var redis *redisServer
			switch s {
			case "memory", "embedded":
				c.StraitArgs = append(c.StraitArgs, "--state", s)
			case "redis":
				var err error
				if redis, err = startRedis(ctx); err != nil {
					return out, err
				}
				c.StraitArgs = append(c.StraitArgs, "--state", "redis://"+redis.addr+"/0")
			default:
				return out, fmt.Errorf("--state %q: want memory, embedded or redis", s)
			}
			fmt.Fprintf(stderr, "strait-bench: run %d/%d, state %s\n", r+1, repeat, s)
			if redis != nil {
				// redis-server's CPU over the window strait's is measured
				// in, not over strait's start, settle and drain (idle
				// time, about 2.5 ms a second, that once made up half
				// of Redis's cost per call with the default --settle).
				c.CompanionPID = redis.cmd.Process.Pid
			}
			res, err := callrate.Run(ctx, c)
			if redis != nil {
				if err == nil && res != nil && res.Calls > 0 {
					redisCPU[i] = append(redisCPU[i], res.CompanionCPUPerCallMs)
				}
				redis.stop()
			}
			if err != nil {
				return out, fmt.Errorf("state %s: %w", s, err)
			}
			out[i].Runs = append(out[i].Runs, res)
		}
	}
	summarise(out, redisCPU)
	return out, nil
}

// summarise fills in each store's medians and its cost over memory's.
// The setup rate is the calls set up per second of the time they were
// placed (the run's length less the last calls' hold).
func summarise(out []*storeRun, redisCPU [][]float64) {
	for i, sr := range out {
		var cpu, rate, p99 []float64
		for _, r := range sr.Runs {
			cpu = append(cpu, r.CPUPerCallMs)
			if d := r.ElapsedS - r.HoldS; d > 0 {
				rate = append(rate, float64(r.Successful)/d)
			}
			p99 = append(p99, r.InviteP99Ms)
		}
		sr.CPUPerCallMs, sr.SetupPerS, sr.InviteP99Ms = median(cpu), median(rate), median(p99)
		if i < len(redisCPU) {
			sr.RedisCPUPerCallMs = median(redisCPU[i])
		}
	}
	if i := slices.IndexFunc(out, func(s *storeRun) bool { return s.Store == "memory" }); i >= 0 && out[i].CPUPerCallMs > 0 {
		for _, sr := range out {
			sr.CostVsMemory = (sr.CPUPerCallMs+sr.RedisCPUPerCallMs)/out[i].CPUPerCallMs - 1
		}
	}
}

// validStores checks a --state list.
func validStores(stores []string) error {
	for _, s := range stores {
		if s != "memory" && s != "embedded" && s != "redis" {
			return fmt.Errorf("--state %q: want a list of memory, embedded and redis", s)
		}
	}
	return nil
}

// storeTable is the runs as a Markdown table.
func storeTable(runs []*storeRun) string {
	var b strings.Builder
	b.WriteString("| state | calls/s set up | strait CPU ms/call | redis-server CPU ms/call | store cost vs memory | INVITE p99 ms | failed |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, sr := range runs {
		failed := 0
		for _, r := range sr.Runs {
			failed += r.Calls - r.Successful
		}
		redis := "-"
		if sr.Store == "redis" {
			redis = fmt.Sprintf("%.3f", sr.RedisCPUPerCallMs)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.3f | %s | %+.1f%% | %.0f | %d |\n", sr.Store, sr.SetupPerS, sr.CPUPerCallMs,
			redis, 100*sr.CostVsMemory, sr.InviteP99Ms, failed)
	}
	return b.String()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// redisServer is a redis-server this command started.
type redisServer struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

// startRedis starts redis-server on a free loopback port, without
// persistence, and waits until it accepts connections.
func startRedis(ctx context.Context) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found (apt install redis-server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "strait-bench-redis-")
	if err != nil {
		return nil, err
	}
	r := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	r.cmd = exec.CommandContext(ctx, bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "no")
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if !sent && strings.Contains(sc.Text(), "Ready to accept connections") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if ok {
			return r, nil
		}
		r.stop()
		return nil, errors.New("redis-server exited before it was ready")
	case <-time.After(10 * time.Second):
		r.stop()
		return nil, errors.New("redis-server not ready within 10 s")
	}
}

func (r *redisServer) stop() {
	if r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
	os.RemoveAll(r.dir)
}
