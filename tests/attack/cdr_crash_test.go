package attack

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

var interimWithMedia = regexp.MustCompile(`"packets_in":[1-9]`)

// Issue 8 item 9. A call in progress when the control plane crashed left
// no CDR at all. Now its start, answer and media counters are in the
// journal within --cdr-interim; after kill -9 the next strait writes its
// record, marked recovered, with the media counted until the last interim.
func TestCrashLeavesCDR(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cdrFile := filepath.Join(dir, "cdr.jsonl")
	args := []string{"--cdr-file", cdrFile, "--cdr-interim", "1s"}
	tg := startTarget(t, targetConfig{Args: args})
	tg.holdCall()
	calls, err := tg.Calls(tg.ctx(5 * time.Second))
	if err != nil || len(calls) != 1 {
		t.Fatalf("calls: %v %v", calls, err)
	}
	id := fmt.Sprint(calls[0]["id"])
	waitFor(t, 10*time.Second, "an interim with media in the journal", func() (bool, string) {
		b, _ := os.ReadFile(cdrFile + ".journal")
		return interimWithMedia.Match(b), string(b)
	})

	if err := tg.Cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown path at all
		t.Fatal(err)
	}
	if err := tg.Wait(tg.ctx(10 * time.Second)); err == nil {
		t.Fatal("strait exited cleanly on SIGKILL?")
	}
	if recs := records(t, cdrFile); len(recs[id]) != 0 {
		t.Fatalf("a CDR before the restart: %v", recs[id])
	}

	tg.e.StartStrait(harness.StraitConfig{Users: []string{legitUser + ":" + legitPassword}, Args: args})
	recs := records(t, cdrFile)
	r := recs[id]
	if len(r) != 1 {
		t.Fatalf("%d records of the crashed call after the restart, want 1", len(r))
	}
	var packets float64
	for _, m := range r[0]["media"].([]any) {
		packets += m.(map[string]any)["packets_in"].(float64)
	}
	if r[0]["recovered"] != true || r[0]["reason"] != "control plane restart" || r[0]["answer"] == nil || packets == 0 {
		t.Fatalf("the crashed call's record: %v", r[0])
	}
	t.Logf("kill -9 mid-call: after the restart the call has its CDR (reason %q, answered, %g packets in, ended %v); before: none",
		r[0]["reason"], packets, r[0]["end"])
}

// records reads a CDR file: records by call id.
func records(t *testing.T, path string) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return out
		}
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("CDR line %q: %v", sc.Text(), err)
		}
		id := fmt.Sprint(r["id"])
		out[id] = append(out[id], r)
	}
	return out
}
