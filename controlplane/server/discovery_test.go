package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/node"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// servedNode is a dataplane node served over gRPC at a fixed address, that
// can be killed (a crash: its sessions go with it) and started again.
type servedNode struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	node *node.Node
	gs   *grpc.Server
}

func (s *servedNode) start() {
	s.t.Helper()
	var lis net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lis, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("listen %s: %v", s.addr, err)
		}
	}
	n := newNode(s.t)
	gs := grpc.NewServer()
	pb.RegisterDataplaneServer(gs, pb.NewServer(n))
	go gs.Serve(lis)
	s.mu.Lock()
	s.node, s.gs = n, gs
	s.mu.Unlock()
}

func (s *servedNode) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gs.Stop()
	s.node.Close()
}

// twoLoopbackNodes serves two nodes at 127.0.0.2:P and 127.0.0.3:P, one
// port on two addresses as a DNS name's nodes are.
func twoLoopbackNodes(t *testing.T) (a, b *servedNode, port uint16) {
	t.Helper()
	for range 50 {
		port = uint16(30000 + rand.IntN(10000))
		la, err1 := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
		lb, err2 := net.Listen("tcp", fmt.Sprintf("127.0.0.3:%d", port))
		for _, l := range []net.Listener{la, lb} {
			if l != nil {
				l.Close()
			}
		}
		if err1 == nil && err2 == nil {
			a = &servedNode{t: t, addr: fmt.Sprintf("127.0.0.2:%d", port)}
			b = &servedNode{t: t, addr: fmt.Sprintf("127.0.0.3:%d", port)}
			a.start()
			b.start()
			t.Cleanup(func() { a.kill(); b.kill() })
			return a, b, port
		}
	}
	t.Skip("no port free on both 127.0.0.2 and 127.0.0.3")
	return nil, nil, 0
}

// dnsAnswers is a resolver whose answer the test sets.
type dnsAnswers struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (d *dnsAnswers) set(addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addrs = nil
	for _, a := range addrs {
		d.addrs = append(d.addrs, netip.MustParseAddr(a))
	}
}

func (d *dnsAnswers) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]netip.Addr(nil), d.addrs...), nil
}

// nodeOfCall names the node holding the only session of the newest call.
func nodeOfCall(t *testing.T, srv *Server, before map[string]int) string {
	t.Helper()
	for name, n := range srv.Pool.Sessions() {
		if n > before[name] {
			return name
		}
	}
	t.Fatalf("no node gained a session: %v (before %v)", srv.Pool.Sessions(), before)
	return ""
}

// TestDiscoveredNodes runs strait with --dataplane dns://NAME:PORT over
// two gRPC nodes, the way Kubernetes' headless Service lists a DaemonSet:
// calls go to the least loaded node; a node that leaves the list (drains)
// gets no new calls and keeps its call; its loss ends only that call, BYE
// to both sides and CDR cause "media node lost"; when it comes back at
// the same address it takes calls again.
func TestDiscoveredNodes(t *testing.T) {
	a, b, port := twoLoopbackNodes(t)
	dns := &dnsAnswers{}
	dns.set("127.0.0.2", "127.0.0.3")
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.CDRFile = filepath.Join(t.TempDir(), "cdr.jsonl")
	cfg.Upstream = []string{"sip:" + pbx.Addr}
	cfg.Dataplane = []string{fmt.Sprintf("dns://nodes.strait.test:%d", port)}
	srv, err := New(Options{Config: cfg, Log: testLog(t), Resolver: dns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pbx.SetPeer(srv.SIPAddr())
	br, err := siptest.NewBrowser(srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	tr := &trunk{env: &env{t: t, srv: srv, cdr: cfg.CDRFile}, pbx: pbx, reg: reg, browser: br}
	nodes := map[string]*servedNode{a.addr: a, b.addr: b}
	ready := func(up int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := 0
			for _, m := range srv.Pool.Members() {
				if m.Up && !m.Draining && !m.Retired {
					n++
				}
			}
			if n == up {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d nodes usable, want %d: %+v", n, up, srv.Pool.Members())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ready(2)
	tr.register(t)

	call := func() (*siptest.Dialog, *siptest.Dialog, string) {
		t.Helper()
		before := srv.Pool.Sessions()
		// establish waits for the node to connect the legs: point the
		// harness at the node that took the session.
		mb := newBrowserMedia(t)
		c, err := br.Invite(ctx(t), "bob", []byte(mb.Offer))
		if err != nil {
			t.Fatal(err)
		}
		inc, err := pbx.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		on := nodeOfCall(t, srv, before)
		tr.env.node = nodes[on].node
		plain := newPlain(t)
		go inc.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
		res, err := c.WaitAnswer(ctx(t), "")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("answer: %v %v", res, err)
		}
		c.Ack(ctx(t))
		if err := mb.Accept(string(res.Body())); err != nil {
			t.Fatal(err)
		}
		if err := mb.WaitConnected(ctx(t)); err != nil {
			t.Fatal(err)
		}
		tr.waitConnected()
		m := &browserMedia{b: mb, plain: plain, strait: plainAddr(t, inc.Invite.Body()), bseq: 1000, pseq: 3000}
		m.both(t, "up")
		return c, inc, on
	}

	c1, inc1, on1 := call()
	c2, inc2, on2 := call()
	if on1 == on2 {
		t.Fatalf("both calls on %s: want them spread over the two nodes", on1)
	}

	// on1 leaves the list (its pod drains): no new calls for it, its call
	// goes on.
	other := map[string]string{a.addr: "127.0.0.3", b.addr: "127.0.0.2"}[on1]
	dns.set(other)
	ready(1)
	_, _, on3 := call()
	if on3 == on1 {
		t.Fatalf("a new call went to %s, which left the list", on1)
	}

	// on1 dies: only its call ends, both sides get BYE, the CDR says why.
	nodes[on1].kill()
	if err := c1.WaitEnded(dpool.LossGrace + 5*time.Second); err != nil {
		t.Fatal("the browser got no BYE after its media node died")
	}
	if err := inc1.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE after the media node died")
	}
	tr.waitCalls(2)
	for _, d := range []*siptest.Dialog{c2, inc2} {
		select {
		case <-d.Ended():
			t.Fatal("a call on the healthy node ended")
		default:
		}
	}
	var rec struct {
		Reason string
		Cause  int
	}
	lines := tr.cdrLines()
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Reason != "media node lost" || rec.Cause != 503 {
		t.Fatalf("CDR %s: want cause 503, media node lost", lines[len(lines)-1])
	}

	// It comes back at the same address and is listed again: the next
	// call goes to it (it is empty, the other holds two).
	nodes[on1].start()
	dns.set("127.0.0.2", "127.0.0.3")
	ready(2)
	_, _, on4 := call()
	if on4 != on1 {
		t.Fatalf("the call after the node came back went to %s, want %s", on4, on1)
	}
}
