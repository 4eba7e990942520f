package procstat

import (
	"os"
	"strings"
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
