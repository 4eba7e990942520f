// Package rtpgen is the bench harness's traffic engine: the media
// generator and sink at both ends of every session the harness drives.
//
// An Engine owns the harness's UDP sockets (Endpoints) and two goroutines.
// The generator sends RTP for every active Flow at a paced aggregate rate,
// round-robin over the flows, with sendmmsg batches (batchconn.Sender). The
// sink waits on all sockets at once with an epoll set parked in the Go
// netpoller (batchconn.Poller), reads with recvmmsg (batchconn.Batch),
// decrypts SRTP where the Endpoint has keys, and checks every payload byte
// for byte (package payload). Datagrams that are not RTP or RTCP (ICE and
// DTLS) go to the Endpoint's control callback, so a WebRTC client leg runs
// its handshake on the same socket its media later uses.
//
// Loss and latency are measured over a window: a packet belongs to the
// window if the send time written in its payload falls inside it, on the
// generator's side and on the sink's alike, so packets in flight when the
// window closes are neither lost nor counted twice.
//
// # Concurrency
//
// Engine methods are safe for concurrent use. The generator's state (each
// flow's sequence numbers and encryption context) is guarded by genMu,
// which the generator holds while it sends one batch; the sink's (each
// flow's receive counters, the latency histogram, decryption contexts) by
// sinkMu, which the sink holds while it handles one poller round. Neither
// is taken per packet.
package rtpgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/strait-sbc/strait/bench/payload"
	"github.com/strait-sbc/strait/bench/stats"
	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/demux"
)

// Limits of one Engine.
const (
	// MaxEndpoints bounds the sockets one Engine serves (tokens index a
	// table allocated once). 10 000 sessions with a socket per WebRTC
	// client leg and per shared-mode plain leg need 20 000.
	MaxEndpoints = 1 << 16
	// MaxFlows bounds flows over the Engine's life (two per session).
	MaxFlows = 1 << 18
	// batchSize is datagrams per recvmmsg and per sendmmsg, as the node's
	// default.
	batchSize = 64
	// bufSize holds any RTP packet the harness sends plus SRTP's tag.
	bufSize = 2048
	// maxBurst caps how far the generator catches up after it was
	// descheduled: at most this much time's worth of packets is sent at
	// once, and the rest is not sent (offered rate is measured, not
	// assumed, so this shows as a lower offered rate, not as loss).
	maxBurst = 20 * time.Millisecond
	// tick is how long the generator sleeps between batches when it is
	// ahead of its schedule.
	tick = 500 * time.Microsecond
)

// Codec is what a flow sends: payload type, payload size and RTP
// timestamp increment per packet.
type Codec struct {
	PT        uint8
	Size      int
	TSPerPkt  uint32
	ClockRate uint32
	Name      string
}

// PCMU is G.711 µ-law at 20 ms packets (RFC 3551).
var PCMU = Codec{PT: 0, Size: payload.PCMUSize, TSPerPkt: 160, ClockRate: 8000, Name: "PCMU"}

// Opus is an Opus voice stream at 20 ms packets (RFC 7587: 48 kHz clock).
var Opus = Codec{PT: 111, Size: payload.OpusSize, TSPerPkt: 960, ClockRate: 48000, Name: "opus"}

// Endpoint is one harness UDP socket.
type Endpoint struct {
	// Sock is the socket; the Engine closes it.
	Sock *batchconn.Socket

	idx     int
	control atomic.Pointer[func(pkt []byte, from netip.AddrPort)]
	dec     *srtp.Context // guarded by Engine.sinkMu
	hdr     rtp.Header
}

// Addr is the socket's local address.
func (ep *Endpoint) Addr() netip.AddrPort { return ep.Sock.Local }

// SetControl installs the function that gets the socket's ICE (STUN) and
// DTLS datagrams. It is called on the sink goroutine with a buffer valid
// only during the call, and must not block.
func (ep *Endpoint) SetControl(f func(pkt []byte, from netip.AddrPort)) { ep.control.Store(&f) }

// Flow is one direction of one session's media: RTP sent from an Endpoint
// to a relay address, expected at another Endpoint.
type Flow struct {
	// Frozen at creation.
	ID    uint32
	From  *Endpoint
	To    netip.AddrPort
	Sink  *Endpoint
	SSRC  uint32
	Codec Codec

	// Generator state, guarded by genMu.
	enc     *srtp.Context
	active  bool
	seq     uint64
	rtpSeq  uint16
	ts      uint32
	hdr     rtp.Header
	sentWin uint64
	sent    uint64

	// Sink state, guarded by sinkMu.
	removed    bool
	recvWin    uint64
	recv       uint64
	dups       uint64
	mismatches uint64
	highest    uint64
	seen       [4]uint64 // bitmap of the 256 sequence numbers below highest
	jitter     stats.Jitter

	firstArrival atomic.Int64 // engine nanos of the first packet; 0 before
}

