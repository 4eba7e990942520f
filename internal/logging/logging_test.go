package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
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
