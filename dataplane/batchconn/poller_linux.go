package batchconn

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller is an epoll set that a worker goroutine waits on through Go's
// netpoller: the epoll descriptor is itself pollable, so it is handed to the
// runtime as a nonblocking file and Wait parks the goroutine (no OS thread
// blocked in epoll_wait, no busy loop) until one of its sockets is readable.
// Sockets are registered level-triggered, so a socket the worker did not drain
// (it reads a bounded number of batches per socket per round, for fairness)
// is reported again by the next Wait.
//
// Add and Remove may be called from any goroutine; Wait belongs to one
// worker.
type Poller struct {
	epfd   int
	file   *os.File
	rc     syscall.RawConn
	events []unix.EpollEvent

	// waitFn is bound once so Wait does not allocate a closure per call.
	waitFn func(fd uintptr) bool
	n      int
	err    error
	calls  uint64 // epoll_wait calls made

	closed atomic.Bool
}

// NewPoller creates an epoll set whose Wait returns up to maxEvents events.
func NewPoller(maxEvents int) (*Poller, error) {
	if maxEvents < 1 {
		maxEvents = 1
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll nonblock: %w", err)
	}
	// os.NewFile sees a nonblocking descriptor and registers it with the
	// runtime poller (edge-triggered); readiness of the epoll set is an edge
	// when its ready list becomes non-empty.
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Poller{epfd: epfd, file: f, rc: rc, events: make([]unix.EpollEvent, maxEvents)}
	p.waitFn = p.poll
	return p, nil
}

// Add registers fd for read readiness, reported with tok.
func (p *Poller) Add(fd int, tok Token) error {
	if p.closed.Load() {
		return os.ErrClosed
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, tok)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
	}
	return nil
}

// Remove unregisters fd. Events for fd already returned by Wait remain in
// the caller's hands; tokens with generations let the caller discard them.
// After Close it does nothing: the set is gone, and fd's registration with
// it (and the set's descriptor number may already name something else).
func (p *Poller) Remove(fd int) error {
	if p.closed.Load() {
		return nil
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("epoll_ctl del fd %d: %w", fd, err)
	}
	return nil
}

// Wait blocks until at least one registered descriptor is readable (or the
// Poller is closed) and returns the ready events' tokens, valid until the next
// Wait. It returns os.ErrClosed after Close.
func (p *Poller) Wait(tokens []Token) ([]Token, error) {
	p.n, p.err = 0, nil
	if err := p.rc.Read(p.waitFn); err != nil {
		if p.closed.Load() {
			err = os.ErrClosed
		}
		return tokens[:0], err
	}
	if p.err != nil {
		return tokens[:0], p.err
	}
	tokens = tokens[:0]
	for i := 0; i < p.n; i++ {
		tokens = append(tokens, getToken(&p.events[i]))
	}
	return tokens, nil
}

// MaxEvents is the largest number of tokens one Wait returns.
func (p *Poller) MaxEvents() int { return len(p.events) }

// poll is the RawConn read callback: a nonblocking epoll_wait. Returning
// false parks the goroutine in the netpoller until the epoll descriptor
// becomes readable again.
func (p *Poller) poll(fd uintptr) bool {
	for {
		p.calls++
		n, err := unix.EpollWait(int(fd), p.events, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			p.err = fmt.Errorf("epoll_wait: %w", err)
			return true
		}
		if n == 0 {
			return false
		}
		p.n = n
		return true
	}
}

// Close releases the epoll set; a Wait in progress returns os.ErrClosed.
// Registered sockets are not closed.
func (p *Poller) Close() error {
	p.closed.Store(true)
	return p.file.Close()
}

// The kernel's epoll_data is a 64-bit union; x/sys exposes it as Fd and Pad.
func setToken(ev *unix.EpollEvent, t Token) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func getToken(ev *unix.EpollEvent) Token {
	return Token(uint32(ev.Fd)) | Token(uint32(ev.Pad))<<32
}

// Waker wakes a worker parked in Poller.Wait from another goroutine: an
// eventfd registered in the worker's Poller. Wake is safe for concurrent use.
type Waker struct {
	fd int
}

// NewWaker creates a Waker and registers it with p under tok.
func NewWaker(p *Poller, tok Token) (*Waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := p.Add(fd, tok); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Waker{fd: fd}, nil
}

// one is the eventfd increment; eventfd wants a native-endian uint64, and any
// non-zero value wakes the reader, so the byte order does not matter.
var one = [8]byte{1, 0, 0, 0, 0, 0, 0, 0}

// Wake makes the worker's next (or current) Wait return the Waker's token.
func (w *Waker) Wake() {
	// A full counter (EAGAIN) means a wake is already pending: fine.
	_, _ = unix.Write(w.fd, one[:])
}

// Drain consumes pending wakes; the worker calls it when it sees the token.
func (w *Waker) Drain() {
	var buf [8]byte
	_, _ = unix.Read(w.fd, buf[:])
}

// Close releases the eventfd.
func (w *Waker) Close() error { return unix.Close(w.fd) }
