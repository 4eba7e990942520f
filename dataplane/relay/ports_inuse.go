package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/strait-sbc/strait/dataplane/batchconn"
)

// PortsInUseError is returned by New when shared ports it would bind are
// already bound by another socket: another strait or strait-dataplane on
// the same ports. Without this check SO_REUSEPORT lets the bind succeed
// and the kernel then spreads the peers' packets over both processes, so
// calls to either stay "connecting" with no media.
type PortsInUseError struct {
	// Ports are the addresses found in use.
	Ports []netip.AddrPort
	// Owners describe the processes holding them ("pid 1234 (strait)"),
	// when /proc tells (same user or root); empty otherwise.
	Owners []string
	// PIDs are the owners' process ids, in Owners' order.
	PIDs []int
}

func (e *PortsInUseError) Error() string {
	var ports []string
	for _, p := range e.Ports {
		ports = append(ports, p.String())
	}
	who := "another process"
	if len(e.Owners) > 0 {
		who = strings.Join(e.Owners, ", ")
	}
	return fmt.Sprintf("relay: media ports %s are in use by %s: another strait or strait-dataplane on these ports? "+
		"Give this one other ports (--webrtc-ports, --plain-shared-ports), or stop the other first", strings.Join(ports, ", "), who)
}

// portsReleaseWait bounds how long New waits for shared ports that are in
// use but held by no process: a process that just died (kill -9, a crash)
// whose io_uring the kernel is still tearing down, which holds its
// sockets for a moment after the process is gone. The all-in-one strait
// restarted at once (systemd Restart=always) must not refuse to start
// because of it; a port held by a live process is refused at once.
const portsReleaseWait = 3 * time.Second

// waitPortsFree is checkPortsFree, retried while the ports in use have no
// owner to name, for up to portsReleaseWait.
func waitPortsFree(cfg *Config) error {
	deadline := time.Now().Add(portsReleaseWait)
	for {
		err := checkPortsFree(cfg)
		var inUse *PortsInUseError
		if !errors.As(err, &inUse) || len(inUse.Owners) > 0 || time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// checkPortsFree binds each shared port once without SO_REUSEPORT and
// closes it again: a port that another socket holds (with or without
// SO_REUSEPORT) refuses such a bind, where a SO_REUSEPORT bind by the
// same user would succeed and share the port. The per-call ports
// (RTPPorts) need no check: they are bound without SO_REUSEPORT, and one
// in use is skipped by the allocator.
func checkPortsFree(cfg *Config) error {
	var inUse []netip.AddrPort
	probe := func(a netip.AddrPort) error {
		s, err := batchconn.Listen(a, batchconn.Options{})
		if errors.Is(err, batchconn.ErrAddrInUse) {
			inUse = append(inUse, a)
			return nil
		}
		if err != nil {
			return fmt.Errorf("relay: binding %v: %w", a, err)
		}
		return s.Close()
	}
	for _, addr := range cfg.Addrs {
		for port := int(cfg.WebRTCPorts.First); port <= int(cfg.WebRTCPorts.Last); port++ {
			if err := probe(netip.AddrPortFrom(addr, uint16(port))); err != nil {
				return err
			}
		}
		if r := cfg.PlainSharedPorts; r.Pairs() > 0 {
			// The pairs New binds: an even RTP port and the odd one above.
			for port := int(r.First + r.First%2); port+1 <= int(r.Last); port += 2 {
				for _, p := range []int{port, port + 1} {
					if err := probe(netip.AddrPortFrom(addr, uint16(p))); err != nil {
						return err
					}
				}
			}
		}
	}
	if len(inUse) == 0 {
		return nil
	}
	e := &PortsInUseError{Ports: inUse}
	seen := map[int]bool{}
	for _, a := range inUse {
		if pid, name, ok := portOwner(a); ok && !seen[pid] {
			seen[pid] = true
			e.PIDs = append(e.PIDs, pid)
			e.Owners = append(e.Owners, fmt.Sprintf("pid %d (%s)", pid, name))
		}
	}
	return e
}
