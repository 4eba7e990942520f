package harness

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Requirement is something a test needs from the machine.
type Requirement int

const (
	// NeedStrait is the strait binary, built by Main from cmd/strait.
	NeedStrait Requirement = iota
	// NeedChromium is Debian's chromium (or STRAIT_E2E_CHROMIUM).
	NeedChromium
	// NeedSipp is sipp (Debian's sip-tester).
	NeedSipp
	// NeedJsSIP is the test page's JavaScript: tests/e2e/js/node_modules (npm ci) and node to bundle it.
	NeedJsSIP
	// NeedKamailio is Debian's kamailio with its tls and websocket modules.
	NeedKamailio
	// NeedDnsmasq is Debian's dnsmasq (dnsmasq-base), a DNS server for names.
	NeedDnsmasq
	// NeedKamailioPresence is kamailio with its presence modules
	// (kamailio-presence-modules) and the db_text table templates.
	NeedKamailioPresence
)

// browserSlots bounds how many tests run Chromium at once
// (STRAIT_E2E_BROWSERS, default 2: one per core of a CI machine).
var browserSlots = make(chan struct{}, browserSlotCount())

func browserSlotCount() int {
	if n, err := strconv.Atoi(os.Getenv(envBrowsers)); err == nil && n > 0 {
		return n
	}
	return 2
}

// TestTimeout bounds one test, whatever its steps ask for.
const TestTimeout = 3 * time.Minute

// Env is one test's harness: its requirements, artifacts directory,
// deadline and numbered steps.
type Env struct {
	t     testing.TB
	ctx   context.Context
	dir   string // artifacts
	steps int
}

// New checks the requirements (skipping or, in CI, failing the test when
// one is missing) and returns the test's Env. Everything started through
// the Env is stopped when the test ends; if the test failed, the logs of
// every peer are printed (their tails) and kept on disk.
func New(t testing.TB, needs ...Requirement) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in short mode")
	}
	declareInputs()
	var missing []string
	for _, r := range needs {
		if why, always := check(r); why != "" {
			if always {
				t.Skip(why)
			}
			missing = append(missing, why)
		}
	}
	if len(missing) > 0 {
		msg := strings.Join(missing, "; ")
		if CI() {
			t.Fatalf("CI=true and a tool is missing (scripts/install-test-deps.sh installs them): %s", msg)
		}
		t.Skip(msg)
	}

	for _, r := range needs {
		if r == NeedChromium {
			// Chromium is the heavy peer: parallel tests take turns
			// beyond browserSlots, before they start anything else (a
			// sipp waiting for its call would time out meanwhile).
			browserSlots <- struct{}{}
			t.Cleanup(func() { <-browserSlots })
			break
		}
	}
	e := &Env{t: t}
	if root := os.Getenv(envArtifacts); root != "" {
		e.dir = filepath.Join(root, sanitize(t.Name()))
		os.RemoveAll(e.dir)
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		dir, err := os.MkdirTemp("", "strait-e2e-"+sanitize(t.Name())+"-")
		if err != nil {
			t.Fatal(err)
		}
		e.dir = dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), TestTimeout)
	e.ctx = ctx
	// Registered first, so it runs last: after every peer has stopped and
	// written its logs.
	t.Cleanup(func() {
		cancel()
		e.report()
	})
	t.Logf("isolation: %s; artifacts: %s", isolation, e.dir)
	return e
}

