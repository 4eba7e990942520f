package sipnet

import (
	"log/slog"
	"net"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const (
	msgA = "INVITE sip:bob@x SIP/2.0\r\nCall-ID: a1@h\r\nContent-Length: 4\r\n\r\nv=0\n"
	msgB = "SIP/2.0 200 OK\r\ni: b2@h\r\nl: 0\r\n\r\n"
)

// Stream reads are split into messages wherever the reads fall.
func TestStreamFramer(t *testing.T) {
	stream := "\r\n\r\n" + msgA + msgB + "\r\n" + msgA
	for _, size := range []int{1, 2, 7, 30, len(stream)} {
		var f streamFramer
		var got []string
		for i := 0; i < len(stream); i += size {
			f.feed("k", []byte(stream[i:min(i+size, len(stream))]), func(m []byte) { got = append(got, string(m)) })
		}
		if len(got) != 3 || got[0] != msgA || got[1] != msgB || got[2] != msgA {
			t.Fatalf("reads of %d: %q", size, got)
		}
		if len(f.pending) != 0 {
			t.Fatalf("reads of %d: %d streams left pending", size, len(f.pending))
		}
	}
	if callID([]byte(msgA)) != "a1@h" || callID([]byte(msgB)) != "b2@h" || callID([]byte("x\r\n\r\nCall-ID: body\r\n")) != "" {
		t.Fatal("callID")
	}
}

// Hostile bytes on a stream: no panic, and what is held stays bounded.
func FuzzStreamFramer(f *testing.F) {
	f.Add([]byte(msgA + msgB))
	f.Add([]byte("X\r\nContent-Length: 99999999\r\n\r\n"))
	f.Add([]byte("X\r\nl: -5\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s streamFramer
		total := 0
		for i := 0; i < len(b); i += 5 {
			s.feed("k", b[i:min(i+5, len(b))], func(m []byte) { total += len(m) })
		}
		if total > len(b) || len(s.pending["k"]) > maxPending {
			t.Fatalf("emitted %d of %d bytes, %d pending", total, len(b), len(s.pending["k"]))
		}
		callID(b)
	})
}

// nullPacketConn accepts every datagram and reads none.
type nullPacketConn struct{ net.PacketConn }

func (nullPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (nullPacketConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
}

// The tracer is installed for good (sip.SIPDebug is read unguarded), but
// third_party/sipgo's transports format a datagram's addresses for it
// only while a log or a capture wants messages (SIPTraceActive): an
// untraced UDP write allocates nothing, a traced one does.
func TestTracerInactiveAllocs(t *testing.T) {
	installTracer()
	prevLog, prevCapture := trace.log.Load(), trace.capture.Load()
	t.Cleanup(func() { trace.log.Store(prevLog); trace.capture.Store(prevCapture) })
	trace.log.Store(nil)
	trace.capture.Store(nil)
	if (tracer{}).SIPTraceActive() {
		t.Fatal("active with neither a log nor a capture")
	}
	conn := &sip.UDPConnection{PacketConn: nullPacketConn{}}
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}
	msg := []byte(msgA)
	write := func() {
		if _, err := conn.WriteTo(msg, to); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(100, write); n != 0 {
		t.Fatalf("untraced: %v allocations per datagram, want 0", n)
	}
	EnableTrace(slog.New(slog.DiscardHandler))
	if !(tracer{}).SIPTraceActive() {
		t.Fatal("inactive with a log")
	}
	if n := testing.AllocsPerRun(100, write); n == 0 {
		t.Fatal("traced: no allocation: is the tracer still called?")
	}
}
