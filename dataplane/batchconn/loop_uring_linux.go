package batchconn

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uringLoop is the io_uring Loop. Every registered socket has one
// multishot recvmsg armed, which takes a buffer from a ring of provided
// buffers per datagram; sends are SENDMSG submissions with MSG_DONTWAIT and
// no completion on success (IOSQE_CQE_SKIP_SUCCESS), so the kernel sends
// them inline when they are submitted and reports only failures. One
// io_uring_enter per round submits the round's sends and waits for the
// next datagrams, whichever sockets they come from.
//
// Buffer life: a datagram's buffer is the owner's from the Next that
// returns it to the following Next, whose io_uring_enter sends whatever
// was queued in it; after that call it goes back to the kernel.
type uringLoop[T any] struct {
	r       *ring
	bufs    *bufRing
	batch   int
	minWait uint32        // µs; 0: return at the first datagram
	hotWait time.Duration // LoopConfig.HotWait
	dropped func(T, error)

	// Owned by the owner goroutine (or the creator before Bind).
	bound  bool
	hot    bool // counted in hotLoops
	regs   []uringReg
	free   []uint32
	bySock map[*Socket]uint32
	// recvHdr is the msghdr every multishot recvmsg is armed with: only
	// its name and control lengths matter (the kernel lays the source
	// address and control messages out in each buffer, before the
	// payload).
	recvHdr  unix.Msghdr
	recvName unix.RawSockaddrInet6
	payload  int // offset of the payload in a buffer

	// sends queued since the last io_uring_enter; each slot holds what
	// its SENDMSG points to until the kernel consumed it.
	sends []uringSend[T]
	nsend int

	// rearm lists registrations whose multishot receive ended (buffers
	// ran out, an error) and must be armed again; armed before the next
	// io_uring_enter, never from inside reap (which runs while an SQE is
	// being filled).
	rearm    []uint64 // recvUD of each
	backlog  []cqe    // receive completions reaped but not yet returned
	bhead    int
	msgs     []Message
	held     []uint16 // buffers returned by the last Next
	wakeFD   int      // frozen after construction
	wakeBuf  [8]byte
	wakeArm  bool // a read of wakeFD is queued or in flight
	stopped  atomic.Bool
	closed   atomic.Bool
	canceled bool
	calls    Calls
}

type uringReg struct {
	sock *Socket
	tok  Token
	gen  uint32
}

type uringSend[T any] struct {
	hdr  unix.Msghdr
	iov  unix.Iovec
	name unix.RawSockaddrInet6
	tag  T
}

// user_data of a request: its kind in the top byte; for receives the
// registration's index and generation.
const (
	udRecv = 1 << 56
	udSend = 2 << 56
	udWake = 3 << 56
	// udCancel: an ASYNC_CANCEL's completion (only when it failed).
	udCancel = 4 << 56
	udKind   = 0xff << 56
)

func recvUD(idx, gen uint32) uint64 { return udRecv | uint64(gen&0xffffff)<<32 | uint64(idx) }

// newUringLoop makes an io_uring Loop once this process saw io_uring work
// end to end (uringWorks): a kernel or sandbox that refuses io_uring, or
// accepts the setup but not what the Loop does with it, is refused here,
// where ModeAuto falls back to mmsg.
func newUringLoop[T any](cfg LoopConfig[T]) (*uringLoop[T], error) {
	if err := uringWorks(); err != nil {
		return nil, err
	}
	return makeUringLoop(cfg)
}

