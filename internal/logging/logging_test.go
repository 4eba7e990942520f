package logging

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/internal/racecheck"
)

func TestNoRepeatedKeys(t *testing.T) {
	for _, format := range Formats {
		var buf bytes.Buffer
		log, err := New(&buf, format, slog.LevelDebug)
		if err != nil {
			t.Fatal(err)
		}
		// What sipnet and sipgo did: component twice, caller twice.
		l := log.With(KeyComponent, "sip").With(KeyComponent, "sipgo", "caller", "Client")
		l.Info("request", "caller", "TransactionLayer", KeyCall, "c1", KeySIPCallID, "abc@host")
		line := buf.String()
		for _, k := range []string{KeyComponent, "caller", KeyCall, KeySIPCallID} {
			if n := strings.Count(line, k+"="); format == "text" && n != 1 {
				t.Errorf("text: %q appears %d times in %q", k, n, line)
			}
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("json: %v: %q", err, line)
			}
			if m[KeyComponent] != "sipgo" || m["caller"] != "TransactionLayer" || m[KeyCall] != "c1" {
				t.Errorf("json: the innermost value should win: %v", m)
			}
			if strings.Count(line, `"caller"`) != 1 {
				t.Errorf("json: repeated key in %q", line)
			}
		} else if !strings.Contains(line, "component=sipgo") || !strings.Contains(line, "caller=TransactionLayer") {
			t.Errorf("text: the innermost value should win: %q", line)
		}
	}
}

func TestGroupsPassThrough(t *testing.T) {
	var buf bytes.Buffer
	log, _ := New(&buf, "json", nil)
	log.With(KeyCall, "c1").WithGroup("req").Info("x", "method", "INVITE")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m[KeyCall] != "c1" || m["req"].(map[string]any)["method"] != "INVITE" {
		t.Errorf("%s", buf.Bytes())
	}
}

func TestBadInput(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, "xml", nil); err == nil || !strings.Contains(err.Error(), "text or json") {
		t.Errorf("format xml: %v", err)
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("level loud accepted")
	}
	if l, err := ParseLevel("WARN"); err != nil || l != slog.LevelWarn {
		t.Errorf("WARN: %v %v", l, err)
	}
	var buf bytes.Buffer
	log, _ := New(&buf, "text", slog.LevelWarn)
	log.Info("hidden")
	if buf.Len() != 0 {
		t.Errorf("info written at warn: %q", buf.String())
	}
}

// A line whose keys repeat none of its logger's goes straight through the
// handler that formatted the logger's attributes once: the same bytes as
// the merge gives, in both formats.
func TestPreformattedSameOutput(t *testing.T) {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	opts := &slog.HandlerOptions{ReplaceAttr: noTime}
	for _, format := range Formats {
		var got, want bytes.Buffer
		inner := func(w *bytes.Buffer) slog.Handler {
			if format == "json" {
				return slog.NewJSONHandler(w, opts)
			}
			return slog.NewTextHandler(w, opts)
		}
		l := slog.New(Dedup(inner(&got))).With(KeyComponent, "b2bua").With(KeyCall, "c1", "caller", "alice")
		l.Info("call", "from", "browser", KeySIPCallID, "abc@host")
		l.Info("call ended", "cause", 200, KeyCall, "c2") // a repeat: merged
		slog.New(inner(&want)).Info("call", KeyComponent, "b2bua", KeyCall, "c1", "caller", "alice", "from", "browser", KeySIPCallID, "abc@host")
		slog.New(inner(&want)).Info("call ended", KeyComponent, "b2bua", KeyCall, "c2", "caller", "alice", "cause", 200)
		if got.String() != want.String() {
			t.Errorf("%s:\n got %s\nwant %s", format, got.String(), want.String())
		}
	}
}

// A call's line (issue 10's per-call log path): the logger's own keys are
// formatted once, a line costs its own attributes only.
func TestCallLineAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates (test.sh runs this without it)")
	}
	log, _ := New(io.Discard, "text", nil)
	l := log.With(KeyComponent, "b2bua").With(KeyCall, "c1", "caller", "alice", "callee", "echo")
	line := func() { l.Info("call ended", "cause", 200, "reason", "bye", "duration", time.Second) }
	line()
	if n := testing.AllocsPerRun(100, line); n > 0 {
		t.Errorf("%.0f allocations per line, want 0", n)
	}
	quiet := log.With(KeyCall, "c2")
	if n := testing.AllocsPerRun(100, func() { quiet.Debug("hidden", "cause", 200) }); n > 0 {
		t.Errorf("%.0f allocations per line below the level, want 0", n)
	}
}
