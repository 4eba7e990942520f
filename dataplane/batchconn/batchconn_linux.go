package batchconn

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batch is a receive batch: Size messages whose buffers are allocated once.
// A worker owns one Batch and reuses it for every read; it is not safe for
// concurrent use. Each Msgs[i].Buf is a full buffer of BufSize bytes, of which
// only the first BufSize-Tailroom are offered to the kernel, so that a datagram
// can grow in place by up to Tailroom bytes (an SRTP authentication tag plus an
// SRTCP index) without a copy.
type Batch struct {
	Msgs []Message

	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte // control-message space, oobLen per datagram
	recv  int    // bytes offered to the kernel per datagram
	calls uint64 // recvmmsg calls made
}

// oobLen fits one SO_RXQ_OVFL control message (a uint32) per datagram.
var oobLen = unix.CmsgSpace(4)

// NewBatch allocates a batch of size datagrams of bufSize bytes each, of which
// the last tailroom bytes are kept free for in-place growth.
func NewBatch(size, bufSize, tailroom int) *Batch {
	if size < 1 {
		size = 1
	}
	if tailroom < 0 || tailroom >= bufSize {
		tailroom = 0
	}
	b := &Batch{
		Msgs:  make([]Message, size),
		hdrs:  make([]unix.Mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrInet6, size),
		oob:   make([]byte, size*oobLen),
		recv:  bufSize - tailroom,
	}
	// One backing array: fewer objects for the GC to scan, and neighbouring
	// datagrams in neighbouring cache lines.
	backing := make([]byte, size*bufSize)
	for i := range b.Msgs {
		b.Msgs[i].Buf = backing[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		b.iovs[i].Base = &b.Msgs[i].Buf[0]
		b.iovs[i].SetLen(b.recv)
		h := &b.hdrs[i].Hdr
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Control = &b.oob[i*oobLen]
	}
	return b
}

// Recv reads up to len(b.Msgs) datagrams from the nonblocking socket fd with
// one recvmmsg call; see RecvAt.
func (b *Batch) Recv(fd int) (int, error) { return b.RecvAt(fd, 0) }

// RecvAt reads up to len(b.Msgs)-off datagrams from the nonblocking socket fd
// into Msgs[off:] with one recvmmsg call, so that a worker can fill one batch
// from several sockets before it sends anything. It returns how many were
// read (each Msgs[off+i].N and Addr set; N is -1 for a datagram larger than
// the buffer) and unix.EAGAIN when none was ready. Interrupted calls are
// retried.
func (b *Batch) RecvAt(fd, off int) (int, error) {
	if off < 0 || off >= len(b.hdrs) {
		return 0, unix.ENOBUFS
	}
	hdrs := b.hdrs[off:]
	for i := range hdrs {
		hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		hdrs[i].Hdr.SetControllen(oobLen)
		hdrs[i].Hdr.Flags = 0
		hdrs[i].Len = 0
	}
	for {
		b.calls++
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		n := int(r)
		for i := off; i < off+n; i++ {
			m := &b.Msgs[i]
			m.N = int(b.hdrs[i].Len)
			if b.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				m.N = -1 // larger than the buffer: the caller drops it as malformed
			}
			m.Addr = decodeSockaddr(&b.names[i])
			m.Drops = b.drops(i)
		}
		return n, nil
	}
}

// drops parses the SO_RXQ_OVFL control message of datagram i, if any,
// without allocating (unix.ParseSocketControlMessage would).
func (b *Batch) drops(i int) uint32 {
	h := &b.hdrs[i].Hdr
	if int(h.Controllen) < unix.CmsgLen(4) {
		return 0
	}
	oob := b.oob[i*oobLen : i*oobLen+int(h.Controllen)]
	c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if c.Level != unix.SOL_SOCKET || c.Type != unix.SO_RXQ_OVFL || int(c.Len) < unix.CmsgLen(4) {
		return 0
	}
	return *(*uint32)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
}

// decodeSockaddr reads a sockaddr_in or sockaddr_in6 the kernel wrote.
// IPv6 zones are not kept: media never flows on link-local addresses here,
// and a zone would cost an allocation.
func decodeSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(raw[2:4])
	switch sa.Family {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// encodeSockaddr writes addr into sa in the family of the socket (family6:
// an AF_INET6 socket) and returns the length to pass to the kernel, or 0 if
// the address cannot be reached from such a socket.
func encodeSockaddr(sa *unix.RawSockaddrInet6, addr netip.AddrPort, family6 bool) uint32 {
	ip := addr.Addr()
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	if !family6 {
		ip = ip.Unmap()
		if !ip.Is4() {
			return 0
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16(raw[2:4], addr.Port())
		sa4.Addr = ip.As4()
		sa4.Zero = [8]byte{}
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16(raw[2:4], addr.Port())
	sa.Flowinfo = 0
	sa.Addr = ip.As16()
	sa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}
