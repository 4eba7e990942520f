package relay

import (
	"errors"
	"net/netip"
	"os"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/strait-sbc/strait/dataplane/batchconn"
	"github.com/strait-sbc/strait/dataplane/icelite"
	pb "github.com/strait-sbc/strait/proto/strait/dataplane/v1"
)

// sockKind is what a worker's socket carries.
type sockKind uint8

const (
	sockWebRTC      sockKind = iota + 1 // shared WebRTC port
	sockPlainShared                     // shared plain port (RTP or RTCP half)
	sockPlain                           // a plain stream's own RTP or RTCP port
)

// slot is a socket registered in a worker's Poller. Its index and gen make
// up the Poller token, so an event for a socket removed in the same round is
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

// wakeSlot is the slot index of the worker's Waker.
const wakeSlot = 0

// worker is one packet worker. Everything below mu is owned by the worker
// goroutine; other goroutines reach it only through post.
type worker struct {
	id     int
	e      *Engine
	poller *batchconn.Poller
	waker  *batchconn.Waker

	mu      sync.Mutex // guards cmds and stopped
	cmds    []command
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

	batch   *batchconn.Batch
	sender  *batchconn.Sender[*Leg]
	onDrop  func(*Leg, error)
	tokens  []batchconn.Token
	stunReq icelite.Request
	stun    icelite.Responder
	rtpHdr  rtp.Header
	rtcpHdr rtcp.Header
	now     int64 // unix nanoseconds, read once per round

	ctr nodeCounters
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
	cmdBarrier   // only signals done
)

func newWorker(e *Engine, id int) (*worker, error) {
	p, err := batchconn.NewPoller(256)
	if err != nil {
		return nil, err
	}
	w := &worker{
		id:         id,
		e:          e,
		poller:     p,
		slots:      make([]slot, 1, 64), // slot 0: the waker
		sockSlot:   make(map[*batchconn.Socket]uint32),
		ufrags:     make(map[string]*Leg),
		latches:    make(map[latchKey]*Leg),
		legLatches: make(map[*Leg][]latchKey),
		shared:     make(map[latchKey]*Stream),
		batch:      batchconn.NewBatch(e.cfg.BatchSize, BufferSize, Tailroom),
		sender:     batchconn.NewSender[*Leg](e.cfg.BatchSize),
		tokens:     make([]batchconn.Token, 0, p.MaxEvents()),
		exited:     make(chan struct{}),
	}
	w.onDrop = w.sendFailed
	if w.waker, err = batchconn.NewWaker(p, batchconn.Token(wakeSlot)); err != nil {
		p.Close()
		return nil, err
	}
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
	w.mu.Unlock()
	w.waker.Wake()
}

// run is the worker goroutine: wait, serve every ready socket, send.
func (w *worker) run() {
	defer w.e.wg.Done()
	defer close(w.exited)
	for {
		toks, err := w.poller.Wait(w.tokens)
		if err != nil {
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
			return
		}
		w.now = w.e.cfg.Now().UnixNano()
		off := 0
		for _, tok := range toks {
			idx, gen := uint32(tok), uint32(tok>>32)
			if idx == wakeSlot {
				w.waker.Drain()
				continue
			}
			if int(idx) >= len(w.slots) || w.slots[idx].gen != gen || w.slots[idx].sock == nil {
				continue // removed since the event was queued
			}
			off = w.serve(&w.slots[idx], off)
		}
		if w.sender.Len() > 0 {
			w.sender.Flush(w.onDrop)
		}
		w.drainCommands()
	}
}

// serve reads up to maxRoundsPerSocket batches' worth from one ready socket
// into the shared batch starting at off, handling each datagram; it flushes
// the send queue whenever the batch fills, and returns the new offset.
func (w *worker) serve(s *slot, off int) int {
	size := len(w.batch.Msgs)
	for round := 0; round < maxRoundsPerSocket; round++ {
		if off == size {
			w.sender.Flush(w.onDrop)
			off = 0
		}
		n, err := w.batch.RecvAt(s.sock.FD, off)
		if err != nil || n == 0 {
			return off // EAGAIN: drained
		}
		if d := w.batch.Msgs[off+n-1].Drops; d != s.drops {
			w.kernelDrops(s, d-s.drops) // wraps correctly: both are mod 2^32
			s.drops = d
		}
		for i := off; i < off+n; i++ {
			w.handle(s, &w.batch.Msgs[i])
		}
		off += n
		if off < size {
			return off // the socket had fewer than we could take: drained
		}
	}
	return off
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
func (w *worker) drainCommands() {
	w.mu.Lock()
	cmds := w.cmds
	w.cmds = nil
	w.mu.Unlock()
	for i := range cmds {
		w.apply(&cmds[i])
		if cmds[i].done != nil {
			cmds[i].done.Done()
		}
	}
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
	case cmdForgetLeg:
		for _, k := range w.legLatches[c.leg] {
			if w.latches[k] == c.leg {
				delete(w.latches, k)
			}
		}
		delete(w.legLatches, c.leg)
	}
}

// addSlot registers s in the worker's Poller. Called by the worker itself,
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
	if err := w.poller.Add(s.sock.FD, batchconn.Token(idx)|batchconn.Token(s.gen)<<32); err != nil {
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
	w.poller.Remove(sock.FD)
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
