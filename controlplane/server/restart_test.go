package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	"github.com/strait-sbc/strait/dataplane/relay"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// sharedStore is a store two servers of a test use one after the other:
// the first one's Close must not close it.
type sharedStore struct{ state.Store }

func (sharedStore) Close() error { return nil }

// restartRig is a trunk-mode Strait on a dataplane node that outlives it
// (a remote node, as with --dataplane grpc://), with a state store the
// next Strait reads.
type restartRig struct {
	t       *testing.T
	node    *node.Node // nil all in one (allInOne)
	store   state.Store
	pbx     *siptest.Phone
	browser *siptest.Phone // set by the test; register registers it with the PBX
	cfg     config.Config
	// timerUnit is Options.SessionTimerUnit (0: real seconds).
	timerUnit time.Duration
	// last is the server started last (all in one, its node is the
	// in-process one).
	last *Server
	// redis is the redis-server of useStore("redis").
	redis *statetest.Redis
	// beforeHandover, when set, runs in carryCallOn once the call is up,
	// before the first server hands over.
	beforeHandover func(a *Server, callID, session string)
}

// allInOne makes the rig's servers run their dataplane in process, on the
// same ports each time (no remote node outlives them).
func (r *restartRig) allInOne() {
	base := freeUDPRange(r.t, 12)
	r.node = nil
	r.cfg.WebRTCPorts = portalloc.Range{First: base, Last: base}
	r.cfg.RTPPorts = portalloc.Range{First: base + 2, Last: base + 11}
}

// nodeAPI is the node holding the calls' sessions: the remote one, or
// the last server's in-process one.
func (r *restartRig) nodeAPI() *node.Node {
	if r.node != nil {
		return r.node
	}
	return r.last.Local()
}

func newRestartRig(t *testing.T) *restartRig {
	t.Helper()
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.Upstream = []string{"sip:" + pbx.Addr}
	return &restartRig{t: t, node: newNode(t), store: sharedStore{state.NewMemory()}, pbx: pbx, cfg: cfg}
}

// restartStores are the backends a restart is tested on: the embedded
// bbolt file (the default), a real redis-server, and memory.
var restartStores = []string{"embedded", "redis", "memory"}

// useStore gives the rig a store of kind, shared by the servers it starts
// and closed at the end of the test.
func (r *restartRig) useStore(kind string) {
	r.t.Helper()
	var st state.Store
	var err error
	switch kind {
	case "embedded":
		st, err = state.OpenBolt(filepath.Join(r.t.TempDir(), state.FileName))
	case "redis":
		r.redis = statetest.StartRedis(r.t)
		st, err = state.OpenRedis(r.redis.URL)
	default:
		st = state.NewMemory()
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { st.Close() })
	r.store = sharedStore{st}
}

// start starts a Strait writing CDRs to cdr; the first one picks ports,
// the next ones take the same.
func (r *restartRig) start(cdr string) *Server {
	r.t.Helper()
	cfg := r.cfg
	cfg.CDRFile = cdr
	var srv *Server
	var err error
	// The previous server's sockets may take a moment to close.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var nodes []*dpool.Node
		if r.node != nil {
			nodes = nodesOf(r.node)
		}
		srv, err = New(Options{Config: cfg, Nodes: nodes, Store: r.store, Log: testLog(r.t), SessionTimerUnit: r.timerUnit})
		// All in one, the previous process's io_uring lets go of the
		// media ports a moment after it stopped.
		var inUse *relay.PortsInUseError
		if err == nil || (!strings.Contains(err.Error(), "address already in use") && !errors.As(err, &inUse)) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { srv.Close() })
	r.cfg.HTTP, r.cfg.SIP = srv.HTTPAddr(), srv.SIPAddr()
	r.pbx.SetPeer(srv.SIPAddr())
	r.last = srv
	return srv
}

// Registrations outlive the control plane: a SIP device registered with
// the first process is reached through the next without registering
// again; a browser's binding (its WebSocket died with the process) answers
// 430 Flow Failed until the browser registers again on a new WebSocket,
// then keeps its key and is reached on the new one.
func TestRestartKeepsRegistrations(t *testing.T) {
	for _, store := range restartStores {
		t.Run(store, func(t *testing.T) { restartKeepsRegistrations(t, store) })
	}
}

