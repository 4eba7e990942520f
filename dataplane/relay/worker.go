package relay

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/icelite"
	"github.com/strait-sbc/strait/dataplane/quality"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// sockKind is what a worker's socket carries.
type sockKind uint8

const (
	sockWebRTC      sockKind = iota + 1 // shared WebRTC port
	sockPlainShared                     // shared plain port (RTP or RTCP half)
	sockPlain                           // a plain stream's own RTP or RTCP port
)

// slot is a socket registered in a worker's Loop. Its index and gen make up
// the Loop token, so a datagram of a socket removed in the same round is
// recognised and ignored.
type slot struct {
	sock   *batchconn.Socket
	kind   sockKind
	group  *group  // shared kinds
	stream *Stream // sockPlain
	rtcp   bool    // the RTCP half of a pair
	gen    uint32
	drops  uint32 // the socket's kernel drop count last seen (SO_RXQ_OVFL)
}

// latchKey names a peer on a shared port.
type latchKey struct {
	group int32
	addr  netip.AddrPort
}

// worker is one packet worker. Everything below mu is owned by the worker
// goroutine; other goroutines reach it only through post.
type worker struct {
	id int
	e  *Engine
	io batchconn.Loop[*Leg]

	mu      sync.Mutex // guards cmds and stopped
	cmds    []command
	pending atomic.Bool   // cmds is not empty: the worker takes mu only then
	stopped bool          // run returned: posters apply commands themselves
	exited  chan struct{} // closed when run returns

	// Owned by the worker goroutine.
	slots      []slot
	freeSlots  []uint32
	sockSlot   map[*batchconn.Socket]uint32
	groupSocks []*batchconn.Socket // this worker's socket of each group, by group id
	ufrags     map[string]*Leg     // local ICE ufrag -> leg
	latches    map[latchKey]*Leg   // validated WebRTC peer -> leg
	legLatches map[*Leg][]latchKey // for removal
	shared     map[latchKey]*Stream

	stunReq icelite.Request
	stun    icelite.Responder
	rtpHdr  rtp.Header
	rtcpHdr rtcp.Header
	reports quality.Reports // scratch of rtcpQuality
	scratch []byte          // BufferSize: a packet kept by decryptFirstRTP
	now     int64           // unix nanoseconds, read once per round

	ctr nodeCounters
	// io is the Loop's system call counts, published once per round.
	ioStats ioCounters
	hold    holdHist // how long rounds held their datagrams (hold.go)
}

// command is a change to a worker's tables, applied between batches.
type command struct {
	op     cmdOp
	leg    *Leg
	stream *Stream
	ufrag  string
	key    latchKey
	sock   *batchconn.Socket
	rtcp   bool
	done   *sync.WaitGroup
}

type cmdOp uint8

const (
	cmdAddUfrag cmdOp = iota + 1
	cmdRemoveUfrag
	cmdAddShared
	cmdRemoveShared
	cmdAddSocket
	cmdRemoveSocket
	cmdForgetLeg // drop the leg's latches
	cmdLatch     // latch key to leg (a restored path)
	cmdBarrier   // only signals done
)

func newWorker(e *Engine, id int) (*worker, error) {
	w := &worker{
		id:         id,
		e:          e,
		slots:      make([]slot, 0, 64),
		sockSlot:   make(map[*batchconn.Socket]uint32),
		ufrags:     make(map[string]*Leg),
		latches:    make(map[latchKey]*Leg),
		legLatches: make(map[*Leg][]latchKey),
		shared:     make(map[latchKey]*Stream),
		scratch:    make([]byte, BufferSize),
		exited:     make(chan struct{}),
	}
	io, err := batchconn.NewLoop(batchconn.LoopConfig[*Leg]{
		Mode:      e.cfg.IO,
		BatchSize: e.cfg.BatchSize,
		BufSize:   BufferSize,
		Tailroom:  Tailroom,
		Coalesce:  e.cfg.Coalesce,
		HotWait:   e.cfg.HotWait,
		Dropped:   w.sendFailed,
	})
	if err != nil {
		return nil, err
	}
	w.io = io
	return w, nil
}

