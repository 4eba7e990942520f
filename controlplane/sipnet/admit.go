package sipnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/admission"
	"github.com/strait-sbc/strait/controlplane/metrics"
)

// What the Stack refuses before sipgo parses a message.
//
// Every message read from the network first passes a read filter (sipgo's
// TransportReadFilter, called on each datagram, WebSocket frame or TCP
// read, before parsing):
//
//   - Per-source rate: each source (admission.Key) has a token bucket; a
//     message beyond it is dropped (UDP, WebSocket: the frame only) or, on
//     TCP where a stream cannot lose part of itself, the connection is
//     closed. Counted as strait_sip_dropped_total{reason="rate"}.
//   - Pending server transactions: each request Strait answers holds a
//     server transaction (about 7 KB) until its timers end, 32 s after
//     the answer over UDP (RFC 3261 Timer J; over TCP and WebSocket it
//     ends with the answer, Timer J is 0, so only UDP is bounded). Beyond
//     MaxServerTransactions a new UDP request gets 503 with Retry-After
//     (RFC 3261 section 21.5.4), written at once without a transaction,
//     and with RFC 7339 overload feedback in its Via when the client
//     asked for it. Requests within a dialog (a To tag) pass up to twice
//     the bound, so that calls in progress can still end. Counted as
//     reason="overload".
//
// The trusted sources (the upstream) pass both: the PBX's calls are the
// traffic Strait is there for, and it bounds its own rate.

// Admission configures the read filter. The zero value admits everything.
type Admission struct {
	// Buckets limits messages per source; nil: no limit.
	Buckets *admission.Buckets
	// MaxServerTransactions bounds the server transactions alive at once;
	// 0: no bound.
	MaxServerTransactions int
	// RetryAfter is what a 503 for overload asks clients to wait.
	RetryAfter time.Duration
	// Trusted reports sources that pass unlimited (the upstreams), by
	// transport ("UDP", "TCP", "TLS", "WS") and address.
	Trusted func(transport string, src netip.AddrPort) bool
}

// errRateLimited closes a TCP connection that outran its bucket.
var errRateLimited = errors.New("sipnet: source over its message rate; connection closed")

// admitter is the Stack's read filter and its count of live server
// transactions.
type admitter struct {
	cfg     Admission
	metrics *metrics.Metrics
	stack   *Stack

	live atomic.Int64 // server transactions alive
	peak atomic.Int64 // highest live since the last relief (see Relieve)
}

// filter is the sip.TransportReadFilter.
func (a *admitter) filter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	data, err := a.admit(p, data)
	if len(data) > 0 && p.Transport == WS && a.stack != nil && a.stack.diverted(p.RemoteAddr.String(), data) {
		return nil, nil // passed on to the control plane whose dialog it is (relay.go)
	}
	return data, err
}

// admit applies the admission bounds to what a transport read.
func (a *admitter) admit(p sip.TransportReadProps, data []byte) ([]byte, error) {
	ap := addrPort(p.RemoteAddr)
	transport := p.Transport
	if a.cfg.Trusted != nil && a.cfg.Trusted(transport, ap) {
		a.admitted(transport, data)
		return data, nil
	}
	stream := transport == TCP || transport == TLS
	n := 1
	if stream {
		n = max(1, bytes.Count(data, []byte("\r\n\r\n"))) // messages in this read, near enough
	}
	if !a.cfg.Buckets.Allow(admission.Key(ap.Addr()), n) {
		a.metrics.SIPDroppedN(transport, metrics.DropRate, n)
		if stream {
			return nil, errRateLimited
		}
		return nil, nil
	}
	if bound := int64(a.cfg.MaxServerTransactions); bound > 0 && transport == UDP {
		if live := a.live.Load(); live >= bound && isRequest(data) && (live >= 2*bound || !inDialog(data)) {
			a.metrics.SIPDropped(transport, metrics.DropOverload)
			a.overloaded(transport, p.RemoteAddr, data)
			return nil, nil
		}
	}
	a.admitted(transport, data)
	return data, nil
}