// FirstArrival is when the flow's first packet arrived (engine clock), or
// 0 if none has.
func (f *Flow) FirstArrival() int64 { return f.firstArrival.Load() }

// Engine is the generator and sink; see the package doc.
type Engine struct {
	start  time.Time
	poller *batchconn.Poller
	waker  *batchconn.Waker
	eps    []atomic.Pointer[Endpoint]
	nextEp atomic.Int32
	flows  []atomic.Pointer[Flow]
	nextID atomic.Uint32
	closed atomic.Bool
	wg     sync.WaitGroup
	opt    batchconn.Options

	winStart, winEnd atomic.Int64 // engine nanos; winEnd 0 while open

	// Totals for the progress line.
	totalSent, totalRecv atomic.Uint64

	genMu       sync.Mutex // guards the generator state below and in Flows
	active      []*Flow
	kick        []*Flow
	perFlowPPS  float64
	rr          int
	credit      float64
	last        int64
	sendDrops   uint64
	sendDropWin uint64

	sinkMu       sync.Mutex // guards the sink state below and in Flows and Endpoints
	hist         stats.Histogram
	strays       uint64 // payloads naming no flow, or arriving at the wrong socket
	late         uint64 // packets of removed flows, still in flight
	srtpFail     uint64
	rtcp, others uint64
}

// Options tune an Engine's sockets.
type Options struct {
	// Socket buffers of every harness socket (the node's default is 4 MiB).
	Socket batchconn.Options
}

// New starts an Engine's generator and sink.
func New(opt Options) (*Engine, error) {
	p, err := batchconn.NewPoller(256)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		start:  time.Now(),
		poller: p,
		eps:    make([]atomic.Pointer[Endpoint], MaxEndpoints),
		flows:  make([]atomic.Pointer[Flow], MaxFlows),
		opt:    opt.Socket,
	}
	e.nextEp.Store(1) // token 0 is the waker
	if e.waker, err = batchconn.NewWaker(p, 0); err != nil {
		p.Close()
		return nil, err
	}
	e.wg.Add(2)
	go e.sink()
	go e.generate()
	return e, nil
}

// Now is the Engine's clock: nanoseconds since it started (monotonic). Send
// times in payloads and arrival times use it.
func (e *Engine) Now() int64 { return int64(time.Since(e.start)) }

// Listen opens an Endpoint bound to addr (port 0: any).
func (e *Engine) Listen(addr netip.AddrPort) (*Endpoint, error) {
	idx := int(e.nextEp.Add(1) - 1)
	if idx >= MaxEndpoints {
		return nil, fmt.Errorf("rtpgen: more than %d endpoints", MaxEndpoints)
	}
	s, err := batchconn.Listen(addr, e.opt)
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{Sock: s, idx: idx}
	e.eps[idx].Store(ep)
	if err := e.poller.Add(s.FD, batchconn.Token(idx)); err != nil {
		e.eps[idx].Store(nil)
		s.Close()
		return nil, err
	}
	return ep, nil
}

// CloseEndpoint stops serving ep and closes its socket. Its flows must be
// removed first.
func (e *Engine) CloseEndpoint(ep *Endpoint) {
	e.poller.Remove(ep.Sock.FD)
	e.sinkMu.Lock() // the sink is not inside a round using ep
	e.eps[ep.idx].Store(nil)
	e.sinkMu.Unlock()
	ep.Sock.Close()
}

// SetDecrypt gives ep the SRTP context that decrypts what arrives on it.
func (e *Engine) SetDecrypt(ep *Endpoint, dec *srtp.Context) {
	e.sinkMu.Lock()
	ep.dec = dec
	e.sinkMu.Unlock()
}

// NewFlow registers a flow from from to the relay address to, expected at
// sink. It sends nothing until Activate.
func (e *Engine) NewFlow(from *Endpoint, to netip.AddrPort, sink *Endpoint, c Codec) (*Flow, error) {
	id := e.nextID.Add(1)
	if id >= MaxFlows {
		return nil, fmt.Errorf("rtpgen: more than %d flows", MaxFlows)
	}
	f := &Flow{ID: id, From: from, To: to, Sink: sink, SSRC: 0x5eed0000 ^ id*2654435761, Codec: c,
		rtpSeq: uint16(id * 7919), ts: id * 104729}
	e.flows[id].Store(f)
	return f, nil
}

