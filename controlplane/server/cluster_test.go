package server

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// Lease timing of the cluster tests: short, but with room for a loaded
// 2-core CI machine running every package's tests with -race at once (a
// false takeover of a live peer fails the test).
const (
	testHeartbeat = 300 * time.Millisecond
	testTTL       = 3 * time.Second
	testGrace     = 2 * time.Second
)

// clusterRig is several control planes in trunk mode on one real
// redis-server and one dataplane node that outlives them, with one PBX.
type clusterRig struct {
	*restartRig
	redis *statetest.Redis
	dir   string
	// logFor, when set, is the logger of the member id (else testLog).
	logFor func(id string) *slog.Logger
}

func newClusterRig(t *testing.T) *clusterRig {
	t.Helper()
	r := newRestartRig(t)
	rd := statetest.StartRedis(t)
	st, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.store = sharedStore{st}
	return &clusterRig{restartRig: r, redis: rd, dir: t.TempDir()}
}

// member starts a control plane of its own ports named id, writing its
// CDRs to id.jsonl.
func (r *clusterRig) member(id string) *Server {
	r.t.Helper()
	return r.memberGrace(id, testGrace)
}

// memberGrace is member with a takeover grace of its own.
func (r *clusterRig) memberGrace(id string, grace time.Duration) *Server {
	r.t.Helper()
	cfg := r.cfg
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CDRFile = filepath.Join(r.dir, id+".jsonl")
	cfg.InstanceID = id
	log := testLog(r.t)
	if r.logFor != nil {
		log = r.logFor(id)
	}
	srv, err := New(Options{Config: cfg, Nodes: nodesOf(r.node), Store: r.store, Log: log,
		ClusterHeartbeat: testHeartbeat, ClusterTTL: testTTL, TakeoverGrace: grace})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { srv.Close() })
	return srv
}

// cdrs returns the records the members wrote.
func (r *clusterRig) cdrs(ids ...string) []string {
	var files []string
	for _, id := range ids {
		files = append(files, filepath.Join(r.dir, id+".jsonl"))
	}
	return cdrLinesOf(r.t, files...)
}

// answeredCall is a browser's call through a control plane to the PBX,
// answered, with media flowing.
type answeredCall struct {
	call  *siptest.Dialog
	inc   *siptest.Dialog
	mb    *mediatest.Browser
	plain *mediatest.Plain
	bseq  uint16
}

// call sets a call up from the rig's browser (registered through srv) to
// the PBX.
func (r *clusterRig) call(srv *Server) *answeredCall {
	t := r.t
	t.Helper()
	r.pbx.SetPeer(srv.SIPAddr())
	r.browser.SetPeer(srv.HTTPAddr())
	r.register()
	mb := newBrowserMedia(t)
	call, err := r.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := r.pbx.WaitCall(5 * time.Second)
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
	(&env{t: t, node: r.node, srv: srv}).waitConnected()
	ac := &answeredCall{call: call, inc: inc, mb: mb, plain: plain, bseq: 100}
	browserToPlain(t, mb, &ac.bseq, plain, "before", 5)
	return ac
}

// waitFor waits, bounded, until cond holds.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storeKeys lists what the store holds besides the shared secrets and
// the live members' own lease and entry.
func (r *clusterRig) leftovers(live ...*Server) []string {
	r.t.Helper()
	var out []string
	for _, kind := range []state.Kind{state.Calls, state.Members, state.Leases} {
		recs, err := r.store.Load(ctx(r.t), kind)
		if err != nil {
			r.t.Fatal(err)
		}
	next:
		for k := range recs {
			for _, s := range live {
				if k == s.Instance || k == "instance/"+s.Instance {
					continue next
				}
			}
			out = append(out, string(kind)+"/"+k)
		}
	}
	return out
}

// Two control planes on one Redis and one node: a control plane that
// starts beside a live peer neither adopts the peer's call nor deletes its
// session; when the peer dies (kill -9: no BYE, the lease left to expire)
// the survivor takes the call over after the lease, media never stops,
// the PBX's BYE to the survivor ends it on both sides with one CDR, and
// nothing is left in Redis. Without the browser coming back, the call
// ends after the grace with a BYE to the PBX and the cause in the CDR.
func TestClusterTakeover(t *testing.T) {
	for _, back := range []bool{true, false} {
		name := "browser back"
		if !back {
			name = "browser gone"
		}
		t.Run(name, func(t *testing.T) { clusterTakeover(t, back) })
	}
}

