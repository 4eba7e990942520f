// Package procstat reads what the bench harness measures of a process from
// outside it: CPU time (utime + stime of every thread, from
// /proc/PID/stat), resident memory (/proc/PID/status), and, for a Strait
// node, the Prometheus text its metrics listener serves.
//
// Reading from outside keeps the measurement identical for Strait and for
// rtpengine: the same kernel accounting of the same kind of process.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel exports
// clock_t in USER_HZ regardless of CONFIG_HZ).
const clockTick = 100

// CPU returns the CPU time pid has used, user plus system, over all its
// threads.
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime (fields 14 and 15, proc(5)). The command
// name, field 2, is in parentheses and may hold spaces, so fields are
// counted after the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: malformed stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: short stat %q", b)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("procstat: bad utime/stime in %q", b)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// RSS returns pid's resident set size in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseRSS(f)
}

func parseRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("procstat: VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("procstat: no VmRSS")
}

// Metrics are samples of a Prometheus text exposition, keyed by the sample
// line's name and labels exactly as written (e.g.
// `strait_dataplane_packets_total{direction="out"}`).
type Metrics map[string]float64

// Sum adds every sample of the metric name (any labels).
func (m Metrics) Sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// Labelled returns the samples of name by the value of its one label.
func (m Metrics) Labelled(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+"{")
		if !ok {
			continue
		}
		if _, val, ok := strings.Cut(rest, `="`); ok {
			out[strings.TrimSuffix(val, `"}`)] = v
		}
	}
	return out
}

// ParseMetrics reads the Prometheus text format (comments skipped, a
// trailing timestamp ignored).
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the last space outside the labels.
		end := strings.LastIndexByte(line, '}')
		sp := strings.IndexByte(line[end+1:], ' ')
		if sp < 0 {
			continue
		}
		key := line[:end+1+sp]
		f := strings.Fields(line[end+1+sp:])
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[key] = v
	}
	return m, sc.Err()
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// Scrape fetches and parses http://addr/metrics.
func Scrape(addr string) (Metrics, error) {
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("procstat: %s/metrics: %s", addr, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// CollectGarbage asks a Go process serving net/http/pprof on addr to run a
// garbage collection (GET /debug/pprof/heap?gc=1), so that the heap
// figures scraped next count live memory only.
func CollectGarbage(addr string) error {
	resp, err := httpClient.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// Profile fetches a CPU profile of secs seconds from addr's pprof handler
// into w.
func Profile(addr string, secs int, w io.Writer) error {
	return fetchPprof(addr, "profile", secs, w)
}

// Trace fetches a Go execution trace of secs seconds from a node's
// /debug/pprof/trace and writes it to w.
func Trace(addr string, secs int, w io.Writer) error {
	return fetchPprof(addr, "trace", secs, w)
}

func fetchPprof(addr, what string, secs int, w io.Writer) error {
	c := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, what, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("procstat: %s: %s", what, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// Sched is what the scheduler recorded of a process's threads
// (/proc/PID/task/TID/schedstat, kept by the kernel with
// CONFIG_SCHED_INFO), summed over its live threads; threads that exited
// are not counted.
type Sched struct {
	// RunDelay is how long the threads waited on a CPU's run queue,
	// runnable but not running. Over a window it says how much the
	// machine's other work delayed the process: the part of a latency
	// tail neither the process's code nor its system calls explain.
	RunDelay time.Duration
	// Slices counts the times a thread was put on a CPU: every wake-up
	// from a wait, and every return after being preempted. Per packet,
	// a count the machine's load hardly moves, unlike the time.
	Slices uint64
}

// SchedStat reads pid's Sched.
func SchedStat(pid int) (Sched, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Sched{}, err
	}
	var total Sched
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // exited meanwhile
		}
		s, err := parseSchedstat(b)
		if err != nil {
			return Sched{}, err
		}
		total.RunDelay += s.RunDelay
		total.Slices += s.Slices
	}
	return total, nil
}

// parseSchedstat reads a schedstat line: "on-CPU-ns run-queue-wait-ns
// timeslices".
func parseSchedstat(b []byte) (Sched, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return Sched{}, fmt.Errorf("procstat: malformed schedstat %q", b)
	}
	ns, err1 := strconv.ParseUint(f[1], 10, 64)
	n, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return Sched{}, fmt.Errorf("procstat: malformed schedstat %q", b)
	}
	return Sched{RunDelay: time.Duration(ns), Slices: n}, nil
}
