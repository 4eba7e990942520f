package batchconn

import (
	"fmt"
	"net/netip"
)

// maxBatchesPerSocket bounds how many full batches an epoll loop reads from
// one socket before it serves the other ready sockets: under overload every
// socket keeps being served (a flooded socket cannot starve the rest; the
// epoll set is level-triggered, so the socket is reported again).
const maxBatchesPerSocket = 4

// epollLoop is the portable Loop: an epoll set parked in the netpoller,
// recvmmsg per ready socket into one shared batch, and sendmmsg per
// destination socket.
type epollLoop[T any] struct {
	poller  *Poller
	waker   *Waker
	batch   *Batch
	sender  *Sender[T]
	dropped func(T, error)

	// Owned by the owner goroutine (or the creator before it runs).
	regs   []epollReg // by index; 0 is the waker
	free   []uint32
	bySock map[*Socket]uint32
	ready  []Token // internal tokens of the last Wait
	ri     int     // next entry of ready to serve
	full   int     // consecutive full batches read from ready[ri]
	calls  Calls
	wakes  uint64 // eventfd reads
}

type epollReg struct {
	sock *Socket
	tok  Token // the caller's
	gen  uint32
}

func newEpollLoop[T any](cfg LoopConfig[T]) (*epollLoop[T], error) {
	p, err := NewPoller(256)
	if err != nil {
		return nil, err
	}
	w, err := NewWaker(p, 0)
	if err != nil {
		p.Close()
		return nil, err
	}
	return &epollLoop[T]{
		poller:  p,
		waker:   w,
		batch:   NewBatch(cfg.BatchSize, cfg.BufSize, cfg.Tailroom),
		sender:  NewSender[T](cfg.BatchSize),
		dropped: cfg.Dropped,
		regs:    make([]epollReg, 1, 64),
		bySock:  make(map[*Socket]uint32),
		ready:   make([]Token, 0, p.MaxEvents()),
	}, nil
}

func (l *epollLoop[T]) Bind() error { return nil }
func (l *epollLoop[T]) Mode() Mode  { return ModeMmsg }

func (l *epollLoop[T]) Add(s *Socket, tok Token) error {
	if _, dup := l.bySock[s]; dup {
		return fmt.Errorf("batchconn: socket %v added twice", s.Local)
	}
	var idx uint32
	var gen uint32
	if n := len(l.free); n > 0 {
		idx = l.free[n-1]
		l.free = l.free[:n-1]
		gen = l.regs[idx].gen + 1
	} else {
		idx = uint32(len(l.regs))
		l.regs = append(l.regs, epollReg{})
	}
	l.regs[idx].gen = gen
	if err := l.poller.Add(s.FD, Token(idx)|Token(gen)<<32); err != nil {
		l.free = append(l.free, idx)
		return err
	}
	l.regs[idx] = epollReg{sock: s, tok: tok, gen: gen}
	l.bySock[s] = idx
	return nil
}

func (l *epollLoop[T]) Remove(s *Socket) error {
	idx, ok := l.bySock[s]
	if !ok {
		return nil
	}
	delete(l.bySock, s)
	err := l.poller.Remove(s.FD)
	// Events already returned for it are recognised by the generation.
	l.regs[idx] = epollReg{gen: l.regs[idx].gen}
	l.free = append(l.free, idx)
	return err
}

func (l *epollLoop[T]) Next() ([]Message, error) {
	if l.sender.Len() > 0 {
		l.sender.Flush(l.dropped)
	}
	size := len(l.batch.Msgs)
	off := 0
	woke := false
	for {
		for l.ri < len(l.ready) && off < size {
			it := l.ready[l.ri]
			idx, gen := uint32(it), uint32(it>>32)
			if idx == 0 {
				l.waker.Drain()
				l.wakes++
				woke = true
				l.ri++
				continue
			}
			r := &l.regs[idx]
			if r.sock == nil || r.gen != gen {
				l.ri++ // removed since the event was queued
				continue
			}
			n, err := l.batch.RecvAt(r.sock.FD, off)
			for i := off; i < off+n; i++ {
				l.batch.Msgs[i].Token = r.tok
			}
			off += n
			if err != nil || off < size {
				l.ri++ // drained
				l.full = 0
				continue
			}
			if l.full++; l.full >= maxBatchesPerSocket {
				l.ri++
				l.full = 0
			}
		}
		if off > 0 || woke {
			l.count(off)
			return l.batch.Msgs[:off], nil
		}
		toks, err := l.poller.Wait(l.ready[:0])
		l.ready, l.ri, l.full = toks, 0, 0
		if err != nil {
			l.count(0)
			return nil, err
		}
	}
}

func (l *epollLoop[T]) count(n int) {
	l.calls.N[CallRecvmmsg] = l.batch.calls
	l.calls.N[CallSendmmsg] = l.sender.calls
	l.calls.N[CallEpollWait] = l.poller.calls
	l.calls.N[CallOther] = l.wakes
	l.calls.Rounds++
	l.calls.Datagrams += uint64(n)
}

func (l *epollLoop[T]) Send(s *Socket, b []byte, addr netip.AddrPort, tag T) bool {
	if l.sender.Add(s.FD, s.V6, b, addr, tag) {
		return true
	}
	// Full: more sends than received datagrams (cannot happen when each
	// datagram leads to at most one send). Send what is queued first.
	l.sender.Flush(l.dropped)
	return l.sender.Add(s.FD, s.V6, b, addr, tag)
}

func (l *epollLoop[T]) Flush() error {
	if l.sender.Len() > 0 {
		l.sender.Flush(l.dropped)
		l.calls.N[CallSendmmsg] = l.sender.calls
	}
	return nil
}

func (l *epollLoop[T]) Wake()         { l.waker.Wake() }
func (l *epollLoop[T]) Stop()         { l.poller.Close() }
func (l *epollLoop[T]) Calls() *Calls { return &l.calls }

func (l *epollLoop[T]) Close() error {
	l.poller.Close()
	return l.waker.Close()
}