func restartKeepsRegistrations(t *testing.T, store string) {
	r := newRestartRig(t)
	r.useStore(store)
	r.cfg.Upstream = nil
	r.cfg.Users = []string{"alice:a-secret", "carol:c-secret"}
	dir := t.TempDir()
	a := r.start(filepath.Join(dir, "a.jsonl"))
	alice, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := alice.Register(ctx(t), "a-secret", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("alice REGISTER: %v %v", res, err)
	}
	carol, err := siptest.NewUDP(a.SIPAddr(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(carol.Close)
	if res, err := carol.Register(ctx(t), "c-secret", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("carol REGISTER: %v %v", res, err)
	}
	keys := map[string]string{}
	for _, b := range a.Registry.All() {
		keys[b.AOR] = b.Key
	}
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	alice.Close()

	b := r.start(filepath.Join(dir, "b.jsonl"))
	if got := b.Registry.Len(); got != 1 {
		t.Fatalf("%d live bindings after the restart, want carol's 1", got)
	}
	if !b.Registry.FlowFailed(keys["alice"]) {
		t.Fatal("alice's binding should be flow-failed until she registers again")
	}
	plain := newPlain(t)
	offer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	c, err := carol.Invite(ctx(t), "alice", offer)
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 430 {
		t.Fatalf("a call to alice before she registers again: %v, want 430", res)
	}

	alice2, err := siptest.NewBrowser(b.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(alice2.Close)
	alice2.Contact = alice.Contact // JsSIP keeps its Contact across reconnections
	if res, err := alice2.Register(ctx(t), "", 600); err != nil || res.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials: %v %v", res, err)
	}
	if res, err := alice2.Register(ctx(t), "a-secret", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("alice REGISTER again: %v %v", res, err)
	}
	for _, bd := range b.Registry.All() {
		if bd.AOR == "alice" && bd.Key != keys["alice"] {
			t.Fatalf("alice's binding key %s after the restart, want %s", bd.Key, keys["alice"])
		}
	}

	// carol is reached without having registered again.
	mb := newBrowserMedia(t)
	call, err := alice2.Invite(ctx(t), "carol", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := carol.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatalf("carol's registration did not survive the restart: %v", err)
	}
	inc.Reject(486, "Busy Here")
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("alice's call to carol: %v, want carol's 486", res)
	}
	// alice is reached on her new WebSocket.
	c, err = carol.Invite(ctx(t), "alice", offer)
	if err != nil {
		t.Fatal(err)
	}
	inc, err = alice2.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatalf("alice not reached on her new WebSocket: %v", err)
	}
	inc.Reject(486, "Busy Here")
	if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("carol's call to alice: %v, want alice's 486", res)
	}
}

func (r *restartRig) register() {
	r.t.Helper()
	res, err := r.browser.Register(ctx(r.t), "wonderland", 600)
	if err != nil || res.StatusCode != 200 {
		r.t.Fatalf("REGISTER: %v %v", res, err)
	}
}

// A control plane that hands over (or dies) leaves its answered calls to
// the next one: the next reads them from the state store, adopts their
// dataplane sessions instead of deleting them, and carries them on. Media
// never stops (the node keeps relaying); the browser reconnects and
// registers again, and requests toward it use its new flow; a hold from
// the PBX and a BYE from either side work; each call gets one CDR.
func TestRestartCarriesCallsOn(t *testing.T) {
	for i, byeFrom := range []string{"browser", "pbx", "browser", "pbx", "browser", "pbx"} {
		store := restartStores[i/2]
		t.Run(store+"/bye from "+byeFrom, func(t *testing.T) { carryCallOn(t, store, byeFrom, false) })
	}
}

// All in one (the dataplane in process, so nothing outlives the process
// but the state store): the next process re-creates the saved sessions
// on the same ports with the same ICE credentials and SRTP keys before it
// restores the calls, so the browser (a pion peer, which does no new ICE
// or DTLS) carries on, and everything else is as with a remote node.
func TestRestartAllInOneCarriesCallsOn(t *testing.T) {
	for i, byeFrom := range []string{"browser", "pbx", "pbx"} {
		store := []string{"embedded", "embedded", "redis"}[i]
		t.Run(store+"/bye from "+byeFrom, func(t *testing.T) { carryCallOn(t, store, byeFrom, true) })
	}
}

