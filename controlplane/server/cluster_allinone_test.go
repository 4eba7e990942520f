package server

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/dataplane/portalloc"
)

// memberAllInOne starts an all-in-one control plane (in-process node,
// port ranges of its own) named id on the rig's Redis.
func (r *clusterRig) memberAllInOne(id string) *Server {
	r.t.Helper()
	cfg := r.cfg
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CDRFile = filepath.Join(r.dir, id+".jsonl")
	cfg.InstanceID = id
	base := freeUDPRange(r.t, 12)
	cfg.WebRTCPorts = portalloc.Range{First: base, Last: base}
	cfg.RTPPorts = portalloc.Range{First: base + 2, Last: base + 11}
	srv, err := New(Options{Config: cfg, Store: r.store, Log: testLog(r.t),
		ClusterHeartbeat: testHeartbeat, ClusterTTL: testTTL, TakeoverGrace: testGrace})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { srv.Close() })
	return srv
}

// Several all-in-one control planes on one Redis: each saves its
// in-process sessions to the store, but a process that starts beside a
// live peer re-creates none of the peer's (they are on the peer's ports)
// and the peer's call goes on. When the peer dies its in-process media
// dies with it: the survivor takes the call over and ends it cleanly at
// once, BYE to the PBX, one CDR with the reason, and the dead peer's
// saved sessions are deleted: nothing is left in Redis.
func TestClusterAllInOnePeers(t *testing.T) {
	r := newClusterRig(t)
	a := r.memberAllInOne("cp-a")
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.node = a.Local()
	ac := r.call(a)
	waitSessionRecords(t, a, r.store, func(recs map[string][]byte) bool { return len(recs) == 1 })

	bsrv := r.memberAllInOne("cp-b")
	if n := len(bsrv.Local().Engine().Sessions()); n != 0 {
		t.Fatalf("B re-created %d of A's in-process sessions", n)
	}
	if got := bsrv.Engine.Calls(); len(got) != 0 {
		t.Fatalf("B adopted a live peer's calls: %+v", got)
	}
	// Several heartbeats: A's call and media go on; B's keeper leaves A's
	// saved session alone.
	time.Sleep(testTTL + 4*testHeartbeat)
	browserToPlain(t, ac.mb, &ac.bseq, ac.plain, "with B beside", 5)
	waitSessionRecords(t, a, r.store, func(recs map[string][]byte) bool { return len(recs) == 1 })

	a.crash()
	if err := ac.inc.WaitEnded(testTTL + 10*time.Second); err != nil {
		t.Fatalf("the PBX got no BYE after A's in-process media died with it: %v", err)
	}
	waitFor(t, "the call ends on B", 10*time.Second, func() bool { return len(bsrv.Engine.Calls()) == 0 })
	// The takeover unlists A once it carried A's calls on (here: ended).
	waitFor(t, "nothing of A's left in Redis", 10*time.Second, func() bool {
		if err := bsrv.State.Flush(ctx(t)); err != nil {
			t.Fatal(err)
		}
		return len(r.leftovers(bsrv)) == 0
	})
	if recs, err := r.store.Load(ctx(t), state.Sessions); err != nil || len(recs) != 0 {
		t.Fatalf("saved sessions left in Redis: %d %v", len(recs), err)
	}
	lines := r.cdrs("cp-a", "cp-b")
	if len(lines) != 1 || !strings.Contains(lines[0], `"`+b2bua.ReasonMediaLostWithOwner+`"`) {
		t.Fatalf("CDRs %q, want B's one with %q", lines, b2bua.ReasonMediaLostWithOwner)
	}
}
