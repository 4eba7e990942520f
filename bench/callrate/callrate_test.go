package callrate

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// A short run against the strait of this tree: every call completes, and
// the report holds the figures it promises.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("sipp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sipp is missing (scripts/install-test-deps.sh installs sip-tester)")
		}
		t.Skip("sipp not installed (apt install sip-tester)")
	}
	if testing.Short() {
		t.Skip("builds strait and places calls")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, dumpcapErr := exec.LookPath("dumpcap")
	res, err := Run(ctx, Config{Rate: 20, Duration: time.Second, Hold: 200 * time.Millisecond, Settle: -1, Wire: dumpcapErr == nil})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.Calls != 20 || res.Successful != 20 || res.Failed != 0 {
		t.Fatalf("%d calls, %d successful, %d failed", res.Calls, res.Successful, res.Failed)
	}
	if res.CPUS <= 0 || res.PeakHeapMB <= 0 || res.PeakRSSMB <= 0 || res.InviteMaxMs < res.InviteP50Ms ||
		res.SippCPUPerCallMs <= 0 || res.MachineBusy <= 0 || res.MachineBusy > 1 {
		t.Fatalf("figures missing: %+v", *res)
	}
	switch {
	case dumpcapErr != nil:
		t.Log("dumpcap not installed: strait's own answer times not checked")
	case res.WireNote != "":
		t.Logf("no capture (a kernel or container may refuse it): %s", res.WireNote)
	case res.WireRequests < 30 || res.WireRequests > 40 || res.WireInviteMaxMs < res.WireInviteP50Ms || res.WireInviteP50Ms <= 0:
		// 20 INVITEs and 20 BYEs; a capture on a loaded machine may miss
		// a datagram at its edges, so a few fewer pass.
		t.Fatalf("wire figures: %d requests paired (want 20 INVITEs and 20 BYEs), %+v", res.WireRequests, *res)
	default:
		t.Logf("wire: %d requests paired, INVITE p50 %.2f ms", res.WireRequests, res.WireInviteP50Ms)
	}
}

func TestQuantile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	for q, want := range map[float64]float64{0.5: 3, 0.99: 5, 1: 5, 0: 1} {
		if got := quantile(v, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	m, err := parseMachineCPU("cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if m.busy != 170 || m.all != 990 {
		t.Fatalf("%+v, want busy 170 of 990", m)
	}
	later := machineCPU{busy: m.busy + 30, all: m.all + 40}
	if s := m.share(later); s != 0.75 {
		t.Fatalf("share %v, want 0.75", s)
	}
	if _, err := parseMachineCPU("intr 1 2 3\n"); err == nil {
		t.Fatal("no cpu line accepted")
	}
}
