//go:build !linux

package batchconn

import "net/netip"

// This file lets the rest of Strait (the control plane, tools) build on other
// systems; a dataplane node only runs on Linux.

// Batch is a receive batch (Linux only).
type Batch struct{ Msgs []Message }

// NewBatch allocates a batch.
func NewBatch(size, bufSize, tailroom int) *Batch { return &Batch{} }

// Recv is unsupported here.
func (b *Batch) Recv(fd int) (int, error) { return 0, ErrUnsupported }

// RecvAt is unsupported here.
func (b *Batch) RecvAt(fd, off int) (int, error) { return 0, ErrUnsupported }

// Sender queues outgoing datagrams (Linux only).
type Sender[T any] struct{}

// NewSender returns a Sender.
func NewSender[T any](capacity int) *Sender[T] { return &Sender[T]{} }

// Add is unsupported here.
func (s *Sender[T]) Add(fd int, v6 bool, b []byte, addr netip.AddrPort, tag T) bool { return false }

// Len is always 0 here.
func (s *Sender[T]) Len() int { return 0 }

// Flush sends nothing here.
func (s *Sender[T]) Flush(dropped func(tag T, err error)) int { return 0 }

// Poller is an epoll set (Linux only).
type Poller struct{}

// NewPoller is unsupported here.
func NewPoller(maxEvents int) (*Poller, error) { return nil, ErrUnsupported }

// Add is unsupported here.
func (p *Poller) Add(fd int, tok Token) error { return ErrUnsupported }

// Remove is unsupported here.
func (p *Poller) Remove(fd int) error { return ErrUnsupported }

// Wait is unsupported here.
func (p *Poller) Wait(tokens []Token) ([]Token, error) { return tokens[:0], ErrUnsupported }

// MaxEvents is 0 here.
func (p *Poller) MaxEvents() int { return 0 }

// Close does nothing here.
func (p *Poller) Close() error { return nil }

// Waker wakes a Poller (Linux only).
type Waker struct{}

// NewWaker is unsupported here.
func NewWaker(p *Poller, tok Token) (*Waker, error) { return nil, ErrUnsupported }

// Wake does nothing here.
func (w *Waker) Wake() {}

// Drain does nothing here.
func (w *Waker) Drain() {}

// Close does nothing here.
func (w *Waker) Close() error { return nil }

// Socket is a UDP socket (Linux only).
type Socket struct {
	FD    int
	V6    bool
	Local netip.AddrPort
}

// Options tune a socket.
type Options struct {
	ReusePort              bool
	RecvBuffer, SendBuffer int
	TOS                    int
	CountDrops             bool
}

// ErrAddrInUse reports that the port is taken.
var ErrAddrInUse = ErrUnsupported

// Listen is unsupported here.
func Listen(addr netip.AddrPort, opt Options) (*Socket, error) { return nil, ErrUnsupported }

// SendTo is unsupported here.
func (s *Socket) SendTo(b []byte, to netip.AddrPort) error { return ErrUnsupported }

// Close does nothing here.
func (s *Socket) Close() error { return nil }

type unsupportedLoop[T any] struct{ Loop[T] }

func newEpollLoop[T any](cfg LoopConfig[T]) (*unsupportedLoop[T], error) { return nil, ErrUnsupported }
func newUringLoop[T any](cfg LoopConfig[T]) (*unsupportedLoop[T], error) { return nil, ErrUnsupported }

// UringUnavailable reports that io_uring is Linux's.
func UringUnavailable() error { return ErrUnsupported }
