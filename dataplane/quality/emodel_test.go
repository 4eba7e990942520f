package quality

import (
	"math"
	"testing"
)

func TestEModel(t *testing.T) {
	g711, g729 := CodecByName("PCMU"), CodecByName("G729")
	for _, tc := range []struct {
		name              string
		c                 Codec
		loss, rtt, jitter float64
		min, max          float64
	}{
		// G.107's best narrowband case: R 93.2 minus a little delay.
		{"g711 clean", g711, 0, 0.020, 0.001, 4.35, 4.41},
		{"g711 1% loss", g711, 0.01, 0.020, 0.001, 4.25, 4.35},
		{"g711 5% loss", g711, 0.05, 0.040, 0.020, 3.6, 3.9},
		{"g711 20% loss", g711, 0.20, 0.040, 0.020, 2.0, 2.6},
		{"g729 clean", g729, 0, 0.020, 0.001, 4.0, 4.2},
		{"g711 long delay", g711, 0, 0.600, 0.020, 3.0, 3.7},
		{"everything lost", g711, 1, 1, 1, 1, 1},
	} {
		m := EstimateMOS(tc.c, tc.loss, tc.rtt, tc.jitter)
		if m < tc.min || m > tc.max {
			t.Errorf("%s: MOS %.3f, want [%v, %v]", tc.name, m, tc.min, tc.max)
		}
	}
	// MOS falls as loss, delay and jitter rise.
	prev := 5.0
	for _, loss := range []float64{0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5} {
		m := EstimateMOS(g711, loss, 0.05, 0.01)
		if m >= prev {
			t.Errorf("MOS %v at loss %v not below %v", m, loss, prev)
		}
		prev = m
	}
	if r := RFactor(g711, 0, Delay(0, 0)); math.Abs(r-93.2+0.24) > 1e-9 { // 10 ms of codec delay
		t.Errorf("R %v", r)
	}
	if MOS(-5) != 1 || MOS(120) != 4.5 {
		t.Error("MOS bounds")
	}
}

func TestSRLog(t *testing.T) {
	var l SRLog
	now := int64(1_700_000_000e9)
	if _, ok := l.RTT(0x1234, 0, now); ok {
		t.Fatal("RTT from an empty log")
	}
	for i := range 6 { // more than the slots: the oldest are forgotten
		l.Record(uint32(0x1000+i), now+int64(i)*1e9)
	}
	// Sent at now+5s, answered 150 ms later after being held 50 ms.
	rtt, ok := l.RTT(0x1005, 65536/20, now+5e9+150e6)
	if !ok || math.Abs(rtt-0.100) > 0.001 {
		t.Fatalf("RTT %v %v, want 0.100", rtt, ok)
	}
	if _, ok := l.RTT(0x1000, 0, now+6e9); ok {
		t.Error("RTT from a forgotten SR")
	}
	if _, ok := l.RTT(0x1005, 65536*60, now+6e9); ok {
		t.Error("RTT from a DLSR longer than the time since the SR")
	}
	if _, ok := l.RTT(0, 0, now); ok {
		t.Error("RTT with LSR 0 (no SR received)")
	}
}

func TestLog(t *testing.T) {
	var l Log
	for i := range 1000 {
		l.Add(Sample{UnixNano: int64(i), Seconds: 5, Loss: float64(i%10) / 100, Jitter: 0.01, MOS: 4, RTT: 0.05, HasRTT: i%2 == 0})
	}
	if l.Loss.N != 1000 || l.RTT.N != 500 || l.Loss.Min != 0 || l.Loss.Max != 0.09 || math.Abs(l.Loss.Avg()-0.045) > 1e-9 {
		t.Fatalf("stats %+v %+v", l.Loss, l.RTT)
	}
	if len(l.Series) < MaxSeries/2 || len(l.Series) > MaxSeries {
		t.Fatalf("series of %d points", len(l.Series))
	}
	var total float64
	for _, s := range l.Series {
		total += s.Seconds
		if math.Abs(s.Jitter-0.01) > 1e-9 || math.Abs(s.RTT-0.05) > 1e-9 || !s.HasRTT {
			t.Fatalf("merged point %+v", s)
		}
	}
	// Points cover the whole call except a pending remainder.
	if total > 5000 || total < 5000-float64(5*l.stride) {
		t.Fatalf("series covers %v s of 5000", total)
	}
}
