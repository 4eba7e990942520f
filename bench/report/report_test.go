package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sample() *Report {
	return &Report{Mode: "scale", Results: []*Result{
		{Target: TargetStrait, SRTP: "AEAD_AES_128_GCM", PlainPorts: "per-leg", Sessions: 100, DeliveredPPS: 1000,
			NodeCPUnsPerPacket: F(5000), Latency: [][2]float64{{50, 10}, {100, 80}, {400, 10}},
			Steps: []Step{{Sessions: 1, DeliveredPPS: 1000, NodeCPUnsPerPacket: F(6000)}, {Sessions: 100, DeliveredPPS: 1000, NodeCPUnsPerPacket: F(5000)}}},
		{Target: TargetRtpengine, Skipped: "not installed"},
	}}
}

func TestPlotWritesSVGAndPNG(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"p.svg", "p.png"} {
		path := filepath.Join(dir, name)
		if err := Plot(sample(), path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 1000 {
			t.Fatalf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	empty := &Report{Mode: "cadence", Results: []*Result{{Target: TargetRtpengine, Skipped: "not installed"}}}
	if err := Plot(empty, filepath.Join(dir, "empty.svg")); err != nil {
		t.Fatalf("a report with nothing measured: %v", err)
	}
	if err := Plot(sample(), filepath.Join(dir, "p.gif")); err == nil {
		t.Fatal("gif accepted")
	}
}

func TestNullFieldsAreWritten(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct{ Results []map[string]any }
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"allocs_per_packet", "cpu_ratio_to_rtpengine", "latency_p99_us"} {
		if v, ok := doc.Results[1][k]; !ok || v != nil {
			t.Errorf("%s: %v, %v; want present and null", k, v, ok)
		}
	}
	if !strings.Contains(buf.String(), `"skipped": "not installed"`) {
		t.Error("skip reason missing")
	}
}

func TestRatio(t *testing.T) {
	if r := Ratio(F(3), F(2)); r == nil || *r != 1.5 {
		t.Fatal(r)
	}
	if Ratio(nil, F(1)) != nil || Ratio(F(1), F(0)) != nil {
		t.Fatal("ratio without a baseline")
	}
}
