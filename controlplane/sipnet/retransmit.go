package sipnet

import (
	"bytes"
	"hash/maphash"
	"net"
	"sync"
	"time"

	"github.com/strait-sbc/strait/controlplane/metrics"
)

// Retransmissions, counted where they are on the wire.
//
// sipgo's transactions retransmit and absorb retransmissions without
// telling anyone: a client transaction re-sends its request when Timer A
// (INVITE) or Timer E fires (RFC 3261 sections 17.1.1.2, 17.1.2.2), a
// server transaction re-sends its final response when Timer G fires
// (section 17.2.1) and its last response whenever the request comes again
// (sections 17.2.1, 17.2.2), and the UAS core re-sends a 2xx until the
// ACK (section 13.3.1.4). Every one of these is, on the wire, a datagram
// byte for byte equal to one sent before: the same message re-serialised,
// same branch, same CSeq. So rather than trace every message through
// sipgo's process-wide tracer (which formats addresses and copies each
// message), the stack fingerprints each UDP datagram it reads (after the
// read filter admitted it) or writes, with hash/maphash (no allocation,
// about 0.1 us for a 1 KB message), and looks the fingerprint up in a
// fixed table of the recent ones. Only a hit, a retransmission, costs
// more: the method is read from the bytes and a counter goes up
// (strait_sip_retransmissions_total{direction,method,message}).
//
// Reliable transports (TCP, TLS, WebSocket) do not retransmit requests or
// responses (Timer A and G are not started there) and are not looked at.

// retransmitWindow is how long a message is remembered: a transaction
// retransmits for at most 64*T1 = 32 s (Timer B, F and H), and a little
// slack covers the peer's own clock.
const retransmitWindow = 40 * time.Second

// The table is set-associative: retransmitBuckets buckets of
// retransmitWays fingerprints; a new fingerprint replaces the oldest of
// its bucket. 131 072 entries, 1.5 MB: at 100 calls/s (some 14 UDP
// messages per call on the SIP side) the whole 40 s window fits; at 1 000
// calls/s the last 9 s or so do, so a retransmission later than that may
// go uncounted (an undercount, never a false count).
const (
	retransmitBuckets = 1 << 14
	retransmitWays    = 8
	retransmitShards  = 64 // locks, each over buckets i with i%64 equal
)

// retransmissions recognises repeated datagrams. Safe for concurrent use:
// each bucket is guarded by shard mutex mu[bucket%retransmitShards],
// taken for a few compares, never across I/O.
type retransmissions struct {
	seed    maphash.Seed     // frozen after construction
	start   time.Time        // frozen: the time base of at
	metrics *metrics.Metrics // frozen; may be nil
	mu      [retransmitShards]sync.Mutex
	buckets []retransmitBucket // fixed length retransmitBuckets
}

type retransmitBucket struct {
	fp [retransmitWays]uint64 // 0: empty
	at [retransmitWays]uint32 // milliseconds since start when last seen
}

func newRetransmissions(m *metrics.Metrics) *retransmissions {
	return &retransmissions{seed: maphash.MakeSeed(), start: time.Now(), metrics: m,
		buckets: make([]retransmitBucket, retransmitBuckets)}
}

// observe looks at one UDP datagram Strait read (in) or wrote and counts
// it when it repeats one seen within retransmitWindow. It reports whether
// it did.
func (r *retransmissions) observe(data []byte, in bool) bool {
	if len(data) < 16 || data[0] < 'A' || data[0] > 'Z' {
		return false // a keepalive (CRLF), STUN, or nothing SIP could be
	}
	fp := maphash.Bytes(r.seed, data)
	if in {
		fp ^= 1 << 63 // a message read never matches one written
	}
	fp |= 1 // never 0, the empty mark
	now := uint32(time.Since(r.start).Milliseconds())
	i := (fp >> 32) % retransmitBuckets
	mu := &r.mu[i%retransmitShards]
	b := &r.buckets[i]
	repeat := false
	mu.Lock()
	slot := -1
	for w := range retransmitWays {
		if b.fp[w] == fp {
			slot = w
			repeat = now-b.at[w] <= uint32(retransmitWindow.Milliseconds()) // uint32 arithmetic survives the wrap
			break
		}
	}
	if slot < 0 { // a new message: an empty way, else the oldest
		slot = 0
		for w := range retransmitWays {
			if b.fp[w] == 0 {
				slot = w
				break
			}
			if now-b.at[w] > now-b.at[slot] {
				slot = w
			}
		}
	}
	b.fp[slot], b.at[slot] = fp, now
	mu.Unlock()
	if repeat {
		method, request := sipMethod(data)
		r.metrics.Retransmission(method, in, request)
	}
	return repeat
}

// sipMethod reads a message's method: a request's from its request line,
// a response's from its CSeq header (compact forms have none for CSeq).
func sipMethod(data []byte) (method string, request bool) {
	if !bytes.HasPrefix(data, []byte("SIP/2.0 ")) {
		m, _, _ := bytes.Cut(data, []byte(" "))
		return string(m), true
	}
	for line := range bytes.Lines(data) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(name), []byte("CSeq")) {
			continue
		}
		f := bytes.Fields(value)
		if len(f) == 2 {
			return string(f[1]), false
		}
		break
	}
	return "", false
}

// countingConn is the UDP listening socket as sipgo gets it: every
// datagram sipgo writes through it (requests, responses, their
// retransmissions) is observed on the way out.
type countingConn struct {
	net.PacketConn
	r *retransmissions
}

func (c countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.r.observe(b, false)
	return c.PacketConn.WriteTo(b, addr)
}
