package server

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// String is everything written so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tWriterIf is the test's log when STRAIT_TEST_LOG is set, else nothing.
func tWriterIf(t *testing.T) io.Writer {
	if os.Getenv("STRAIT_TEST_LOG") == "" {
		return io.Discard
	}
	return tWriter{t}
}

// waitStateUp waits until the server sees the store as up (or down).
func waitStateUp(t *testing.T, e *env, up bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.State.Up() != up {
		if time.Now().After(deadline) {
			t.Fatalf("state store up=%v, want %v", e.srv.State.Up(), up)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A store that goes down: new calls get 503 with Retry-After, counted and
// logged; the call in progress goes on (media, BYE); when the store is
// back new calls go through again. Once with a memory store made to fail,
// once with a real redis-server killed (SIGKILL) mid-call and started
// again on the same port.
func TestStateStoreDown(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		store := state.NewMemory()
		stateStoreDown(t, store, func() { store.SetFailure(errors.New("connection refused")) }, func() { store.SetFailure(nil) })
	})
	t.Run("redis-server killed", func(t *testing.T) {
		r := statetest.StartRedis(t)
		store, err := state.OpenRedis(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		stateStoreDown(t, store, r.Stop, r.Restart)
	})
}

func stateStoreDown(t *testing.T, store state.Store, down, up func()) {
	logs := &syncBuffer{}
	tr := startTrunkOpts(t, nil, func(o *Options) {
		o.Store = store
		o.Log = slog.New(slog.NewTextHandler(io.MultiWriter(logs, tWriterIf(t)), nil))
	})
	tr.register(t)

	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain := newPlain(t)
	go inc.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := mb.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tr.waitConnected()

	down()
	waitStateUp(t, tr.env, false)
	// The writer flips its health before it logs the change: wait for
	// the line, do not expect it at the instant Up turns false.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "state store down: new calls are refused (503)"); {
		if time.Now().After(deadline) {
			t.Fatalf("no log line says why new calls are refused:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	mb2 := newBrowserMedia(t)
	call2, err := tr.browser.Invite(ctx(t), "carol", []byte(mb2.Offer))
	if err != nil {
		t.Fatal(err)
	}
	res2, err := call2.WaitAnswer(ctx(t), "")
	if res2 == nil || res2.StatusCode != 503 || res2.GetHeader("Retry-After") == nil {
		t.Fatalf("a new call while the store is down: %v %v, want 503 with Retry-After", res2, err)
	}
	reg := tr.srv.Metrics.Registry
	if v := metricValue(t, reg, "strait_state_store_up", nil); v != 0 {
		t.Fatalf("strait_state_store_up = %v while down", v)
	}
	if v := metricValue(t, reg, "strait_calls_refused_total", map[string]string{"reason": "state"}); v != 1 {
		t.Fatalf("refusals for the state store: %v, want 1", v)
	}
	// The call in progress carries media, both ways.
	var bseq, pseq uint16 = 100, 300
	browserToPlain(t, mb, &bseq, plain, "down-b2p", 5)
	plainToBrowser(t, plain, plainAddr(t, inc.Invite.Body()), &pseq, mb, "down-p2b", 5)

	up()
	waitStateUp(t, tr.env, true)
	// As for the store going down: the writer flips its health before it
	// logs the change (a CI run read the log at the instant in between).
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "state store answers again"); {
		if time.Now().After(deadline) {
			t.Fatalf("no log line says the store is back:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := metricValue(t, reg, "strait_state_store_up", nil); v != 1 {
		t.Fatalf("strait_state_store_up = %v once back", v)
	}
	call3, err := tr.browser.Invite(ctx(t), "dave", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc3, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatalf("a new call once the store is back did not reach the PBX: %v", err)
	}
	inc3.Reject(486, "Busy Here")
	if res3, _ := call3.WaitAnswer(ctx(t), ""); res3 == nil || res3.StatusCode != 486 {
		t.Fatalf("the busy call: %v", res3)
	}
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
}
