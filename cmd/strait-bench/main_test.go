package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/strait-sbc/strait/bench/callrate"
)

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: strait-bench"},
		{[]string{"--help"}, 0, "usage: strait-bench"},
		{[]string{"warp"}, 2, `unknown mode "warp"`},
		{[]string{"cadence", "--srtp", "rot13"}, 2, "--srtp"},
		{[]string{"cadence", "--peer", "asterisk"}, 2, "--peer"},
		{[]string{"cadence", "--codec", "g729"}, 2, "--codec"},
		{[]string{"cadence", "extra"}, 2, "unexpected arguments"},
		{[]string{"flood", "--node", "http://x", "--node-pid", "1"}, 2, "grpc://HOST:PORT"},
	} {
		var out, errw bytes.Buffer
		if code := run(tc.args, &out, &errw); code != tc.code || !strings.Contains(errw.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errw.String(), tc.code, tc.want)
		}
	}
}

// The store comparison: medians per store, the cost over memory's CPU per
// call (redis-server's own CPU counted with Redis), a list refused before
// anything runs when it names an unknown store.
func TestStoreComparison(t *testing.T) {
	var errw bytes.Buffer
	if code := run([]string{"calls", "--state", "memory,sqlite"}, &bytes.Buffer{}, &errw); code != 2 || !strings.Contains(errw.String(), `"sqlite"`) {
		t.Fatalf("exit %d, %q; want a usage error naming the store", code, errw.String())
	}
	res := func(cpu float64) *callrate.Result {
		return &callrate.Result{Calls: 100, Successful: 100, ElapsedS: 12, HoldS: 2, CPUPerCallMs: cpu}
	}
	runs := []*storeRun{
		{Store: "memory", Runs: []*callrate.Result{res(2.0), res(2.2), res(1.0)}},
		{Store: "embedded", Runs: []*callrate.Result{res(2.1), res(2.1), res(2.3)}},
		{Store: "redis", Runs: []*callrate.Result{res(2.0)}},
	}
	summarise(runs, [][]float64{nil, nil, {0.1}})
	if runs[0].CPUPerCallMs != 2.0 || runs[0].SetupPerS != 10 {
		t.Fatalf("memory: %+v, want the median 2.0 ms and 100 calls in 10 s", runs[0])
	}
	if d := runs[1].CostVsMemory - 0.05; d > 1e-9 || d < -1e-9 {
		t.Fatalf("embedded cost %v, want 0.05", runs[1].CostVsMemory)
	}
	if d := runs[2].CostVsMemory - 0.05; d > 1e-9 || d < -1e-9 {
		t.Fatalf("redis cost %v, want 0.05 (its server's CPU counts)", runs[2].CostVsMemory)
	}
	if tab := storeTable(runs); !strings.Contains(tab, "| embedded | 10 | 2.100 | - | +5.0% |") || !strings.Contains(tab, "| redis | 10 | 2.000 | 0.100 | +5.0% |") {
		t.Fatalf("table:\n%s", tab)
	}
}
