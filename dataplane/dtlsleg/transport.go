package dtlsleg

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// QueueLen is how many DTLS datagrams may wait for a leg's handshake
// goroutine. A browser's largest flight is a handful of records; more than
// this queued means the goroutine is stalled or the peer is flooding.
const QueueLen = 32

// maxDatagram bounds a queued datagram; larger ones are dropped (DTLS over
// WebRTC keeps records under the path MTU).
const maxDatagram = 2048

var bufPool = sync.Pool{New: func() any { return new([maxDatagram]byte) }}

type datagram struct {
	buf *[maxDatagram]byte
	n   int
}

// Transport adapts the shared socket to the net.PacketConn pion/dtls reads
// and writes: ReadFrom yields the datagrams a worker delivered for this leg,
// WriteTo sends on the shared socket to the leg's current path. Deadlines are
// honoured (pion cancels blocked reads with SetReadDeadline in the past; a
// no-op deadline would hang a failed handshake forever).
type Transport struct {
	in     chan datagram
	send   func(b []byte) error
	remote atomic.Pointer[net.UDPAddr]
	local  net.Addr

	readDeadline *deadline.Deadline
	closeOnce    sync.Once
	closed       chan struct{}
}

// NewTransport returns a Transport whose writes go through send (which
// chooses the socket and the destination: the leg's nominated ICE path).
// local and remote are reported by LocalAddr and RemoteAddr.
func NewTransport(local, remote netip.AddrPort, send func(b []byte) error) *Transport {
	t := &Transport{
		in:           make(chan datagram, QueueLen),
		send:         send,
		local:        net.UDPAddrFromAddrPort(local),
		readDeadline: deadline.New(),
		closed:       make(chan struct{}),
	}
	t.SetRemote(remote)
	return t
}

// SetRemote updates the address reported as the peer's (after an ICE path
// change); writes follow send's own choice regardless.
func (t *Transport) SetRemote(remote netip.AddrPort) {
	t.remote.Store(net.UDPAddrFromAddrPort(remote))
}

// Deliver copies b into the leg's queue. It never blocks and reports false
// when the datagram was dropped (queue full, oversized, or closed). Safe for
// concurrent use by any number of workers.
func (t *Transport) Deliver(b []byte) bool {
	if len(b) > maxDatagram {
		return false
	}
	select {
	case <-t.closed:
		return false
	default:
	}
	buf := bufPool.Get().(*[maxDatagram]byte)
	n := copy(buf[:], b)
	select {
	case t.in <- datagram{buf: buf, n: n}:
		return true
	default:
		bufPool.Put(buf)
		return false
	}
}

var errClosed = net.ErrClosed

// ReadFrom implements net.PacketConn.
func (t *Transport) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-t.in:
		n := copy(p, d.buf[:d.n])
		bufPool.Put(d.buf)
		return n, t.RemoteAddr(), nil
	case <-t.readDeadline.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-t.closed:
		return 0, nil, errClosed
	}
}

// WriteTo implements net.PacketConn; addr is ignored in favour of the leg's
// current path, which send knows.
func (t *Transport) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-t.closed:
		return 0, errClosed
	default:
	}
	if err := t.send(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close implements net.PacketConn; queued datagrams are released.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		for {
			select {
			case d := <-t.in:
				bufPool.Put(d.buf)
			default:
				return
			}
		}
	})
	return nil
}

// LocalAddr implements net.PacketConn.
func (t *Transport) LocalAddr() net.Addr { return t.local }

// RemoteAddr is the peer's address as last set.
func (t *Transport) RemoteAddr() net.Addr { return t.remote.Load() }

// SetDeadline implements net.PacketConn (reads only: writes never block).
func (t *Transport) SetDeadline(d time.Time) error { return t.SetReadDeadline(d) }

// SetReadDeadline implements net.PacketConn.
func (t *Transport) SetReadDeadline(d time.Time) error {
	t.readDeadline.Set(d)
	return nil
}

// SetWriteDeadline implements net.PacketConn; writes never block.
func (t *Transport) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*Transport)(nil)

// IsClosed reports whether err means the Transport or connection was
// closed, the normal end of Serve.
func IsClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errClosed)
}
