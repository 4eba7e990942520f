package icelite

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
)

// liteLoop answers connectivity checks on pc the way a packet worker does,
// for one leg, until pc is closed.
type liteLoop struct {
	pc       *net.UDPConn
	ufrag    string
	key      *Key
	answered atomic.Int32 // responses sent
	nominate atomic.Int32 // of which to USE-CANDIDATE
	dropped  atomic.Int32 // datagrams not answered
}

func (l *liteLoop) run() {
	var (
		buf = make([]byte, 1500)
		out = make([]byte, 0, MaxResponseSize)
		x   Responder
		r   Request
	)
	for {
		n, src, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		if ParseRequest(pkt, &r) != nil || string(r.LocalUfrag) != l.ufrag || !x.Verify(pkt, &r, l.key) {
			l.dropped.Add(1)
			continue
		}
		if out, err = x.AppendSuccess(out[:0], &r, src, l.key); err != nil {
			panic(err)
		}
		// Count before answering: the agent may report Connected (and the
		// test read the counts) as soon as the answer is out.
		l.answered.Add(1)
		if r.UseCandidate {
			l.nominate.Add(1)
		}
		if _, err := l.pc.WriteToUDPAddrPort(out, src); err != nil {
			return
		}
	}
}

// TestPionAgentConnects runs a full, controlling pion/ice agent against a
// responder built on this package over loopback UDP: the agent must find the
// pair, nominate it and report Connected, which it only does if it accepts
// the responses (transaction ID, MESSAGE-INTEGRITY under the password it was
// given, FINGERPRINT, source address).
func TestPionAgentConnects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a pion/ice agent")
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no loopback UDP: %v", err)
	}
	defer pc.Close()
	const ufrag, pwd = "strt", "LitePassword0123456789+/"
	l := &liteLoop{pc: pc, ufrag: ufrag, key: mustKey(t, pwd)}
	done := make(chan struct{})
	go func() { defer close(done); l.run() }()
	defer func() { pc.Close(); <-done }()

	agent, err := ice.NewAgentWithOptions(
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithIncludeLoopback(),
		ice.WithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	// The callback may run after the test returns, so it must not use t.
	connected := make(chan struct{})
	var once sync.Once
	if err := agent.OnConnectionStateChange(func(s ice.ConnectionState) {
		if s == ice.ConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := agent.OnCandidate(func(ice.Candidate) {}); err != nil {
		t.Fatal(err)
	}
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	remote, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
		Network: "udp", Address: "127.0.0.1", Port: port, Component: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.AddRemoteCandidate(remote); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a bound, not a wait
	defer cancel()
	if _, err := agent.Dial(ctx, ufrag, pwd); err != nil {
		t.Fatalf("Dial: %v (answered %d, dropped %d)", err, l.answered.Load(), l.dropped.Load())
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("agent never reported Connected")
	}
	pair, err := agent.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v, %v", pair, err)
	}
	if got := netip.AddrPortFrom(netip.MustParseAddr(pair.Remote.Address()), uint16(pair.Remote.Port())); got != pc.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("selected remote %v, want the responder at %v", got, pc.LocalAddr())
	}
	if l.nominate.Load() == 0 {
		t.Error("agent connected without a USE-CANDIDATE check")
	}
	if d := l.dropped.Load(); d != 0 {
		t.Errorf("responder dropped %d datagrams from pion/ice", d)
	}
	t.Logf("answered %d checks, %d nominating", l.answered.Load(), l.nominate.Load())

	// A check signed with another password gets no answer, so an agent
	// with the wrong password never connects.
	bad, err := ice.NewAgentWithOptions(
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithIncludeLoopback(),
		ice.WithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.OnCandidate(func(ice.Candidate) {}); err != nil {
		t.Fatal(err)
	}
	if err := bad.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	remote2, err := ice.NewCandidateHost(&ice.CandidateHostConfig{
		Network: "udp", Address: "127.0.0.1", Port: port, Component: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.AddRemoteCandidate(remote2); err != nil {
		t.Fatal(err)
	}
	// Wait on what matters, not on a clock: the agent's checks reach the
	// responder and are dropped, and the agent does not connect. (A fixed
	// 1.5 s dial once ran out on a busy machine before any check left.)
	before := l.dropped.Load()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel2()
	dialed := make(chan error, 1)
	go func() {
		_, err := bad.Dial(ctx2, ufrag, "WrongPassword0123456789+")
		dialed <- err
	}()
	for l.dropped.Load() < before+3 {
		select {
		case err := <-dialed:
			t.Fatalf("agent with the wrong password: Dial returned %v after %d dropped checks", err, l.dropped.Load()-before)
		case <-ctx2.Done():
			t.Fatalf("responder saw %d checks from the agent with the wrong password", l.dropped.Load()-before)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel2()
	if err := <-dialed; err == nil {
		t.Error("agent with the wrong password connected")
	}
}
