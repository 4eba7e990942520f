package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SippConfig describes one sipp run. Scenario files live in tests/e2e/sipp.
type SippConfig struct {
	// Name names the run's artifacts (default: the scenario's base name).
	Name string
	// Scenario is the file name of the scenario in tests/e2e/sipp, or an
	// absolute path (another suite's scenario). Required.
	Scenario string
	// Remote is where a UAC sends its first request ("127.0.0.1:5060");
	// empty for a UAS.
	Remote string
	// Service is the user part of the Request-URI a UAC calls (-s).
	Service string
	// Port is sipp's SIP port; 0 picks a free one. A fixed port lets one
	// strait (whose --upstream names it) meet several sipp runs in turn.
	Port int
	// TCP selects SIP over TCP (one connection per sipp, -t t1); UDP by default.
	TCP bool
	// Calls is the number of calls before sipp exits (-m); default 1.
	Calls int
	// Rate is the call rate of a UAC, calls per second (-r); 0 for sipp's default of 10.
	Rate int
	// Limit caps simultaneous calls (-l); 0 for sipp's default.
	Limit int
	// Pause is the length of a scenario's bare <pause/> (-d).
	Pause time.Duration
	// RTPEcho makes sipp echo the RTP it receives on its media port (-rtp_echo).
	RTPEcho bool
	// Keys sets scenario keywords (-key NAME VALUE), used as [NAME] in the XML.
	Keys map[string]string
	// Timeout ends sipp, as a failure, after this long (-timeout); default 60 s.
	Timeout time.Duration
	// Args are extra command-line arguments.
	Args []string
}

// Sipp is a running sipp.
type Sipp struct {
	*Process
	// Port is sipp's SIP port and MediaPort its first media port, both on 127.0.0.1.
	Port, MediaPort int
	dir             string
}

// StartSipp starts sipp for the test (stopped at the end of the test), in
// a directory of the test's artifacts that receives its message trace,
// errors, statistics, final screen, and tone.al (8 kHz A-law ToneHz tone)
// for scenarios that stream audio with rtp_stream.
func (e *Env) StartSipp(cfg SippConfig) *Sipp {
	e.t.Helper()
	name := cfg.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(cfg.Scenario), ".xml")
	}
	scenario := cfg.Scenario
	if !filepath.IsAbs(scenario) {
		scenario = filepath.Join(E2EDir(), "sipp", scenario)
	}
	dir := e.Artifact("sipp-" + name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tone.al"), toneALaw(4), 0o644); err != nil {
		e.t.Fatal(err)
	}
	s := &Sipp{Port: cfg.Port, MediaPort: freeMediaPort(e.t), dir: dir}
	if s.Port == 0 {
		s.Port = FreePort(e.t)
	}
	if cfg.Calls == 0 {
		cfg.Calls = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	argv := []string{"sipp", "-sf", scenario,
		"-i", LoopbackIP, "-mi", LoopbackIP, "-p", strconv.Itoa(s.Port), "-mp", strconv.Itoa(s.MediaPort),
		"-m", strconv.Itoa(cfg.Calls), "-nostdin", "-aa",
		"-timeout", fmt.Sprintf("%ds", int(cfg.Timeout.Seconds())), "-timeout_error",
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_stat", "-stf", filepath.Join(dir, "stats.csv"), "-fd", "1",
		"-trace_screen", "-screen_file", filepath.Join(dir, "screen.log"),
	}
	if cfg.TCP {
		argv = append(argv, "-t", "t1")
	}
	if cfg.Service != "" {
		argv = append(argv, "-s", cfg.Service)
	}
	if cfg.Rate > 0 {
		argv = append(argv, "-r", strconv.Itoa(cfg.Rate))
	}
	if cfg.Limit > 0 {
		argv = append(argv, "-l", strconv.Itoa(cfg.Limit))
	}
	if cfg.Pause > 0 {
		argv = append(argv, "-d", strconv.Itoa(int(cfg.Pause.Milliseconds())))
	}
	if cfg.RTPEcho {
		argv = append(argv, "-rtp_echo")
	}
	keys := make([]string, 0, len(cfg.Keys))
	for k := range cfg.Keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, "-key", k, cfg.Keys[k])
	}
	argv = append(argv, cfg.Args...)
	if cfg.Remote != "" {
		argv = append(argv, cfg.Remote)
	}
	p, err := e.startProcess("sipp-"+name, dir, nil, 3*time.Second, argv...)
	if err != nil {
		e.t.Fatal(err)
	}
	s.Process = p
	return s
}

// freeMediaPort returns an even port with the next seven free too: sipp
// binds the media port, +1 (RTCP), +2 and +3 (video), and rtp_stream
// allocates from the media port upwards.
func freeMediaPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		low, _ := splitRange(portRangeCandidate(8))
		free := true
		for p := low; p < low+8 && free; p++ {
			free = udpFree(p)
		}
		if free && claimPorts(t, low, low+7) {
			return low
		}
	}
	t.Fatal("no free UDP media ports for sipp")
	return 0
}

// Addr returns sipp's SIP address, host:port.
func (s *Sipp) Addr() string { return hostPort(s.Port) }

// Wait waits for sipp to finish its calls and returns an error unless every
// call succeeded (exit status 0), with the tail of its error log.
func (s *Sipp) Wait(ctx context.Context) error {
	err := s.Process.Wait(ctx)
	if s.Exited() && s.ExitCode() == 0 {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("exit status %d", s.ExitCode())
	}
	errs, _ := os.ReadFile(filepath.Join(s.dir, "errors.log"))
	return fmt.Errorf("sipp %s: %w (%s)\n%s", s.Name, err, sippExitMeaning(s.ExitCode()), lastLines(string(errs), 15))
}

func sippExitMeaning(code int) string {
	switch code {
	case 0:
		return "all calls succeeded"
	case 1:
		return "at least one call failed"
	case 97:
		return "exit on internal command; calls may have been processed"
	case 99:
		return "normal exit without calls processed"
	case -1:
		return "did not exit"
	}
	return "fatal error"
}

// Messages returns sipp's SIP message trace so far.
func (s *Sipp) Messages() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "messages.log"))
	return string(b)
}

// Received returns the SIP messages sipp received, each from its start line.
func (s *Sipp) Received() []string { return s.trace("message received [") }

// Sent returns the SIP messages sipp sent (retransmissions included), each
// from its start line.
func (s *Sipp) Sent() []string { return s.trace("message sent (") }

func (s *Sipp) trace(marker string) []string {
	var out []string
	for _, block := range strings.Split(s.Messages(), "\n----------------------------------------------- ") {
		i := strings.Index(block, marker)
		if i < 0 {
			continue
		}
		body := block[i:]
		if j := strings.Index(body, "\n"); j >= 0 {
			body = body[j+1:]
		}
		out = append(out, strings.TrimLeft(body, "\n"))
	}
	return out
}

// Stats returns the last line of sipp's statistics file as a map from
// column name (TargetRate, SuccessfulCall(C), FailedCall(C), ...) to value.
func (s *Sipp) Stats() map[string]string {
	b, err := os.ReadFile(filepath.Join(s.dir, "stats.csv"))
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return nil
	}
	head := strings.Split(strings.TrimSuffix(lines[0], ";"), ";")
	last := strings.Split(strings.TrimSuffix(lines[len(lines)-1], ";"), ";")
	out := make(map[string]string, len(head))
	for i, h := range head {
		if i < len(last) {
			out[h] = last[i]
		}
	}
	return out
}