// check says why r is missing ("" when present), and whether that is a
// skip even in CI (strait's source not being in the tree yet).
func check(r Requirement) (why string, always bool) {
	switch r {
	case NeedStrait:
		if bin := os.Getenv(envStraitBin); bin != "" {
			if _, err := os.Stat(bin); err == nil {
				return "", false
			}
		}
		why := os.Getenv(envStraitErr)
		switch {
		case why == "":
			return "strait binary not available: the test binary's TestMain does not call harness.Main", false
		case strings.Contains(why, "not in this tree"):
			return why, true
		}
		return why, false
	case NeedChromium:
		if _, err := ChromiumPath(); err != nil {
			return err.Error(), false
		}
	case NeedSipp:
		if _, err := exec.LookPath("sipp"); err != nil {
			return "sipp not installed (Debian package sip-tester; scripts/install-test-deps.sh)", false
		}
	case NeedKamailio:
		if _, err := exec.LookPath("kamailio"); err != nil {
			return "kamailio not installed (Debian packages kamailio, kamailio-tls-modules; scripts/install-test-deps.sh)", false
		}
	case NeedKamailioPresence:
		if _, err := exec.LookPath("kamailio"); err != nil || !kamailioPresence() {
			return "kamailio presence modules not installed (Debian package kamailio-presence-modules; scripts/install-test-deps.sh)", false
		}
	case NeedDnsmasq:
		if _, err := exec.LookPath("dnsmasq"); err != nil {
			return "dnsmasq not installed (Debian package dnsmasq-base; scripts/install-test-deps.sh)", false
		}
	case NeedJsSIP:
		if _, err := os.Stat(filepath.Join(E2EDir(), "js", "node_modules", "jssip", "package.json")); err != nil {
			return "tests/e2e/js/node_modules missing (run: cd tests/e2e/js && npm ci, or scripts/install-test-deps.sh)", false
		}
		if _, err := exec.LookPath("node"); err != nil {
			return "node not installed (needed to bundle JsSIP; scripts/install-test-deps.sh)", false
		}
	}
	return "", false
}

// ChromiumPath returns the Chromium binary: STRAIT_E2E_CHROMIUM, or chromium in PATH.
func ChromiumPath() (string, error) {
	if p := os.Getenv(envChromium); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%s=%s: %v", envChromium, p, err)
		}
		return p, nil
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		return "", fmt.Errorf("chromium not installed (Debian package chromium; scripts/install-test-deps.sh)")
	}
	return p, nil
}

// T returns the test.
func (e *Env) T() testing.TB { return e.t }

// Context returns the test's context, done at the end of the test or after TestTimeout.
func (e *Env) Context() context.Context { return e.ctx }

// Artifact returns the path of a file named name in the test's artifacts.
func (e *Env) Artifact(name string) string { return filepath.Join(e.dir, sanitize(name)) }

// WriteArtifact writes a file to the test's artifacts.
func (e *Env) WriteArtifact(name string, data []byte) {
	if err := os.WriteFile(e.Artifact(name), data, 0o644); err != nil {
		e.t.Logf("artifact %s: %v", name, err)
	}
}

// Step runs one named step of the scenario with its own timeout and fails
// the test, naming the step, if it returns an error.
func (e *Env) Step(name string, timeout time.Duration, f func(ctx context.Context) error) {
	e.t.Helper()
	e.steps++
	n := e.steps
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		e.t.Fatalf("step %d (%s) failed after %s: %v", n, name, took, err)
	}
	e.t.Logf("step %d (%s) ok in %s", n, name, took)
}

// report prints the tails of the artifacts of a failed test, and removes
// the artifacts of a passed one unless STRAIT_E2E_ARTIFACTS keeps them.
func (e *Env) report() {
	if !e.t.Failed() {
		if os.Getenv(envArtifacts) == "" {
			os.RemoveAll(e.dir)
		}
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "artifacts of the failed test are kept in %s", e.dir)
	filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !quoted(d.Name()) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil || len(data) == 0 {
			return nil
		}
		rel, _ := filepath.Rel(e.dir, path)
		fmt.Fprintf(&b, "\n===== %s (tail)\n%s", rel, lastLines(string(data), 40))
		return nil
	})
	e.t.Log(b.String())
}

// quoted reports whether report prints the tail of an artifact: text that
// says what went wrong. Chromium's own log is mostly noise about D-Bus and
// sound cards in a container; it stays on disk with the rest.
func quoted(name string) bool {
	switch filepath.Ext(name) {
	case ".png", ".wav", ".al", ".csv":
		return false
	}
	return name != "chromium.log"
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func sanitize(s string) string { return unsafeChars.ReplaceAllString(s, "_") }
