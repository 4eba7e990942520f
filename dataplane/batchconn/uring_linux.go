package batchconn

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file drives io_uring with raw system calls and shared memory, as
// include/uapi/linux/io_uring.h defines them (no io_uring module for Go is
// used). It holds only the ring mechanics; loop_uring_linux.go is the Loop
// built on it.

// io_uring_setup flags.
const (
	setupCQSize        = 1 << 3
	setupRDisabled     = 1 << 6
	setupSubmitAll     = 1 << 7
	setupSingleIssuer  = 1 << 12
	setupDeferTaskrun  = 1 << 13
	featSingleMmap     = 1 << 0
	featNoDrop         = 1 << 1
	featExtArg         = 1 << 8
	featCQESkip        = 1 << 11
	featMinTimeout     = 1 << 15
	offSQRing          = 0
	offCQRing          = 0x8000000
	offSQEs            = 0x10000000
	enterGetEvents     = 1 << 0
	enterExtArg        = 1 << 3
	registerEnable     = 12
	registerPbufRing   = 22
	registerSyncCancel = 24
)

// Opcodes, SQE flags and CQE flags.
const (
	opNop         = 0
	opSendmsg     = 9
	opRecvmsg     = 10
	opAsyncCancel = 14 // matches sqe.addr against user_data
	opRead        = 22
	sqeBufSelect  = 1 << 5
	sqeSkipOK     = 1 << 6 // IOSQE_CQE_SKIP_SUCCESS
	recvMultishot = 1 << 1 // IORING_RECV_MULTISHOT, in ioprio
	cqeFBuffer    = 1 << 0
	cqeFMore      = 1 << 1
	cqeBufShift   = 16
	cancelAll     = 1 << 0
	cancelFD      = 1 << 1
	cancelAny     = 1 << 2
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	opFlags  uint32 // msg_flags, rw_flags, cancel_flags...
	userData uint64
	bufIndex uint16 // buf_group with sqeBufSelect
	persona  uint16
	fileIdx  uint32
	addr3    uint64
	pad2     uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask     uint64
	sigmaskSz   uint32
	minWaitUsec uint32
	ts          uint64
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// syncCancelReg is struct io_uring_sync_cancel_reg.
type syncCancelReg struct {
	addr    uint64
	fd      int32
	flags   uint32
	timeout unix.Timespec
	opcode  uint8
	pad     [7]uint8
	pad2    [3]uint64
}

// recvmsgOut is struct io_uring_recvmsg_out, at the start of every buffer a
// multishot recvmsg fills.
type recvmsgOut struct {
	namelen, controllen, payloadlen, flags uint32
}

var _ = [1]struct{}{}[unsafe.Sizeof(sqe{})-64]
var _ = [1]struct{}{}[unsafe.Sizeof(uringParams{})-120]
var _ = [1]struct{}{}[unsafe.Sizeof(syncCancelReg{})-64]

// ring is one io_uring instance: its submission and completion queues
// mapped into this process.
type ring struct {
	fd       int
	features uint32
	mmaps    [][]byte

	sqHead, sqTail, sqFlags *uint32
	sqMask, sqEntries       uint32
	sqes                    []sqe
	sqLocal                 uint32 // next SQE to fill; sqTail is what the kernel sees
	sqSubmitted             uint32 // sqTail as last published

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []cqe

	enters uint64 // io_uring_enter calls
	others uint64 // io_uring_register calls

	// What system calls point the kernel to, kept here (in the heap, where
	// nothing moves) rather than on a goroutine stack that may move.
	arg    getEventsArg
	ts     unix.Timespec
	cancel syncCancelReg
}

// idleWait (seconds) is how long a coalescing wait may last with nothing
// arriving before io_uring_enter returns (and is called again).
const idleWait = 10

// errNoUring reports a kernel without what the Loop needs.
var errNoUring = errors.New("batchconn: io_uring unavailable or too old (need Linux 6.1+: single issuer, deferred task work, multishot recvmsg, provided buffer rings)")

// newRing sets up a disabled ring (it is enabled by the thread that will
// submit to it, see enable) with sqEntries submission and cqEntries
// completion slots.
func newRing(sqEntries, cqEntries uint32) (*ring, error) {
	p := uringParams{flags: setupCQSize | setupRDisabled | setupSubmitAll | setupSingleIssuer | setupDeferTaskrun, cqEntries: cqEntries}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(sqEntries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %v", errNoUring, e)
	}
	r := &ring{fd: int(fd), features: p.features}
	need := uint32(featSingleMmap | featNoDrop | featExtArg | featCQESkip)
	if p.features&need != need {
		r.close()
		return nil, fmt.Errorf("%w: features %#x", errNoUring, p.features)
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	size := max(sqSize, cqSize) // one mapping for both (featSingleMmap)
	rings, err := unix.Mmap(r.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("mmap io_uring rings: %w", err)
	}
	r.mmaps = append(r.mmaps, rings)
	sqesMem, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	r.mmaps = append(r.mmaps, sqesMem)
	base := unsafe.Pointer(&rings[0])
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r.sqHead, r.sqTail, r.sqFlags = u32(p.sqOff.head), u32(p.sqOff.tail), u32(p.sqOff.flags)
	r.sqMask, r.sqEntries = *u32(p.sqOff.ringMask), *u32(p.sqOff.ringEntries)
	r.cqHead, r.cqTail = u32(p.cqOff.head), u32(p.cqOff.tail)
	r.cqMask = *u32(p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Add(base, p.cqOff.cqes)), *u32(p.cqOff.ringEntries))
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&sqesMem[0])), p.sqEntries)
	// SQ index array: slot i holds SQE i, for good (the SQEs are used in
	// ring order).
	array := unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqLocal = atomic.LoadUint32(r.sqTail)
	r.sqSubmitted = r.sqLocal
	return r, nil
}

