// Package harness runs Strait's end-to-end tests: it builds the strait
// binary once per test run, isolates the run in a network namespace of its
// own, and starts the real peers a test needs (the strait process, sipp as
// a PBX or caller, headless Chromium with JsSIP or the built-in web phone),
// collecting their logs so that a failure says which step broke and shows
// what each peer saw.
//
// A test binary hands its TestMain to Main. Tests then ask for what they
// need with Need, which skips the test naming what is missing (Chromium,
// sipp, the test page's node_modules, the strait binary) or, when CI=true,
// fails it: CI installs everything with scripts/install-test-deps.sh, so a
// missing tool there is a broken install, not a reason to pass quietly.
//
// All traffic stays on loopback: inside the run's network namespace when
// the test runs as root, on the host's 127.0.0.1 with free ports
// otherwise. Every process is bounded in time and stopped by t.Cleanup.
package harness

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
)

// LoopbackIP is the only address the tests use.
const LoopbackIP = "127.0.0.1"

// Environment variables the harness reads. Documented in tests/e2e/README.md.
const (
	envCI         = "CI"                       // "true": missing tools fail instead of skipping
	envChromium   = "STRAIT_E2E_CHROMIUM"      // Chromium binary (default: chromium in PATH)
	envNetns      = "STRAIT_E2E_NETNS"         // "off": never use a network namespace
	envInNetns    = "STRAIT_E2E_IN_NETNS"      // set by Main in the re-executed child
	envStraitBin  = "STRAIT_E2E_STRAIT"        // prebuilt strait binary; Main sets it for the child
	envStraitErr  = "STRAIT_E2E_STRAIT_ERROR"  // why there is no binary; Main sets it for the child
	envRace       = "STRAIT_E2E_RACE"          // "1": build strait with the race detector
	envArtifacts  = "STRAIT_E2E_ARTIFACTS"     // keep every test's logs under this directory
	envScreenshot = "STRAIT_UPDATE_SCREENSHOT" // "1": tests may rewrite docs/webphone.png
	envBrowsers   = "STRAIT_E2E_BROWSERS"      // how many tests run Chromium at once (default 2)
)

// StraitBin is the strait binary the harness built (or was given), for
// tests that run it themselves; empty outside a harness run.
func StraitBin() string { return os.Getenv(envStraitBin) }

// DataplaneBin is the strait-dataplane binary built beside StraitBin's
// strait (or given beside it with STRAIT_E2E_STRAIT); empty when there is
// none.
func DataplaneBin() string {
	bin := os.Getenv(envStraitBin)
	if bin == "" {
		return ""
	}
	dp := filepath.Join(filepath.Dir(bin), "strait-dataplane")
	if _, err := os.Stat(dp); err != nil {
		return ""
	}
	return dp
}

// CI reports whether the tests run in CI (CI=true), where a missing tool is
// a failure.
func CI() bool { return os.Getenv(envCI) == "true" }

// UpdateScreenshot reports whether tests should rewrite docs/webphone.png.
func UpdateScreenshot() bool { return os.Getenv(envScreenshot) == "1" }

var rootOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: go.mod not found above the working directory")
		}
		dir = parent
	}
})

// RepoRoot returns the module's root directory (where go.mod is), found
// from the working directory, which go test sets to the package's.
func RepoRoot() string {
	dir, err := rootOnce()
	if err != nil {
		panic(err)
	}
	return dir
}

// E2EDir returns tests/e2e in the repository: the sipp scenarios, test
// pages and JavaScript dependencies live there.
func E2EDir() string { return filepath.Join(RepoRoot(), "tests", "e2e") }