// connectedCall registers alice's browser on a and has her call bob at
// the PBX, which answers from a plain peer; it returns once the browser's
// DTLS is up and the node sees the call's media connected.
func (r *restartRig) connectedCall(a *Server) (call, inc *siptest.Dialog, mb *mediatest.Browser, plain *mediatest.Plain) {
	t := r.t
	t.Helper()
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	mb = newBrowserMedia(t)
	if call, err = b.Invite(ctx(t), "bob", []byte(mb.Offer)); err != nil {
		t.Fatal(err)
	}
	if inc, err = r.pbx.WaitCall(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	plain = newPlain(t)
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
	(&env{t: t, node: r.nodeAPI(), srv: a}).waitConnected()
	return call, inc, mb, plain
}

func carryCallOn(t *testing.T, store, byeFrom string, allInOne bool) {
	carryCallOnRig(t, newRestartRig(t), store, byeFrom, allInOne)
}

func carryCallOnRig(t *testing.T, r *restartRig, store, byeFrom string, allInOne bool) {
	if allInOne {
		r.allInOne()
	}
	r.useStore(store)
	dir := t.TempDir()
	a := r.start(filepath.Join(dir, "a.jsonl"))
	call, inc, mb, plain := r.connectedCall(a)
	straitRTP := plainAddr(t, inc.Invite.Body())
	var bseq, pseq uint16 = 100, 500
	browserToPlain(t, mb, &bseq, plain, "before", 5)
	plainToBrowser(t, plain, straitRTP, &pseq, mb, "before-p2b", 5)
	calls := a.Engine.Calls()
	if len(calls) != 1 || calls[0].State != "answered" {
		t.Fatalf("calls before the handover: %+v", calls)
	}
	id, sess := calls[0].ID, calls[0].Session

	if allInOne {
		// The keeper saved the DTLS keys and the path (as a crash would
		// find them, a sweep after the answer).
		waitSessionRecords(t, a, r.store, func(recs map[string][]byte) bool {
			return bytes.Contains(recs[sess], []byte(`"local_key"`)) && bytes.Contains(recs[sess], []byte(`"path"`))
		})
	}
	if r.beforeHandover != nil {
		r.beforeHandover(a, id, sess)
	}
	if err := a.Handover(); err != nil {
		t.Fatal(err)
	}
	if !allInOne {
		if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 1 {
			t.Fatalf("the node holds %d sessions after the handover, want the call's 1", len(ss))
		}
		// Media goes on while no control plane runs.
		browserToPlain(t, mb, &bseq, plain, "between", 5)
	}

	bsrv := r.start(filepath.Join(dir, "b.jsonl"))
	calls = bsrv.Engine.Calls()
	if len(calls) != 1 || calls[0].ID != id || calls[0].State != "answered" || calls[0].Session != sess {
		t.Fatalf("calls after the restart: %+v, want the call on session %s", calls, sess)
	}
	if ss, _ := r.nodeAPI().ListSessions(ctx(t)); len(ss) != 1 || ss[0].GetId() != sess {
		t.Fatalf("the restarted control plane did not adopt the session: %v", ss)
	}
	browserToPlain(t, mb, &bseq, plain, "after", 5)
	plainToBrowser(t, plain, straitRTP, &pseq, mb, "after-p2b", 5)

	// The browser reconnects and registers again (JsSIP does it
	// by itself); the PBX's hold reaches it on its new flow.
	r.register()
	call.OnReinvite(func(offer []byte) (int, []byte) { return 200, reanswer(t, mb.PC, offer) })
	hold, err := inc.Reinvite(ctx(t), siptest.PlainSDP(2, plain.Addr(), plain.RTCPAddr(), "sendonly", false))
	if err != nil || hold.StatusCode != 200 || !bytes.Contains(hold.Body(), []byte("a=recvonly")) {
		t.Fatalf("hold after the restart: %v %v", hold, err)
	}
	if re := <-call.Reinvites; !bytes.Contains(re.Body(), []byte("a=sendonly")) {
		t.Fatalf("hold offer at the browser:\n%s", re.Body())
	}

	if byeFrom == "browser" {
		if err := call.Hangup(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := inc.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the PBX got no BYE: %v", err)
		}
	} else {
		if err := inc.Hangup(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := call.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the browser got no BYE: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(bsrv.Engine.Calls()) > 0 || sum(bsrv.Pool.Sessions()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls %v, sessions %v after the BYE", bsrv.Engine.Calls(), bsrv.Pool.Sessions())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ss, _ := r.nodeAPI().ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if allInOne {
		waitSessionRecords(t, bsrv, r.store, func(recs map[string][]byte) bool { return len(recs) == 0 })
	}
	if err := bsrv.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []state.Kind{state.Calls, state.Sessions} {
		if recs, _ := r.store.Load(ctx(t), k); len(recs) != 0 {
			t.Fatalf("the state store still holds %d %s", len(recs), k)
		}
	}
	want := "caller bye"
	if byeFrom == "pbx" {
		want = "callee bye"
	}
	checkOneCDR(t, filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl"), want)
}

// A Redis that restarts without persistence comes back empty: the control
// plane sees the store's generation gone and writes every live record
// again (the call, its in-process session with its keys, the browser's
// binding, the DTLS certificate), so that a control-plane restart after
// it still carries the call on, all in one.
func TestRestartAfterRedisCameBackEmpty(t *testing.T) {
	r := newRestartRig(t)
	r.beforeHandover = func(a *Server, id, sess string) {
		for _, k := range []state.Kind{state.Calls, state.Sessions, state.Bindings, state.Secrets} {
			if recs, _ := r.store.Load(ctx(t), k); len(recs) == 0 {
				t.Fatalf("no %s in the store before Redis restarts", k)
			}
		}
		lost := a.State.Lost()
		r.redis.Restart() // killed, started again empty (no persistence)
		if recs, _ := r.store.Load(ctx(t), state.Calls); len(recs) != 0 {
			t.Fatalf("redis-server kept %d calls over its restart", len(recs))
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.State.Flush(ctx(t))
			calls, _ := r.store.Load(ctx(t), state.Calls)
			sessions, _ := r.store.Load(ctx(t), state.Sessions)
			bindings, _ := r.store.Load(ctx(t), state.Bindings)
			secrets, _ := r.store.Load(ctx(t), state.Secrets)
			if a.State.Lost() > lost && calls[id] != nil && bytes.Contains(sessions[sess], []byte(`"local_key"`)) &&
				len(bindings) == 1 && secrets[dtlsCertName] != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after Redis came back empty: lost %d, calls %d, sessions %d, bindings %d, secrets %d",
					a.State.Lost(), len(calls), len(sessions), len(bindings), len(secrets))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	carryCallOnRig(t, r, "redis", "pbx", true)
}

// A stored call whose dataplane session is gone when the next control
// plane starts (its node restarted; the all-in-one's in-process node dies
// with the process) cannot go on: the new process ends it at once, BYE to
// both legs, one CDR with the reason.
func TestRestartEndsCallsWithoutMedia(t *testing.T) {
	r := newRestartRig(t)
	dir := t.TempDir()
	a := r.start(filepath.Join(dir, "a.jsonl"))
	_, inc, mb, plain := r.connectedCall(a)
	var bseq uint16 = 100
	browserToPlain(t, mb, &bseq, plain, "before", 5)
	sess := a.Engine.Calls()[0].Session
	if err := a.Handover(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.node.DeleteSession(ctx(t), &pb.DeleteSessionRequest{Id: sess, Reason: "node restarted"}); err != nil {
		t.Fatal(err)
	}
	// The browser is back (its registration was relayed to the PBX), so
	// the BYE reaches it.
	bsrv := r.start(filepath.Join(dir, "b.jsonl"))
	r.register()
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatalf("the PBX got no BYE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(bsrv.Engine.Calls()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls %v after the media was lost", bsrv.Engine.Calls())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := bsrv.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if recs, _ := r.store.Load(ctx(t), state.Calls); len(recs) != 0 {
		t.Fatalf("the state store still holds %d calls", len(recs))
	}
	lines := cdrLinesOf(t, filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl"))
	if len(lines) != 1 || !strings.Contains(lines[0], `"media lost in restart"`) {
		t.Fatalf("CDRs %q, want one with the reason media lost in restart", lines)
	}
}

// A leg's session timer (RFC 4028) outlives the control plane: after the
// restart Strait still answers the browser's refresh with the negotiated
// Session-Expires, and when the refreshes stop it ends the call, BYE to
// both legs (a restored call without its timer would never end).
func TestRestartKeepsSessionTimers(t *testing.T) {
	r := newRestartRig(t)
	r.timerUnit = timerUnit
	dir := t.TempDir()
	a := r.start(filepath.Join(dir, "a.jsonl"))
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	mb := newBrowserMedia(t)
	call, err := b.Invite(ctx(t), "bob", []byte(mb.Offer), sip.NewHeader("Session-Expires", "90"))
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
	if err != nil || res.StatusCode != 200 || header(res, "Session-Expires") != "90;refresher=uac" {
		t.Fatalf("answer: %v %v; want Session-Expires 90;refresher=uac", res, err)
	}
	call.Ack(ctx(t))
	if err := a.Handover(); err != nil {
		t.Fatal(err)
	}
	bsrv := r.start(filepath.Join(dir, "b.jsonl"))
	r.register()
	refresh, err := call.Request(ctx(t), sip.UPDATE, nil, "", sip.NewHeader("Session-Expires", "90;refresher=uac"), sip.NewHeader("Supported", "timer"))
	if err != nil || refresh.StatusCode != 200 || header(refresh, "Session-Expires") != "90;refresher=uac" {
		t.Fatalf("the browser's refresh after the restart: %v %v; want 200 with Session-Expires 90;refresher=uac", refresh, err)
	}
	// The browser goes silent: the restored call ends by its timer.
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the browser got no BYE when its refreshes stopped after the restart")
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE when the browser's refreshes stopped after the restart")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(bsrv.Engine.Calls()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls %v after the timer expired", bsrv.Engine.Calls())
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := cdrLinesOf(t, filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl"))
	if len(lines) != 1 || !strings.Contains(lines[0], "session timer expired") {
		t.Fatalf("CDRs %q, want one with the reason session timer expired", lines)
	}
}

// checkOneCDR checks that the two servers wrote one record between them,
// from the second, with the reason and media counted on both legs.
func checkOneCDR(t *testing.T, a, b, reason string) {
	t.Helper()
	lines := cdrLinesOf(t, a, b)
	if len(lines) != 1 {
		t.Fatalf("%d CDRs, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var rec struct {
		Reason string
		Media  []struct {
			PacketsIn uint64 `json:"packets_in"`
		}
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Reason != reason || len(rec.Media) != 2 || rec.Media[0].PacketsIn == 0 || rec.Media[1].PacketsIn == 0 {
		t.Fatalf("CDR %s, want reason %q and media on both legs", lines[0], reason)
	}
}

// cdrLinesOf returns the records of CDR files, in order.
func cdrLinesOf(t *testing.T, files ...string) []string {
	t.Helper()
	var lines []string
	for _, f := range files {
		out, _ := os.ReadFile(f)
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
	}
	return lines
}

// waitSessionRecords waits until the saved dataplane sessions in st (as
// srv's keeper writes them) satisfy ok.
func waitSessionRecords(t *testing.T, srv *Server, st state.Store, ok func(map[string][]byte) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := srv.State.Flush(ctx(t)); err != nil {
			t.Fatal(err)
		}
		recs, err := st.Load(ctx(t), state.Sessions)
		if err != nil {
			t.Fatal(err)
		}
		if ok(recs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("saved sessions: %d records, not as expected", len(recs))
		}
		time.Sleep(keepInterval / 4)
	}
}

// freeUDPRange returns the first of n loopback UDP ports that are free
// now (an even one).
func freeUDPRange(t *testing.T, n int) uint16 {
	t.Helper()
	for range 50 {
		base := uint16(20000 + 2*rand.IntN(20000))
		var conns []net.PacketConn
		for p := base; p < base+uint16(n); p++ {
			c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		ok := len(conns) == n
		for _, c := range conns {
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free UDP port range")
	return 0
}

// A call carried on after a restart still counts toward its caller's
// --max-calls-per-user: with a limit of one, alice's second call after the
// restart is refused (486, call limit reached) while the first is up, and
// accepted once the first has ended (its slot was given back).
func TestRestartedCallsCountTowardTheLimit(t *testing.T) {
	r := newRestartRig(t)
	r.cfg.MaxCallsPerUser = 1
	dir := t.TempDir()
	a := r.start(filepath.Join(dir, "a.jsonl"))
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	mb := newBrowserMedia(t)
	call, err := b.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := r.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain := newPlain(t)
	go inc.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if res, err := call.WaitAnswer(ctx(t), ""); err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := a.Handover(); err != nil {
		t.Fatal(err)
	}
	bsrv := r.start(filepath.Join(dir, "b.jsonl"))
	if n := bsrv.Guard.Active("alice"); n != 1 {
		t.Fatalf("alice has %d calls in progress after the restart, want the restored 1", n)
	}
	r.register()
	second := func() *siptest.Dialog {
		t.Helper()
		c, err := b.Invite(ctx(t), "carol", []byte(newBrowserMedia(t).Offer))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if res, _ := second().WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 || !strings.Contains(res.Reason, "call limit") {
		t.Fatalf("alice's second call after the restart: %v, want 486 (limit 1, one restored call)", res)
	}
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatalf("the PBX got no BYE: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for bsrv.Guard.Active("alice") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the restored call's slot was not given back when it ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := second()
	inc2, err := r.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatalf("alice's call after the restored one ended did not reach the PBX: %v", err)
	}
	inc2.Reject(486, "Busy Here")
	if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("alice's call after the restored one ended: %v, want the PBX's 486", res)
	}
}
