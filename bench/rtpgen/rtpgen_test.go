package rtpgen

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/dataplane/batchconn"
)

var lo = netip.MustParseAddrPort("127.0.0.1:0")

func newEngine(t *testing.T) *Engine { return newEngineIO(t, batchconn.ModeAuto) }

func newEngineIO(t *testing.T, io batchconn.Mode) *Engine {
	t.Helper()
	if io == batchconn.ModeUring {
		if why := batchconn.UringUnavailable(); why != nil {
			// A kernel (or a container's seccomp profile) may refuse
			// io_uring: the host's choice, skipped in CI too.
			t.Skipf("no io_uring here: %v", why)
		}
	}
	e, err := New(Options{IO: io})
	if err != nil {
		t.Fatal(err)
	}
	if e.IO() != io && io != batchconn.ModeAuto {
		t.Fatalf("asked for %s, got %s", io, e.IO())
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func listen(t *testing.T, e *Engine) *Endpoint {
	t.Helper()
	ep, err := e.Listen(lo)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// TestLoopbackFlows sends plain and SRTP flows straight between harness
// sockets (no relay) and checks every packet arrives intact and counted,
// with each of the harness's I/O modes.
func TestLoopbackFlows(t *testing.T) {
	for _, io := range []batchconn.Mode{batchconn.ModeMmsg, batchconn.ModeUring} {
		t.Run(string(io), func(t *testing.T) { testLoopbackFlows(t, io) })
	}
}

func testLoopbackFlows(t *testing.T, io batchconn.Mode) {
	e := newEngineIO(t, io)
	a, b, c := listen(t, e), listen(t, e), listen(t, e)
	key, salt := make([]byte, 16), make([]byte, 12)
	for i := range key {
		key[i] = byte(i)
	}
	enc, _ := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	dec, _ := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	e.SetDecrypt(c, dec)

	plain, _ := e.NewFlow(a, b.Addr(), b, PCMU)
	secure, _ := e.NewFlow(a, c.Addr(), c, Opus)
	back, _ := e.NewFlow(b, a.Addr(), a, PCMU)
	e.SetRate(500)
	for _, f := range []*Flow{plain, back} {
		e.Activate(f, nil)
	}
	e.Activate(secure, enc)
	e.StartWindow()
	time.Sleep(300 * time.Millisecond)
	e.EndWindow()
	// Wait until the window's packets in flight have arrived.
	w := e.Collect()
	for deadline := time.Now().Add(3 * time.Second); w.Received < w.Sent && time.Now().Before(deadline); w = e.Collect() {
		time.Sleep(10 * time.Millisecond)
	}
	if w.Sent < 300 || w.Received != w.Sent || w.Mismatches != 0 || w.SRTPFailures != 0 || w.Duplicates != 0 {
		t.Fatalf("window: sent %d received %d mismatches %d srtp failures %d dups %d", w.Sent, w.Received, w.Mismatches, w.SRTPFailures, w.Duplicates)
	}
	if w.Latency.Count() != w.Received || w.Latency.Quantile(0.5) == 0 {
		t.Fatalf("latency: %d samples, p50 %d", w.Latency.Count(), w.Latency.Quantile(0.5))
	}
	if plain.FirstArrival() == 0 || secure.FirstArrival() == 0 {
		t.Fatal("first arrival not recorded")
	}
}

// TestMismatchCounted corrupts a packet on the way (a flow expected at
// another socket than where it goes counts too).
func TestMismatchCounted(t *testing.T) {
	e := newEngine(t)
	a, b, c := listen(t, e), listen(t, e), listen(t, e)
	f, _ := e.NewFlow(a, b.Addr(), c, PCMU) // arrives at b, expected at c
	e.SetRate(200)
	e.Activate(f, nil)
	deadline := time.Now().Add(2 * time.Second)
	for e.Mismatches() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e.Mismatches() == 0 {
		t.Fatal("misdelivered packets were not counted")
	}
}

func TestDuplicate(t *testing.T) {
	var f Flow
	for _, s := range []uint64{0, 1, 2, 5, 4, 3} {
		if f.duplicate(s) {
			t.Fatalf("%d reported duplicate", s)
		}
		f.recv++
	}
	for _, s := range []uint64{0, 3, 5} {
		if !f.duplicate(s) {
			t.Fatalf("%d not reported duplicate", s)
		}
	}
	if f.duplicate(1000) || f.duplicate(999) || !f.duplicate(999) {
		t.Fatal("window after a jump")
	}
}