// makeUringLoop makes an io_uring Loop without the probe.
func makeUringLoop[T any](cfg LoopConfig[T]) (*uringLoop[T], error) {
	nbuf := cfg.Buffers
	if nbuf <= 0 {
		nbuf = max(16*cfg.BatchSize, 1024)
	}
	nbuf = 1 << bitsFor(nbuf)
	if nbuf > 1<<15 {
		return nil, fmt.Errorf("batchconn: %d buffers: at most 32768", nbuf)
	}
	sqEntries := uint32(1 << bitsFor(2*cfg.BatchSize+64))
	// Room for every buffer's datagram plus an ended receive per socket of
	// a large node; beyond it the kernel keeps completions on its overflow
	// list (no drop) until the next io_uring_enter.
	r, err := newRing(sqEntries, uint32(max(4*nbuf, 8192)))
	if err != nil {
		return nil, err
	}
	l := &uringLoop[T]{
		r:       r,
		batch:   cfg.BatchSize,
		dropped: cfg.Dropped,
		regs:    make([]uringReg, 0, 64),
		bySock:  make(map[*Socket]uint32),
		sends:   make([]uringSend[T], cfg.BatchSize),
		backlog: make([]cqe, 0, nbuf),
		msgs:    make([]Message, 0, cfg.BatchSize),
		held:    make([]uint16, 0, cfg.BatchSize),
		wakeFD:  -1,
		hotWait: cfg.HotWait,
	}
	if cfg.Coalesce > 0 {
		if r.features&featMinTimeout == 0 {
			r.close()
			return nil, fmt.Errorf("%w: no min_wait (Linux 6.12+) for --coalesce", errNoUring)
		}
		l.minWait = uint32(cfg.Coalesce.Microseconds())
	}
	l.recvHdr.Name = (*byte)(unsafe.Pointer(&l.recvName))
	l.recvHdr.Namelen = unix.SizeofSockaddrInet6
	l.recvHdr.SetControllen(oobLen)
	l.payload = int(unsafe.Sizeof(recvmsgOut{})) + unix.SizeofSockaddrInet6 + oobLen
	if cfg.BufSize-cfg.Tailroom-l.payload < 1500 {
		r.close()
		return nil, fmt.Errorf("batchconn: buffers of %d bytes (%d tailroom) leave no room for a datagram after io_uring's %d-byte header", cfg.BufSize, cfg.Tailroom, l.payload)
	}
	if l.bufs, err = newBufRing(r, nbuf, cfg.BufSize, cfg.BufSize-cfg.Tailroom, 0); err != nil {
		r.close()
		return nil, err
	}
	for i := range l.sends {
		s := &l.sends[i]
		s.hdr.Name = (*byte)(unsafe.Pointer(&s.name))
		s.hdr.Iov = &s.iov
		s.hdr.SetIovlen(1)
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l.wakeFD = fd // before anyone else can see l
	l.armWake()
	return l, nil
}

// bitsFor is the exponent of the smallest power of two >= n.
func bitsFor(n int) int {
	b := 0
	for 1<<b < n {
		b++
	}
	return b
}

func (l *uringLoop[T]) Mode() Mode { return ModeUring }

// Bind locks the calling goroutine to its thread for good (the ring is
// single-issuer: only the enabling thread may submit) and enables the ring.
func (l *uringLoop[T]) Bind() error {
	runtime.LockOSThread()
	if err := l.r.enable(); err != nil {
		return err
	}
	l.bound = true
	if l.hotWait > 0 {
		l.hot = true
		reserveProc()
	}
	l.count()
	return nil
}

// sqe returns a free SQE, submitting what is queued when the queue is full.
func (l *uringLoop[T]) sqe() (*sqe, error) {
	if s := l.r.get(); s != nil {
		return s, nil
	}
	if !l.bound {
		return nil, errors.New("batchconn: io_uring submission queue full before the loop runs")
	}
	if err := l.submit(); err != nil {
		return nil, err
	}
	if s := l.r.get(); s != nil {
		return s, nil
	}
	return nil, errors.New("batchconn: io_uring submission queue full")
}

func (l *uringLoop[T]) armRecv(idx uint32) error {
	s, err := l.sqe()
	if err != nil {
		return err
	}
	l.fillRecv(s, idx)
	return nil
}

// fillRecv makes s registration idx's multishot recvmsg.
func (l *uringLoop[T]) fillRecv(s *sqe, idx uint32) {
	reg := &l.regs[idx]
	s.opcode = opRecvmsg
	s.fd = int32(reg.sock.FD)
	s.addr = uint64(uintptr(unsafe.Pointer(&l.recvHdr)))
	s.ioprio = recvMultishot
	s.flags = sqeBufSelect
	s.bufIndex = 0 // buffer group 0
	s.userData = recvUD(idx, reg.gen)
}

func (l *uringLoop[T]) armWake() {
	s, err := l.sqe()
	if err != nil {
		return // retried at the next round
	}
	s.opcode = opRead
	s.fd = int32(l.wakeFD)
	s.addr = uint64(uintptr(unsafe.Pointer(&l.wakeBuf[0])))
	s.len = uint32(len(l.wakeBuf))
	s.userData = udWake
	l.wakeArm = true
}

func (l *uringLoop[T]) Add(s *Socket, tok Token) error {
	if _, dup := l.bySock[s]; dup {
		return fmt.Errorf("batchconn: socket %v added twice", s.Local)
	}
	var idx, gen uint32
	if n := len(l.free); n > 0 {
		idx = l.free[n-1]
		l.free = l.free[:n-1]
		gen = l.regs[idx].gen + 1
	} else {
		idx = uint32(len(l.regs))
		l.regs = append(l.regs, uringReg{})
	}
	l.regs[idx] = uringReg{sock: s, tok: tok, gen: gen}
	if err := l.armRecv(idx); err != nil {
		l.regs[idx] = uringReg{gen: gen}
		l.free = append(l.free, idx)
		return err
	}
	l.bySock[s] = idx
	return nil
}

// Remove cancels s's receive. A receive not yet submitted becomes a
// no-op; one the kernel holds is cancelled asynchronously, by an
// ASYNC_CANCEL submitted with the loop's next round (a synchronous
// cancel cost each session's deletion ~75 µs of CPU on the worker's
// thread, 6% of strait's CPU at 1 000 calls/s): its completions, the
// datagrams it still takes and the final one, carry the removed
// registration's generation and are dropped. The kernel holds the
// socket until then, so closing s at once is safe; its port is free
// again after that round. After the owner stopped (its Next returned
// os.ErrClosed, which cancelled everything), anyone may call it: it only
// forgets s.
func (l *uringLoop[T]) Remove(s *Socket) error {
	idx, ok := l.bySock[s]
	if !ok {
		return nil
	}
	delete(l.bySock, s)
	ud := recvUD(idx, l.regs[idx].gen)
	l.regs[idx] = uringReg{gen: l.regs[idx].gen}
	l.free = append(l.free, idx)
	if l.canceled || l.closed.Load() {
		return nil // the owner stopped: nothing is in flight any more
	}
	a, b := l.r.unsubmitted()
	for _, q := range [][]sqe{a, b} {
		for i := range q {
			if q[i].userData == ud {
				// Never submitted, and a receive is re-armed only
				// after the last one ended: the kernel holds none.
				q[i] = sqe{opcode: opNop}
				return nil
			}
		}
	}
	if !l.bound {
		return nil
	}
	// A failed cancel (the receive ended meanwhile: ENOENT) posts a
	// completion of kind udCancel, which reap ignores.
	if q, err := l.sqe(); err == nil {
		q.opcode = opAsyncCancel
		q.flags = sqeSkipOK
		q.addr = ud
		q.userData = udCancel
		return nil
	}
	// No room to queue it: cancel now, and wait.
	return l.r.cancelFD(s.FD, cancelFD|cancelAll)
}

func (l *uringLoop[T]) Send(s *Socket, b []byte, addr netip.AddrPort, tag T) bool {
	if len(b) == 0 {
		return false
	}
	if l.nsend == len(l.sends) {
		if err := l.Flush(); err != nil {
			return false
		}
	}
	q, err := l.sqe()
	if err != nil {
		return false
	}
	i := l.nsend
	m := &l.sends[i]
	namelen := encodeSockaddr(&m.name, addr, s.V6)
	if namelen == 0 {
		q.opcode = opNop // posts a completion nobody looks at
		if l.dropped != nil {
			l.dropped(tag, unix.EAFNOSUPPORT)
		}
		return true
	}
	l.nsend++
	m.hdr.Namelen = namelen
	m.iov.Base = &b[0]
	m.iov.SetLen(len(b))
	m.tag = tag
	q.opcode = opSendmsg
	q.fd = int32(s.FD)
	q.addr = uint64(uintptr(unsafe.Pointer(&m.hdr)))
	q.opFlags = unix.MSG_DONTWAIT
	q.flags = sqeSkipOK
	q.userData = udSend | uint64(i)
	return true
}

// submit hands the queued SQEs to the kernel without waiting, and takes
// in what completed.
func (l *uringLoop[T]) submit() error {
	if _, err := l.r.enter(0, 0, 0); err != nil {
		return err
	}
	l.reap()
	return nil
}

func (l *uringLoop[T]) Flush() error {
	if l.r.pending() == 0 {
		return nil
	}
	err := l.submit()
	l.count()
	return err
}

// reap takes in every completion posted: send failures are reported (their
// slots are still the ones the failures name: sends complete inline,
// during the io_uring_enter that submitted them, and slots are reused only
// after it), receives are queued for Next, ended receives re-armed.
func (l *uringLoop[T]) reap() {
	head, tail := l.r.ready()
	for ; head != tail; head++ {
		c := *l.r.cqe(head)
		switch c.userData & udKind {
		case udRecv:
			if c.flags&cqeFBuffer != 0 {
				l.backlog = append(l.backlog, c)
			}
			if c.flags&cqeFMore == 0 {
				l.rearm = append(l.rearm, c.userData)
			}
		case udSend:
			if i := int(c.userData &^ udKind); c.res < 0 && i < l.nsend && l.dropped != nil {
				l.dropped(l.sends[i].tag, unix.Errno(-c.res))
			}
		case udWake:
			l.wakeArm = false
			l.backlog = append(l.backlog, c) // a wake is returned in order
		}
	}
	l.r.consume(head)
	// reap follows an io_uring_enter that submitted every queued send, and
	// MSG_DONTWAIT sends are done once submitted (their failures are in
	// what was just reaped): the slots are free. (Receives re-armed above
	// queue SQEs, but no sends.)
	l.nsend = 0
}

// armPending re-arms the receives that ended and are still registered,
// as many as the submission queue holds now (the rest at the next round).
func (l *uringLoop[T]) armPending() {
	n := 0
	for _, ud := range l.rearm {
		idx, gen := uint32(ud), uint32(ud>>32)&0xffffff
		if int(idx) >= len(l.regs) || l.regs[idx].sock == nil || l.regs[idx].gen&0xffffff != gen {
			n++
			continue // removed since
		}
		q := l.r.get()
		if q == nil {
			break
		}
		l.fillRecv(q, idx)
		n++
	}
	l.rearm = l.rearm[:copy(l.rearm, l.rearm[n:])]
}

func (l *uringLoop[T]) Next() ([]Message, error) {
	for {
		if l.stopped.Load() {
			l.teardown()
			return nil, os.ErrClosed
		}
		wait := uint32(0)
		if l.bhead == len(l.backlog) {
			wait = 1
			if l.minWait > 0 {
				wait = uint32(l.batch)
			}
		}
		l.armPending()
		if !l.wakeArm {
			l.armWake()
		}
		_, err := l.r.enter(wait, l.minWait, l.hotWait)
		// The last round's buffers: the sends that used them went out
		// in this call.
		for _, bid := range l.held {
			l.bufs.put(bid)
		}
		l.held = l.held[:0]
		l.reap()
		l.bufs.publish()
		if err != nil {
			l.count()
			return nil, err
		}
		msgs, woke := l.take()
		if len(msgs) > 0 || woke {
			l.calls.Rounds++
			l.calls.Datagrams += uint64(len(msgs))
			l.count()
			return msgs, nil
		}
	}
}

// take turns up to batch queued receive completions into messages.
func (l *uringLoop[T]) take() ([]Message, bool) {
	l.msgs = l.msgs[:0]
	woke := false
	for l.bhead < len(l.backlog) && len(l.msgs) < l.batch {
		c := l.backlog[l.bhead]
		l.bhead++
		if c.userData&udKind == udWake {
			woke = true
			continue
		}
		bid := uint16(c.flags >> cqeBufShift)
		l.held = append(l.held, bid)
		idx, gen := uint32(c.userData), uint32(c.userData>>32)&0xffffff
		if c.res < int32(l.payload) || int(idx) >= len(l.regs) || l.regs[idx].sock == nil || l.regs[idx].gen&0xffffff != gen {
			continue // removed since, or an error that still took a buffer
		}
		buf := l.bufs.buf(bid)
		out := (*recvmsgOut)(unsafe.Pointer(&buf[0]))
		m := Message{Buf: buf[l.payload:], N: int(out.payloadlen), Token: l.regs[idx].tok}
		if out.flags&unix.MSG_TRUNC != 0 {
			m.N = -1
		}
		name := (*unix.RawSockaddrInet6)(unsafe.Pointer(&buf[unsafe.Sizeof(recvmsgOut{})]))
		m.Addr = decodeSockaddr(name)
		m.Drops = parseDrops(buf[unsafe.Sizeof(recvmsgOut{})+unix.SizeofSockaddrInet6:l.payload], int(out.controllen))
		l.msgs = append(l.msgs, m)
	}
	if l.bhead == len(l.backlog) {
		l.backlog, l.bhead = l.backlog[:0], 0
	}
	return l.msgs, woke
}

// parseDrops reads an SO_RXQ_OVFL control message (see Batch.drops).
func parseDrops(oob []byte, n int) uint32 {
	if n < unix.CmsgLen(4) || n > len(oob) {
		return 0
	}
	c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if c.Level != unix.SOL_SOCKET || c.Type != unix.SO_RXQ_OVFL || int(c.Len) < unix.CmsgLen(4) {
		return 0
	}
	return *(*uint32)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
}

func (l *uringLoop[T]) count() {
	l.calls.N[CallIOUringEnter] = l.r.enters
	l.calls.N[CallOther] = l.r.others
}

func (l *uringLoop[T]) Calls() *Calls { return &l.calls }

// Wake writes the eventfd a read of which is always armed in the ring.
func (l *uringLoop[T]) Wake() {
	_, _ = unix.Write(l.wakeFD, one[:])
}

func (l *uringLoop[T]) Stop() {
	l.stopped.Store(true)
	l.Wake()
}

// teardown cancels every request of the ring, on the owner's thread, so
// that nothing the kernel holds points into the buffers Close unmaps.
func (l *uringLoop[T]) teardown() {
	if l.bound && !l.canceled {
		l.canceled = true
		l.r.cancelFD(0, cancelAny|cancelAll)
	}
}

// Close releases the ring, the buffers and the eventfd. The owner must
// have returned from Next (after Stop), or never have run.
func (l *uringLoop[T]) Close() error {
	// An owner that Binds and Closes without Stop (tests) cancels here; on
	// another thread this fails harmlessly after the owner's teardown.
	l.teardown()
	if l.hot {
		l.hot = false
		hotLoops.Add(-1)
	}
	l.r.close()
	if l.bufs != nil {
		l.bufs.free()
		l.bufs = nil
	}
	if l.wakeFD >= 0 && !l.closed.Swap(true) {
		// wakeFD itself stays as it is: Wake may read it concurrently
		// (callers make sure no Wake comes after Close).
		unix.Close(l.wakeFD)
	}
	return nil
}