// post queues cmds for the worker and wakes it. Safe for concurrent use.
// Once the worker has stopped, the commands are applied at once, under mu,
// so that deleting sessions during shutdown still releases everything.
func (w *worker) post(cmds ...command) {
	w.mu.Lock()
	if w.stopped {
		defer w.mu.Unlock()
		for i := range cmds {
			w.apply(&cmds[i])
			if cmds[i].done != nil {
				cmds[i].done.Done()
			}
		}
		return
	}
	w.cmds = append(w.cmds, cmds...)
	// One wake per batch of commands: while pending is set, a wake is on
	// its way and the worker takes every command queued under mu until it
	// clears pending (drainCommands), so later posts only queue. Fewer
	// system calls, and mu is held across one only by the first poster.
	// Woken under mu: the worker marks itself stopped under mu before its
	// Loop is closed, so a wake never reaches a closed (or reused)
	// descriptor.
	if !w.pending.Swap(true) {
		w.io.Wake()
	}
	w.mu.Unlock()
}

// run is the worker goroutine: wait, handle every datagram of the round,
// apply commands; the round's sends go out with the next wait.
func (w *worker) run() {
	defer w.e.wg.Done()
	defer close(w.exited)
	err := w.io.Bind()
	for err == nil {
		var msgs []batchconn.Message
		msgs, err = w.io.Next()
		if err != nil {
			break
		}
		start := time.Now()
		sent := w.round(msgs, start)
		if w.pending.Load() && w.drainCommands() {
			// The goroutines waiting on a barrier were just made runnable
			// on this P's run queue, and the next wait keeps the P (a
			// hot wait) or blocks in a system call holding it until the
			// runtime's sysmon takes it back: they waited 1.5 ms at the
			// median and 30 ms at the 99th percentile to run (runtime
			// trace, 1 000 calls/s). Yield the P to them first.
			runtime.Gosched()
		}
		w.hold.add(time.Since(start), len(msgs)-sent)
	}
	if !errors.Is(err, os.ErrClosed) {
		w.e.log.Error("packet worker stopped", "worker", w.id, "err", err)
	}
	w.mu.Lock()
	w.stopped = true
	cmds := w.cmds
	w.cmds = nil
	for i := range cmds { // release anyone waiting on a barrier
		w.apply(&cmds[i])
		if cmds[i].done != nil {
			cmds[i].done.Done()
		}
	}
	w.mu.Unlock()
}

// Within a round the worker sends what it has queued so far once the
// round has taken maxHold (looked at every holdCheck datagrams): without
// it the first datagram of a long round waits for every other one to be
// handled before its send goes to the kernel with the next wait. A round
// that takes less (most of them on a machine the worker has to itself)
// costs nothing more; a longer one at most an io_uring_enter (or
// sendmmsg) more per holdCheck datagrams, 0.0625 system calls per packet
// (the goal of issue 12 is 0.25 in all), and only while rounds are long
// (a loaded machine, or a burst).
const (
	maxHold   = 200 * time.Microsecond
	holdCheck = 16
)

// round handles one round's datagrams, the round having started at start
// (monotonic), and returns how many of them it sent before returning (and
// counted in the hold histogram).
func (w *worker) round(msgs []batchconn.Message, start time.Time) (sent int) {
	w.now = w.e.cfg.Now().UnixNano()
	for i := range msgs {
		if i > sent && (i-sent)%holdCheck == 0 {
			if d := time.Since(start); d >= maxHold {
				_ = w.io.Flush() // a failed send is counted by the Loop's Dropped
				w.hold.add(d, i-sent)
				sent = i
			}
		}
		m := &msgs[i]
		idx, gen := uint32(m.Token), uint32(m.Token>>32)
		if int(idx) >= len(w.slots) || w.slots[idx].gen != gen || w.slots[idx].sock == nil {
			continue // removed since the datagram was queued
		}
		s := &w.slots[idx]
		if m.Drops != s.drops {
			w.kernelDrops(s, m.Drops-s.drops) // wraps correctly: both are mod 2^32
			s.drops = m.Drops
		}
		w.handle(s, m)
	}
	w.ioStats.publish(w.io.Calls())
	return sent
}