func clusterTakeover(t *testing.T, browserBack bool) {
	r := newClusterRig(t)
	a := r.member("cp-a")
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

	// B starts beside A: A's call is A's.
	bsrv := r.member("cp-b")
	if got := bsrv.Engine.Calls(); len(got) != 0 {
		t.Fatalf("B adopted a live peer's calls: %+v", got)
	}
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 1 || ss[0].GetId() != sess {
		t.Fatalf("B's start touched A's session: %v", ss)
	}
	// A still answers its call: a re-INVITE from the PBX reaches the
	// browser.
	ac.call.OnReinvite(func(offer []byte) (int, []byte) { return 200, reanswer(t, ac.mb.PC, offer) })
	if res, err := ac.inc.Reinvite(ctx(t), siptest.PlainSDP(2, ac.plain.Addr(), ac.plain.RTCPAddr(), "sendrecv", false)); err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE through A with B beside it: %v %v", res, err)
	}
	<-ac.call.Reinvites
	// Several heartbeats: B never takes a live peer's calls.
	time.Sleep(testTTL + 4*testHeartbeat)
	if got := bsrv.Engine.Calls(); len(got) != 0 {
		t.Fatalf("B took over a live peer's calls: %+v", got)
	}

	a.crash()
	start := time.Now()
	// The lease lasts TTL from A's last renewal, which may have been sent
	// up to a heartbeat (more on a loaded machine) before the crash.
	renewed := a.member.Load().RenewedAt()
	if browserBack {
		// The browser reconnects through the load balancer, to B.
		r.browser.SetPeer(bsrv.HTTPAddr())
		r.register()
	}
	waitFor(t, "B takes A's call over", 10*time.Second, func() bool { return len(bsrv.Engine.Calls()) == 1 })
	took := time.Since(start)
	if sinceRenewal := time.Since(renewed); sinceRenewal < testTTL {
		t.Fatalf("B took the call over %v after A's last renewal (%v after A died), before A's lease (%v) could expire",
			sinceRenewal, took, testTTL)
	}
	t.Logf("takeover %v after the crash (lease %v, heartbeat %v)", took.Round(time.Millisecond), testTTL, testHeartbeat)
	if got := bsrv.Engine.Calls()[0]; got.ID != id || got.Session != sess || got.State != "answered" {
		t.Fatalf("B's call %+v, want %s on session %s", got, id, sess)
	}
	browserToPlain(t, ac.mb, &ac.bseq, ac.plain, "after takeover", 5)

	if browserBack {
		// The PBX's in-dialog requests reach B (the shared SIP address).
		r.pbx.SetPeer(bsrv.SIPAddr())
		ac.inc.SendTo(bsrv.SIPAddr())
		if err := ac.inc.Hangup(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := ac.call.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the browser got no BYE from B: %v", err)
		}
	} else if err := ac.inc.WaitEnded(testGrace + 5*time.Second); err != nil {
		t.Fatalf("the PBX got no BYE when the browser did not come back: %v", err)
	}
	waitFor(t, "the call ends on B", 10*time.Second, func() bool {
		return len(bsrv.Engine.Calls()) == 0 && sum(bsrv.Pool.Sessions()) == 0
	})
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if err := bsrv.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if left := r.leftovers(bsrv); len(left) != 0 {
		t.Fatalf("left in Redis: %v", left)
	}
	lines := r.cdrs("cp-a", "cp-b")
	want := `"callee bye"`
	if !browserBack {
		want = `"` + "control plane lost" + `"`
	}
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("CDRs %q, want one with %s", lines, want)
	}
	bsrv.Close()
	if left := r.leftovers(); len(left) != 0 {
		t.Fatalf("left in Redis after B closed: %v", left)
	}
}

// A call set up through one control plane is listed, looked up, sent DTMF
// and hung up through another: B forwards to A, which holds it (Redis
// pub/sub). The hang-up through B ends the call on both sides with one
// CDR (A's) and nothing left in Redis; a call no control plane holds is
// 404 on both.
func TestClusterAPI(t *testing.T) {
	r := newClusterRig(t)
	a := r.member("cp-a")
	bsrv := r.member("cp-b")
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	ac := r.call(a)
	id := a.Engine.Calls()[0].ID
	apiA := apiClient{t: t, base: "http://" + a.HTTPAddr()}
	apiB := apiClient{t: t, base: "http://" + bsrv.HTTPAddr()}

	code, body := apiB.do("GET", "/v1/calls", nil)
	if code != 200 || !strings.Contains(string(body), `"id":"`+id+`"`) || !strings.Contains(string(body), `"state":"answered"`) {
		t.Fatalf("GET /v1/calls on B: %d %s, want A's call", code, body)
	}
	if code, body = apiB.do("GET", "/v1/calls/"+id, nil); code != 200 || !strings.Contains(string(body), `"callee":"bob"`) {
		t.Fatalf("GET /v1/calls/{id} on B: %d %s", code, body)
	}
	// DTMF answers the same through B as through A (the PBX takes no
	// INFO: 501, send RFC 4733 in the media).
	codeA, bodyA := apiA.do("POST", "/v1/calls/"+id+"/dtmf", map[string]string{"digits": "12"})
	codeB, bodyB := apiB.do("POST", "/v1/calls/"+id+"/dtmf", map[string]string{"digits": "12"})
	if codeA != codeB || codeA == 404 {
		t.Fatalf("DTMF through A: %d %s; through B: %d %s", codeA, bodyA, codeB, bodyB)
	}
	if code, body = apiB.do("GET", "/v1/calls/nosuchcall", nil); code != 404 {
		t.Fatalf("an unknown call on B: %d %s", code, body)
	}

	if code, body = apiB.do("DELETE", "/v1/calls/"+id, nil); code != 204 {
		t.Fatalf("DELETE through B: %d %s", code, body)
	}
	if err := ac.inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE after the hang-up through B")
	}
	if err := ac.call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the browser got no BYE after the hang-up through B")
	}
	if n := len(a.Engine.Calls()); n != 0 {
		t.Fatalf("A still holds %d calls", n)
	}
	if code, _ = apiB.do("DELETE", "/v1/calls/"+id, nil); code != 404 {
		t.Fatalf("a second DELETE through B: %d, want 404", code)
	}
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if left := r.leftovers(a, bsrv); len(left) != 0 {
		t.Fatalf("left in Redis: %v", left)
	}
	if lines := r.cdrs("cp-a", "cp-b"); len(lines) != 1 || !strings.Contains(lines[0], `"api hangup"`) {
		t.Fatalf("CDRs %q, want A's one, reason api hangup", lines)
	}
}