// enable starts the ring and makes the calling thread its only submitter.
func (r *ring) enable() error {
	r.others++
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEnable, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("io_uring enable: %w", e)
	}
	return nil
}

// get returns the next free SQE, zeroed, or nil when the queue is full
// (submit first).
func (r *ring) get() *sqe {
	if r.sqLocal-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		return nil
	}
	s := &r.sqes[r.sqLocal&r.sqMask]
	*s = sqe{}
	r.sqLocal++
	return s
}

// pending is the number of SQEs filled but not yet submitted.
func (r *ring) pending() uint32 { return r.sqLocal - r.sqSubmitted }

// unsubmitted returns the SQEs filled but not yet submitted, in order
// (two slices when they wrap around the ring).
func (r *ring) unsubmitted() (a, b []sqe) {
	from, to := r.sqSubmitted&r.sqMask, r.sqLocal&r.sqMask
	switch {
	case r.pending() == 0:
		return nil, nil
	case from < to:
		return r.sqes[from:to], nil
	default:
		return r.sqes[from:], r.sqes[:to]
	}
}

// enter publishes the filled SQEs and calls io_uring_enter: it submits
// them and, with wait > 0, waits until wait completions are there (with
// minWait, until minWait µs have passed and at least one is). With hot > 0
// it first waits up to hot in a raw system call, keeping the calling
// goroutine's P (see LoopConfig.HotWait), and blocks in an ordinary one
// only if nothing came by then. It returns how many SQEs the kernel
// consumed. EINTR (a signal while waiting: the runtime's preemption
// signal among them) is not an error: the caller looks at the completion
// queue and comes back.
func (r *ring) enter(wait, minWait uint32, hot time.Duration) (int, error) {
	toSubmit := r.pending()
	if toSubmit > 0 {
		atomic.StoreUint32(r.sqTail, r.sqLocal)
		r.sqSubmitted = r.sqLocal
	}
	if wait > 0 && hot > 0 {
		r.ts = unix.Timespec{Nsec: int64(hot)}
		r.arg = getEventsArg{minWaitUsec: minWait, ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
		r.enters++
		n, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(wait), enterGetEvents|enterExtArg, uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
		switch e {
		case 0, unix.EINTR, unix.ETIME, unix.EAGAIN, unix.EBUSY:
		default:
			return 0, fmt.Errorf("io_uring_enter: %w", e)
		}
		if head, tail := r.ready(); head != tail || e == unix.EINTR {
			return int(n), nil
		}
		// Nothing within hot: the sends went in with this call; block.
		toSubmit = 0
	}
	flags := uintptr(enterGetEvents)
	var argp, argsz uintptr
	if wait > 0 && minWait > 0 {
		// min_wait needs an overall timeout too: without one the kernel
		// returns at every min_wait expiry with nothing to show, and an
		// idle loop would poll. Past it, enter returns ETIME (retried).
		r.ts = unix.Timespec{Sec: idleWait}
		r.arg = getEventsArg{minWaitUsec: minWait, ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
		flags |= enterExtArg
		argp, argsz = uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg)
	}
	r.enters++
	n, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, argp, argsz)
	switch e {
	case 0:
		return int(n), nil
	case unix.EINTR, unix.ETIME, unix.EAGAIN, unix.EBUSY:
		return 0, nil
	}
	return 0, fmt.Errorf("io_uring_enter: %w", e)
}

// ready returns the completions the kernel posted and not yet consumed;
// consume releases them.
func (r *ring) ready() (head, tail uint32) {
	return *r.cqHead, atomic.LoadUint32(r.cqTail)
}