// Activate starts sending f, encrypted with enc when it is not nil. The
// first packet goes out at once (setup time counts to the first media), the
// rest at the flow rate.
func (e *Engine) Activate(f *Flow, enc *srtp.Context) {
	e.genMu.Lock()
	f.enc = enc
	if !f.active {
		f.active = true
		e.active = append(e.active, f)
		e.kick = append(e.kick, f)
	}
	e.genMu.Unlock()
}

// Kick sends one packet of an active flow at once, outside its rate (a
// setup waiting for the first packet through does not wait for a slow
// flow's next turn).
func (e *Engine) Kick(f *Flow) {
	e.genMu.Lock()
	if f.active {
		e.kick = append(e.kick, f)
	}
	e.genMu.Unlock()
}

// Remove stops flows. Their packets still in flight are recognised and
// ignored; their counts stay in the run's totals.
func (e *Engine) Remove(flows ...*Flow) {
	drop := make(map[*Flow]bool, len(flows))
	for _, f := range flows {
		drop[f] = true
	}
	e.genMu.Lock()
	keep := e.active[:0]
	for _, f := range e.active {
		if !drop[f] {
			keep = append(keep, f)
		}
	}
	clear(e.active[len(keep):])
	e.active = keep
	k := e.kick[:0]
	for _, f := range e.kick {
		if !drop[f] {
			k = append(k, f)
		}
	}
	e.kick = k
	for _, f := range flows {
		f.active = false
	}
	e.genMu.Unlock()
	e.sinkMu.Lock()
	for _, f := range flows {
		f.removed = true // kept, so that packets still in flight are known
	}
	e.sinkMu.Unlock()
}

// SetRate sets each active flow's packet rate (cadence: 50 for 20 ms
// packets). 0 stops sending.
func (e *Engine) SetRate(perFlowPPS float64) {
	e.genMu.Lock()
	e.perFlowPPS = perFlowPPS
	e.credit = 0
	e.last = e.Now()
	e.genMu.Unlock()
}

// ActiveFlows is the number of flows being sent.
func (e *Engine) ActiveFlows() int {
	e.genMu.Lock()
	defer e.genMu.Unlock()
	return len(e.active)
}

// Totals are all packets sent and received (any flow, any time), for a
// progress line.
func (e *Engine) Totals() (sent, received uint64) { return e.totalSent.Load(), e.totalRecv.Load() }

// Close stops the goroutines and closes every socket.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.poller.Close()
	e.wg.Wait()
	e.waker.Close()
	for i := range e.eps {
		if ep := e.eps[i].Load(); ep != nil {
			ep.Sock.Close()
		}
	}
	return nil
}

// generate is the generator goroutine.
func (e *Engine) generate() {
	defer e.wg.Done()
	sender := batchconn.NewSender[sendTag](batchSize)
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	onDrop := func(t sendTag, _ error) {
		e.sendDrops++
		if t.win {
			t.f.sentWin-- // the harness's own socket refused it: not the relay's loss
			e.sendDropWin++
		}
	}
	for !e.closed.Load() {
		e.genMu.Lock()
		now := e.Now()
		n := len(e.kick)
		if e.perFlowPPS > 0 && len(e.active) > 0 {
			agg := e.perFlowPPS * float64(len(e.active))
			e.credit += float64(now-e.last) / 1e9 * agg
			e.credit = min(e.credit, agg*maxBurst.Seconds()+1)
			n += int(e.credit)
		}
		e.last = now
		if n == 0 {
			e.genMu.Unlock()
			time.Sleep(tick)
			continue
		}
		sent := 0
		for sent < n && len(e.active) > 0 {
			var f *Flow
			if len(e.kick) > 0 {
				f = e.kick[len(e.kick)-1]
				e.kick = e.kick[:len(e.kick)-1]
			} else {
				e.rr = (e.rr + 1) % len(e.active)
				f = e.active[e.rr]
				e.credit--
			}
			k := sender.Len()
			pkt, win, ok := e.build(f, bufs[k], e.Now())
			if ok {
				sender.Add(f.From.Sock.FD, f.From.Sock.V6, pkt, f.To, sendTag{f, win})
			}
			sent++
			if sender.Len() == batchSize {
				sender.Flush(onDrop)
			}
		}
		if sender.Len() > 0 {
			sender.Flush(onDrop)
		}
		e.totalSent.Add(uint64(sent))
		e.genMu.Unlock()
	}
}

