package harness

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// isolation says where the run's traffic goes, for the logs.
var isolation = "host loopback"

// Main runs a test binary's tests; call it from TestMain. It builds strait
// (go build ./cmd/strait, once per run, with the network still at hand for
// the module cache), then re-executes the test binary in a new network
// namespace whose only interface is lo, when it runs as root and
// STRAIT_E2E_NETNS is not "off". Where namespaces are not available it runs
// the tests on the host's loopback and says so.
func Main(m *testing.M) {
	if os.Getenv(envInNetns) == "1" {
		if err := loopbackUp(); err != nil {
			fmt.Fprintf(os.Stderr, "harness: bringing lo up in the test namespace: %v\n", err)
			os.Exit(1)
		}
		isolation = "network namespace of its own (lo only)"
		code := m.Run()
		removeRunDir()
		os.Exit(code)
	}
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every e2e test skips in short mode: nothing to build
	}

	dir, err := os.MkdirTemp("", "strait-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
	code := run(m, dir)
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(m *testing.M, dir string) int {
	if os.Getenv(envStraitBin) == "" && os.Getenv(envStraitErr) == "" {
		bin, err := buildStrait(dir)
		if err != nil {
			os.Setenv(envStraitErr, err.Error())
		} else {
			os.Setenv(envStraitBin, bin)
		}
	}
	why := ""
	switch {
	case os.Getenv(envNetns) == "off":
		why = envNetns + "=off"
	case os.Geteuid() != 0:
		why = "not root"
	default:
		code, err := runInNetns()
		if err == nil {
			return code
		}
		why = err.Error()
	}
	isolation = "host loopback with free ports (no network namespace: " + why + ")"
	fmt.Fprintf(os.Stderr, "harness: running on the %s\n", isolation)
	code := m.Run()
	removeRunDir()
	return code
}

// buildStrait builds cmd/strait and cmd/strait-dataplane into dir and
// returns strait's path (strait-dataplane is beside it, see
// DataplaneBin), or an error that says why there is none, worded for a
// skip message.
func buildStrait(dir string) (string, error) {
	root := RepoRoot()
	if _, err := os.Stat(filepath.Join(root, "cmd", "strait")); err != nil {
		return "", fmt.Errorf("strait binary not available: cmd/strait not in this tree")
	}
	bin := filepath.Join(dir, "strait")
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if os.Getenv(envRace) == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/strait", "./cmd/strait-dataplane")...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("strait binary build failed (go %s ./cmd/strait ./cmd/strait-dataplane: %v):\n%s",
			strings.Join(args, " "), err, lastLines(out.String(), 30))
	}
	fmt.Fprintf(os.Stderr, "harness: built strait in %s\n", time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}
