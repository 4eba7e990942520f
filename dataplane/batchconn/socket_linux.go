package batchconn

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Socket is a nonblocking UDP socket that the dataplane drives itself through
// a Poller and batches, rather than through the net package (whose per-read
// address allocation the packet path cannot afford).
type Socket struct {
	// FD is the descriptor; it stays valid until Close.
	FD int
	// V6 is true for an AF_INET6 socket (bound to an IPv6 address, V6ONLY).
	V6 bool
	// Local is the bound address, with the port the kernel chose for port 0.
	Local netip.AddrPort
}

// Options tune a socket. The zero value is a plain socket with the kernel's
// default buffers.
type Options struct {
	// ReusePort sets SO_REUSEPORT so several workers can each bind a socket
	// to the same address and port; the kernel spreads flows across them by a
	// hash of the 4-tuple, so one flow always reaches the same worker.
	ReusePort bool
	// RecvBuffer and SendBuffer set SO_RCVBUF / SO_SNDBUF in bytes (0 keeps
	// the default; the kernel caps them at net.core.rmem_max / wmem_max, see
	// deploy/sysctl).
	RecvBuffer, SendBuffer int
	// TOS sets the IP TOS / IPv6 traffic class byte (e.g. 0xb8, DSCP EF for
	// voice, RFC 4594); 0 leaves it unset.
	TOS int
	// CountDrops asks the kernel to report, with received datagrams, how
	// many it dropped for a full receive buffer (SO_RXQ_OVFL): overload
	// shows up as a counted drop rather than as silence.
	CountDrops bool
}

// ErrAddrInUse reports that the port is taken (by another leg or process).
var ErrAddrInUse = unix.EADDRINUSE

// Listen opens a UDP socket bound to addr (port 0 picks a free port).
func Listen(addr netip.AddrPort, opt Options) (*Socket, error) {
	ip := addr.Addr().Unmap()
	family, v6 := unix.AF_INET, false
	if ip.Is6() {
		family, v6 = unix.AF_INET6, true
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (*Socket, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s %v: %w", what, addr, err)
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
	}
	if opt.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("SO_REUSEPORT", err)
		}
	}
	if opt.RecvBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, opt.RecvBuffer); err != nil {
			return fail("SO_RCVBUF", err)
		}
	}
	if opt.SendBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, opt.SendBuffer); err != nil {
			return fail("SO_SNDBUF", err)
		}
	}
	if opt.CountDrops {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
			return fail("SO_RXQ_OVFL", err)
		}
	}
	if opt.TOS > 0 {
		level, name := unix.IPPROTO_IP, unix.IP_TOS
		if v6 {
			level, name = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
		}
		if err := unix.SetsockoptInt(fd, level, name, opt.TOS); err != nil {
			return fail("IP_TOS", err)
		}
	}
	var sa unix.Sockaddr
	if v6 {
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: ip.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: ip.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			unix.Close(fd)
			return nil, ErrAddrInUse
		}
		return fail("bind", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	local := addr
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
	}
	return &Socket{FD: fd, V6: v6, Local: local}, nil
}

// SendTo sends one datagram at once, outside any batch. It is for rare
// traffic (DTLS handshakes) and may be called from any goroutine.
func (s *Socket) SendTo(b []byte, to netip.AddrPort) error {
	var sa2 unix.Sockaddr
	switch ip := to.Addr().Unmap(); {
	case s.V6 && ip.Is6():
		sa2 = &unix.SockaddrInet6{Port: int(to.Port()), Addr: ip.As16()}
	case !s.V6 && ip.Is4():
		sa2 = &unix.SockaddrInet4{Port: int(to.Port()), Addr: ip.As4()}
	default:
		return fmt.Errorf("send to %v from %v: %w", to, s.Local, unix.EAFNOSUPPORT)
	}
	for {
		err := unix.Sendto(s.FD, b, unix.MSG_DONTWAIT, sa2)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err
	}
}

// Close closes the socket. The caller must first make sure no worker still
// uses FD (descriptor numbers are reused by the kernel at once).
func (s *Socket) Close() error { return unix.Close(s.FD) }
