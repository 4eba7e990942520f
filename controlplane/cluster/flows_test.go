package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCallIDOf(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/WS x.invalid\r\nCall-ID: abc@d\r\n\r\n", "abc@d"},
		{"SIP/2.0 200 OK\r\ni:  short \r\n\r\n", "short"},
		{"INVITE sip:a@b SIP/2.0\r\ncall-id:lower\r\n\r\n", "lower"},
		{"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\nCall-ID: in-body\r\n", ""},
		{"INVITE sip:a@b SIP/2.0\nCall-ID: bare-lf\n\n", "bare-lf"},
		{"", ""},
		{"garbage without lines", ""},
	} {
		if got := callIDOf([]byte(tc.msg)); got != tc.want {
			t.Errorf("callIDOf(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// FuzzCallIDOf: any bytes a browser sends are looked at without a crash,
// and what comes back is a single header line's value.
func FuzzCallIDOf(f *testing.F) {
	f.Add([]byte("BYE sip:a@b SIP/2.0\r\nCall-ID: abc@d\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\ni: x\r\n\r\nbody"))
	f.Add([]byte(":\r\n:\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := callIDOf(b); strings.ContainsAny(got, "\r\n") {
			t.Fatalf("callIDOf returned %q", got)
		}
	})
}

// The receiver of a member's queue drops what it has seen from a sender's
// run (a push tried again after Redis took it) and what is older than
// relayMaxAge, and counts both; a sender's new run starts its numbers
// again.
func TestFlowsQueueDuplicatesAndStale(t *testing.T) {
	counts := map[string]int{}
	var mu sync.Mutex
	f := &Flows{log: slog.Default(), self: "me", cfg: FlowsConfig{OnRelay: func(direction, result string) {
		mu.Lock()
		counts[direction+"/"+result]++
		mu.Unlock()
	}}}
	now := time.Now().UnixMilli()
	in := make(chan []byte)
	ctx, cancel := context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.serve(ctx, in)
	for _, m := range []flowMsg{
		{Op: "noop", From: "peer", Flow: "x", Run: "r1", Seq: 1, At: now},
		{Op: "noop", From: "peer", Flow: "x", Run: "r1", Seq: 2, At: now},
		{Op: "noop", From: "peer", Flow: "x", Run: "r1", Seq: 2, At: now}, // pushed twice
		{Op: "noop", From: "peer", Flow: "x", Run: "r1", Seq: 1, At: now}, // older still
		{Op: "noop", From: "other", Flow: "x", Run: "r9", Seq: 1, At: now},
		{Op: "noop", From: "peer", Flow: "x", Run: "r2", Seq: 1, At: now}, // restarted
		{Op: "noop", From: "peer", Flow: "x", Run: "r2", Seq: 2, At: now - relayMaxAge.Milliseconds() - 1000},
	} {
		b, _ := json.Marshal(m)
		in <- b
	}
	cancel()
	f.wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if counts["queue/duplicate"] != 2 || counts["queue/stale"] != 1 {
		t.Fatalf("counted %v, want 2 duplicates and 1 stale", counts)
	}
}