type sendTag struct {
	f   *Flow
	win bool
}

// build writes f's next packet into buf and encrypts it in place. Called
// with genMu held.
func (e *Engine) build(f *Flow, buf []byte, now int64) (pkt []byte, win, ok bool) {
	buf[0] = 0x80
	buf[1] = f.Codec.PT & 0x7f
	binary.BigEndian.PutUint16(buf[2:4], f.rtpSeq)
	binary.BigEndian.PutUint32(buf[4:8], f.ts)
	binary.BigEndian.PutUint32(buf[8:12], f.SSRC)
	n := 12 + f.Codec.Size
	payload.Write(buf[12:n], f.ID, f.seq, now)
	f.rtpSeq++
	f.ts += f.Codec.TSPerPkt
	f.seq++
	f.sent++
	pkt = buf[:n]
	if f.enc != nil {
		out, err := f.enc.EncryptRTP(buf[:0], buf[:n], &f.hdr)
		if err != nil {
			return nil, false, false
		}
		pkt = out
	}
	if e.inWindow(now) {
		f.sentWin++
		win = true
	}
	return pkt, win, true
}

func (e *Engine) inWindow(t int64) bool {
	s := e.winStart.Load()
	if s == 0 || t < s {
		return false
	}
	end := e.winEnd.Load()
	return end == 0 || t < end
}

// sink is the receive goroutine.
func (e *Engine) sink() {
	defer e.wg.Done()
	batch := batchconn.NewBatch(batchSize, bufSize, 0)
	tokens := make([]batchconn.Token, 0, e.poller.MaxEvents())
	for {
		toks, err := e.poller.Wait(tokens)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) && !e.closed.Load() {
				fmt.Fprintln(os.Stderr, "rtpgen: sink stopped:", err)
			}
			return
		}
		now := e.Now()
		e.sinkMu.Lock()
		var got uint64
		for _, tok := range toks {
			if tok == 0 {
				e.waker.Drain()
				continue
			}
			ep := e.eps[int(tok)].Load()
			if ep == nil {
				continue
			}
			for round := 0; round < 4; round++ {
				n, err := batch.Recv(ep.Sock.FD)
				if err != nil || n == 0 {
					break
				}
				for i := 0; i < n; i++ {
					m := &batch.Msgs[i]
					if m.N <= 0 {
						e.others++
						continue
					}
					if e.handle(ep, m.Buf[:m.N], m.Addr, now) {
						got++
					}
				}
				if n < batchSize {
					break
				}
			}
		}
		e.sinkMu.Unlock()
		e.totalRecv.Add(got)
	}
}

// handle processes one datagram; it reports whether it was a media packet
// of a known flow. Called with sinkMu held.
func (e *Engine) handle(ep *Endpoint, pkt []byte, from netip.AddrPort, now int64) bool {
	switch demux.Classify(pkt) {
	case demux.RTP:
	case demux.RTCP:
		e.rtcp++
		return false
	case demux.STUN, demux.DTLS:
		if c := ep.control.Load(); c != nil {
			(*c)(pkt, from)
		} else {
			e.others++
		}
		return false
	default:
		e.others++
		return false
	}
	if ep.dec != nil {
		out, err := ep.dec.DecryptRTP(pkt, pkt, &ep.hdr)
		if err != nil {
			e.srtpFail++
			return false
		}
		pkt = out
	}
	hl := headerLen(pkt)
	if hl < 0 {
		e.strays++
		return false
	}
	body := pkt[hl:]
	id, _, _, ok := payload.Header(body)
	var f *Flow
	if ok && id < MaxFlows {
		f = e.flows[id].Load()
	}
	if f != nil && f.removed {
		e.late++
		return false
	}
	if f == nil || f.Sink != ep {
		e.strays++
		return false
	}
	_, seq, sent, err := payload.Check(body, f.Codec.Size)
	if err != nil {
		f.mismatches++
		return false
	}
	if f.firstArrival.Load() == 0 {
		f.firstArrival.Store(now)
	}
	if f.duplicate(seq) {
		f.dups++
		return false
	}
	f.recv++
	if e.inWindow(sent) {
		f.recvWin++
		e.hist.Record(now - sent)
		f.jitter.Add(sent, now)
	}
	return true
}

