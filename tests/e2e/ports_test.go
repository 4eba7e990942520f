package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 11, tried as a new user would: a second strait started with other
// HTTP and SIP ports but the same media ports as a running one must not
// bind them beside it (SO_REUSEPORT would let it, and the kernel would
// then spread the browsers' packets over both processes). It refuses to
// start, naming the ports and the process that holds them; the first one
// goes on serving.
func TestSecondStraitOnSamePorts(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait)
	first := e.StartStrait(harness.StraitConfig{})
	var out []byte
	var code int
	e.Step("a second strait on the same --webrtc-ports refuses to start", 20*time.Second, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, harness.StraitBin(),
			"--http", harness.FreeAddr(t), "--sip", harness.FreeAddr(t),
			"--media-ip", harness.LoopbackIP, "--public-ip", harness.LoopbackIP,
			"--rtp-ports", harness.PortRange(t, 10), "--webrtc-ports", first.WebRTCPorts,
			"--data-dir", t.TempDir())
		var err error
		out, err = cmd.CombinedOutput()
		e.WriteArtifact("second-strait.log", out)
		if cmd.ProcessState == nil {
			return fmt.Errorf("second strait: %v", err)
		}
		if code = cmd.ProcessState.ExitCode(); code == 0 || code == -1 {
			return fmt.Errorf("second strait exited with %d (%v), want a refusal:\n%s", code, err, out)
		}
		return nil
	})
	e.Step("its error names the ports and the first strait", 5*time.Second, func(context.Context) error {
		low := strings.Split(first.WebRTCPorts, "-")[0]
		want := []string{"in use by", fmt.Sprintf("pid %d (strait)", first.Cmd.Process.Pid), harness.LoopbackIP + ":" + low}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				return fmt.Errorf("exit %d, output lacks %q:\n%s", code, w, out)
			}
		}
		return nil
	})
	e.Step("the first strait still serves", 5*time.Second, func(ctx context.Context) error {
		if first.Exited() {
			return fmt.Errorf("the first strait exited:\n%s", first.Log())
		}
		_, err := first.Calls(ctx)
		return err
	})
}