// kernelDrops counts datagrams the kernel dropped on s because its
// receive buffer was full: against the leg for its own ports, against the
// node for shared ones.
func (w *worker) kernelDrops(s *slot, n uint32) {
	if s.kind == sockPlain {
		s.stream.leg.ctr.drop[pb.DropRcvbuf].Add(uint64(n))
		return
	}
	w.ctr.drop[pb.DropRcvbuf].Add(uint64(n))
}

func (w *worker) sendFailed(l *Leg, _ error) {
	if l != nil {
		l.ctr.drop[pb.DropSend].Add(1)
	}
}

// drainCommands applies queued commands.
func (w *worker) drainCommands() (signalled bool) {
	w.mu.Lock()
	cmds := w.cmds
	w.cmds = nil
	w.pending.Store(false)
	w.mu.Unlock()
	removed := false
	for i := range cmds {
		w.apply(&cmds[i])
		removed = removed || cmds[i].op == cmdRemoveSocket
	}
	if removed {
		// A removed socket's receive is cancelled by what the Loop
		// submits next: submit it now, before anyone learns the
		// socket is out (and closes it, expecting its port free),
		// rather than with the next wait.
		if err := w.io.Flush(); err != nil {
			w.e.log.Error("submitting cancelled receives", "worker", w.id, "err", err)
		}
	}
	for i := range cmds {
		if cmds[i].done != nil {
			cmds[i].done.Done()
			signalled = true
		}
	}
	return signalled
}

func (w *worker) apply(c *command) {
	switch c.op {
	case cmdAddUfrag:
		w.ufrags[c.ufrag] = c.leg
	case cmdRemoveUfrag:
		if w.ufrags[c.ufrag] == c.leg {
			delete(w.ufrags, c.ufrag)
		}
	case cmdAddShared:
		w.shared[c.key] = c.stream
	case cmdRemoveShared:
		if w.shared[c.key] == c.stream {
			delete(w.shared, c.key)
		}
	case cmdAddSocket:
		if err := w.addSlot(slot{sock: c.sock, kind: sockPlain, stream: c.stream, rtcp: c.rtcp}); err != nil {
			w.e.log.Error("registering media socket", "worker", w.id, "local", c.sock.Local, "err", err)
		}
	case cmdRemoveSocket:
		w.removeSlot(c.sock)
	case cmdLatch:
		w.latch(c.key, c.leg)
	case cmdForgetLeg:
		for _, k := range w.legLatches[c.leg] {
			if w.latches[k] == c.leg {
				delete(w.latches, k)
			}
		}
		delete(w.legLatches, c.leg)
	}
}

// addSlot registers s in the worker's Loop. Called by the worker itself,
// or before it runs.
func (w *worker) addSlot(s slot) error {
	var idx uint32
	if n := len(w.freeSlots); n > 0 {
		idx = w.freeSlots[n-1]
		w.freeSlots = w.freeSlots[:n-1]
		s.gen = w.slots[idx].gen + 1
	} else {
		idx = uint32(len(w.slots))
		w.slots = append(w.slots, slot{})
	}
	if err := w.io.Add(s.sock, batchconn.Token(idx)|batchconn.Token(s.gen)<<32); err != nil {
		w.slots[idx].gen = s.gen
		w.freeSlots = append(w.freeSlots, idx)
		return err
	}
	w.slots[idx] = s
	w.sockSlot[s.sock] = idx
	return nil
}

func (w *worker) removeSlot(sock *batchconn.Socket) {
	idx, ok := w.sockSlot[sock]
	if !ok {
		return
	}
	delete(w.sockSlot, sock)
	if err := w.io.Remove(sock); err != nil {
		w.e.log.Error("unregistering media socket", "worker", w.id, "local", sock.Local, "err", err)
	}
	w.slots[idx] = slot{gen: w.slots[idx].gen}
	w.freeSlots = append(w.freeSlots, idx)
}

// latch records that addr proved (by a valid ICE check) to be leg's peer on
// group g: its DTLS and media are accepted from now on.
func (w *worker) latch(k latchKey, l *Leg) {
	if old := w.latches[k]; old == l {
		return
	}
	w.latches[k] = l
	w.legLatches[l] = append(w.legLatches[l], k)
}
