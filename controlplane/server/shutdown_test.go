package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/internal/racecheck"
)

// newBigNode starts an in-process node with room for pairs plain port
// pairs.
func newBigNode(t *testing.T, pairs int) *node.Node {
	t.Helper()
	var lastErr error
	for range 20 {
		base := uint16(20000 + 2*rand.IntN(10000))
		n, err := node.New(node.Config{ID: "test", MediaAddrs: []netip.Addr{loopback},
			WebRTCPorts: portalloc.Range{First: base, Last: base + 1},
			RTPPorts:    portalloc.Range{First: base + 2, Last: base + 2 + uint16(2*pairs) + 1}, Workers: 1,
			Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Cleanup(func() { n.Close() })
			return n
		}
		lastErr = err
	}
	t.Fatalf("no dataplane node: %v", lastErr)
	return nil
}

// Shutdown with 1 000 answered calls toward a PBX that stopped answering:
// every call is hung up in parallel and Close returns within
// --shutdown-timeout, with every session deleted and every CDR written.
func TestShutdownWithUnreachablePBX(t *testing.T) {
	calls := 1000
	if testing.Short() {
		calls = 100
	}
	// Under -race on a shared 2-core machine 1 000 calls' session
	// deletions and CDRs alone take seconds: the default deadline then.
	shutdown := 3 * time.Second
	if racecheck.Enabled {
		shutdown = config.DefaultShutdownTimeout
	}
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.Close()
	plain := newPlain(t)
	answer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	var answered atomic.Int64
	go func() {
		for d := range pbx.Incoming {
			go func() {
				if d.Answer(answer) == nil {
					answered.Add(1)
				}
			}()
		}
	}()
	n := newBigNode(t, calls+8)
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.Upstream = []string{"sip:" + pbx.Addr}
	cfg.ShutdownTimeout = shutdown
	cfg.MaxCallsPerUser, cfg.MaxCallRatePerUser = 0, 0 // one API user places them all
	cfg.CDRFile = filepath.Join(t.TempDir(), "cdr.jsonl")
	srv, err := New(Options{Config: cfg, Nodes: nodesOf(n), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := &env{t: t, srv: srv, node: n, cdr: cfg.CDRFile}

	// The callers are API clients (a WebRTC offer each, no DTLS needed):
	// one offer serves them all.
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	offer := []byte(b.Offer)
	b.Close()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var failed atomic.Int64
	for i := range calls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, _, err := srv.Engine.Place(cctx, b2bua.PlaceRequest{To: fmt.Sprint(1000 + i), Offer: offer}); err != nil {
				if failed.Add(1) == 1 {
					t.Errorf("call %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	e.waitSessions(calls)
	if got := len(srv.Engine.Calls()); got != calls {
		t.Fatalf("%d calls up, want %d", got, calls)
	}
	for _, c := range srv.Engine.Calls() {
		if c.State != "answered" {
			t.Fatalf("call %s is %s", c.ID, c.State)
		}
	}

	// The PBX goes silent: nothing answers the BYEs.
	pbx.Close()
	began := time.Now()
	srv.Engine.Close()
	took := time.Since(began)
	t.Logf("%d calls hung up in %v (deadline %v)", calls, took, shutdown)
	// The deadline is the bound; the slack is only for the scheduling of a
	// loaded machine (a -race build among other builds on 2 cores runs the
	// 1 000 loops' last steps tens of times slower). A serial shutdown
	// would take 1 000 x 8 s.
	slack := time.Second
	if racecheck.Enabled {
		slack = shutdown
	}
	if took > shutdown+slack {
		t.Fatalf("Engine.Close took %v, deadline %v", took, shutdown)
	}
	e.waitCalls(0)
	e.waitSessions(0)
	srv.Close()
	lines := e.cdrLines()
	shut := 0
	for _, l := range lines {
		if strings.Contains(l, `"reason":"shutdown"`) && strings.Contains(l, `"cause":503`) {
			shut++
		}
	}
	if shut != calls {
		t.Fatalf("%d CDRs of calls ended by the shutdown, want %d (of %d lines)", shut, calls, len(lines))
	}
}