// duplicate records seq and reports whether it was seen before (within the
// 256 packets below the highest; older stragglers count as new).
func (f *Flow) duplicate(seq uint64) bool {
	switch {
	case f.recv == 0 || seq > f.highest:
		shift := seq - f.highest
		if f.recv == 0 || shift >= 256 {
			f.seen = [4]uint64{}
		} else {
			for ; shift > 0; shift-- {
				f.seen[3] = f.seen[3]<<1 | f.seen[2]>>63
				f.seen[2] = f.seen[2]<<1 | f.seen[1]>>63
				f.seen[1] = f.seen[1]<<1 | f.seen[0]>>63
				f.seen[0] <<= 1
			}
		}
		f.seen[0] |= 1
		f.highest = seq
		return false
	default:
		age := f.highest - seq
		if age >= 256 {
			return false
		}
		w, b := age/64, age%64
		if f.seen[w]&(1<<b) != 0 {
			return true
		}
		f.seen[w] |= 1 << b
		return false
	}
}

// headerLen is the length of an RTP header with its CSRCs and extension,
// or -1 if pkt is too short for it (RFC 3550 section 5.1).
func headerLen(pkt []byte) int {
	if len(pkt) < 12 {
		return -1
	}
	n := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < n+4 {
			return -1
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:n+4]))
	}
	if len(pkt) < n {
		return -1
	}
	return n
}

// Window is what happened to the packets sent during a measurement window.
type Window struct {
	Start, End int64 // engine nanos
	// Sent and Received count packets whose send time is in the window
	// (Sent excludes what the harness's own sockets refused).
	Sent, Received uint64
	// SendDrops are packets the harness's sockets refused (the generator
	// outran its own socket buffers), in the window.
	SendDrops uint64
	// Mismatches are payloads that arrived altered, over the whole run,
	// plus packets at the wrong socket or naming no flow.
	Mismatches uint64
	// Duplicates over the whole run.
	Duplicates uint64
	// SRTPFailures are packets the harness could not decrypt (whole run).
	SRTPFailures uint64
	// Latency of the window's packets, send to receive.
	Latency stats.Histogram
	// JitterNanos is the mean over flows of RFC 3550 jitter.
	JitterNanos float64
	// Starved counts flows that sent in the window and received nothing.
	Starved int
}

// Duration is the window's length.
func (w *Window) Duration() time.Duration { return time.Duration(w.End - w.Start) }

// StartWindow opens a measurement window now; counters of an earlier
// window are reset.
func (e *Engine) StartWindow() int64 {
	e.genMu.Lock()
	e.sinkMu.Lock()
	for i := 1; i <= int(e.nextID.Load()) && i < MaxFlows; i++ {
		if f := e.flows[i].Load(); f != nil {
			f.sentWin, f.recvWin = 0, 0
		}
	}
	e.sendDropWin = 0
	e.hist = stats.Histogram{}
	now := e.Now()
	e.winEnd.Store(0)
	e.winStart.Store(now)
	e.sinkMu.Unlock()
	e.genMu.Unlock()
	return now
}

// EndWindow closes the window now. Call Collect after the packets in
// flight had time to arrive.
func (e *Engine) EndWindow() int64 {
	now := e.Now()
	e.winEnd.Store(now)
	return now
}

// Collect returns the window's figures.
func (e *Engine) Collect() Window {
	e.genMu.Lock()
	e.sinkMu.Lock()
	defer e.sinkMu.Unlock()
	defer e.genMu.Unlock()
	w := Window{Start: e.winStart.Load(), End: e.winEnd.Load(), SendDrops: e.sendDropWin,
		Mismatches: e.strays, SRTPFailures: e.srtpFail, Latency: e.hist}
	var jit float64
	var nj int
	for i := 1; i <= int(e.nextID.Load()) && i < MaxFlows; i++ {
		f := e.flows[i].Load()
		if f == nil {
			continue
		}
		w.Sent += f.sentWin
		w.Received += f.recvWin
		w.Mismatches += f.mismatches
		w.Duplicates += f.dups
		if f.sentWin > 0 && f.recvWin == 0 {
			w.Starved++
		}
		if f.recvWin > 1 {
			jit += f.jitter.Nanos()
			nj++
		}
	}
	if nj > 0 {
		w.JitterNanos = jit / float64(nj)
	}
	return w
}

// Mismatches counts payload mismatches so far, over every flow ever
// registered (also removed ones: they are kept in the total).
func (e *Engine) Mismatches() uint64 {
	e.sinkMu.Lock()
	defer e.sinkMu.Unlock()
	n := e.strays
	for i := 1; i <= int(e.nextID.Load()) && i < MaxFlows; i++ {
		if f := e.flows[i].Load(); f != nil {
			n += f.mismatches
		}
	}
	return n
}
