package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/dpool"
	"github.com/strait-sbc/strait/controlplane/sdp"
	"github.com/strait-sbc/strait/dataplane/mediatest"
	"github.com/strait-sbc/strait/dataplane/node"
	"github.com/strait-sbc/strait/dataplane/portalloc"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// testLog logs through t when STRAIT_TEST_LOG is set, else discards.
func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("STRAIT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// newNode starts an in-process dataplane node with port ranges of its own
// (several test packages run at once).
func newNode(t *testing.T) *node.Node {
	t.Helper()
	return newNodeLog(t, slog.New(slog.DiscardHandler))
}

// newNodeLog is newNode logging to log.
func newNodeLog(t *testing.T, log *slog.Logger) *node.Node { return newNodeSized(t, log, 40) }

// newNodeSized is newNodeLog with rtp RTP ports (rtp/2 calls to plain
// peers at once).
func newNodeSized(t *testing.T, log *slog.Logger, rtp uint16) *node.Node {
	t.Helper()
	var lastErr error
	for range 20 {
		base := uint16(20000 + 2*rand.IntN(20000))
		n, err := node.New(node.Config{ID: "test", MediaAddrs: []netip.Addr{loopback},
			WebRTCPorts:      portalloc.Range{First: base, Last: base + 1},
			RTPPorts:         portalloc.Range{First: base + 2, Last: base + 1 + rtp},
			PlainSharedPorts: portalloc.Range{First: base + 2 + rtp, Last: base + 5 + rtp}, Workers: 1,
			Logger: log})
		if err == nil {
			t.Cleanup(func() { n.Close() })
			return n
		}
		lastErr = err
	}
	t.Fatalf("no dataplane node: %v", lastErr)
	return nil
}

// env is a running Strait with its dataplane node.
type env struct {
	t    *testing.T
	srv  *Server
	node *node.Node
	cdr  string
}

func start(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	return startOpts(t, mutate, nil)
}

// startOpts is start with the server's options changed by opts too.
func startOpts(t *testing.T, mutate func(*config.Config), opts func(*Options)) *env {
	t.Helper()
	n := newNode(t)
	cfg := testConfig()
	cfg.HTTP, cfg.SIP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OptionsInterval = 0
	cfg.CDRFile = filepath.Join(t.TempDir(), "cdr.jsonl")
	if mutate != nil {
		mutate(&cfg)
	}
	o := Options{Config: cfg, Nodes: nodesOf(n), Log: testLog(t)}
	if opts != nil {
		opts(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &env{t: t, srv: srv, node: n, cdr: cfg.CDRFile}
}

func nodesOf(n *node.Node) []*dpool.Node { return []*dpool.Node{{Name: "local", API: n}} }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitSessions waits until the node holds n sessions.
func (e *env) waitSessions(n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ss, err := e.node.ListSessions(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		if len(ss) == n && sum(e.srv.Pool.Sessions()) == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("node holds %d sessions (pool counts %v), want %d", len(ss), e.srv.Pool.Sessions(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitConnected waits until every leg of every session on the node is
// connected (the browser may finish DTLS a moment before the node).
func (e *env) waitConnected() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ss, _ := e.node.ListSessions(context.Background())
		ok := len(ss) > 0
		for _, s := range ss {
			for _, l := range s.GetLegs() {
				if l.GetSpec().GetKind() == pb.LegKind_LEG_KIND_WEBRTC && l.GetState() != pb.LegState_LEG_STATE_CONNECTED {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("WebRTC legs not connected: %v", ss)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// waitCalls waits until Strait has n calls in progress.
func (e *env) waitCalls(n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.srv.Engine.Calls()) != n {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d calls in progress, want %d", len(e.srv.Engine.Calls()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cdrLines reads the CDR file.
func (e *env) cdrLines() []string {
	b, err := os.ReadFile(e.cdr)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// waitGoroutines waits until the goroutine count falls back to at most
// base+slack: calls that ended leave nothing running.
func waitGoroutines(t *testing.T, base, slack int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+slack {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", n, base+slack, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// plainAddr is where Strait receives RTP according to a description it
// sent a PBX.
func plainAddr(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	d, err := sdp.Parse(body)
	if err != nil {
		t.Fatalf("Strait's SDP does not parse: %v\n%s", err, body)
	}
	a, ok := d.Media[0].RemoteRTP()
	if !ok {
		t.Fatalf("no RTP address in\n%s", body)
	}
	return a
}

func payload(tag string, i int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, 160)
	copy(b, fmt.Sprintf("%s-%03d", tag, i))
	return b
}

// browserToPlain sends count PCMU packets and one telephone-event from
// the browser and checks the plain peer gets them with its own payload
// types (0, and 101 for the event).
func browserToPlain(t *testing.T, b *mediatest.Browser, seq *uint16, p *mediatest.Plain, tag string, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		if err := b.Send(0, *seq, uint32(160*i), false, payload(tag, i)); err != nil {
			t.Fatal(err)
		}
		*seq++
		time.Sleep(2 * time.Millisecond)
	}
	if err := b.Send(126, *seq, uint32(160*count), true, payload(tag+"-dtmf", 0)); err != nil {
		t.Fatal(err)
	}
	*seq++
	got, dtmf := 0, false
	deadline := time.Now().Add(10 * time.Second)
	for got < count || !dtmf {
		pk, err := p.Next(time.Until(deadline), func(pk mediatest.Packet) bool {
			return pk.RTP != nil && bytes.HasPrefix(pk.RTP.Payload, []byte(tag))
		})
		if err != nil {
			t.Fatalf("browser->plain %q: %d of %d packets, dtmf %v: %v", tag, got, count, dtmf, err)
		}
		if bytes.HasPrefix(pk.RTP.Payload, []byte(tag+"-dtmf")) {
			if pk.RTP.PayloadType != 101 {
				t.Fatalf("telephone-event arrived with PT %d, want 101", pk.RTP.PayloadType)
			}
			dtmf = true
			continue
		}
		if pk.RTP.PayloadType != 0 {
			t.Fatalf("PCMU arrived with PT %d", pk.RTP.PayloadType)
		}
		got++
	}
}

// plainToBrowser sends count PCMU packets from the plain peer to Strait's
// address to and checks the browser gets them.
func plainToBrowser(t *testing.T, p *mediatest.Plain, to netip.AddrPort, seq *uint16, b *mediatest.Browser, tag string, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: *seq, Timestamp: uint32(*seq) * 160, SSRC: 0x5eed}, Payload: payload(tag, i)}
		*seq++
		if err := p.SendRTP(to, pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	receive(t, b, tag, count)
}

// receive waits for count packets tagged tag at the browser.
func receive(t *testing.T, b *mediatest.Browser, tag string, count int) {
	t.Helper()
	got := 0
	deadline := time.After(10 * time.Second)
	for got < count {
		select {
		case pk := <-b.Received:
			if bytes.HasPrefix(pk.Payload, []byte(tag)) {
				got++
			}
		case <-deadline:
			t.Fatalf("plain->browser %q: %d of %d packets", tag, got, count)
		}
	}
}

func newBrowserMedia(t *testing.T) *mediatest.Browser {
	t.Helper()
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// newBrowserMediaAV is newBrowserMedia with a video section too.
func newBrowserMediaAV(t *testing.T) *mediatest.Browser {
	t.Helper()
	b, err := mediatest.NewBrowser(mediatest.BrowserOptions{Video: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func newPlain(t *testing.T) *mediatest.Plain {
	t.Helper()
	p, err := mediatest.NewPlain(loopback)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

var _ = io.Discard

// answerer is a browser's media for a call Strait offers it.
type answerer struct {
	*mediatest.Browser
	seq uint16
}

func newAnswerer(t *testing.T) *answerer {
	t.Helper()
	b, err := mediatest.NewAnswerer(mediatest.BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &answerer{Browser: b}
}

// answer applies Strait's offer and returns the complete answer.
func (a *answerer) answer(t *testing.T, offer []byte) []byte {
	t.Helper()
	ans, err := a.Answer(string(offer))
	if err != nil {
		t.Fatalf("%v\n%s", err, offer)
	}
	return []byte(ans)
}

func (a *answerer) waitConnected(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
}

// send sends count tagged PCMU packets.
func (a *answerer) send(t *testing.T, tag string, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		if err := a.Send(0, a.seq, uint32(160*i), false, payload(tag, i)); err != nil {
			t.Fatal(err)
		}
		a.seq++
		time.Sleep(2 * time.Millisecond)
	}
}

// receiveAt waits for count packets tagged tag on ch.
func receiveAt(t *testing.T, ch <-chan *rtp.Packet, tag string, count int) {
	t.Helper()
	got := 0
	deadline := time.After(10 * time.Second)
	for got < count {
		select {
		case pk := <-ch:
			if bytes.HasPrefix(pk.Payload, []byte(tag)) {
				got++
			}
		case <-deadline:
			t.Fatalf("%q: %d of %d packets", tag, got, count)
		}
	}
}

// plainReceive waits for count packets tagged tag at a plain peer.
func plainReceive(t *testing.T, p *mediatest.Plain, tag string, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		if _, err := p.Next(10*time.Second, func(pk mediatest.Packet) bool {
			return pk.RTP != nil && bytes.HasPrefix(pk.RTP.Payload, []byte(tag))
		}); err != nil {
			t.Fatalf("%q at the plain peer: %d of %d: %v", tag, i, count, err)
		}
	}
}

// plainSend sends count tagged PCMU packets from a plain peer.
func plainSend(t *testing.T, p *mediatest.Plain, to netip.AddrPort, seq *uint16, tag string, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: *seq, Timestamp: uint32(*seq) * 160, SSRC: 0x5eed}, Payload: payload(tag, i)}
		*seq++
		if err := p.SendRTP(to, pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reanswer makes a connected browser answer a re-offer from Strait.
func reanswer(t *testing.T, pc *webrtc.PeerConnection, offer []byte) []byte {
	t.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		t.Errorf("browser refuses Strait's re-offer: %v\n%s", err, offer)
		return nil
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Error(err)
		return nil
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Error(err)
		return nil
	}
	return []byte(pc.LocalDescription().SDP)
}

// testConfig is the default configuration with the state in memory: tests
// run many servers at once, and none may write under the package's
// directory.
func testConfig() config.Config {
	cfg := config.Default()
	cfg.State = "memory"
	return cfg
}
