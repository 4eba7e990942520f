package server

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/internal/logging"
	"github.com/strait-sbc/strait/internal/racecheck"
)

// BenchmarkCall is one call's setup and teardown through the all-in-one
// with sipgo phones on loopback, one call at a time: INVITE with a plain
// offer, 200 with the anchored answer, ACK, BYE and its 200, the node's
// session created and deleted, the CDR and call history written. What
// strait-bench calls measures at a rate, here as counts per call that
// noise cannot move (allocs/op, B/op; they include the phones' own sipgo
// work, a constant part). "echo" is the echo extension (strait-bench
// calls' load: one leg); "sip-to-sip" a phone calling a registered one
// (two legs, both dialogs bridged).
func BenchmarkCall(b *testing.B) {
	b.Run("echo", func(b *testing.B) { benchCalls(b, "echo") })
	b.Run("sip-to-sip", func(b *testing.B) { benchCalls(b, "bob") })
}

func benchCalls(b *testing.B, callee string) {
	call := callRig(b, callee)
	call() // the first call's one-time costs (connections, pools) are not a call's
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		call()
	}
}

// callAllocsCeiling is what one echo call may allocate, all goroutines of
// the process counted (the phone's sipgo work included, about a third):
// 1 017 on the day it was set (2026-12-07, go1.25), a regression past
// half as much again fails TestCallAllocs. Lower it when a change makes a
// call cheaper for good.
const callAllocsCeiling = 1500

// TestCallAllocs pins the allocations of one call's setup and teardown
// through the all-in-one (BenchmarkCall/echo's figure), as the
// dataplane's 0-allocation tests pin its hot path: allocation and the GC
// are the largest share of what a call costs at 1 000 calls/s (issue 10).
// test.sh runs it without -race.
func TestCallAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates (test.sh runs this without it)")
	}
	if testing.Short() {
		t.Skip("places 200 calls")
	}
	call := callRig(t, "echo")
	call()
	n := testing.AllocsPerRun(200, call)
	t.Logf("%.0f allocations per echo call (ceiling %d)", n, callAllocsCeiling)
	if n > callAllocsCeiling {
		t.Errorf("%.0f allocations per call, over the ceiling of %d", n, callAllocsCeiling)
	}
}

// callRig starts an all-in-one with an in-process node and a sipgo phone,
// and returns a function that places one call to callee ("echo", or a
// registered phone that answers) and returns once strait let it go.
func callRig(tb testing.TB, callee string) func() {
	n := benchNode(tb)
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.CDRFile = filepath.Join(tb.TempDir(), "cdr.jsonl")
	// One phone places every call, as sipp does in strait-bench calls.
	cfg.MaxCallsPerUser, cfg.MaxCallRatePerUser = 0, 0
	cfg.SIPRate, cfg.MaxSIPTransactions = 0, 0
	// Logged as cmd/strait logs by default (text, info), into nothing:
	// the per-call log lines are part of what a call costs.
	log, err := logging.New(io.Discard, "text", slog.LevelInfo)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := New(Options{Config: cfg, Nodes: []*dpool.Node{{Name: "local", API: n}}, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	phone := func(user string) *siptest.Phone {
		p, err := siptest.NewUDP(srv.SIPAddr(), user)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(p.Close)
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	tb.Cleanup(cancel)
	carol := phone("carol")
	if callee != "echo" {
		bob := phone(callee)
		if res, err := bob.Register(ctx, "", 3600); err != nil || res.StatusCode != 200 {
			tb.Fatalf("REGISTER: %v %v", res, err)
		}
		answer := siptest.PlainSDP(1, netip.MustParseAddrPort("127.0.0.1:7078"), netip.AddrPort{}, "sendrecv", false)
		go func() {
			for d := range bob.Incoming {
				d.Answer(answer)
			}
		}()
	}
	offer := siptest.PlainSDP(1, netip.MustParseAddrPort("127.0.0.1:7076"), netip.AddrPort{}, "sendrecv", false)
	return func() {
		d, err := carol.Invite(ctx, callee, offer)
		if err != nil {
			tb.Fatal(err)
		}
		res, err := d.WaitAnswer(ctx, "")
		if err != nil || res.StatusCode != 200 {
			tb.Fatalf("answer: %v %v", res, err)
		}
		if err := d.Ack(ctx); err != nil {
			tb.Fatal(err)
		}
		if err := d.Hangup(ctx); err != nil {
			tb.Fatal(err)
		}
		// The call is over when strait has let it go (its session
		// deleted, its CDR written).
		for len(srv.Engine.Calls()) != 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// benchNode is an in-process node with room for a call at a time.
func benchNode(b testing.TB) *node.Node {
	var lastErr error
	for range 20 {
		base := uint16(20000 + 2*rand.IntN(20000))
		n, err := node.New(node.Config{ID: "bench", MediaAddrs: []netip.Addr{loopback},
			WebRTCPorts: portalloc.Range{First: base, Last: base + 1},
			RTPPorts:    portalloc.Range{First: base + 2, Last: base + 41}, Workers: 1,
			Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			b.Cleanup(func() { n.Close() })
			return n
		}
		lastErr = err
	}
	b.Fatalf("no dataplane node: %v", lastErr)
	return nil
}
