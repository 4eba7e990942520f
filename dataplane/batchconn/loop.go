package batchconn

import (
	"fmt"
	"net/netip"
	"time"
)

// Loop is one worker's datagram I/O: the sockets it receives from and the
// datagrams it sends. One goroutine, the owner, calls Next in a loop,
// handles the datagrams it returns and queues what to send with Send; the
// queued datagrams go out at the start of the next Next, in the same system
// call that waits for more where the implementation allows (io_uring).
//
// Next's messages and their buffers belong to the owner until its next call
// to Next: a datagram may be rewritten in place (it keeps BufSize-Tailroom
// bytes offered to the kernel and Tailroom free behind) and handed to Send
// without a copy.
//
// Add and Remove are called by the owner, or before the owner's first Next;
// Wake and Stop from any goroutine.
type Loop[T any] interface {
	// Bind makes the calling goroutine the owner. It must be its first
	// call; for io_uring it locks the goroutine to its OS thread (the ring
	// is single-issuer). Returns an error if the loop cannot run.
	Bind() error
	// Add starts receiving from s; its datagrams are returned with tok.
	Add(s *Socket, tok Token) error
	// Remove stops receiving from s. Once it returns, no datagram of s is
	// returned any more and s may be closed; the io_uring loop's kernel
	// request may hold the socket (and its port) until its next round.
	Remove(s *Socket) error
	// Next sends what Send queued, waits until datagrams arrived (or Wake
	// was called) and returns up to BatchSize of them. It may return none
	// after a Wake. It returns os.ErrClosed after Stop.
	Next() ([]Message, error)
	// Send queues b for socket s to addr; tag is handed to Dropped if the
	// kernel refuses it. b must stay untouched until the next Next. It
	// reports false (nothing queued) when the queue is full.
	Send(s *Socket, b []byte, addr netip.AddrPort, tag T) bool
	// Flush sends what Send queued now, without waiting for datagrams
	// (for owners that only send, and for tests). The buffers may be
	// reused when it returns. Owner only.
	Flush() error
	// Wake makes the owner's current or next Next return. Safe for
	// concurrent use.
	Wake()
	// Stop makes Next return os.ErrClosed. Safe for concurrent use.
	Stop()
	// Close releases the loop's resources once the owner no longer calls
	// it (after Stop, when its Next returned). Registered sockets are not
	// closed.
	Close() error
	// Calls returns the system calls the loop made so far. Owner only.
	Calls() *Calls
	// Mode is the loop's implementation: ModeMmsg or ModeUring.
	Mode() Mode
}

// Mode chooses a Loop's implementation.
type Mode string

// Modes.
const (
	// ModeMmsg: recvmmsg/sendmmsg on nonblocking sockets and an epoll set
	// parked in Go's netpoller. Portable to any Linux Strait runs on.
	ModeMmsg Mode = "mmsg"
	// ModeUring: io_uring with a multishot recvmsg per socket into a ring
	// of provided buffers, sends as submissions, and one io_uring_enter per
	// round that submits the sends and waits for the next datagrams
	// (Linux 6.1+: single issuer, deferred task work; the batch wait uses
	// 6.12+ min_wait when the kernel has it).
	ModeUring Mode = "uring"
	// ModeAuto: io_uring where the kernel allows it, else mmsg.
	ModeAuto Mode = "auto"
)

// ParseMode checks an --io value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeMmsg, ModeUring, ModeAuto:
		return m, nil
	case "":
		return ModeAuto, nil
	}
	return "", fmt.Errorf("I/O mode %q: want uring, mmsg or auto", s)
}

