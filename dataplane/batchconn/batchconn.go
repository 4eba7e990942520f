// Package batchconn moves UDP datagrams in batches with as few system calls
// as the kernel allows: recvmmsg and sendmmsg on nonblocking sockets, and a
// Poller, an epoll set that parks in Go's netpoller, so one worker goroutine
// serves thousands of sockets without busy polling and without a goroutine
// per socket or per packet.
//
// The package sits at the batch boundary and no lower: callers own every
// buffer (a Batch is allocated once per worker and reused for its lifetime),
// and nothing here allocates per datagram.
//
// A Loop is one worker's I/O: the sockets it receives from and the datagrams
// it sends, behind one interface with two implementations chosen at start
// (see Mode): recvmmsg/sendmmsg with an epoll set parked in the netpoller,
// the portable path; and io_uring, where one io_uring_enter call sends a
// round's datagrams and waits for the next round's, however many sockets
// they come from.
//
// It is Linux-only (recvmmsg, sendmmsg, epoll, io_uring); elsewhere every
// constructor returns ErrUnsupported.
package batchconn

import (
	"errors"
	"net/netip"
)

// ErrUnsupported is returned on platforms without recvmmsg/sendmmsg/epoll.
var ErrUnsupported = errors.New("batchconn: batched UDP sockets need Linux")

// Message is one datagram of a batch.
//
// On receive, Buf is the caller's buffer (its length is how much may be
// received), N the datagram's length and Addr its source. On send, Buf holds
// the datagram and Addr its destination; N is ignored.
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
	// Token is, on receive through a Loop, the token its socket was
	// registered with.
	Token Token
	// Drops is, on receive from a socket opened with Options.CountDrops,
	// the socket's running count of datagrams the kernel dropped because
	// its receive buffer was full (SO_RXQ_OVFL; wraps at 2^32), as of this
	// datagram; 0 until the first drop.
	Drops uint32
}

// Token is the 64-bit value registered with a socket and reported with its
// datagrams or events. Callers typically encode a slot index and a
// generation.
type Token uint64
