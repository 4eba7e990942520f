package procstat

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift fields.
	line := "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1000 123456 789 18446744073709551615\n"
	d, err := parseStat([]byte(line))
	if err != nil || d != 3250*time.Millisecond {
		t.Fatalf("got %v, %v; want 3.25s", d, err)
	}
}

func TestOwnProcess(t *testing.T) {
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	if d, err := CPU(os.Getpid()); err != nil || d <= 0 {
		t.Fatalf("CPU: %v, %v", d, err)
	}
	if r, err := RSS(os.Getpid()); err != nil || r < 1<<20 {
		t.Fatalf("RSS: %v, %v", r, err)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP x y
# TYPE go_memstats_mallocs_total counter
go_memstats_mallocs_total 1.234e+06
strait_dataplane_packets_total{direction="in"} 10
strait_dataplane_packets_total{direction="out"} 9 1700000000000
strait_dataplane_drops_total{reason="send"} 2
strait_dataplane_drops_total{reason="srtp_auth"} 0
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_memstats_mallocs_total"] != 1.234e6 || m[`strait_dataplane_packets_total{direction="out"}`] != 9 {
		t.Fatalf("%v", m)
	}
	if m.Sum("strait_dataplane_packets_total") != 19 {
		t.Fatalf("sum %v", m.Sum("strait_dataplane_packets_total"))
	}
	if d := m.Labelled("strait_dataplane_drops_total"); d["send"] != 2 || len(d) != 2 {
		t.Fatalf("labelled %v", d)
	}
}

func TestParsePerf(t *testing.T) {
	out := "\n220906,,raw_syscalls:sys_enter,403868720,100.00,,\n1200,,syscalls:sys_enter_recvmmsg,403896993,100.00,,\n<not counted>,,syscalls:sys_enter_futex,0,100.00,,\n"
	s, err := parsePerf([]byte(out))
	if err != nil || s.Total != 220906 || s.ByCall["recvmmsg"] != 1200 || len(s.ByCall) != 1 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := parsePerf([]byte("Error: no such event\n")); err == nil {
		t.Fatal("no error for output without a count")
	}
}

func TestParseStrace(t *testing.T) {
	out := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 55.23    0.001234          12       100           recvmmsg
 30.00    0.000700           7       100        40 epoll_wait
 14.77    0.000300           3        10           madvise
------ ----------- ----------- --------- --------- ----------------
100.00    0.002234          10       210        40 total
`
	s, err := parseStrace([]byte(out))
	if err != nil || s.Total != 210 || s.ByCall["recvmmsg"] != 100 || s.ByCall["epoll_wait"] != 100 || s.ByCall["madvise"] != 0 {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestCountSyscallsOfOwnProcess(t *testing.T) {
	c, err := StartSyscalls(os.Getpid())
	if err != nil {
		t.Skipf("no way to count system calls here: %v", err)
	}
	for i := 0; i < 1000; i++ {
		syscall.Getppid()
	}
	s, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if s.Total < 1000 {
		t.Fatalf("counted %d system calls, made at least 1000: %+v", s.Total, s)
	}
	t.Logf("%d system calls (%s)", s.Total, s.Method)
}

func TestParseSchedstat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Sched
		ok   bool
	}{
		{"8564293 26641421 5\n", Sched{RunDelay: 26641421, Slices: 5}, true},
		{"1 2 3", Sched{RunDelay: 2, Slices: 3}, true},
		{"8564293 12\n", Sched{}, false},
		{"a b c", Sched{}, false},
	} {
		got, err := parseSchedstat([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSchedstat(%q) = %+v, %v", tc.in, got, err)
		}
	}
	if s, err := SchedStat(os.Getpid()); err != nil {
		t.Logf("scheduler statistics not readable here: %v", err) // a kernel without CONFIG_SCHED_INFO
	} else if s.Slices == 0 {
		t.Errorf("this process ran, yet %+v", s)
	}
}
