package state

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// BenchmarkRedisApply writes what a Writer's batch holds at 200 calls/s
// every 100 ms (20 calls answered and 20 ended: their records, ~1.6 kB,
// and their node sessions', ~430 B) to a real redis-server, and reports
// this process's CPU per batch (cpu-us/op, from getrusage: what the
// client costs, whatever the machine's load does to the wall clock), with
// RESP3 (go-redis's default) and RESP2.
func BenchmarkRedisApply(b *testing.B) {
	r := statetest.StartRedis(b)
	call, sess := make([]byte, 1600), make([]byte, 430)
	for i := range call {
		call[i] = 'c'
	}
	for i := range sess {
		sess[i] = 's'
	}
	for _, proto := range []int{3, 2} {
		b.Run(fmt.Sprintf("resp%d", proto), func(b *testing.B) {
			s, err := OpenRedis(fmt.Sprintf("%s?protocol=%d", r.URL, proto))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			batch := func(n int) []Change {
				var out []Change
				for i := range 20 {
					out = append(out, Change{Kind: Calls, Key: fmt.Sprint("c", n, "-", i), Value: call},
						Change{Kind: Sessions, Key: fmt.Sprint("s", n, "-", i), Value: sess},
						Change{Kind: Calls, Key: fmt.Sprint("c", n-1, "-", i)},
						Change{Kind: Sessions, Key: fmt.Sprint("s", n-1, "-", i)})
				}
				return out
			}
			batches := make([][]Change, 64)
			for i := range batches {
				batches[i] = batch(i)
			}
			pid := redisPID(ctx, b, s)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			srv0 := procCPU(b, pid)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Apply(ctx, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			srv1 := procCPU(b, pid)
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(srv1-srv0)/1e3/float64(b.N), "redis-cpu-us/op")
		})
	}
}

// redisPID is the process id of the redis-server s talks to.
func redisPID(ctx context.Context, b *testing.B, s *Redis) int {
	info, err := s.c.Info(ctx, "server").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err == nil {
				return pid
			}
		}
	}
	b.Fatal("redis-server's process_id not in INFO")
	return 0
}

// procCPU is a process's user and system CPU time in nanoseconds
// (/proc/PID/stat, clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * 1e7
}
