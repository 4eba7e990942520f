package server

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/dataplane/node"
)

// sharedStore is a store two servers of a test use one after the other:
// the first one's Close must not close it.
type sharedStore struct{ state.Store }

func (sharedStore) Close() error { return nil }

// restartRig is a trunk-mode Strait on a dataplane node that outlives it
// (a remote node, as with --dataplane grpc://), with a state store the
// next Strait reads.
type restartRig struct {
	t     *testing.T
	node  *node.Node
	store state.Store
	pbx   *siptest.Phone
	cfg   config.Config
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
		srv, err = New(Options{Config: cfg, Nodes: nodesOf(r.node), Store: r.store, Log: testLog(r.t)})
		if err == nil || !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { srv.Close() })
	r.cfg.HTTP, r.cfg.SIP = srv.HTTPAddr(), srv.SIPAddr()
	r.pbx.SetPeer(srv.SIPAddr())
	return srv
}

// Registrations outlive the control plane: a SIP device registered with
// the first process is reached through the next without registering
// again; a browser's binding (its WebSocket died with the process) answers
// 430 Flow Failed until the browser registers again on a new WebSocket,
// then keeps its key and is reached on the new one.
func TestRestartKeepsRegistrations(t *testing.T) {
	r := newRestartRig(t)
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