func (r *ring) cqe(i uint32) *cqe { return &r.cqes[i&r.cqMask] }

func (r *ring) consume(head uint32) { atomic.StoreUint32(r.cqHead, head) }

// register calls io_uring_register.
func (r *ring) register(op uintptr, arg unsafe.Pointer, n uintptr) (uintptr, error) {
	r.others++
	res, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), n, 0, 0)
	if e != 0 {
		return 0, e
	}
	return res, nil
}

// cancelFD cancels, and waits for, every request on fd (0 with
// cancelAny: every request of the ring).
func (r *ring) cancelFD(fd int, flags uint32) error {
	r.cancel = syncCancelReg{fd: int32(fd), flags: flags, timeout: unix.Timespec{Sec: -1, Nsec: -1}}
	_, err := r.register(registerSyncCancel, unsafe.Pointer(&r.cancel), 1)
	if errors.Is(err, unix.ENOENT) {
		return nil // nothing was in flight
	}
	return err
}

func (r *ring) close() {
	for _, m := range r.mmaps {
		unix.Munmap(m)
	}
	r.mmaps = nil
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// bufRing is a ring of buffers provided to the kernel (one buffer group):
// a multishot receive takes one per datagram; the owner gives it back
// once done with the datagram.
type bufRing struct {
	reg     bufReg // what registered it (kept off the stack, see ring)
	mem     []byte // the buffers, stride bytes each
	ringMem []byte // struct io_uring_buf_ring
	stride  int
	offered uint32 // bytes of each buffer offered to the kernel
	mask    uint16
	tail    uint16 // next entry to fill
	bid0    uint16 // bid of entry 0 (shares a word with the tail)
}

// ioUringBuf is struct io_uring_buf.
type ioUringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16 // entry 0: the ring's tail
}

// newBufRing allocates n (a power of two) buffers of stride bytes, of which
// offered are given to the kernel, and registers them as group bgid.
func newBufRing(r *ring, n, stride, offered int, bgid uint16) (*bufRing, error) {
	b := &bufRing{stride: stride, offered: uint32(offered), mask: uint16(n - 1)}
	var err error
	// Outside the Go heap: the kernel writes into them at any moment, and
	// the ring must be page aligned.
	if b.mem, err = unix.Mmap(-1, 0, n*stride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap receive buffers: %w", err)
	}
	if b.ringMem, err = unix.Mmap(-1, 0, n*int(unsafe.Sizeof(ioUringBuf{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		b.free()
		return nil, fmt.Errorf("mmap buffer ring: %w", err)
	}
	b.reg = bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.ringMem[0]))), ringEntries: uint32(n), bgid: bgid}
	if _, err := r.register(registerPbufRing, unsafe.Pointer(&b.reg), 1); err != nil {
		b.free()
		return nil, fmt.Errorf("%w: register buffer ring: %v", errNoUring, err)
	}
	for i := 0; i < n; i++ {
		b.put(uint16(i))
	}
	b.publish()
	return b, nil
}

func (b *bufRing) entries() []ioUringBuf {
	return unsafe.Slice((*ioUringBuf)(unsafe.Pointer(&b.ringMem[0])), int(b.mask)+1)
}

// word is the 32-bit word holding entry 0's bid and the ring's tail.
func (b *bufRing) word() *uint32 { return (*uint32)(unsafe.Pointer(&b.ringMem[12])) }

// put gives buffer bid back to the kernel (visible at the next publish).
func (b *bufRing) put(bid uint16) {
	i := b.tail & b.mask
	e := &b.entries()[i]
	e.addr = uint64(uintptr(unsafe.Pointer(&b.mem[int(bid)*b.stride])))
	e.len = b.offered
	if i == 0 {
		// bid shares its word with the published tail: store both.
		b.bid0 = bid
		atomic.StoreUint32(b.word(), uint32(bid)|uint32(atomic.LoadUint32(b.word())>>16)<<16)
	} else {
		e.bid = bid
	}
	b.tail++
}

// publish makes the buffers put so far available to the kernel.
func (b *bufRing) publish() {
	atomic.StoreUint32(b.word(), uint32(b.bid0)|uint32(b.tail)<<16)
}

// buf returns buffer bid.
func (b *bufRing) buf(bid uint16) []byte {
	off := int(bid) * b.stride
	return b.mem[off : off+b.stride : off+b.stride]
}

func (b *bufRing) free() {
	if b.mem != nil {
		unix.Munmap(b.mem)
		b.mem = nil
	}
	if b.ringMem != nil {
		unix.Munmap(b.ringMem)
		b.ringMem = nil
	}
}
