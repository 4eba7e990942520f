package batchconn

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender collects outgoing datagrams for any number of sockets and, on Flush,
// sends each socket's share with one sendmmsg call (a partial send is resumed,
// not treated as an error). Queued datagrams are referenced, not copied: their
// buffers must stay untouched until Flush returns.
//
// A worker owns one Sender; it is not safe for concurrent use. T is an opaque
// tag handed back for each datagram the kernel refused, so the caller can
// count the drop against whoever sent it.
type Sender[T any] struct {
	q     []outMsg[T]
	sent  []bool
	idx   []int // idx[k]: the queue entry hdrs[k] was built from
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	calls uint64 // sendmmsg calls made
}

type outMsg[T any] struct {
	fd   int
	v6   bool
	buf  []byte
	addr netip.AddrPort
	tag  T
}

// NewSender returns a Sender that queues up to capacity datagrams.
func NewSender[T any](capacity int) *Sender[T] {
	if capacity < 1 {
		capacity = 1
	}
	s := &Sender[T]{
		q:     make([]outMsg[T], 0, capacity),
		sent:  make([]bool, capacity),
		idx:   make([]int, capacity),
		hdrs:  make([]unix.Mmsghdr, capacity),
		iovs:  make([]unix.Iovec, capacity),
		names: make([]unix.RawSockaddrInet6, capacity),
	}
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
	}
	return s
}

// Add queues b for sending to addr on socket fd (v6: an AF_INET6 socket).
// It reports false, queuing nothing, when the Sender is full: flush first.
func (s *Sender[T]) Add(fd int, v6 bool, b []byte, addr netip.AddrPort, tag T) bool {
	if len(s.q) == cap(s.q) {
		return false
	}
	s.q = append(s.q, outMsg[T]{fd: fd, v6: v6, buf: b, addr: addr, tag: tag})
	return true
}

// Len is the number of queued datagrams.
func (s *Sender[T]) Len() int { return len(s.q) }

// Flush sends everything queued, one sendmmsg per socket (datagrams to one
// socket keep their order), calls dropped for each datagram the kernel
// refused (a full socket buffer, an unreachable address), and empties the
// queue. It returns how many datagrams were sent.
func (s *Sender[T]) Flush(dropped func(tag T, err error)) int {
	total := 0
	n := len(s.q)
	clear(s.sent[:n])
	for first := 0; first < n; first++ {
		if s.sent[first] {
			continue
		}
		fd, v6 := s.q[first].fd, s.q[first].v6
		// Gather this socket's datagrams into hdrs[0:k] in queue order.
		// Quadratic in the number of distinct sockets per batch, which is
		// bounded by the batch size: cheaper than sorting, and allocation-free.
		k := 0
		for i := first; i < n; i++ {
			m := &s.q[i]
			if s.sent[i] || m.fd != fd {
				continue
			}
			s.sent[i] = true
			namelen := encodeSockaddr(&s.names[k], m.addr, v6)
			if namelen == 0 || len(m.buf) == 0 {
				if dropped != nil {
					dropped(m.tag, unix.EAFNOSUPPORT)
				}
				continue
			}
			s.iovs[k].Base = &m.buf[0]
			s.iovs[k].SetLen(len(m.buf))
			s.hdrs[k].Hdr.Namelen = namelen
			s.hdrs[k].Len = 0
			s.idx[k] = i
			k++
		}
		total += s.sendAll(fd, k, dropped)
	}
	var zero outMsg[T]
	for i := range s.q {
		s.q[i] = zero // drop references to buffers and tags
	}
	s.q = s.q[:0]
	return total
}

// sendAll sends hdrs[0:k] on fd, resuming after partial sends. A datagram
// that fails on its own (e.g. EHOSTUNREACH, EPERM from a firewall) is dropped
// and the rest still go; EAGAIN (socket buffer full) drops the remainder:
// under overload the node sheds load rather than blocking a worker.
func (s *Sender[T]) sendAll(fd, k int, dropped func(T, error)) int {
	sent := 0
	for off := 0; off < k; {
		s.calls++
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&s.hdrs[off])), uintptr(k-off), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			for ; off < k; off++ {
				s.drop(off, e, dropped)
			}
		case e != 0:
			s.drop(off, e, dropped)
			off++
		default:
			sent += int(r)
			off += int(r)
		}
	}
	return sent
}

func (s *Sender[T]) drop(k int, err error, dropped func(T, error)) {
	if dropped != nil {
		dropped(s.q[s.idx[k]].tag, err)
	}
}
