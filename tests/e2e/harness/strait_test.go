package harness

import (
	"net"
	"strings"
	"testing"
)

func TestCountUDPSockets(t *testing.T) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	match := func(p int) bool { return p == port }
	if n, err := countUDPSockets(match); err != nil || n != 1 {
		t.Fatalf("with a socket on %d: count %d, %v; want 1", port, n, err)
	}
	c.Close()
	if n, err := countUDPSockets(match); err != nil || n != 0 {
		t.Fatalf("after close: count %d, %v; want 0", n, err)
	}
}

func TestMetricsParse(t *testing.T) {
	m := Metrics{Values: map[string]float64{}, Types: map[string]string{}}
	text := `# HELP strait_sessions_active Sessions.
# TYPE strait_sessions_active gauge
strait_sessions_active{node="a"} 2
strait_sessions_active{node="b"} 1
# TYPE strait_webrtc_ports_available gauge
strait_webrtc_ports_available 20
# TYPE strait_calls_total counter
strait_calls_total 7
# TYPE go_goroutines gauge
go_goroutines 42 1700000000000
`
	parseMetrics(strings.NewReader(text), &m)
	if got := m.Sum("strait_sessions_active"); got != 3 {
		t.Errorf("Sum(strait_sessions_active) = %g, want 3", got)
	}
	if got := m.Sum("go_goroutines"); got != 42 {
		t.Errorf("Sum(go_goroutines) = %g, want 42 (timestamp ignored)", got)
	}
	if got := m.HeldGauges(); len(got) != 1 || got[0] != "strait_sessions_active" {
		t.Errorf("HeldGauges = %v, want [strait_sessions_active]", got)
	}
}
