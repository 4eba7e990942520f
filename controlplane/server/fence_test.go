package server

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// memberVia starts a cluster member like clusterRig.member, reaching Redis
// through its own store (a cutProxy's).
func (r *clusterRig) memberVia(id string, st state.Store) *Server {
	r.t.Helper()
	cfg := r.cfg
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CDRFile = filepath.Join(r.dir, id+".jsonl")
	cfg.InstanceID = id
	srv, err := New(Options{Config: cfg, Nodes: nodesOf(r.node), Store: st, Log: testLog(r.t),
		ClusterHeartbeat: testHeartbeat, ClusterTTL: testTTL, TakeoverGrace: testGrace})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { srv.Close() })
	return srv
}

// storedOwner is the owner the store's record of call id names ("" when
// there is none).
func storedOwner(t *testing.T, st state.Store, id string) string {
	t.Helper()
	b, ok, err := st.Get(ctx(t), state.Calls, id)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	var r struct {
		Owner string `json:"owner"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Owner
}

// A control plane cut off from Redis for longer than its lease fences
// itself: it answers no in-dialog request of its calls (counted), writes
// nothing and refuses new calls. Once it reaches Redis again it finds
// which calls a peer took over meanwhile and drops its copies without a
// BYE to anyone (the peer carries the call on: its BYE, its one CDR); a
// call nobody took over it carries on itself.
//
// A Redis that comes back empty after such a cut-off lost this member's
// listing too, which is no sign of a takeover: the member keeps its call
// and writes its record again.
func TestClusterFencing(t *testing.T) {
	t.Run("taken over", func(t *testing.T) { clusterFencing(t, true, false) })
	t.Run("nobody took over", func(t *testing.T) { clusterFencing(t, false, false) })
	t.Run("redis came back empty", func(t *testing.T) { clusterFencing(t, false, true) })
}

func clusterFencing(t *testing.T, peer, wipe bool) {
	r := newClusterRig(t)
	px := statetest.NewCutProxy(t, r.redis.Addr)
	stA, err := state.OpenRedis(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stA.Close() })
	a := r.memberVia("cp-a", stA)
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	ac := r.call(a)
	calls := a.Engine.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls on A: %+v", calls)
	}
	id, sess := calls[0].ID, calls[0].Session
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var bsrv *Server
	if peer {
		bsrv = r.member("cp-b")
	}

	cutOff, restore := px.Cut, px.Restore
	if wipe {
		cutOff, restore = r.redis.Stop, r.redis.Restart
	}
	cutOff()
	cut := time.Now()
	waitFor(t, "A fences itself", testTTL+5*time.Second, func() bool { return !a.owning() })
	if took := time.Since(cut); took > testTTL+2*testHeartbeat {
		t.Logf("A fenced %v after the cut (lease %v): a loaded machine", took, testTTL)
	}
	waitFor(t, "A refuses new calls", 5*time.Second, func() bool { return !a.State.Up() })
	// The PBX's re-INVITE to A is not answered (its transaction gives
	// up here; a real PBX's retransmissions reach whoever owns the call).
	drops := a.Engine.FencedDrops()
	rctx, cancel := context.WithTimeout(ctx(t), time.Second)
	res, err := ac.inc.Reinvite(rctx, siptest.PlainSDP(2, ac.plain.Addr(), ac.plain.RTCPAddr(), "sendrecv", false))
	cancel()
	if err == nil {
		t.Fatalf("A answered a re-INVITE while fenced: %v", res)
	}
	if a.Engine.FencedDrops() <= drops {
		t.Fatal("the dropped re-INVITE was not counted")
	}
	if v := metricValue(t, a.Metrics.Registry, "strait_sip_dropped_total", map[string]string{"transport": "udp", "reason": "fenced"}); v < 1 {
		t.Fatalf("strait_sip_dropped_total{reason=fenced} = %v", v)
	}

	if peer {
		waitFor(t, "B takes A's call over", 15*time.Second, func() bool { return len(bsrv.Engine.Calls()) == 1 })
		// The call is in B's engine a moment before its record is written.
		waitFor(t, "the call's record names cp-b after the takeover", 5*time.Second, func() bool {
			return storedOwner(t, r.store, id) == "cp-b"
		})
		// The browser comes back through the load balancer, to B.
		r.browser.SetPeer(bsrv.HTTPAddr())
		r.register()
	}
	restore()
	if peer {
		waitFor(t, "A drops its copy of the call", 10*time.Second, func() bool { return len(a.Engine.Calls()) == 0 })
		waitFor(t, "A owns again", 10*time.Second, a.owning)
		if err := ac.call.WaitEnded(300 * time.Millisecond); err == nil {
			t.Fatal("the browser got a BYE when A dropped the call")
		}
		if err := ac.inc.WaitEnded(0); err == nil {
			t.Fatal("the PBX got a BYE when A dropped the call")
		}
		// What A had queued for the call did not overwrite B's record.
		if err := a.State.Flush(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got := storedOwner(t, r.store, id); got != "cp-b" {
			t.Fatalf("the call's record names %q after A came back, want cp-b", got)
		}
		if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 1 || ss[0].GetId() != sess {
			t.Fatalf("the call's session after A dropped it: %v", ss)
		}
		browserToPlain(t, ac.mb, &ac.bseq, ac.plain, "after A came back", 5)
		// B carries the call on: the PBX's BYE to B ends it on both sides.
		r.pbx.SetPeer(bsrv.SIPAddr())
		ac.inc.SendTo(bsrv.SIPAddr())
	} else {
		waitFor(t, "A owns again", 10*time.Second, a.owning)
		if wipe && a.State.Lost() == 0 {
			t.Fatal("A did not see that Redis came back empty")
		}
		if got := a.Engine.Calls(); len(got) != 1 || got[0].ID != id {
			t.Fatalf("A's calls after it came back: %+v", got)
		}
		waitFor(t, "A writes again", 5*time.Second, a.State.Up)
		if err := a.State.Flush(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got := storedOwner(t, r.store, id); got != "cp-a" {
			t.Fatalf("the call's record names %q, want cp-a", got)
		}
		// A answers the call's requests again.
		ac.call.OnReinvite(func(offer []byte) (int, []byte) { return 200, reanswer(t, ac.mb.PC, offer) })
		if res, err := ac.inc.Reinvite(ctx(t), siptest.PlainSDP(3, ac.plain.Addr(), ac.plain.RTCPAddr(), "sendrecv", false)); err != nil || res.StatusCode != 200 {
			t.Fatalf("re-INVITE through A once it owns again: %v %v", res, err)
		}
		<-ac.call.Reinvites
	}
	if err := ac.inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := ac.call.WaitEnded(5 * time.Second); err != nil {
		t.Fatalf("the browser got no BYE: %v", err)
	}
	owner := a
	if peer {
		owner = bsrv
	}
	waitFor(t, "the call ends", 10*time.Second, func() bool {
		return len(owner.Engine.Calls()) == 0 && sum(owner.Pool.Sessions()) == 0
	})
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if err := owner.State.Flush(ctx(t)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if got := storedOwner(t, r.store, id); got != "" {
		t.Fatalf("the call's record is left in Redis, owned by %q", got)
	}
	if lines := r.cdrs("cp-a", "cp-b"); len(lines) != 1 || !strings.Contains(lines[0], `"callee bye"`) {
		t.Fatalf("CDRs %q, want one with callee bye", lines)
	}
}