// LoopConfig configures a Loop.
type LoopConfig[T any] struct {
	// Mode is the implementation (ModeAuto if empty).
	Mode Mode
	// BatchSize is the most datagrams Next returns and Send queues
	// between two calls to Next (at least 1).
	BatchSize int
	// BufSize is each receive buffer, of which the last Tailroom bytes are
	// never offered to the kernel (room to grow a datagram in place).
	BufSize, Tailroom int
	// Buffers is how many receive buffers an io_uring loop provides to
	// the kernel (rounded up to a power of two; 0: 16 * BatchSize, at
	// least 1024). A datagram sent in place holds its buffer until the
	// send completed. When they run out, sockets keep their datagrams
	// queued until buffers come back (their receives are re-armed).
	Buffers int
	// Coalesce, for io_uring, is the longest an arrived datagram may wait
	// for others to join its round (min_wait); 0 returns at the first.
	// Ignored by mmsg.
	Coalesce time.Duration
	// HotWait, for io_uring, is how long the owner waits for datagrams
	// while keeping its P (its Go scheduler slot; a raw system call the
	// runtime does not see) before it blocks in an ordinary one. Blocking
	// in a system call the runtime sees costs, per wake-up, the runtime's
	// sysmon waking to retake the P (a nanosleep every 20 µs while a P is
	// in a system call), a futex to hand the P to another thread and one
	// to get it back: most of a busy node's system calls. A hot wait
	// keeps all of it away while datagrams come closer together than
	// HotWait. The owner's P is taken for that long, so a Loop that
	// hot-waits raises GOMAXPROCS when it binds, to the process's starting
	// GOMAXPROCS plus its hot-waiting Loops (a P is not a CPU: a Loop
	// waiting hot sleeps in the kernel).
	// 0: none. Ignored by mmsg (it waits in Go's netpoller).
	HotWait time.Duration
	// Dropped is called, on the owner goroutine, for each queued datagram
	// the kernel refused. Optional.
	Dropped func(tag T, err error)
}

// Call is a kind of system call a Loop makes.
type Call int

// The system calls a Loop counts.
const (
	CallRecvmmsg Call = iota
	CallSendmmsg
	CallEpollWait
	CallIOUringEnter
	CallOther // eventfd reads and writes, io_uring registrations
	NumCalls
)

var callNames = [NumCalls]string{"recvmmsg", "sendmmsg", "epoll_wait", "io_uring_enter", "other"}

// String is the call's name as metrics label it.
func (c Call) String() string {
	if c < 0 || c >= NumCalls {
		return "unknown"
	}
	return callNames[c]
}

// Calls counts a Loop's system calls and rounds. It is written by the
// owner only (plain fields: the owner publishes it where others read it).
type Calls struct {
	// N counts system calls by kind.
	N [NumCalls]uint64
	// Rounds counts the calls to Next that returned datagrams or a wake.
	Rounds uint64
	// Datagrams counts the datagrams Next returned.
	Datagrams uint64
}

// Total is every system call counted.
func (c *Calls) Total() uint64 {
	var t uint64
	for _, n := range c.N {
		t += n
	}
	return t
}

// NewLoop creates a Loop. With ModeAuto it tries io_uring and falls back to
// mmsg when the kernel refuses it; ModeUring fails instead.
func NewLoop[T any](cfg LoopConfig[T]) (Loop[T], error) {
	if cfg.BatchSize < 1 {
		cfg.BatchSize = 1
	}
	if cfg.Tailroom < 0 || cfg.Tailroom >= cfg.BufSize {
		cfg.Tailroom = 0
	}
	switch cfg.Mode {
	case ModeMmsg:
		return epoll(cfg)
	case ModeUring:
		return uring(cfg)
	case ModeAuto, "":
		if l, err := uring(cfg); err == nil {
			return l, nil
		}
		return epoll(cfg)
	}
	return nil, fmt.Errorf("batchconn: unknown I/O mode %q", cfg.Mode)
}

// epoll and uring return a nil interface, never a typed nil, on error.
func epoll[T any](cfg LoopConfig[T]) (Loop[T], error) {
	l, err := newEpollLoop(cfg)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func uring[T any](cfg LoopConfig[T]) (Loop[T], error) {
	l, err := newUringLoop(cfg)
	if err != nil {
		return nil, err
	}
	return l, nil
}