// admitted looks at a message the filter let through: a UDP datagram
// that repeats one read before is a retransmission (retransmit.go).
func (a *admitter) admitted(transport string, data []byte) {
	if transport == UDP {
		a.stack.retx.observe(data, true)
	}
}

// inDialog reports whether a request's To header has a tag (a request
// within a dialog: a BYE, a re-INVITE), looked up without parsing the
// message. Under overload those pass up to twice the bound, so that calls
// in progress can end and change while new work is refused.
func inDialog(data []byte) bool {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return false
		}
		line := data[:i]
		data = data[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			return false // end of headers
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t")) {
			return bytes.Contains(bytes.ToLower(value), []byte(";tag="))
		}
	}
	return false
}

// isRequest tells a request from a response by its first bytes.
func isRequest(data []byte) bool {
	data = bytes.TrimLeft(data, "\r\n")
	return len(data) > 0 && !bytes.HasPrefix(data, []byte("SIP/2.0 "))
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// overloaded answers a request 503 with Retry-After without a
// transaction: on the datagram's source for UDP, on the connection it came
// on otherwise. ACKs get nothing.
func (a *admitter) overloaded(transport string, from net.Addr, data []byte) {
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.Method == sip.ACK {
		return
	}
	req.SetSource(from.String())
	res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	res.AppendHeader(RetryAfter(a.cfg.RetryAfter))
	res.AppendHeader(sip.NewHeader("Server", a.stack.cfg.UserAgent))
	overloadFeedback(res, a.cfg.RetryAfter)
	a.metrics.Response(string(req.Method), 503, false)
	if transport == UDP {
		if pc := a.stack.udpConn(); pc != nil {
			pc.WriteTo([]byte(res.String()), from)
		}
		return
	}
	c, err := a.stack.UA.TransportLayer().GetConnection(transport, from.String())
	if err != nil || c == nil {
		return
	}
	c.WriteMsg(res)
	c.TryClose()
}

// overloadFeedback adds RFC 7339 loss-based overload control to the top
// Via of a 503 whose request's Via carried "oc" (the client supports it,
// section 5.1): oc=100 asks it to send nothing for oc-validity
// milliseconds (section 5.2), oc-seq orders the feedback (section 5.3).
func overloadFeedback(res *sip.Response, validity time.Duration) {
	via := res.Via()
	if via == nil || via.Params == nil {
		return
	}
	if _, ok := via.Params.Get("oc"); !ok {
		return
	}
	via.Params.Add("oc", "100")
	via.Params.Add("oc-algo", `"loss"`)
	via.Params.Add("oc-validity", strconv.FormatInt(validity.Milliseconds(), 10))
	via.Params.Add("oc-seq", fmt.Sprintf("%d.000", time.Now().Unix()))
}

// Track counts a server transaction until it terminates: call it for every
// request a handler gets (nil is ignored: an ACK to a 2xx has none).
func (s *Stack) Track(tx sip.ServerTransaction) {
	if st, ok := tx.(*sip.ServerTx); tx == nil || ok && st == nil {
		return
	}
	a := s.admit
	n := a.live.Add(1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	if !tx.OnTerminate(func(string, error) { a.live.Add(-1) }) {
		a.live.Add(-1) // already over
	}
}

// ServerTransactions is the number of server transactions alive.
func (s *Stack) ServerTransactions() int { return int(s.admit.live.Load()) }

// reliefThreshold is the peak of live server transactions after which,
// once they are all gone, Strait hands the flood's memory back at once.
const reliefThreshold = 1000

// Relieve returns memory to the operating system after a burst: once at
// least reliefThreshold server transactions were alive at once and none
// is any more (the flood is over and its timers have ended), it runs
// debug.FreeOSMemory, which collects the garbage the burst left and
// releases it, instead of leaving the heap at its peak until the next
// collection, which an idle process may not need for minutes. Call it
// from housekeeping.
func (s *Stack) Relieve() bool {
	a := s.admit
	if a.peak.Load() < reliefThreshold || a.live.Load() > 0 {
		return false
	}
	a.peak.Store(0)
	debug.FreeOSMemory()
	return true
}
