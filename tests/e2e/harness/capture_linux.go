package harness

import (
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// startCapture reads every IPv4 UDP datagram on lo through an AF_PACKET
// socket and calls f with its source and destination ports and payload. Loopback shows
// each packet twice, outgoing and incoming; only the incoming copy counts.
func startCapture(f func(sport, dport int, payload []byte)) (stop func(), err error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	proto := htons(unix.ETH_P_IP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: lo.Index}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A short receive timeout lets the reader notice stop.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 65536)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			p := buf[:n]
			if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
				continue
			}
			ihl := int(p[0]&0x0f) * 4
			if len(p) < ihl+8 {
				continue
			}
			udp := p[ihl:]
			f(int(udp[0])<<8|int(udp[1]), int(udp[2])<<8|int(udp[3]), udp[8:])
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
			<-stopped
			unix.Close(fd)
		}
	}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
